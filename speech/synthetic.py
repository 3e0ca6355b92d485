"""Scripted user recordings made with the local TTS: speech with silences of known length.

Tests, benchmarks and demos need a "user" whose turns are known exactly. `script`
speaks each line with Piper and lays the lines out on a timeline; `speech_bounds` gives
the ground truth of where speech starts and ends inside a clip.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from speech.audio import resample


@dataclass
class Recording:
    audio: np.ndarray                    # float32 mono at `rate`
    rate: int
    turns: list[tuple[float, float]]     # true (start, end) of each line's speech, seconds
    texts: list[str]


def speech_bounds(x: np.ndarray, rate: int, rel: float = 0.02) -> tuple[float, float]:
    """First and last time (s) where the 10 ms RMS exceeds `rel` of the clip's peak RMS."""
    hop = rate // 100
    n = len(x) // hop
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1))
    on = np.flatnonzero(rms > rel * rms.max())
    return on[0] * hop / rate, (on[-1] + 1) * hop / rate


def say(tts, text: str, rate: int = 16000, level: float = 0.5) -> np.ndarray:
    """`text` in the Piper voice at `rate`, peak at `level`."""
    chunk = tts.synthesize(text)
    return resample(chunk.audio * level, chunk.sample_rate, rate)


def script(tts, lines: list[str], gaps: list[float], rate: int = 16000,
           at: list[float] | None = None) -> Recording:
    """Lines separated by silences: gaps[0] before the first line, gaps[i] after line i.
    With `at`, line i starts at time at[i] instead (lines may then overlap nothing else)."""
    clips = [say(tts, text, rate) for text in lines]
    starts, t = [], gaps[0]
    for i, clip in enumerate(clips):
        t = at[i] if at is not None else t
        starts.append(t)
        t += len(clip) / rate + (gaps[i + 1] if i + 1 < len(gaps) else 0)
    total = max(s + len(c) / rate for s, c in zip(starts, clips)) + (gaps[-1] if len(gaps) > len(lines) else 0)
    audio = np.zeros(int(total * rate) + 1, np.float32)
    turns = []
    for s, clip in zip(starts, clips):
        a = int(s * rate)
        audio[a:a + len(clip)] += clip
        on, off = speech_bounds(clip, rate)
        turns.append((s + on, s + off))
    return Recording(audio, rate, turns, list(lines))


@dataclass(frozen=True)
class Cue:
    """When a scripted user says `text`: `after` the agent answered the user's previous
    line and has then been quiet `delay` s (the first line: `delay` s after the start),
    or `during` the agent's voice, `delay` s after it began."""
    text: str
    when: str = "after"
    delay: float = 1.0


@dataclass
class Said:
    text: str
    when: str
    start: float                     # session time the clip started
    onset: float                     # true speech onset (ground truth)
    end: float                       # true end of speech


class ScriptedUser:
    """A user who reacts to what they hear: speaks each cue's line at its moment.

    Drive it tick by tick with what the agent's output did: `hear(t, voiced)` with
    whether the agent's voice was audible in that tick, then `speak(n)` for the mic.
    """

    def __init__(self, tts, cues: list[Cue], rate: int = 16000, voice: Callable[[str], np.ndarray] | None = None):
        """`voice(text)` → the line's audio at `rate`, when not in the Piper voice of `tts`."""
        self.rate = rate
        self.cues = list(cues)
        self.clips = [voice(c.text) if voice is not None else say(tts, c.text, rate) for c in cues]
        self.said: list[Said] = []
        self._playing = np.zeros(0, np.float32)
        self._t = 0.0
        self._agent_since: float | None = None   # agent voice started (this stretch)
        self._quiet_since = 0.0                  # agent voice last heard ending
        self._answered = True                    # the agent spoke since my last line ended
        self._agent_done = True

    @property
    def done(self) -> bool:
        return not self.cues and not len(self._playing)

    def hear(self, t: float, agent_voiced: bool, agent_done: bool = True) -> None:
        """What the user noticed this tick: the agent's voice, and (from whoever runs the
        script) whether the agent has finished its reply, so that a slow pause between
        two sentences is not taken for the end of the answer."""
        self._agent_done = agent_done
        if agent_voiced:
            if self._agent_since is None:
                self._agent_since = t
            self._quiet_since = None
            self._answered = self._answered or not len(self._playing)
        else:
            self._agent_since = None
            if self._quiet_since is None:
                self._quiet_since = t

    def speak(self, n: int) -> np.ndarray:
        """The next `n` mic samples."""
        if not len(self._playing) and self.cues:
            cue = self.cues[0]
            due = (cue.when == "after" and self._answered and self._agent_done and self._quiet_since is not None
                   and self._t - self._quiet_since >= cue.delay) \
                or (cue.when == "during" and self._agent_since is not None and self._t - self._agent_since >= cue.delay)
            if due:
                self.cues.pop(0)
                clip = self.clips.pop(0)
                on, off = speech_bounds(clip, self.rate)
                self.said.append(Said(cue.text, cue.when, self._t, self._t + on, self._t + off))
                self._playing = clip
                self._answered = False
        out = np.zeros(n, np.float32)
        k = min(n, len(self._playing))
        out[:k] = self._playing[:k]
        self._playing = self._playing[k:]
        self._t += n / self.rate
        return out
