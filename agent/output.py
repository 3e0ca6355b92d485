"""The output scheduler: the agent's voice, one tick at a time, to the avatar and the user.

Each tick it takes the tick's worth of voice from the playout (or none while the voice
is held: ducked under the user's speech, or a prepared reply waiting for the turn to
end), records it on the speaker timeline, and hands it with the tick's mic audio to the
avatar, which returns the A/V blocks that are now ready. It knows when the user hears
the voice: a block reaches the user once it is rendered, its frames and voice together.
`clear` (an interruption) drops the queued voice and every block not yet handed over.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from agent.playout import Playout
from speech.timeline import AGENT, TALK, Phoneme, SessionClock, SpeakerTimeline

# The voice's tail still counts as playing for this long (the VAD looks at 32 ms frames).
PLAYING_TAIL_S = 0.05


class AvatarSink(Protocol):
    """What the conversation needs from the avatar engine (avatar_engine.clocked)."""

    fps: int
    frames_per_block: int

    def push(self, t: float, talk: np.ndarray, listen: np.ndarray,
             phonemes: Sequence[Phoneme]) -> list:
        """One tick from session time `t`: the agent voice played from `t` (possibly
        shorter than the tick) and the tick's mic audio. Returns the A/V blocks now
        ready (each with .t0, .mask, .audio, .frames)."""

    def flush(self) -> None:
        """Drop every queued block; the next block starts returning to listening."""


@dataclass(frozen=True)
class OutputTick:
    blocks: list                # A/V blocks now ready
    voiced: bool                # agent voice was played in this tick
    texts: tuple[str, ...]      # texts whose first sample played in it
    voice_shown_at: float | None  # a block with agent voice reached the user at this time


class OutputScheduler:
    def __init__(self, avatar: AvatarSink, clock: SessionClock, timeline: SpeakerTimeline):
        self.avatar, self.clock, self.timeline = avatar, clock, timeline
        self.playout = Playout(clock.rate)
        self.voice_heard_until = 0.0      # when the last agent sample shown so far is heard
        self._played_until = -1.0         # end of the last agent sample handed to the avatar

    def playing(self, t: float) -> bool:
        """Agent voice was handed to the avatar just before `t`."""
        return t - self._played_until < PLAYING_TAIL_S

    def tick(self, t: float, mic: np.ndarray, audible: bool) -> OutputTick:
        """The tick that started at `t` (the clock has already passed it)."""
        rate = self.clock.rate
        taken = self.playout.take(len(mic) if audible else 0)   # held: silence
        if taken.voiced:
            self.timeline.add(AGENT, t, t + taken.voiced / rate)
            self._played_until = t + taken.voiced / rate
        phonemes = [Phoneme(p.symbol, t + p.start, t + p.end) for p in taken.phonemes]
        t_render = time.perf_counter()
        blocks = self.avatar.push(t, taken.audio[:taken.voiced], mic, phonemes)
        shown_at = self.clock.now + time.perf_counter() - t_render
        voice_shown_at = None
        for b in blocks:
            voiced = np.flatnonzero(b.mask & TALK)
            if voiced.size:
                self.voice_heard_until = shown_at + (voiced[-1] + 1) / self.avatar.fps
                voice_shown_at = shown_at
        return OutputTick(blocks, bool(taken.voiced), taken.texts, voice_shown_at)

    def clear(self) -> None:
        self.playout.clear()
        self.avatar.flush()
