"""Small-scale, honest training: one clip, CPU-sized models.

1. The streaming VAE learns to reconstruct the clip (MSE), then its latents are standardised.
2. The causal DiT learns the flow-matching objective on the whole clip in one sequence
   with the block-causal mask (diffusion forcing): every frame carries its own σ, the
   target is the velocity ε − x0, the loss covers every generated frame. Timesteps are
   shared by all blocks (what a timestep-forcing cache sees at inference), independent
   per block (diffusion forcing proper), or a mix. Optional history corruption adds
   noise to the keys/values a block reads from earlier blocks; with rolling RoPE the
   sink's distance ahead of the block can be drawn at random per step.
3. Weights and configs go to a safetensors checkpoint the backend loads.

Audio features are made exactly as at inference: the clip's audio is fed to the
incremental encoder block by block. This is not the papers' recipe (ODE-pair init,
DMD / self-forcing distillation from a many-step teacher, adversarial refinement);
it trains a small model from scratch.

    python -m avatar_engine.causal_dit.train --synthetic --out tiny.safetensors
    python -m avatar_engine.causal_dit.train --clip talk.mp4 --size 32 --seconds 8 --out model.safetensors
      (any video with sound PyAV reads, cropped and scaled; the talk mask from the VAD;
       or clip.npz: video (T, H, W, 3) uint8 at 25 fps, audio (T·640,) float32 16 kHz,
       optional mask (T,) uint8)
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .audio import TALK_BIT, AudioFeatureStream, SAMPLE_RATE, WhisperEncoder, mask_gates
from .checkpoint import save_checkpoint
from .clips import ClipError, load_clip
from .model import CausalDiT, preset
from .sampler import shifted_sigmas
from .sequence import BlockCausalContext
from .stream import StreamConfig
from .vae import StreamingVAE, VAEConfig


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "tiny"
    stream: StreamConfig = field(default_factory=StreamConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    fps: int = 25
    vae_steps: int = 600
    vae_lr: float = 3e-3
    vae_window: int = 16           # video frames per VAE training step
    dit_steps: int = 1500
    dit_lr: float = 2e-3
    batch: int = 8                 # noise draws of the clip per step
    timesteps: str = "mixed"       # shared | per_block | mixed
    sigma_sampling: str = "schedule"   # schedule: the sampler's K levels; uniform: shifted U(0, 1)
    history_noise: float = 0.0     # std of the noise added to history keys/values
    rolling_gap_max: int = 0       # rolling RoPE: train the sink gap at random in [1, max]; 0 keeps it fixed
    seed: int = 0


@dataclass
class Clip:
    video: torch.Tensor            # (1, 3, T, H, W) in [-1, 1]
    talk_features: torch.Tensor    # (1, T, L, Da) encoder features per video frame
    listen_features: torch.Tensor
    talk_gate: torch.Tensor        # (1, T / fpl) per latent frame
    listen_gate: torch.Tensor


def video_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 → (1, 3, T, H, W) float in [-1, 1]."""
    return torch.from_numpy(frames).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]


def prepare_clip(frames, talk_audio, listen_audio, mask, encoder, cfg: TrainConfig) -> Clip:
    """Encode the clip's audio block by block, as the engine will at inference."""
    block = cfg.stream.frames_per_block * preset(cfg.preset).frames_per_latent
    if len(frames) % block:
        raise ValueError(f"the clip has {len(frames)} frames; use a multiple of {block} (whole blocks)")
    per_block = block * SAMPLE_RATE // cfg.fps
    feats = []
    for audio in (talk_audio, listen_audio):
        stream = AudioFeatureStream(encoder)
        feats.append(np.concatenate([stream.push(audio[i:i + per_block], block)
                                     for i in range(0, len(frames) // block * per_block, per_block)]))
    talk_gate, listen_gate = mask_gates(mask, preset(cfg.preset).frames_per_latent)
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None]
    return Clip(video_tensor(frames), as_t(feats[0]), as_t(feats[1]), as_t(talk_gate), as_t(listen_gate))


def train_vae(vae: StreamingVAE, video: torch.Tensor, cfg: TrainConfig, log=print):
    opt = torch.optim.Adam(vae.parameters(), cfg.vae_lr)
    g = torch.Generator().manual_seed(cfg.seed)
    ts = vae.cfg.time_stride
    starts = range(0, video.shape[2] - cfg.vae_window + 1, ts)
    for step in range(cfg.vae_steps):
        s = starts[int(torch.randint(len(starts), (1,), generator=g))]
        window = video[:, :, s:s + cfg.vae_window]
        loss = (vae.decode(vae.encode(window)) - window).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 200 == 0 or step == cfg.vae_steps - 1:
            log(f"vae step {step}: mse {loss.item():.5f}")
    vae.eval()
    vae.set_latent_stats(video)


def sample_sigmas(cfg: TrainConfig, batch: int, blocks: int, g: torch.Generator) -> torch.Tensor:
    """Noise level per (sample, block): (batch, blocks)."""
    shared = torch.rand(batch, 1, generator=g) < (0.5 if cfg.timesteps == "mixed" else float(cfg.timesteps == "shared"))
    if cfg.sigma_sampling == "schedule":
        levels = torch.tensor(shifted_sigmas(cfg.stream.steps, cfg.stream.shift)[:-1])
        draw = levels[torch.randint(len(levels), (batch, blocks), generator=g)]
    else:
        u = torch.rand(batch, blocks, generator=g)
        s = cfg.stream.shift
        draw = s * u / (1 + (s - 1) * u)
    return torch.where(shared, draw[:, :1].expand(-1, blocks), draw)


def train_dit(model: CausalDiT, latents, reference, clip: Clip, cfg: TrainConfig, log=print):
    """latents (1, F, ch, h, w) of the clip, reference (1, ch, h, w): the sink frame."""
    sc = cfg.stream
    c = sc.frames_per_block
    blocks = latents.shape[1] // c
    opt = torch.optim.AdamW(model.parameters(), cfg.dit_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / cfg.dit_steps)))
    g = torch.Generator().manual_seed(cfg.seed + 1)
    def block_causal(positions):
        return BlockCausalContext(1 + latents.shape[1], c, sc.window, sc.pin_first_block, positions,
                                  model.rope, latents.shape[-2:], history_noise=cfg.history_noise, generator=g)

    random_gap = sc.positions.mode == "rolling" and cfg.rolling_gap_max > 0
    context = block_causal(sc.positions)
    b = cfg.batch
    history = torch.zeros(1, model.talk_adapter.history, *clip.talk_features.shape[2:])
    x0 = torch.cat([reference[:, None], latents], 1).expand(b, -1, -1, -1, -1)
    for step in range(cfg.dit_steps):
        if random_gap:   # Live Avatar trains the sink at a random distance ahead of the block
            gap = int(torch.randint(1, cfg.rolling_gap_max + 1, (1,), generator=g))
            context = block_causal(replace(sc.positions, rolling_gap=gap))
        talk, listen = model.audio_tokens(torch.cat([history, clip.talk_features], 1),
                                          torch.cat([history, clip.listen_features], 1),
                                          clip.talk_gate, clip.listen_gate)
        silent = model.silent_tokens(1, 1)
        talk, listen = (torch.cat([silent, t], 1).expand(b, -1, -1, -1) for t in (talk, listen))
        sigma = torch.cat([torch.zeros(b, 1), sample_sigmas(cfg, b, blocks, g).repeat_interleave(c, 1)], 1)
        noise = torch.randn(x0.shape, generator=g)
        s = sigma[..., None, None, None]
        x_t = (1 - s) * x0 + s * noise
        v = model(x_t, sigma, talk, listen, context)
        loss = (v[:, 1:] - (noise - x0)[:, 1:]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == cfg.dit_steps - 1:
            log(f"dit step {step}: loss {loss.item():.4f}")
    model.eval()


def train_on_clip(frames, talk_audio, listen_audio, mask, cfg: TrainConfig, encoder=None, log=print):
    """Train VAE and DiT on one clip → (model, vae, clip)."""
    torch.manual_seed(cfg.seed)
    encoder = encoder or WhisperEncoder()
    clip = prepare_clip(frames, talk_audio, listen_audio, mask, encoder, cfg)
    dit_cfg = preset(cfg.preset, latent_channels=cfg.vae.latent_channels, audio_dim=clip.talk_features.shape[-1],
                     audio_layers=clip.talk_features.shape[-2], vae_stride=cfg.vae.spatial_stride,
                     frames_per_latent=cfg.vae.time_stride)
    vae = StreamingVAE(cfg.vae)
    t0 = time.perf_counter()
    train_vae(vae, clip.video, cfg, log)
    with torch.no_grad():
        latents = vae.encode(clip.video)
        reference = vae.encode_image(clip.video[:, :, 0])
    log(f"vae trained in {time.perf_counter() - t0:.0f} s")
    model = CausalDiT(dit_cfg)
    t0 = time.perf_counter()
    train_dit(model, latents, reference, clip, cfg, log)
    log(f"dit trained in {time.perf_counter() - t0:.0f} s")
    return model, vae, clip


def main(argv=None):
    p = argparse.ArgumentParser(description="Train a small causal_dit on one clip.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--clip", help="a video with sound (.mp4, .mkv, .mov, …), or an .npz with video (T,H,W,3) "
                                    "uint8 at 25 fps, audio (samples,) float32 16 kHz, optional mask")
    src.add_argument("--synthetic", action="store_true", help="a generated 32×32 talking clip")
    p.add_argument("--out", required=True, help="checkpoint path (.safetensors)")
    p.add_argument("--size", type=int, default=32, help="a video clip is scaled to size × size")
    p.add_argument("--seconds", type=float, default=8.0, help="train on at most this much of the clip (.npz too)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--dit-steps", type=int, default=1500)
    p.add_argument("--vae-steps", type=int, default=600)
    p.add_argument("--history-noise", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(preset=args.preset, dit_steps=args.dit_steps, vae_steps=args.vae_steps,
                      history_noise=args.history_noise)
    if args.synthetic:
        from .synthetic import talking_clip
        frames, audio, mask = talking_clip(48)
    else:
        block = cfg.stream.frames_per_block * preset(cfg.preset).frames_per_latent
        try:
            frames, audio, mask = load_clip(args.clip, size=args.size, seconds=args.seconds, block=block)
        except ClipError as e:
            raise SystemExit(f"error: {e}") from None
        print(f"clip: {len(frames)} frames of {frames.shape[2]}×{frames.shape[1]}, "
              f"talking in {int(((mask & TALK_BIT) > 0).sum())} of them")
    model, vae, _ = train_on_clip(frames, audio, np.zeros_like(audio), mask, cfg)
    save_checkpoint(args.out, model, vae, cfg.stream)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
