"""The avatar runtime driven by the microphone's clock, one tick at a time.

A conversation knows the time from the samples it has heard. `ClockedAvatar.push` takes
one tick (the agent voice played in it, the mic audio heard in it) and renders every
block whose time span the mic has now passed, so listening reactions always have the
user's audio and a session of any speed (real time, faster, a test) renders the same
frames. The runtime does the rest: block packing, A/V pairing, the mask, flushing.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from avatar_engine.runtime import AVBlock, AvatarRuntime
from speech.timeline import Phoneme


class ClockedAvatar:
    def __init__(self, runtime: AvatarRuntime):
        self.runtime = runtime  # its listen_mask (the speaker timeline) says when the user speaks
        self.fps = runtime.fps
        self._block_s = runtime.frames_per_block / runtime.fps
        self._next_block = 0

    def push(self, t: float, talk: np.ndarray, listen: np.ndarray,
             phonemes: Sequence[Phoneme]) -> list[AVBlock]:
        """`talk`: the agent voice played from `t` on (shorter than the tick, or empty, when
        the agent is quiet); `listen`: the tick's mic audio; phonemes on the session clock."""
        rate = self.runtime.sample_rate
        if len(talk):
            rel = [Phoneme(p.symbol, p.start - t, p.end - t) for p in phonemes]
            self.runtime.push_talk(talk, rate, rel)
        self.runtime.push_listen(listen, rate)
        end = t + len(listen) / rate
        blocks = []
        while (self._next_block + 1) * self._block_s <= end + 1e-9:
            blocks.append(self.runtime.step())
            self._next_block += 1
        return blocks

    def flush(self) -> None:
        self.runtime.flush()

    def use_backend(self, backend) -> None:
        """Another face from the next block on (see AvatarRuntime.use_backend)."""
        self.runtime.use_backend(backend)
