"""Block-by-block generation: reference sink, per-step or refreshed KV caches, K-step sampler.

    streamer.reset(reference_latent)                       # sink K/V, computed once
    talk, listen = streamer.audio_tokens(...)              # per block, incremental
    x0 = streamer.generate_block(block, talk, listen)      # (B, C, ch, h, w) clean latents

Cache modes:
- timestep_forcing (Live Avatar; StreamAvatar's "no update pass"): one cache per denoising
  step; step i of block n attends to what earlier blocks produced at step i and writes its
  own input's K/V there. No extra forward, and steps are independent (pipeline parallel).
- clean_refresh (Self-Forcing): one cache; after the block is denoised, one more forward
  at σ = 0 writes its clean K/V.
`denoise_step` takes the block index explicitly so a pipeline rank can run step i of
block n while another rank runs step i+1 of block n−1.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .cache import CacheContext, KVCache
from .model import CausalDiT
from .positions import PositionScheme
from .sampler import block_noise, sampler_step, shifted_sigmas


@dataclass(frozen=True)
class StreamConfig:
    frames_per_block: int = 3         # C latent frames per block
    window: int = 6                   # W previous latent frames kept in the rolling window
    pin_first_block: bool = False     # keep block 0 in the sink for ever (StreamAvatar)
    adaptive_sink: bool = False       # after block 0, its last frame replaces the reference
    cache_mode: str = "timestep_forcing"   # or clean_refresh
    positions: PositionScheme = field(default_factory=PositionScheme)
    steps: int = 4
    shift: float = 5.0
    step_rule: str = "euler"          # or x0_renoise
    seed: int = 0

    def __post_init__(self):
        if self.cache_mode not in ("timestep_forcing", "clean_refresh"):
            raise ValueError(f"cache_mode must be timestep_forcing or clean_refresh, got {self.cache_mode!r}")
        if self.step_rule not in ("euler", "x0_renoise"):
            raise ValueError(f"step_rule must be euler or x0_renoise, got {self.step_rule!r}")


class CausalStreamer:
    def __init__(self, model: CausalDiT, cfg: StreamConfig):
        self.model, self.cfg = model, cfg
        self.sigmas = shifted_sigmas(cfg.steps, cfg.shift)
        self.caches: list[KVCache] = []

    # ── state ──
    def reset(self, reference_latent: torch.Tensor):
        """Adopt the reference (B, ch, h, w) as the sink; clear caches and audio history."""
        self.grid = reference_latent.shape[-2:]
        n_caches = self.cfg.steps if self.cfg.cache_mode == "timestep_forcing" else 1
        self.caches = [KVCache(self.model.cfg.layers, self.cfg.window) for _ in range(n_caches)]
        sink_kv = self._clean_kv(reference_latent)
        for cache in self.caches:
            cache.add_sink([0], sink_kv)
        b, dev, dt = reference_latent.shape[0], reference_latent.device, reference_latent.dtype
        shape = (b, self.model.talk_adapter.history, self.model.cfg.audio_layers, self.model.cfg.audio_dim)
        self._audio_history = [torch.zeros(shape, device=dev, dtype=dt) for _ in range(2)]

    def cache_bytes(self) -> int:
        return sum(c.nbytes() for c in self.caches)

    def block_frames(self, block: int) -> list[int]:
        c = self.cfg.frames_per_block
        return list(range(1 + block * c, 1 + (block + 1) * c))

    # ── audio ──
    def audio_tokens(self, talk_features, listen_features, talk_gate, listen_gate):
        """One block's encoder features (B, C·fpl, L, Da) per branch and gates (B, C) → tokens."""
        talk_in = torch.cat([self._audio_history[0], talk_features], 1)
        listen_in = torch.cat([self._audio_history[1], listen_features], 1)
        h = self.model.talk_adapter.history
        self._audio_history = [talk_in[:, -h:], listen_in[:, -h:]]
        return self.model.audio_tokens(talk_in, listen_in, talk_gate, listen_gate)

    # ── denoising ──
    def initial_noise(self, block: int, batch: int = 1) -> torch.Tensor:
        shape = (batch, self.cfg.frames_per_block, self.model.cfg.latent_channels, *self.grid)
        return block_noise(self.cfg.seed, block, -1, shape)

    def denoise_step(self, block: int, step: int, x, talk, listen):
        """One sampler step of `block` at step index `step`: returns (x_next, velocity)."""
        timestep_forcing = self.cfg.cache_mode == "timestep_forcing"
        cache = self.caches[step if timestep_forcing else 0]
        frames = self.block_frames(block)
        context = CacheContext(cache, frames, self.cfg.positions, self.model.rope, self.grid)
        sigma, sigma_next = self.sigmas[step], self.sigmas[step + 1]
        sig = torch.full(x.shape[:2], sigma, device=x.device, dtype=x.dtype)
        velocity = self.model(x, sig, talk, listen, context)
        if timestep_forcing:
            self._store(cache, block, frames, context.new_kv)
        fresh = None
        if self.cfg.step_rule == "x0_renoise" and sigma_next > 0:
            fresh = block_noise(self.cfg.seed, block, step, x.shape, x.dtype).to(x.device)
        return sampler_step(self.cfg.step_rule, x, velocity, sigma, sigma_next, fresh), velocity

    def finish_block(self, block: int, x0, talk, listen):
        """After the last step: the clean refresh pass and the adaptive sink, when enabled."""
        frames = self.block_frames(block)
        if self.cfg.cache_mode == "clean_refresh":
            cache = self.caches[0]
            context = CacheContext(cache, frames, self.cfg.positions, self.model.rope, self.grid)
            self.model(x0, torch.zeros(x0.shape[:2], dtype=x0.dtype, device=x0.device), talk, listen, context)
            self._store(cache, block, frames, context.new_kv)
        if self.cfg.adaptive_sink and block == 0:
            # The sink should look like what the model itself produces (no colour/identity drift).
            sink_kv = self._clean_kv(x0[:, -1])
            for cache in self.caches:
                cache.replace_reference(sink_kv)

    def generate_block(self, block: int, talk, listen, noise=None) -> torch.Tensor:
        x = noise if noise is not None else self.initial_noise(block, talk.shape[0]).to(talk)
        for step in range(self.cfg.steps):
            x, _ = self.denoise_step(block, step, x, talk, listen)
        self.finish_block(block, x, talk, listen)
        return x

    # ── helpers ──
    def _store(self, cache: KVCache, block: int, frames, kv):
        if self.cfg.pin_first_block and block == 0:
            cache.add_sink(frames, kv)
        else:
            cache.push(frames, kv)

    def _clean_kv(self, frame):
        """K/V of one clean latent frame (B, ch, h, w) attending only to itself: a sink frame."""
        b = frame.shape[0]
        context = CacheContext(KVCache(self.model.cfg.layers, 0), [0], self.cfg.positions,
                               self.model.rope, self.grid)
        silent = self.model.silent_tokens(b, 1, frame.device, frame.dtype)
        self.model(frame[:, None], torch.zeros(b, 1, device=frame.device, dtype=frame.dtype), silent, silent, context)
        return context.new_kv
