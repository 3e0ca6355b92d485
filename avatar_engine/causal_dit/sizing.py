"""Parameters, KV-cache bytes and FLOPs per block of any preset at any resolution,
without allocating weights: the model is built on the `meta` device and one streaming
forward (full sink + window) is traced with torch's FLOP counter.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .cache import CacheContext, KVCache
from .model import PATCH, CausalDiT, DiTConfig
from .stream import StreamConfig


@dataclass(frozen=True)
class SizeReport:
    preset: str
    height: int
    width: int
    params: int
    tokens_per_frame: int
    cached_frames: int          # sink + window, per cache
    kv_bytes: int               # all caches (one per step under timestep forcing)
    flops_per_forward: int      # one block through the network once
    forwards_per_block: int

    @property
    def flops_per_block(self) -> int:
        return self.flops_per_forward * self.forwards_per_block


def latent_grid(cfg: DiTConfig, height: int, width: int) -> tuple[int, int]:
    """Latent height and width for a video of height × width pixels."""
    cell = cfg.vae_stride * PATCH
    if height % cell or width % cell:
        raise ValueError(f"{height}×{width} is not a multiple of {cell} pixels for preset {cfg.name}")
    return height // cfg.vae_stride, width // cfg.vae_stride


def size_report(cfg: DiTConfig, stream: StreamConfig, height: int, width: int,
                bytes_per_value: int = 2) -> SizeReport:
    """`bytes_per_value`: 2 for bf16 caches on GPU, 4 for fp32."""
    lh, lw = latent_grid(cfg, height, width)
    n = (lh // PATCH) * (lw // PATCH)
    c = stream.frames_per_block
    sink = 1 + (c if stream.pin_first_block else 0)
    with torch.device("meta"):
        model = CausalDiT(cfg)
        cache = KVCache(cfg.layers, stream.window)
        kv = lambda f: [(torch.empty(1, f, n, cfg.dim), torch.empty(1, f, n, cfg.dim)) for _ in range(cfg.layers)]
        cache.add_sink(list(range(sink)), kv(sink))
        cache.push(list(range(sink, sink + stream.window)), kv(stream.window))
        block = list(range(sink + stream.window, sink + stream.window + c))
        context = CacheContext(cache, block, stream.positions, model.rope, (lh, lw))
        x = torch.empty(1, c, cfg.latent_channels, lh, lw)
        tokens = torch.empty(1, c, cfg.audio_tokens, cfg.dim)
        with FlopCounterMode(display=False) as counter:
            model(x, torch.empty(1, c), tokens, tokens, context)
    timestep_forcing = stream.cache_mode == "timestep_forcing"
    caches = stream.steps if timestep_forcing else 1
    return SizeReport(cfg.name, height, width, sum(p.numel() for p in model.parameters()), n,
                      sink + stream.window, caches * 2 * cfg.layers * (sink + stream.window) * n * cfg.dim * bytes_per_value,
                      counter.get_total_flops(), stream.steps + (0 if timestep_forcing else 1))
