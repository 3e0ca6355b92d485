"""A small streaming causal video VAE (config-sized; not Wan's weights).

Video (B, 3, T, H, W) in [-1, 1] ↔ latents (B, F, ch, H/8, W/8) with F = T/4: one latent
frame is 4 video frames, as in the Wan VAE. Every temporal convolution is causal (pads
with the past only), so the decoder can run block by block: each `CausalConv3d` keeps the
last k−1 input frames it saw in a `ConvCache`, and decoding blocks in turn gives the
frames of decoding the whole latent video at once, with no seams.

Latents are standardised with a mean/std measured on training data (`set_latent_stats`),
so the diffusion model sees roughly unit-variance inputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class VAEConfig:
    latent_channels: int = 8
    width: int = 32              # channels at the latent resolution
    spatial_stride: int = 8      # pixels per latent cell (a power of two)
    time_stride: int = 4         # video frames per latent frame


class ConvCache(dict):
    """Per-convolution tail of past input frames, carried from one decode call to the next."""


class CausalConv3d(nn.Conv3d):
    def __init__(self, cin, cout, kernel=(3, 3, 3)):
        super().__init__(cin, cout, kernel, padding=(0, kernel[1] // 2, kernel[2] // 2))
        self.past = kernel[0] - 1

    def forward(self, x, cache: ConvCache | None = None):
        """x (B, C, T, H, W); the first output frame sees `past` earlier frames from the cache
        (zeros at the start of a video)."""
        if self.past:
            prev = cache.get(self) if cache is not None else None
            if prev is None:
                prev = x.new_zeros(*x.shape[:2], self.past, *x.shape[3:])
            x = torch.cat([prev, x], 2)
            if cache is not None:
                cache[self] = x[:, :, -self.past:]
        return super().forward(x)


class ResBlock(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv1, self.conv2 = CausalConv3d(ch, ch), CausalConv3d(ch, ch)

    def forward(self, x, cache=None):
        return x + self.conv2(F.silu(self.conv1(F.silu(x), cache)), cache)


def _per_frame(fn, x):
    """Apply a 2-D op to every frame of (B, C, T, H, W)."""
    b, c, t, h, w = x.shape
    y = fn(x.transpose(1, 2).reshape(b * t, c, h, w))
    return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)


class StreamingVAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        n_scales = cfg.spatial_stride.bit_length() - 1
        widths = [max(cfg.width // 2 ** (n_scales - i), 8) for i in range(n_scales)]   # fine → coarse
        w0, wl, ts = widths[0], cfg.width, cfg.time_stride
        # encoder: per-frame downsampling, then time folded into channels (causal by construction)
        self.enc_in = nn.Conv2d(3, w0, 3, padding=1)
        self.enc_down = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1)
                                      for a, b in zip(widths, widths[1:] + [wl]))
        self.enc_time = CausalConv3d(wl * ts, wl)
        self.enc_res = ResBlock(wl)
        self.enc_out = CausalConv3d(wl, cfg.latent_channels, (1, 3, 3))
        # decoder: mirror image; time unfolded out of channels
        self.dec_in = CausalConv3d(cfg.latent_channels, wl)
        self.dec_res = ResBlock(wl)
        self.dec_time = CausalConv3d(wl, wl * ts, (1, 1, 1))
        self.dec_video_res = ResBlock(wl)
        self.dec_up = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1)
                                    for a, b in zip([wl] + widths[::-1][:-1], widths[::-1]))
        self.dec_out = nn.Conv2d(w0, 3, 3, padding=1)
        self.register_buffer("latent_mean", torch.zeros(()))
        self.register_buffer("latent_std", torch.ones(()))

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, 3, T, H, W), T a multiple of time_stride → standardised latents (B, F, ch, h, w)."""
        ts = self.cfg.time_stride
        b, _, t, _, _ = video.shape
        if t % ts:
            raise ValueError(f"{t} video frames are not a multiple of {ts}")
        x = _per_frame(lambda f: self._down(f), video)                      # (B, wl, T, h, w)
        x = x.reshape(b, x.shape[1], t // ts, ts, *x.shape[3:]).transpose(2, 3).flatten(1, 2)
        x = self.enc_out(self.enc_res(self.enc_time(x)))                    # (B, ch, F, h, w)
        return ((x - self.latent_mean) / self.latent_std).transpose(1, 2)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) → one latent frame (B, ch, h, w): the image held still."""
        return self.encode(image[:, :, None].expand(-1, -1, self.cfg.time_stride, -1, -1))[:, 0]

    def decode(self, latents: torch.Tensor, cache: ConvCache | None = None) -> torch.Tensor:
        """latents (B, F, ch, h, w) → video (B, 3, F·time_stride, H, W).

        Pass the same `ConvCache` to consecutive calls to decode a stream block by block."""
        ts = self.cfg.time_stride
        z = latents.transpose(1, 2) * self.latent_std + self.latent_mean    # (B, ch, F, h, w)
        x = self.dec_res(self.dec_in(z, cache), cache)
        x = self.dec_time(F.silu(x), cache)                                 # (B, wl·ts, F, h, w)
        b, _, f, h, w = x.shape
        x = x.reshape(b, ts, -1, f, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, -1, f * ts, h, w)
        x = self.dec_video_res(x, cache)
        return _per_frame(self._up, x)

    def set_latent_stats(self, video: torch.Tensor):
        """Standardise latents with the mean/std of the raw latents of `video`."""
        self.latent_mean.zero_(), self.latent_std.fill_(1.0)
        with torch.no_grad():
            z = self.encode(video)
        self.latent_mean.copy_(z.mean()), self.latent_std.copy_(z.std())

    def _down(self, frames):
        x = F.silu(self.enc_in(frames))
        for conv in self.enc_down:
            x = F.silu(conv(x))
        return x

    def _up(self, frames):
        x = frames
        for conv in self.dec_up:
            x = F.silu(conv(F.interpolate(x, scale_factor=2.0, mode="nearest")))
        return torch.tanh(self.dec_out(x))
