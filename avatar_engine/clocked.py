"""The avatar runtime driven by the session clock, one tick at a time.

A conversation knows the time from the samples it has heard (`SessionClock`).
`ClockedAvatar.push` takes one tick (the agent voice played in it, the mic audio heard
in it) and renders every block whose time span the clock has now passed, so listening
reactions always have the user's audio and a session of any speed (real time, faster, a
test) renders the same frames. The runtime does the rest: block packing, A/V pairing,
the mask, flushing. Which blocks are due is derived from the clock and the blocks the
runtime has handed over; nothing here keeps time of its own.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from avatar_engine.runtime import AVBlock, AvatarRuntime
from speech.timeline import Phoneme, SessionClock


class ClockedAvatar:
    def __init__(self, runtime: AvatarRuntime, clock: SessionClock):
        if clock.rate != runtime.sample_rate:
            raise ValueError(f"the session clock runs at {clock.rate} Hz but the avatar at {runtime.sample_rate} Hz")
        self.runtime = runtime  # its listen_mask (the speaker timeline) says when the user speaks
        self.clock = clock
        self.fps = runtime.fps
        self.frames_per_block = runtime.frames_per_block

    @property
    def block_s(self) -> float:
        return self.frames_per_block / self.fps

    def push(self, t: float, talk: np.ndarray, listen: np.ndarray,
             phonemes: Sequence[Phoneme]) -> list[AVBlock]:
        """`talk`: the agent voice played from `t` on (shorter than the tick, or empty, when
        the agent is quiet); `listen`: the tick's mic audio; phonemes on the session clock.
        Call after the clock has passed the tick."""
        rate = self.runtime.sample_rate
        if len(talk):
            rel = [Phoneme(p.symbol, p.start - t, p.end - t) for p in phonemes]
            self.runtime.push_talk(talk, rate, rel)
        self.runtime.push_listen(listen, rate)
        due = self.clock.samples // self.runtime.block_samples   # blocks the clock has passed
        return [self.runtime.step() for _ in range(due - self.runtime.handed)]

    def flush(self) -> None:
        self.runtime.flush()

    def use_backend(self, backend) -> None:
        """Another face from the next block on (see AvatarRuntime.use_backend)."""
        self.runtime.use_backend(backend)
