"""The whole-sequence forward with the block-causal mask (training, and the reference the
streaming cache is tested against).

The sequence is the reference frame (index 0, the sink) followed by blocks of C latent
frames. Every block sees the sink (plus block 0 when it is pinned there), the last W
frames before it, and itself — the rule the streaming cache implements by eviction. Each
block's queries and keys use that block's own position frame (RAPR and rolling RoPE
re-index per block), so attention runs block by block over keys computed in parallel.

History corruption (Live Avatar, training only): `history_noise` adds Gaussian noise to
the keys/values a block reads from earlier blocks (not the sink, not its own), so the
model learns to take motion from history and identity from the sink.
"""
from __future__ import annotations

import torch

from .model import SelfAttention, RoPE3D
from .positions import PositionScheme, time_positions


class BlockCausalContext:
    def __init__(self, n_frames: int, frames_per_block: int, window: int, pin_first_block: bool,
                 scheme: PositionScheme, rope: RoPE3D, grid: tuple[int, int],
                 history_noise: float = 0.0, generator: torch.Generator | None = None):
        self.history_noise, self.generator = history_noise, generator
        if (n_frames - 1) % frames_per_block:
            raise ValueError(f"{n_frames - 1} generated frames are not whole blocks of {frames_per_block}")
        self.groups = []   # (query frames, key frames, query rotation, key rotation)
        layout = [([], [], [0])]   # the reference frame sees only itself
        c = frames_per_block
        for n in range((n_frames - 1) // c):
            block = list(range(1 + n * c, 1 + (n + 1) * c))
            pinned = list(range(1, 1 + c)) if pin_first_block and n > 0 else []
            first_windowed = 1 + c if pin_first_block else 1
            previous = list(range(first_windowed, block[0]))
            layout.append(([0] + pinned, previous[-window:] if window else [], block))
        for sink, win, block in layout:
            sink_pos, win_pos, block_pos = time_positions(scheme, sink, win, block, window)
            self.groups.append((block, sink + win + block, len(sink), len(win), rope.rotation(block_pos, *grid),
                                rope.rotation(torch.cat([sink_pos, win_pos, block_pos]), *grid)))

    def attend(self, layer: int, q, k, v, attn: SelfAttention) -> torch.Tensor:
        n = q.shape[2]
        out = torch.empty_like(q)
        for queries, keys, n_sink, n_window, q_rot, k_rot in self.groups:
            kg, vg = k[:, keys], v[:, keys]
            if self.history_noise and n_window:
                history = slice(n_sink, n_sink + n_window)
                kg, vg = kg.clone(), vg.clone()
                kg[:, history] += self.history_noise * torch.randn(kg[:, history].shape, generator=self.generator)
                vg[:, history] += self.history_noise * torch.randn(vg[:, history].shape, generator=self.generator)
            o = attn.attend(q[:, queries].flatten(1, 2), q_rot, kg.flatten(1, 2), vg.flatten(1, 2), k_rot)
            out[:, queries] = o.unflatten(1, (len(queries), n))
        return out
