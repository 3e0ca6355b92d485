"""The streaming KV cache: sink + rolling window of un-rotated keys and values.

One `KVCache` holds, for every layer, the keys/values of the sink frames (kept for ever)
and of the most recent W generated latent frames (evicted oldest first), so memory and
per-block cost stay constant however long the stream runs. `CacheContext` is the
`KVContext` a streaming forward uses: the block's queries see [sink | window | block],
rotated with the positions of this block's scheme; the block's own new keys/values are
collected so the caller can decide where they go (window, sink, or nowhere).
"""
from __future__ import annotations

import torch

from .model import SelfAttention, RoPE3D
from .positions import PositionScheme, time_positions


class KVCache:
    def __init__(self, layers: int, window: int):
        self.layers, self.window = layers, window
        self.sink_frames: list[int] = []
        self.window_frames: list[int] = []
        self._sink: list[tuple[torch.Tensor, torch.Tensor]] = []    # per layer (B, F, N, D) each
        self._window: list[tuple[torch.Tensor, torch.Tensor]] = []

    def add_sink(self, frames: list[int], kv: list[tuple[torch.Tensor, torch.Tensor]]):
        self._sink = kv if not self._sink else [
            (torch.cat([k0, k], 1), torch.cat([v0, v], 1)) for (k0, v0), (k, v) in zip(self._sink, kv)]
        self.sink_frames = self.sink_frames + list(frames)

    def replace_reference(self, kv: list[tuple[torch.Tensor, torch.Tensor]]):
        """Swap the sink's first frame (the reference) for another frame's K/V (adaptive sink)."""
        self._sink = [(torch.cat([k, k0[:, 1:]], 1), torch.cat([v, v0[:, 1:]], 1))
                      for (k0, v0), (k, v) in zip(self._sink, kv)]

    def push(self, frames: list[int], kv: list[tuple[torch.Tensor, torch.Tensor]]):
        """Append a block's keys/values to the window and evict beyond W frames, oldest first."""
        if self.window == 0:
            return
        keep = self.window
        if self._window:
            kv = [(torch.cat([k0, k], 1), torch.cat([v0, v], 1)) for (k0, v0), (k, v) in zip(self._window, kv)]
        # clone: a slice would keep the whole concatenated storage alive (W + C frames)
        self._window = [(k[:, -keep:].clone(), v[:, -keep:].clone()) for k, v in kv]
        self.window_frames = (self.window_frames + list(frames))[-keep:]

    def layer_kv(self, layer: int):
        """Keys, values (B, F_sink + F_window, N, D) of `layer`, sink first."""
        parts = [p[layer] for p in (self._sink, self._window) if p]
        return torch.cat([k for k, _ in parts], 1), torch.cat([v for _, v in parts], 1)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for part in (self._sink, self._window) for kv in part for t in kv)


class CacheContext:
    """Attention for one block in a streaming forward: queries see [sink | window | block]."""

    def __init__(self, cache: KVCache, block: list[int], scheme: PositionScheme, rope: RoPE3D,
                 grid: tuple[int, int]):
        self.cache = cache
        self.sink_pos, self.window_pos, self.block_pos = time_positions(
            scheme, cache.sink_frames, cache.window_frames, block, cache.window)
        self.q_rot = rope.rotation(self.block_pos, *grid)
        self.k_rot = rope.rotation(torch.cat([self.sink_pos, self.window_pos, self.block_pos]), *grid)
        self.new_kv: list[tuple[torch.Tensor, torch.Tensor]] = []

    def attend(self, layer: int, q, k, v, attn: SelfAttention) -> torch.Tensor:
        self.new_kv.append((k, v))
        f, n = q.shape[1], q.shape[2]
        if self.cache.sink_frames or self.cache.window_frames:
            ck, cv = self.cache.layer_kv(layer)
            k, v = torch.cat([ck, k], 1), torch.cat([cv, v], 1)
        out = attn.attend(q.flatten(1, 2), self.q_rot, k.flatten(1, 2), v.flatten(1, 2), self.k_rot)
        return out.unflatten(1, (f, n))
