"""Live Avatar's streaming path, as its reference code streams (CausalWanModel_S2V +
causal_s2v_pipeline_tpp.py), on a `CausalDiT(preset("liveavatar-14b"))`.

    streamer = LiveAvatarStreamer(model, LiveAvatarConfig())
    streamer.reset(reference, motion, prompt_states)      # sink prefill, once
    for n in count():                                     # 3 latent frames = 12 video frames
        x = streamer.clip_noise(n)                        # noise drawn per 4-block clip
        audio = streamer.audio(features_of_block_n)       # wav2vec2 states (B, 12, 25, 1024)
        for i in range(steps):
            x, _ = streamer.denoise_step(i, n, x, audio)  # step i writes cache i
        streamer.finish_block(n, x)                       # the adaptive sink

- Sink: the reference latent + the FramePack motion tokens, at t = 0 with no audio, run
  once; its keys are kept un-rotated and rotated per call (`SinkKV`). One sink serves
  every step's cache (same inputs, same K/V).
- Ring: one clip (12 latent frames) of K/V per denoising step, written at
  frame % 12 (`RingKV`), keys rotated once at their absolute frame as the reference does;
  a block attends to [ring (itself and the 9 frames before) | sink].
- Rolling RoPE: noisy frames at their absolute latent index; the reference at
  max(30, first frame + rd), rd drawn in 4..30 on every call, motion fixed. rd comes from
  `relative_distance(block, step)` (injectable): by default a draw seeded by (seed, block,
  step), so any process layout (TPP) draws the same numbers.
- Timestep forcing: step i of block n sees what earlier blocks wrote at step i; no clean
  pass. Sampler: diffusers' FlowMatchEulerDiscreteScheduler(shift=3) itself for the
  schedule (4 steps: t = [1000, 857.7, 602.2, 8.9]); its Euler update is one stateless
  line here (`euler_step`, the same fp32 arithmetic), because under TPP each rank runs
  its own steps and the scheduler's step counter would have to be forged per call.
- Adaptive sink: block 0's first clean latent frame becomes the reference; the sink is
  prefilled again before clip 1 (the reference does it at clip 1, also under TPP).
- Audio: Live Avatar has talk audio only (no StreamAvatar talk/listen branches); while
  the avatar listens, feed the features of silence.
State is bounded: one sink and, per step, a ring of one clip, allocated once.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import torch

from .model import CausalDiT, SelfAttention, apply_rope, in_fp32, split_heads


@dataclass(frozen=True)
class LiveAvatarConfig:
    frames_per_block: int = 3      # latent frames per block (12 video frames at 25 fps)
    blocks_per_clip: int = 4       # a clip (48 video frames) is the ring and the noise unit
    steps: int = 4
    shift: float = 3.0
    adaptive_sink: bool = True
    min_distance: int = 4          # rolling RoPE: rd drawn in [min_distance, max_distance]
    max_distance: int = 30
    seed: int = 0

    @property
    def window_frames(self) -> int:
        return self.frames_per_block * self.blocks_per_clip


def flow_match_schedule(steps: int, shift: float, train_steps: int = 1000):
    """Timesteps (steps,) and sigmas (steps + 1,), float32, of the reference's sampler:
    diffusers' FlowMatchEulerDiscreteScheduler(shift).set_timesteps(steps)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=train_steps, shift=shift)
    scheduler.set_timesteps(steps)
    return scheduler.timesteps.clone(), scheduler.sigmas.clone()


def euler_step(x: torch.Tensor, velocity: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor):
    """x_next = x + (σ_next − σ)·v in fp32, back to the velocity's dtype (as diffusers)."""
    return (x.float() + (sigma_next - sigma) * velocity).to(velocity.dtype)


class SinkKV:
    """The sink's per-layer un-rotated keys and values (B, L, D) and token positions."""

    def __init__(self, kv: list[tuple[torch.Tensor, torch.Tensor]], positions, reference_tokens: int):
        self.kv, self.reference_tokens = kv, reference_tokens
        self.t, self.h, self.w = positions

    def rotation(self, rope, reference_time: int, device=None) -> torch.Tensor:
        t = self.t.clone().to(torch.float64)
        t[: self.reference_tokens] = reference_time
        return rope.token_rotation(t, self.h, self.w, device)

    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() * 2 for k, _ in self.kv)


class RingKV:
    """One step's ring buffer: per layer K/V of `frames` latent frames, slot = frame % frames;
    keys stored rotated at their absolute frame."""

    def __init__(self, layers: int, frames: int):
        self.layers, self.frames = layers, frames
        self.slot_frame: list[int | None] = [None] * frames
        self.k: list[torch.Tensor | None] = [None] * layers
        self.v: list[torch.Tensor | None] = [None] * layers

    def assign(self, block_frames: list[int]) -> list[int]:
        slots = [f % self.frames for f in block_frames]
        for s, f in zip(slots, block_frames):
            self.slot_frame[s] = f
        return slots

    def write(self, layer: int, slots: list[int], k: torch.Tensor, v: torch.Tensor):
        """k, v (B, F, N, D) of the block's frames into their slots."""
        if self.k[layer] is None:
            b, _, n, d = k.shape
            self.k[layer] = k.new_zeros(b, self.frames, n, d)
            self.v[layer] = v.new_zeros(b, self.frames, n, d)
        self.k[layer][:, slots] = k
        self.v[layer][:, slots] = v

    def filled(self) -> list[int]:
        return [s for s, f in enumerate(self.slot_frame) if f is not None]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v if t is not None)


class SinkPrefill:
    """KVContext of the sink forward: its tokens attend to each other; K/V kept un-rotated."""

    def __init__(self, rot: torch.Tensor):
        self.rot, self.kv = rot, []

    def attend(self, layer: int, q, k, v, attn: SelfAttention) -> torch.Tensor:
        k, v = k.flatten(1, 2), v.flatten(1, 2)
        self.kv.append((k, v))
        return attn.attend(q.flatten(1, 2), self.rot, k, v, self.rot).unflatten(1, q.shape[1:3])


class BlockContext:
    """KVContext of one denoising step: the block attends to [ring incl. itself | sink].

    Ring keys are rotated once, when written (as the reference: a ring frame's absolute
    position never changes); the sink's keys are rotated per call (the reference moves)."""

    def __init__(self, ring: RingKV, sink: SinkKV, block_frames: list[int], reference_time: int,
                 rope, grid: tuple[int, int], device=None):
        self.ring, self.sink = ring, sink
        self.slots = ring.assign(block_frames)
        self.filled = ring.filled()
        self.rot = rope.rotation(torch.tensor(block_frames, dtype=torch.float64), *grid, device)
        self.sink_rot = sink.rotation(rope, reference_time, device)

    def attend(self, layer: int, q, k, v, attn: SelfAttention) -> torch.Tensor:
        b, f, n, _ = q.shape
        heads = lambda t: split_heads(t, attn.heads)                           # (B, L, D) → (B, h, L, hd)
        merge = lambda t: t.transpose(1, 2).flatten(-2)                         # (B, h, L, hd) → (B, L, D)
        qh = apply_rope(heads(q.flatten(1, 2)), self.rot)
        k_rotated = merge(apply_rope(heads(k.flatten(1, 2)), self.rot)).unflatten(1, (f, n))
        self.ring.write(layer, self.slots, k_rotated, v)
        rk, rv = self.ring.k[layer], self.ring.v[layer]
        if len(self.filled) < self.ring.frames:          # before the ring first wraps
            rk, rv = rk[:, self.filled], rv[:, self.filled]
        sk, sv = self.sink.kv[layer]
        kh = torch.cat([heads(rk.flatten(1, 2)), apply_rope(heads(sk), self.sink_rot)], dim=2)
        vh = heads(torch.cat([rv.flatten(1, 2), sv], 1))
        return attn.attend_rotated(qh, kh, vh).unflatten(1, (f, n))


class LiveAvatarStreamer:
    def __init__(self, model: CausalDiT, cfg: LiveAvatarConfig = LiveAvatarConfig(),
                 relative_distance: Callable[[int, int], int] | None = None):
        if not model.cfg.reference_tokens:
            raise ValueError(f"preset {model.cfg.name} is not a Live Avatar model")
        self.model, self.cfg = model, cfg
        self.timesteps, self.sigmas = flow_match_schedule(cfg.steps, cfg.shift)
        self.relative_distance = relative_distance or self._draw_distance
        self.sink: SinkKV | None = None
        self._new_reference = None

    def _draw_distance(self, block: int, step: int) -> int:
        draw = random.Random((self.cfg.seed * 1_000_003 + block) * 64 + step)
        return draw.randint(self.cfg.min_distance, self.cfg.max_distance)

    # ── state ──
    def reset(self, reference: torch.Tensor, motion: torch.Tensor, prompt_states: torch.Tensor,
              steps: list[int] | None = None):
        """reference (B, C, H, W), motion latents (B, T, C, H, W), cached umT5 states (B, S, Dt).
        `steps`: the denoising steps whose caches this process holds (TPP); default all."""
        self.grid = tuple(reference.shape[-2:])
        self.motion = motion
        self.text = self.model.prompt_context(prompt_states)
        self.rings = {i: RingKV(self.model.cfg.layers, self.cfg.window_frames)
                      for i in (range(self.cfg.steps) if steps is None else steps)}
        self.sink = self.prefill(reference)

    def prefill(self, reference: torch.Tensor) -> SinkKV:
        """The sink forward: reference + motion tokens at t = 0, no audio → its K/V."""
        x, pos = self.model.sink_tokens(reference, self.motion)
        context = SinkPrefill(self.model.rope.token_rotation(*pos, device=x.device))
        _, frame_mod = self.model.time_modulation(torch.zeros(x.shape[0], 1, device=x.device))
        self.model.run_blocks(x, frame_mod, context, text=self.text)        # output unused
        n_ref = (self.grid[0] // 2) * (self.grid[1] // 2)
        return SinkKV(context.kv, pos, n_ref)

    def cache_bytes(self) -> int:
        return self.sink.nbytes() + sum(r.nbytes() for r in self.rings.values())

    # ── inputs ──
    def clip_noise(self, block: int, dtype=None) -> torch.Tensor:
        """The starting noise (1, F, C, H, W) of `block`: drawn per clip from seed + clip, as
        the reference (randn (C, 12, H, W) of a generator seeded seed + r)."""
        cfg, c = self.cfg, self.model.cfg.latent_channels
        clip, pos = divmod(block, cfg.blocks_per_clip)
        g = torch.Generator().manual_seed(cfg.seed + clip)
        noise = torch.randn(c, cfg.window_frames, *self.grid, generator=g, dtype=dtype or self.model.dtype)
        f = cfg.frames_per_block
        return noise[:, pos * f:(pos + 1) * f].transpose(0, 1)[None].to(self.model.patch_embed.weight.device)

    def audio(self, features: torch.Tensor):
        """One block's wav2vec2 hidden states (B, 4·F, L, Da) → (tokens, global) for the injector."""
        tokens, glob = in_fp32(self.model.speech_encoder, features)     # fp32, as the reference
        return tokens.to(self.model.dtype), glob.to(self.model.dtype)

    # ── denoising ──
    def block_frames(self, block: int) -> list[int]:
        f = self.cfg.frames_per_block
        return list(range(block * f, (block + 1) * f))

    def denoise_step(self, step: int, block: int, x, audio, rd: int | None = None):
        """Step `step` of `block`: x (B, F, C, H, W) → (x_next, velocity)."""
        model, frames = self.model, self.block_frames(block)
        rd = self.relative_distance(block, step) if rd is None else rd
        reference_time = max(model.cfg.reference_time, frames[0] + rd)
        context = BlockContext(self.rings[step], self.sink, frames, reference_time, model.rope, self.grid, x.device)
        t = self.timesteps[step].to(x.device).expand(x.shape[0], x.shape[1])
        e, frame_mod = model.time_modulation(t)
        h = model.run_blocks(model.noisy_tokens(x), frame_mod, context, text=self.text, audio=audio)
        velocity = model.output(h, e, *self.grid)
        return euler_step(x, velocity, self.sigmas[step].to(x.device), self.sigmas[step + 1].to(x.device)), velocity

    def finish_block(self, block: int, x0: torch.Tensor):
        """After a block's last step (on whoever holds its clean latent)."""
        if not self.cfg.adaptive_sink:
            return
        if block == 0:
            self._new_reference = x0[:, 0]
        if block == self.cfg.blocks_per_clip - 1:
            self.adopt_reference(self._new_reference)

    def adopt_reference(self, reference: torch.Tensor):
        """The adaptive sink: prefill again with a generated frame as the reference."""
        self.sink = self.prefill(reference)

    def generate_block(self, block: int, audio, noise=None):
        x = self.clip_noise(block) if noise is None else noise
        for step in range(self.cfg.steps):
            x, _ = self.denoise_step(step, block, x, audio)
        self.finish_block(block, x)
        return x
