"""Who speaks when: the speaker-turn timeline and the per-video-frame talk/listen mask.

Times are seconds on one session clock (the microphone's sample clock). The user's
intervals come from VAD events; the agent's from the audio actually played, so a reply
cut short by barge-in ends where playback stopped, not where the text ended.

The mask is what the avatar engine conditions on, one value per video frame:
    IDLE = 0, TALK = 1 (the agent speaks), LISTEN = 2 (the user speaks), BOTH = 3.
A frame counts as speaking when the speaker covers at least half of the frame.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

IDLE, TALK, LISTEN, BOTH = 0, 1, 2, 3
USER, AGENT = "user", "agent"


@dataclass(frozen=True)
class Phoneme:
    """One phoneme of speech: its symbol and its span in seconds (clock given by context)."""
    symbol: str
    start: float
    end: float


@dataclass
class Interval:
    start: float
    end: float | None = None  # None while still open

    def clipped_end(self, now: float) -> float:
        return now if self.end is None else self.end


class SessionClock:
    """The one session clock: samples of microphone audio heard since the session began.

    Its owner (the conversation) advances it once per tick; everything else on the clock
    (the VAD's frame times, the avatar's blocks) derives its time from it."""

    def __init__(self, rate: int):
        self.rate = rate
        self.samples = 0

    @property
    def now(self) -> float:
        return self.samples / self.rate

    def advance(self, n: int) -> None:
        self.samples += n


def coverage_mask(intervals, t0: float, n_frames: int, fps: float, now: float = math.inf) -> np.ndarray:
    """Boolean per frame: does the union of `intervals` cover ≥ half of frame i?

    Frame i spans [t0 + i/fps, t0 + (i+1)/fps). Open intervals run to `now`.
    """
    edges = t0 + np.arange(n_frames + 1) / fps
    covered = np.zeros(n_frames)
    for iv in intervals:
        end = iv.clipped_end(now)
        # overlap of [start, end) with each frame
        covered += np.clip(np.minimum(edges[1:], end) - np.maximum(edges[:-1], iv.start), 0, None)
    return covered * fps >= 0.5


class SpeakerTimeline:
    """Bounded record of user and agent speech intervals.

    Only the most recent `max_intervals` per speaker are kept, so a session of any
    length holds constant memory; masks are only ever asked for recent time.
    """

    def __init__(self, max_intervals: int = 256):
        self._spans = {USER: deque(maxlen=max_intervals), AGENT: deque(maxlen=max_intervals)}

    def start(self, who: str, t: float) -> None:
        spans = self._spans[who]
        if spans and spans[-1].end is None:
            return  # already speaking
        if spans and spans[-1].end is not None and t <= spans[-1].end:
            spans[-1].end = None  # resumed before the last interval closed: merge
            return
        spans.append(Interval(t))

    def stop(self, who: str, t: float) -> None:
        spans = self._spans[who]
        if spans and spans[-1].end is None:
            spans[-1].end = max(t, spans[-1].start)

    def add(self, who: str, start: float, end: float) -> None:
        """Record a closed interval (e.g. a played chunk of agent audio)."""
        if end <= start:
            return
        spans = self._spans[who]
        if spans and spans[-1].end is not None and start <= spans[-1].end + 1e-3:
            spans[-1].end = max(spans[-1].end, end)  # contiguous chunks form one interval
        else:
            spans.append(Interval(start, end))

    def is_speaking(self, who: str, t: float) -> bool:
        return any(iv.start <= t < iv.clipped_end(math.inf) for iv in reversed(self._spans[who]))

    def intervals(self, who: str) -> list[tuple[float, float | None]]:
        return [(iv.start, iv.end) for iv in self._spans[who]]

    def mask(self, t0: float, n_frames: int, fps: float, now: float = math.inf) -> np.ndarray:
        """uint8 mask (IDLE/TALK/LISTEN/BOTH) for frames starting at t0."""
        talk = coverage_mask(self._spans[AGENT], t0, n_frames, fps, now)
        listen = coverage_mask(self._spans[USER], t0, n_frames, fps, now)
        return (talk * TALK + listen * LISTEN).astype(np.uint8)


def talk_listen(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a mask into float32 talk and listen weights (1 where that party speaks)."""
    m = np.asarray(mask)
    return ((m & TALK) > 0).astype(np.float32), ((m & LISTEN) > 0).astype(np.float32)
