"""The block-causal few-step video diffusion transformer of the seed papers, in one file.

A Wan-style DiT made causal: latent frames are patchified (1×2×2) into tokens, every
frame carries its own flow-matching timestep (adaLN modulation per frame), and
self-attention runs over [sink | rolling window | current block]. Each transformer block:

    x (B, F, N, D) ─ adaLN(σ_f) ─ self-attention over the KV context ─ gate ─┐
                   ─ talk audio cross-attention   (own speech, per frame)  ──┤ residuals
                   ─ listen audio cross-attention (other party, per frame) ──┤
                   ─ adaLN(σ_f) ─ FFN ─ gate ───────────────────────────────┘

The same file holds the published Live Avatar model (Wan2.2-S2V-14B + LoRA) when its
config asks for it: text cross-attention on cached umT5 prompt states after the
self-attention, the reference and FramePack motion tokens of the sink (`sink_tokens`),
and the audio injector — after some blocks, each noisy frame's tokens attend to that
frame's audio tokens, AdaLN-modulated by a global audio token:

    x ─ adaLN ─ self-attention ─ gate ─┐ ─ norm3 ─ text cross-attention ─┐ ─ adaLN ─ FFN ─ gate ─┐
                                                            (blocks 0, 4, …, 39) ─ audio injector ─┘

The talk/listen branches are the StreamAvatar extension; Live Avatar has none.

Keys are produced here *un-rotated*; whoever owns the keys (a `KVContext`: the streaming
cache or the training-time block-causal sequence) rotates them with the time positions
it chooses at read time, so cached keys can be re-indexed (RAPR, rolling RoPE).

Shapes: B batch, F latent frames, N = (H/2)·(W/2) tokens per frame, D model width,
A audio tokens per latent frame, L speech-encoder layers, Da speech-encoder width,
S prompt tokens, Dt prompt-encoder width, M motion tokens.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
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
    # StreamAvatar extension: talk and listen audio cross-attention in every block
    talk_listen: bool = True
    # Live Avatar (Wan2.2-S2V) conditioning
    text_dim: int = 0                          # umT5 width (Dt); 0 = no text cross-attention
    text_len: int = 512                        # the prompt is zero-padded to this many tokens
    audio_inject_layers: tuple[int, ...] = ()  # blocks followed by the audio injector
    reference_tokens: bool = False             # pose embed, token kinds, FramePack motion tokens
    motion_frames: int = 73                    # video frames of motion context (→ 19 latents)
    reference_time: int = 30                   # RoPE time of the reference frame in the sink
    rope_half_table: bool = False              # RoPE cos/sin rounded to fp16 (Wan's complex-half table)

    def __post_init__(self):   # JSON gives lists
        object.__setattr__(self, "audio_inject_layers", tuple(self.audio_inject_layers))

    @property
    def motion_latents(self) -> int:
        return (self.motion_frames + 3) // 4

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


# Sizes. "wan2.2-ti2v-5b" and "wan2.2-s2v-14b" are StreamAvatar-style models (talk/listen
# branches instead of text) with the transformer dimensions of the papers' bases (Wan2.2
# configs: TI2V-5B dim 3072 / ffn 14336 / 24 heads / 30 layers on the 48-channel 16× VAE;
# S2V-14B dim 5120 / ffn 13824 / 40 heads / 40 layers on the 16-channel 8× VAE, with
# wav2vec2-large-xlsr audio: 1024 wide, 25 hidden states); no released weights fit them.
# "liveavatar-14b" is the released Live Avatar model itself: 1,260 tensors, 16.30 B.
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
    # The published Live Avatar DiT (Wan2.2-S2V-14B; `conversion.py` maps its keys) and a
    # tiny model of the same structure for the equivalence tests.
    "liveavatar-14b": DiTConfig("liveavatar-14b", latent_channels=16, dim=5120, ffn_dim=13824,
                                heads=40, layers=40, audio_dim=1024, audio_layers=25,
                                audio_hidden=5120, talk_listen=False, text_dim=4096,
                                audio_inject_layers=(0, 4, 8, 12, 16, 20, 24, 27, 30, 33, 36, 39),
                                reference_tokens=True, rope_half_table=True),
    "liveavatar-tiny": DiTConfig("liveavatar-tiny", latent_channels=16, dim=32, ffn_dim=64,
                                 heads=2, layers=3, audio_dim=16, audio_layers=25, audio_hidden=32,
                                 freq_dim=32, talk_listen=False, text_dim=16,
                                 audio_inject_layers=(0, 2), reference_tokens=True,
                                 rope_half_table=True),
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
    """Rotary embedding for (time, height, width), splitting head_dim like Wan (44/42/42 of 128).

    A rotation is a tensor (2, L, head_dim/2): cos and sin of each token's angles. Angles
    are computed in float64 as Wan's tables; half_table rounds cos/sin to fp16 exactly as
    Wan stores its complex-half table (the published weights were trained and run with it).
    """

    def __init__(self, head_dim: int, theta: float, half_table: bool = False):
        super().__init__()
        space = 2 * (head_dim // 6)
        self.split = (head_dim - 2 * space, space, space)
        self.theta, self.half_table = theta, half_table

    def token_rotation(self, t: torch.Tensor, h: torch.Tensor, w: torch.Tensor, device=None) -> torch.Tensor:
        """Rotation (2, L, head_dim/2) of L tokens at positions t, h, w (each (L,))."""
        angles = []
        for pos, d in zip((t, h, w), self.split):
            inv = 1.0 / torch.pow(self.theta, torch.arange(0, d, 2, dtype=torch.float64, device=pos.device) / d)
            angles.append(pos.to(torch.float64)[:, None] * inv)
        angles = torch.cat(angles, dim=-1)
        rot = torch.polar(torch.ones_like(angles), angles)                 # complex128
        with warnings.catch_warnings():   # complex-half is "experimental" but exact for a cast
            warnings.simplefilter("ignore", UserWarning)
            rot = rot.to(torch.complex32 if self.half_table else torch.complex64)
        return torch.stack([rot.real, rot.imag]).float().to(device)

    def rotation(self, time_positions: torch.Tensor, latent_h: int, latent_w: int, device=None) -> torch.Tensor:
        """Rotation (2, F·N, head_dim/2) for frames at `time_positions` (F,) of a latent_h × latent_w
        latent, whose tokens are its 2×2 patches, row-major."""
        f64 = dict(dtype=torch.float64, device=time_positions.device)
        t, h, w = torch.meshgrid(time_positions.to(torch.float64), torch.arange(latent_h // PATCH, **f64),
                                 torch.arange(latent_w // PATCH, **f64), indexing="ij")
        return self.token_rotation(t.flatten(), h.flatten(), w.flatten(), device)


def apply_rope(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of x (B, heads, L, hd) by a rotation (2, L, hd/2), in fp32."""
    cos, sin = rot.to(x.device).unbind(0)
    xf = x.float().unflatten(-1, (-1, 2))          # (B, heads, L, hd/2, 2)
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


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of timesteps t ∈ [0, 1000] (σ·1000), in float64 as Wan: (...,) → (..., dim)."""
    half = dim // 2
    t = t.to(torch.float64)
    freqs = torch.pow(10000.0, -torch.arange(half, device=t.device, dtype=torch.float64) / half)
    args = t[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).float()


def in_fp32(module: nn.Module, *inputs):
    """Run a small module in fp32 whatever the model dtype: Wan computes the time embedding,
    the modulations, the head and the audio encoder in fp32 (autocast) in a bf16 model."""
    params = {k: v.float() for k, v in module.named_parameters()}
    return torch.func.functional_call(module, params, tuple(i.float() for i in inputs))


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, D) → (B, heads, L, D/heads)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


class SelfAttention(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.heads = cfg.heads
        self.q, self.k, self.v, self.o = (nn.Linear(cfg.dim, cfg.dim) for _ in range(4))
        self.norm_q, self.norm_k = RMSNorm(cfg.dim, cfg.eps), RMSNorm(cfg.dim, cfg.eps)

    def project(self, x: torch.Tensor):
        """x (B, F, N, D) → q, k, v (B, F, N, D); q and k normalised, not rotated."""
        return self.norm_q(self.q(x)), self.norm_k(self.k(x)), self.v(x)

    def attend(self, q, q_rot, k, v, k_rot) -> torch.Tensor:
        """q (B, Lq, D) attends to k, v (B, Lk, D), rotated here by q_rot / k_rot: → (B, Lq, D)."""
        qh = apply_rope(split_heads(q, self.heads), q_rot)
        kh = apply_rope(split_heads(k, self.heads), k_rot)
        return self.attend_rotated(qh, kh, split_heads(v, self.heads))

    def attend_rotated(self, qh, kh, vh) -> torch.Tensor:
        """Heads already rotated: qh (B, heads, Lq, hd), kh, vh (B, heads, Lk, hd) → (B, Lq, D)."""
        out = F.scaled_dot_product_attention(qh, kh, vh)
        return self.o(out.transpose(1, 2).flatten(-2))


class CrossAttention(nn.Module):
    """Wan's cross-attention: queries from x (B, L, D) attend to a context (B, S, D), no RoPE."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.heads = cfg.heads
        self.q, self.k, self.v, self.o = (nn.Linear(cfg.dim, cfg.dim) for _ in range(4))
        self.norm_q, self.norm_k = RMSNorm(cfg.dim, cfg.eps), RMSNorm(cfg.dim, cfg.eps)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.norm_q(self.q(x)), self.heads)
        k = split_heads(self.norm_k(self.k(context)), self.heads)
        out = F.scaled_dot_product_attention(q, k, split_heads(self.v(context), self.heads))
        return self.o(out.transpose(1, 2).flatten(-2))


class AudioCrossAttention(CrossAttention):
    """StreamAvatar: each frame's tokens attend to that frame's audio tokens only. Output starts at zero."""

    def __init__(self, cfg: DiTConfig):
        super().__init__(cfg)
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        # A new branch must not disturb a pretrained backbone until it has learned something.
        nn.init.zeros_(self.o.weight)
        nn.init.zeros_(self.o.bias)

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """x (B, F, N, D), audio (B, F, A, D) → (B, F, N, D)."""
        b, f = x.shape[:2]
        return super().forward(self.norm(x).flatten(0, 1), audio.flatten(0, 1)).unflatten(0, (b, f))


class KVContext(Protocol):
    """Decides which keys a layer's queries see and at which time positions."""

    def attend(self, layer: int, q, k, v, attn: SelfAttention) -> torch.Tensor:
        """q, k, v (B, F, N, D) of the frames in this forward → attention output (B, F, N, D)."""


class TransformerBlock(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(cfg)
        if cfg.text_dim:
            self.norm3 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
            self.cross_attn = CrossAttention(cfg)
        if cfg.talk_listen:
            self.talk_attn = AudioCrossAttention(cfg)
            self.listen_attn = AudioCrossAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(cfg.dim, cfg.ffn_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(cfg.ffn_dim, cfg.dim))
        self.modulation = nn.Parameter(torch.randn(6, cfg.dim) / cfg.dim ** 0.5)

    def forward(self, x, frame_mod, layer: int, context: KVContext, text=None, talk=None, listen=None):
        """x (B, F, N, D); frame_mod (B, F, 6, D) fp32; text (B, S, D); talk/listen (B, F, A, D).

        As Wan in a bf16 model: modulation and the residual stream inside the block in
        fp32, the layers' inputs in the model dtype (all no-ops in an fp32 model)."""
        dt = x.dtype
        mods = (self.modulation.float() + frame_mod).unsqueeze(2).unbind(3)
        shift1, scale1, gate1, shift2, scale2, gate2 = mods                # (B, F, 1, D) each
        h = (self.norm1(x).float() * (1 + scale1) + shift1).to(dt)        # (B, F, N, D)
        q, k, v = self.self_attn.project(h)
        x = x + gate1 * context.attend(layer, q, k, v, self.self_attn)    # fp32 from here
        if text is not None:                                               # ungated, as Wan
            f = x.shape[1]
            x = x + self.cross_attn(self.norm3(x.to(dt)).flatten(1, 2), text).unflatten(1, (f, -1))
        if talk is not None:
            x = x + self.talk_attn(x.to(dt), talk) + self.listen_attn(x.to(dt), listen)
        h = (self.norm2(x) * (1 + scale2) + shift2).to(dt)
        return (x + gate2 * self.ffn(h)).to(dt)


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


class CausalConv1d(nn.Conv1d):
    """Conv1d over time that sees only the past: left padding by repeating the first frame."""

    def forward(self, x):
        return super().forward(F.pad(x, (self.kernel_size[0] - 1, 0), mode="replicate"))


class SpeechEncoder(nn.Module):
    """Live Avatar's causal audio encoder: wav2vec2 hidden states at video rate → per latent
    frame A local tokens + 1 learned padding token (cross-attention) and 1 global token (AdaLN).

    The L layers are mixed by SiLU(w) / ΣSiLU(w); causal convs (kernel 3) with LayerNorm +
    SiLU go down 4× in time: a local branch of A heads (D/4 each) and a global branch share
    the two strided convs. One block is encoded alone, prefixed with `motion_frames` copies
    of its first frame (Wan's motion context), whose `motion_latents` outputs are dropped.
    """

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        d, self.heads = cfg.dim, cfg.audio_tokens
        self.motion_frames, self.motion_latents = cfg.motion_frames, cfg.motion_latents
        self.layer_weights = nn.Parameter(torch.full((cfg.audio_layers,), 0.01))
        self.local_conv = CausalConv1d(cfg.audio_dim, d // 4 * self.heads, 3)
        self.global_conv = CausalConv1d(cfg.audio_dim, d // 4, 3)
        self.down1 = CausalConv1d(d // 4, d // 2, 3, stride=2)
        self.down2 = CausalConv1d(d // 2, d, 3, stride=2)
        self.global_out = nn.Linear(d, d)
        self.padding_token = nn.Parameter(torch.zeros(d))

    def _downsample(self, x: torch.Tensor) -> torch.Tensor:
        """(B', D/4, T) → (B', T/4, D), LayerNorm + SiLU after every conv."""
        act = lambda h: F.silu(F.layer_norm(h.transpose(1, 2), h.shape[1:2], eps=1e-6)).transpose(1, 2)
        return act(self.down2(act(self.down1(act(x))))).transpose(1, 2)

    def forward(self, features: torch.Tensor):
        """features (B, T, L, Da) of one block at video rate → tokens (B, F, A+1, D), global (B, F, D)."""
        prefix = features[:, :1].expand(-1, self.motion_frames, -1, -1)
        features = torch.cat([prefix, features], 1)                       # (B, 73 + T, L, Da)
        w = F.silu(self.layer_weights)
        mixed = (features * (w / w.sum())[:, None]).sum(2).transpose(1, 2)  # (B, Da, T')
        b = mixed.shape[0]
        local = self.local_conv(mixed).unflatten(1, (self.heads, -1)).flatten(0, 1)   # (B·A, D/4, T')
        local = self._downsample(local).unflatten(0, (b, self.heads)).transpose(1, 2)  # (B, F', A, D)
        pad = self.padding_token.expand(b, local.shape[1], 1, -1)
        tokens = torch.cat([local, pad], 2)
        glob = self.global_out(self._downsample(self.global_conv(mixed)))    # (B, F', D)
        return tokens[:, self.motion_latents:], glob[:, self.motion_latents:]


class AudioInjector(nn.Module):
    """Live Avatar, after a block: each noisy frame's tokens attend to that frame's audio
    tokens; the query side is AdaLN-modulated (shift, scale) by the global audio token;
    ungated residual."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.adain = nn.Linear(cfg.dim, 2 * cfg.dim)
        self.attn = CrossAttention(cfg)

    def forward(self, x, tokens, global_token):
        """x (B, F, N, D), tokens (B, F, A+1, D), global_token (B, F, D) → (B, F, N, D)."""
        b, f = x.shape[:2]
        shift, scale = self.adain(F.silu(global_token)).unsqueeze(2).chunk(2, dim=-1)   # (B, F, 1, D)
        h = F.layer_norm(x, x.shape[-1:], eps=1e-5) * (1 + scale) + shift
        return x + self.attn(h.flatten(0, 1), tokens.flatten(0, 1)).unflatten(0, (b, f))


class MotionPacker(nn.Module):
    """FramePack: the last 19 motion latents as sink tokens, newer frames finer. The newest
    latent is patchified 1×2×2, the 2 before it 2×4×4, the 16 before those 4×8×8.

    Their RoPE times lie before the clip (−1, −3, and −19/−14/−9/−4 for the four 4× groups);
    compressed tokens take the spatial positions of a stretched full-size grid.
    """
    BUCKETS = (1, 2, 16)   # newest first

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        c, d = cfg.latent_channels, cfg.dim
        self.proj = nn.Conv3d(c, d, (1, 2, 2), stride=(1, 2, 2))
        self.proj_2x = nn.Conv3d(c, d, (2, 4, 4), stride=(2, 4, 4))
        self.proj_4x = nn.Conv3d(c, d, (4, 8, 8), stride=(4, 8, 8))

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        """motion (B, T, C, H, W), the newest last → tokens (B, M, D)."""
        b, t, c, h, w = motion.shape
        n = sum(self.BUCKETS)
        packed = motion.new_zeros(b, n, c, h, w)          # zero-padded when fewer than 19
        packed[:, n - min(n, t):] = motion[:, t - min(n, t):]
        packed = packed.transpose(1, 2)                   # (B, C, 19, H, W)
        oldest, middle, newest = packed.split(self.BUCKETS[::-1], dim=2)
        parts = [self.proj(newest), self.proj_2x(middle), self.proj_4x(oldest)]
        return torch.cat([p.flatten(2).transpose(1, 2) for p in parts], 1)

    @staticmethod
    def positions(latent_h: int, latent_w: int):
        """RoPE positions t, h, w (each (M,)) of the motion tokens, in token order."""
        gh, gw = latent_h // PATCH, latent_w // PATCH
        out = []
        for times, div in (((-1,), 1), ((-3,), 2), ((-19, -14, -9, -4), 4)):
            # np.linspace + truncation: Wan's stretched grid, bit for bit
            hs = np.linspace(0, gh - 1, gh // div).astype(int)
            ws = np.linspace(0, gw - 1, gw // div).astype(int)
            t, hh, ww = np.meshgrid(times, hs, ws, indexing="ij")
            out.append(np.stack([t.ravel(), hh.ravel(), ww.ravel()]))
        return torch.from_numpy(np.concatenate(out, 1)).unbind(0)


# ── the model ────────────────────────────────────────────────────────────────────────


class CausalDiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        d, patch_dim = cfg.dim, cfg.latent_channels * PATCH * PATCH
        self.patch_embed = nn.Linear(patch_dim, d)
        self.time_embed = nn.Sequential(nn.Linear(cfg.freq_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.time_mod = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        if cfg.talk_listen:
            self.talk_adapter = AudioAdapter(cfg)
            self.listen_adapter = AudioAdapter(cfg)
        if cfg.text_dim:
            self.text_embed = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.GELU(approximate="tanh"), nn.Linear(d, d))
        if cfg.audio_inject_layers:
            self.speech_encoder = SpeechEncoder(cfg)
            self.audio_injectors = nn.ModuleDict({str(i): AudioInjector(cfg) for i in cfg.audio_inject_layers})
        if cfg.reference_tokens:
            self.pose_embed = nn.Linear(patch_dim, d)     # pose latents; zeros without a pose video
            self.token_kind = nn.Embedding(3, d)          # 0 noisy, 1 reference, 2 motion
            self.motion_packer = MotionPacker(cfg)
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.layers))
        self.head_norm = nn.LayerNorm(d, eps=cfg.eps, elementwise_affine=False)
        self.head_mod = nn.Parameter(torch.randn(2, d) / d ** 0.5)
        self.head = nn.Linear(d, patch_dim)
        self.rope = RoPE3D(cfg.head_dim, cfg.rope_theta, cfg.rope_half_table)

    @property
    def dtype(self) -> torch.dtype:
        return self.patch_embed.weight.dtype

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

    def time_modulation(self, t: torch.Tensor):
        """Timesteps t (B, F) in [0, 1000] → embedding e (B, F, D) and block modulation (B, F, 6, D)."""
        e = in_fp32(self.time_embed, timestep_embedding(t, self.cfg.freq_dim))
        return e, in_fp32(self.time_mod, e).unflatten(-1, (6, -1))

    def run_blocks(self, x, frame_mod, context: KVContext, text=None, talk=None, listen=None, audio=None):
        """x (B, F, N, D) through every block; audio = (tokens (B, F, A+1, D), global (B, F, D))
        for the Live Avatar injector, None where a forward has no audio (the sink)."""
        for i, block in enumerate(self.blocks):
            x = block(x, frame_mod, i, context, text, talk, listen)
            if audio is not None and str(i) in getattr(self, "audio_injectors", {}):
                x = self.audio_injectors[str(i)](x, *audio)
        return x

    def output(self, x, e, h: int, w: int) -> torch.Tensor:
        """Hidden states (B, F, N, D) and time embedding e (B, F, D) → velocity (B, F, C, h, w)."""
        shift, scale = (self.head_mod.float() + e[:, :, None]).unsqueeze(2).unbind(3)  # (B, F, 1, D) each
        out = in_fp32(self.head, self.head_norm(x) * (1 + scale) + shift)
        return unpatchify(out, h, w).to(x.dtype)

    def forward(self, latents, sigma, talk, listen, context: KVContext) -> torch.Tensor:
        """Velocity for latents (B, F, C, H, W) at per-frame noise levels sigma (B, F).

        talk/listen: (B, F, A, D) audio tokens; context: the keys the frames may see.
        """
        _, _, _, h, w = latents.shape
        x = self.patch_embed(patchify(latents))                             # (B, F, N, D)
        e, frame_mod = self.time_modulation(sigma.double() * 1000.0)
        x = self.run_blocks(x, frame_mod, context, talk=talk, listen=listen)
        return self.output(x, e, h, w)

    # ── Live Avatar ──
    def prompt_context(self, states: torch.Tensor) -> torch.Tensor:
        """Cached umT5 prompt states (B, S, Dt), S ≤ text_len → text context (B, text_len, D).
        Wan zero-pads to text_len and the cross-attention sees every position."""
        pad = self.cfg.text_len - states.shape[1]
        if pad < 0:
            raise ValueError(f"prompt of {states.shape[1]} tokens is longer than text_len {self.cfg.text_len}")
        return self.text_embed(F.pad(states.to(self.dtype), (0, 0, 0, pad)))

    def sink_tokens(self, reference: torch.Tensor, motion: torch.Tensor):
        """The sink of one forward: the reference latent (B, C, H, W) then the FramePack
        motion tokens of motion latents (B, T, C, H, W) → tokens (B, 1, N + M, D) and their
        RoPE positions t, h, w (each (N + M,)); the reference sits at `reference_time`."""
        h, w = reference.shape[-2:]
        ref = self.patch_embed(patchify(reference[:, None].to(self.dtype)))[:, 0]   # (B, N, D)
        mot = self.motion_packer(motion.to(self.dtype))                             # (B, M, D)
        kinds = torch.tensor([1] * ref.shape[1] + [2] * mot.shape[1], device=ref.device)
        x = torch.cat([ref, mot], 1) + self.token_kind(kinds)
        gh, gw = h // PATCH, w // PATCH                  # positions: small CPU index tensors
        rt = torch.full((gh * gw,), self.cfg.reference_time, device="cpu")
        rh, rw = torch.meshgrid(torch.arange(gh, device="cpu"), torch.arange(gw, device="cpu"), indexing="ij")
        mt, mh, mw = MotionPacker.positions(h, w)
        pos = [torch.cat([a, b.to(a.dtype)]) for a, b in zip((rt, rh.flatten(), rw.flatten()), (mt, mh, mw))]
        return x[:, None], pos

    def noisy_tokens(self, latents: torch.Tensor, pose: torch.Tensor | None = None) -> torch.Tensor:
        """Noisy latents (B, F, C, H, W) and optional pose latents alike → tokens (B, F, N, D)."""
        patches = patchify(latents.to(self.dtype))
        pose_patches = patchify(pose.to(self.dtype)) if pose is not None else torch.zeros_like(patches)
        kind = self.token_kind(torch.zeros((), dtype=torch.long, device=latents.device))
        return self.patch_embed(patches) + self.pose_embed(pose_patches) + kind
