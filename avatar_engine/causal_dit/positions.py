"""Time positions for RoPE, chosen at read time because cached keys are stored un-rotated.

Frames are named by absolute index: the reference is 0, generated latent frames are
1, 2, 3, ... since the stream began. A scheme maps the frames one forward sees (sink,
rolling window, current block) to the time positions their queries and keys are rotated
with. Attention logits depend only on position differences, so every scheme keeps the
numbers small however long the stream runs.

- absolute: position = index (training on short clips; grows without bound).
- rapr (StreamAvatar): the current block starts at min(index, D); the window keeps its
  offsets to the block; the sink stays at its own index. Positions never exceed D + block,
  so a block at minute 60 sees the position pattern of a block at second 5.
- rolling (Live Avatar): window and block keep their offsets; the sink is placed `gap`
  frames ahead of the block's last frame, re-applied every block.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PositionScheme:
    mode: str = "rapr"       # absolute | rapr | rolling
    rapr_cap: int = 9        # D: the farthest the current block sits from the reference
    rolling_gap: int = 3     # frames between the current block's last frame and the sink

    def __post_init__(self):
        if self.mode not in ("absolute", "rapr", "rolling"):
            raise ValueError(f"position mode must be absolute, rapr or rolling, got {self.mode!r}")


def time_positions(scheme: PositionScheme, sink: list[int], window: list[int], block: list[int],
                   window_frames: int):
    """Positions (float tensors) of the sink, window and block frames given their indices."""
    start = block[0]
    if scheme.mode == "absolute":
        shift = 0
    elif scheme.mode == "rapr":
        shift = start - min(start, scheme.rapr_cap)
    else:  # rolling: any common shift leaves the logits unchanged; keep the window ≥ 1
        shift = start - min(start, window_frames + 1)
    as_tensor = lambda frames: torch.tensor(frames, dtype=torch.float32) - shift
    block_pos, window_pos = as_tensor(block), as_tensor(window)
    if scheme.mode == "rolling":
        sink_pos = block_pos[-1] + scheme.rolling_gap + torch.arange(len(sink), dtype=torch.float32)
    else:
        sink_pos = torch.tensor(sink, dtype=torch.float32)
    return sink_pos, window_pos, block_pos
