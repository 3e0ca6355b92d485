"""The block-causal few-step video diffusion transformer of the seed papers, in one file.

A Wan-style DiT made causal: latent frames are patchified (1×2×2) into tokens, every
frame carries its own flow-matching timestep (adaLN modulation per frame), and
self-attention runs over [sink | rolling window | current block]. Each transformer block:

    x (B, F, N, D) ─ adaLN(σ_f) ─ self-attention over the KV context ─ gate ─┐
                   ─ talk audio cross-attention   (own speech, per frame)  ──┤ residuals
                   ─ listen audio cross-attention (other party, per frame) ──┤
                   ─ adaLN(σ_f) ─ FFN ─ gate ───────────────────────────────┘

Keys are produced here *un-rotated*; whoever owns the keys (a `KVContext`: the streaming
cache or the training-time block-causal sequence) rotates them with the time positions
it chooses at read time, so cached keys can be re-indexed (RAPR, rolling RoPE).

Shapes: B batch, F latent frames, N = (H/2)·(W/2) tokens per frame, D model width,
A audio tokens per latent frame, L speech-encoder layers, Da speech-encoder width.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

PATCH = 2  # latent patch is 1 (time) × 2 × 2 (space)


@dataclass(frozen=True)
class DiTConfig:
    name: str
    latent_channels: int
    dim: int
    ffn_dim: int
    heads: int
    layers: int
    audio_dim: int          # width of the speech encoder's hidden states (Da)
    audio_layers: int       # hidden states the encoder exposes, mixed by learned weights (L)
    audio_hidden: int       # width inside the audio adapter's causal conv
    audio_tokens: int = 4   # audio tokens per latent frame (A)
    frames_per_latent: int = 4  # video frames per latent frame (the VAE's time stride)
    vae_stride: int = 8     # pixels per latent cell (the VAE's space stride)
    freq_dim: int = 256     # sinusoidal timestep embedding width
    rope_theta: float = 10000.0
    eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


# Sizes. The two large presets carry the transformer dimensions of the papers' bases
# (Wan2.2 configs: TI2V-5B dim 3072 / ffn 14336 / 24 heads / 30 layers on the 48-channel
# 16× VAE; S2V-14B dim 5120 / ffn 13824 / 40 heads / 40 layers on the 16-channel 8× VAE,
# with wav2vec2-large-xlsr audio: 1024 wide, 25 hidden states). Assumption: the text
# cross-attention of Wan is replaced by the talk/listen audio cross-attentions, so the
# parameter counts differ from the released checkpoints by that module and the adapter.
PRESETS = {
    "tiny": DiTConfig("tiny", latent_channels=8, dim=64, ffn_dim=128, heads=4, layers=2,
                      audio_dim=384, audio_layers=1, audio_hidden=32, audio_tokens=2, freq_dim=32),
    "small": DiTConfig("small", latent_channels=16, dim=384, ffn_dim=1536, heads=6, layers=8,
                       audio_dim=384, audio_layers=1, audio_hidden=128, freq_dim=128),
    "wan2.2-ti2v-5b": DiTConfig("wan2.2-ti2v-5b", latent_channels=48, dim=3072, ffn_dim=14336,
                                heads=24, layers=30, audio_dim=1024, audio_layers=25,
                                audio_hidden=512, vae_stride=16),
    "wan2.2-s2v-14b": DiTConfig("wan2.2-s2v-14b", latent_channels=16, dim=5120, ffn_dim=13824,
                                heads=40, layers=40, audio_dim=1024, audio_layers=25,
                                audio_hidden=512, vae_stride=8),
}


def preset(name: str, **overrides) -> DiTConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown causal_dit preset {name!r} (choose from {', '.join(PRESETS)})")
    return replace(PRESETS[name], **overrides)


# ── latent ↔ tokens ──────────────────────────────────────────────────────────────────


def patchify(latents: torch.Tensor) -> torch.Tensor:
    """(B, F, C, H, W) → (B, F, N, C·2·2) with N = H/2 · W/2, row-major over (h, w)."""
    b, f, c, h, w = latents.shape
    x = latents.reshape(b, f, c, h // PATCH, PATCH, w // PATCH, PATCH)
    return x.permute(0, 1, 3, 5, 2, 4, 6).reshape(b, f, (h // PATCH) * (w // PATCH), c * PATCH * PATCH)


def unpatchify(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, F, N, C·2·2) → (B, F, C, H, W); h, w are the latent height and width."""
    b, f, _, cpp = tokens.shape
    c = cpp // (PATCH * PATCH)
    x = tokens.reshape(b, f, h // PATCH, w // PATCH, c, PATCH, PATCH)
    return x.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, f, c, h, w)


# ── 3-D rotary positions ─────────────────────────────────────────────────────────────


class RoPE3D(nn.Module):
    """Rotary angles for (time, height, width), splitting head_dim like Wan (44/42/42 of 128)."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        space = 2 * (head_dim // 6)
        self.split = (head_dim - 2 * space, space, space)
        for axis, d in zip("thw", self.split):
            inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
            self.register_buffer(f"inv_{axis}", inv.float(), persistent=False)

    def angles(self, time_positions: torch.Tensor, latent_h: int, latent_w: int) -> torch.Tensor:
        """Angles (F·N, head_dim/2) for frames at `time_positions` (F,) of a latent_h × latent_w
        latent, whose tokens are its 2×2 patches."""
        dev = self.inv_t.device
        grid_h, grid_w = latent_h // PATCH, latent_w // PATCH
        t = time_positions.to(dev, torch.float32)[:, None, None]                  # (F, 1, 1)
        hh = torch.arange(grid_h, device=dev, dtype=torch.float32)[None, :, None]  # (1, h, 1)
        ww = torch.arange(grid_w, device=dev, dtype=torch.float32)[None, None, :]  # (1, 1, w)
        shape = (len(time_positions), grid_h, grid_w)
        a_t = (t[..., None] * self.inv_t).expand(*shape, -1)
        a_h = (hh[..., None] * self.inv_h).expand(*shape, -1)
        a_w = (ww[..., None] * self.inv_w).expand(*shape, -1)
        return torch.cat([a_t, a_h, a_w], dim=-1).reshape(-1, sum(self.split) // 2)


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of x (B, heads, L, hd) by angles (L, hd/2), in fp32."""
    xf = x.float().unflatten(-1, (-1, 2))          # (B, heads, L, hd/2, 2)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = xf[..., 0], xf[..., 1]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.flatten(-2).to(x.dtype)


# ── building blocks ──────────────────────────────────────────────────────────────────


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps).to(x.dtype) * self.weight


def timestep_embedding(sigma: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of σ·1000 (Wan's timestep scale): (...,) → (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=sigma.device, dtype=torch.float32) / half)
    args = (sigma.float() * 1000.0)[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class SelfAttention(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.heads = cfg.heads
        self.q, self.k, self.v, self.o = (nn.Linear(cfg.dim, cfg.dim) for _ in range(4))
        self.norm_q, self.norm_k = RMSNorm(cfg.dim, cfg.eps), RMSNorm(cfg.dim, cfg.eps)

    def project(self, x: torch.Tensor):
        """x (B, F, N, D) → q, k, v (B, F, N, D); q and k normalised, not rotated."""
        return self.norm_q(self.q(x)), self.norm_k(self.k(x)), self.v(x)

    def attend(self, q, q_angles, k, v, k_angles) -> torch.Tensor:
        """q (B, Lq, D) attends to k, v (B, Lk, D), both rotated here: → (B, Lq, D)."""
        split = lambda t: t.unflatten(-1, (self.heads, -1)).transpose(1, 2)   # (B, heads, L, hd)
        qh = apply_rope(split(q), q_angles)
        kh = apply_rope(split(k), k_angles)
        out = F.scaled_dot_product_attention(qh, kh, split(v))
        return self.o(out.transpose(1, 2).flatten(-2))


class AudioCrossAttention(nn.Module):
    """Each frame's tokens attend to that frame's audio tokens only. Output starts at zero."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.heads = cfg.heads
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.q, self.k, self.v, self.o = (nn.Linear(cfg.dim, cfg.dim) for _ in range(4))
        self.norm_q, self.norm_k = RMSNorm(cfg.dim, cfg.eps), RMSNorm(cfg.dim, cfg.eps)
        # A new branch must not disturb a pretrained backbone until it has learned something.
        nn.init.zeros_(self.o.weight)
        nn.init.zeros_(self.o.bias)

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """x (B, F, N, D), audio (B, F, A, D) → (B, F, N, D)."""
        b, f, n, d = x.shape
        split = lambda t: t.flatten(0, 1).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B·F, heads, L, hd)
        q = split(self.norm_q(self.q(self.norm(x))))
        k = split(self.norm_k(self.k(audio)))
        v = split(self.v(audio))
        out = F.scaled_dot_product_attention(q, k, v)                      # (B·F, heads, N, hd)
        return self.o(out.transpose(1, 2).reshape(b, f, n, d))


class KVContext(Protocol):
    """Decides which keys a layer's queries see and at which time positions."""

    def attend(self, layer: int, q, k, v, attn: SelfAttention) -> torch.Tensor:
        """q, k, v (B, F, N, D) of the frames in this forward → attention output (B, F, N, D)."""


class TransformerBlock(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(cfg)
        self.talk_attn = AudioCrossAttention(cfg)
        self.listen_attn = AudioCrossAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(cfg.dim, cfg.ffn_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(cfg.ffn_dim, cfg.dim))
        self.modulation = nn.Parameter(torch.randn(6, cfg.dim) / cfg.dim ** 0.5)

    def forward(self, x, frame_mod, talk, listen, layer: int, context: KVContext):
        """x (B, F, N, D); frame_mod (B, F, 6, D); talk/listen (B, F, A, D)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation + frame_mod).unsqueeze(2).unbind(3)
        h = self.norm1(x) * (1 + scale1) + shift1                          # (B, F, N, D)
        q, k, v = self.self_attn.project(h)
        x = x + gate1 * context.attend(layer, q, k, v, self.self_attn)
        x = x + self.talk_attn(x, talk) + self.listen_attn(x, listen)
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + gate2 * self.ffn(h)


class AudioAdapter(nn.Module):
    """Speech-encoder hidden states at video rate → A audio tokens per latent frame.

    A learned softmax-weighted sum over the encoder's L layers, then a causal strided 1-D
    conv that sees this latent frame's video frames and the `frames_per_latent` before.
    """

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.fpl, self.tokens = cfg.frames_per_latent, cfg.audio_tokens
        self.layer_weights = nn.Parameter(torch.zeros(cfg.audio_layers))
        self.proj = nn.Linear(cfg.audio_dim, cfg.audio_hidden)
        self.conv = nn.Conv1d(cfg.audio_hidden, cfg.audio_tokens * cfg.audio_hidden,
                              kernel_size=2 * self.fpl, stride=self.fpl)
        self.out = nn.Sequential(nn.GELU(approximate="tanh"), nn.Linear(cfg.audio_hidden, cfg.dim))

    @property
    def history(self) -> int:
        """Video frames of features before the first frame that the conv needs."""
        return self.fpl

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, history + F·fpl, L, Da) → tokens (B, F, A, D)."""
        mixed = torch.einsum("btld,l->btd", features, self.layer_weights.softmax(0))
        h = self.conv(self.proj(mixed).transpose(1, 2))                    # (B, A·hidden, F)
        h = h.transpose(1, 2).unflatten(-1, (self.tokens, -1))             # (B, F, A, hidden)
        return self.out(h)


# ── the model ────────────────────────────────────────────────────────────────────────


class CausalDiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        d, patch_dim = cfg.dim, cfg.latent_channels * PATCH * PATCH
        self.patch_embed = nn.Linear(patch_dim, d)
        self.time_embed = nn.Sequential(nn.Linear(cfg.freq_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.time_mod = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.talk_adapter = AudioAdapter(cfg)
        self.listen_adapter = AudioAdapter(cfg)
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.layers))
        self.head_norm = nn.LayerNorm(d, eps=cfg.eps, elementwise_affine=False)
        self.head_mod = nn.Parameter(torch.randn(2, d) / d ** 0.5)
        self.head = nn.Linear(d, patch_dim)
        self.rope = RoPE3D(cfg.head_dim, cfg.rope_theta)

    def audio_tokens(self, talk_features, listen_features, talk_gate, listen_gate):
        """Encoder features (B, history + F·fpl, L, Da) per branch and per-latent-frame gates
        (B, F) in [0, 1] → talk, listen tokens (B, F, A, D).

        The talk/listen mask acts here, after the speech encoder and the adapter, by
        multiplying the tokens: a listening frame gives the talk branch exact zeros.
        """
        talk = self.talk_adapter(talk_features) * talk_gate[..., None, None].to(talk_features.dtype)
        listen = self.listen_adapter(listen_features) * listen_gate[..., None, None].to(listen_features.dtype)
        return talk, listen

    def silent_tokens(self, batch: int, frames: int, device=None, dtype=torch.float32):
        """Audio tokens for frames with no audio at all (the reference sink)."""
        return torch.zeros(batch, frames, self.cfg.audio_tokens, self.cfg.dim, device=device, dtype=dtype)

    def forward(self, latents, sigma, talk, listen, context: KVContext) -> torch.Tensor:
        """Velocity for latents (B, F, C, H, W) at per-frame noise levels sigma (B, F).

        talk/listen: (B, F, A, D) audio tokens; context: the keys the frames may see.
        """
        _, _, _, h, w = latents.shape
        x = self.patch_embed(patchify(latents))                             # (B, F, N, D)
        e = self.time_embed(timestep_embedding(sigma, self.cfg.freq_dim))   # (B, F, D)
        frame_mod = self.time_mod(e).unflatten(-1, (6, -1))                 # (B, F, 6, D)
        for i, block in enumerate(self.blocks):
            x = block(x, frame_mod, talk, listen, i, context)
        shift, scale = (self.head_mod + e[:, :, None]).unsqueeze(2).unbind(3)  # (B, F, 1, D) each
        out = self.head(self.head_norm(x) * (1 + scale) + shift)
        return unpatchify(out, h, w)
