"""The agent's speech waiting to be played, consumed tick by tick in real time.

The conversation puts `Speech` chunks in as the brain makes them and takes exactly one
tick of samples out per tick. What is taken is what the avatar shows and the user hears,
so it is also what the speaker-turn timeline and the history record. Bounded: `put`
waits while more than `max_seconds` are buffered, so a fast brain cannot run memory up.
"""
from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

import numpy as np

from agent.brain import Speech
from speech.timeline import Phoneme


@dataclass(frozen=True, eq=False)
class Tick:
    audio: np.ndarray               # exactly the requested samples, zero-padded
    voiced: int                     # samples of it that are speech (from the start)
    phonemes: tuple[Phoneme, ...]   # seconds relative to the start of this tick
    texts: tuple[str, ...]          # texts whose first sample played in this tick


class Playout:
    def __init__(self, rate: int, max_seconds: float = 30.0):
        self.rate = rate
        self._max = int(max_seconds * rate)
        self._chunks: deque[Speech] = deque()
        self._offset = 0            # samples of the head chunk already played
        self._buffered = 0
        self._space = asyncio.Event()
        self._space.set()

    @property
    def buffered_s(self) -> float:
        return self._buffered / self.rate

    def __bool__(self) -> bool:
        return self._buffered > 0

    async def put(self, speech: Speech) -> None:
        while self._buffered > self._max:
            self._space.clear()
            await self._space.wait()
        if len(speech.audio):
            self._chunks.append(speech)
            self._buffered += len(speech.audio)

    def take(self, n: int) -> Tick:
        out = np.zeros(n, np.float32)
        phonemes, texts, filled = [], [], 0
        while filled < n and self._chunks:
            head = self._chunks[0]
            if self._offset == 0 and head.text:
                texts.append(head.text)
            k = min(n - filled, len(head.audio) - self._offset)
            out[filled:filled + k] = head.audio[self._offset:self._offset + k]
            # phonemes overlapping the samples just taken, on this tick's clock
            lo, hi = self._offset / self.rate, (self._offset + k) / self.rate
            shift = filled / self.rate - lo
            phonemes += [Phoneme(p.symbol, p.start + shift, p.end + shift)
                         for p in head.phonemes if p.end > lo and p.start < hi]
            filled += k
            self._offset += k
            if self._offset == len(head.audio):
                self._chunks.popleft()
                self._offset = 0
        self._buffered -= filled
        if self._buffered <= self._max:
            self._space.set()
        return Tick(out, filled, tuple(phonemes), tuple(texts))

    def clear(self) -> None:
        self._chunks.clear()
        self._offset = self._buffered = 0
        self._space.set()
