"""The one small interface every avatar backend implements.

The runtime owns timing, queues, A/V pairing and flushing. A backend only turns one
block of conditioning into that block's frames and keeps its own state (rig, caches).

    backend.reset(reference)          # once per reference image / session
    frames = backend.render(block)    # (n_frames, H, W, 3) uint8, one call per block
    backend.flush()                   # barge-in: forget pending motion, head for rest
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from speech.timeline import Phoneme  # re-exported: backends take phonemes on the session clock


@dataclass(frozen=True)
class Block:
    """Everything a backend needs to render one block of video.

    The audio arrays hold exactly the samples this block shows: n_frames / fps seconds
    at `sample_rate`, so len(talk_audio) == n_frames * sample_rate // fps.
    """
    index: int                    # 0, 1, 2, ... since the session (or flush) started
    t0: float                     # session time of the first frame, seconds
    fps: int
    sample_rate: int
    talk_audio: np.ndarray        # (samples,) float32: the agent's own speech
    listen_audio: np.ndarray      # (samples,) float32: the other party's speech (user mic)
    mask: np.ndarray              # (n_frames,) uint8: IDLE=0 TALK=1 LISTEN=2 BOTH=3
    phonemes: tuple[Phoneme, ...] = field(default=())  # talk phonemes near the block; empty when unknown

    @property
    def n_frames(self) -> int:
        return len(self.mask)


class Backend(Protocol):
    def reset(self, reference: np.ndarray) -> None:
        """Adopt a new reference image (H, W, 3) uint8 RGB and clear all state."""

    def render(self, block: Block) -> np.ndarray:
        """Frames for `block`: (block.n_frames, H, W, 3) uint8 RGB."""

    def flush(self) -> None:
        """Barge-in: drop pending talk motion; the next block starts returning to rest."""


class BlankBackend:
    """Frames of one colour, no face: for measuring a conversation without the renderer
    (benchmarks of turn taking, state-machine tests)."""

    def __init__(self, size: int = 4):
        self.size = size

    def reset(self, reference: np.ndarray) -> None:
        pass

    def render(self, block: Block) -> np.ndarray:
        return np.zeros((block.n_frames, self.size, self.size, 3), np.uint8)

    def flush(self) -> None:
        pass
