"""The turn detector: microphone ticks in, the user's turn events out.

It runs the VAD (with the played voice as echo reference) and turns its frames into
`UserStarted`, `UserPaused`, `UserResumed` and `UserStopped`, with two judgements on top:

Speech over the agent's voice (`overlap`). The conversation ducks the voice at its onset
(`UserStarted(overlap=True)`); the detector then decides what the speech was. In `words`
mode the ASR hears the overlap once the speaker pauses (and once early, `first_look_s`
in, so a "wait, stop" said in one breath is caught): if every word is a backchannel
("mm-hm", "yeah", "okay", "right", "uh-huh", a laugh, or nothing intelligible) it is a
`Backchannel` and the agent resumes; any other word makes it a `BargeIn`, and the words
become the user's next turn. Duration is only a guard: speech longer than
`max_backchannel_s` is a barge-in whatever it says. (Like pipecat's minimum-words
interruption strategy and LiveKit's resumable false interruptions, but the duck is
immediate and only the words decide.) In `duration` mode, speech longer than
`backchannel_s` is a barge-in and shorter speech a backchannel.

Semantic end of turn (`end_of_turn: semantic`). At the pause the detector asks Smart
Turn v3 whether the turn sounds finished, and the conversation's prepared reply hears
the words (`heard`). A turn the model calls complete ends at once, before `vad.end_s`;
a turn whose words trail off ("I'd like to... um...") waits for `incomplete_end_s` of
silence; any other ends at `vad.end_s` as usual.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from agent.frames import Backchannel, BargeIn, Event, UserPaused, UserResumed, UserStarted, UserStopped
from config import Config
from speech.asr import normalize_words
from speech.timeline import USER, SessionClock, SpeakerTimeline
from speech.vad import StreamingVAD

log = logging.getLogger(__name__)

# Hum-like sounds however the ASR spells them: mm, mhm, mm-hmm, hmm, uh-huh, ah, oh, ha ha,
# hehe, and the bare breaths of a laugh ("HUH-H-H" splits into huh, h, h).
HUM = re.compile(r"^(?:[mhu]*m+[mh]*|u+h+|h+u+h+|a+h+|o+h+|a*(?:h+a+)+h*|e+h+|(?:h+e+)+h*|h+)$")
# Stage directions an ASR writes for non-speech: (laughs), [LAUGHTER], *chuckles*.
NON_SPEECH = re.compile(r"\(.*?\)|\[.*?\]|\*.*?\*")
# Words a turn does not end on: fillers and words that need something after them.
TRAILING = frozenset("""um uh er erm hmm and or but so because like to the a an of with about for from in on at
    into is are was were my your our their his her its i i'd i'm if that then which who what when where some
    any very really just""".split())


def is_backchannel(text: str, words: frozenset[str]) -> bool:
    """Only acknowledgements (or nothing intelligible) in `text`."""
    return all(w in words or HUM.match(w) for w in normalize_words(NON_SPEECH.sub(" ", text)))


def is_own_echo(text: str, agent_text: str) -> bool:
    """Every word heard over the agent is one of the words it has just said: its own
    voice came back through the microphone past the echo guard (open speakers in a
    booth), not the user taking the turn."""
    heard = normalize_words(NON_SPEECH.sub(" ", text))
    return bool(heard) and set(heard) <= set(normalize_words(agent_text))


def trails_off(text: str) -> bool:
    """The words stop mid-sentence: a filler or a word that needs a next one, or an
    ellipsis or a dash where the sentence should end."""
    text = NON_SPEECH.sub(" ", text).strip()
    words = normalize_words(text)
    return bool(words) and (words[-1] in TRAILING or text.endswith(("...", "…", "-", ",")))


class Transcriber(Protocol):
    def transcribe(self, audio: np.ndarray, *, words: bool = True):
        """→ an object with `.text` (speech.asr.ASR)."""


class TurnEndModel(Protocol):
    def complete(self, audio: np.ndarray) -> float:
        """Probability that the turn in `audio` is over (speech.turn_end.SmartTurn)."""

    def warm_up(self) -> None: ...


@dataclass
class _Overlap:
    """Speech over the agent's voice, not yet judged."""
    onset: float
    heard_until: float = -1.0            # end of the speech the last ASR look covered
    looked_early: bool = False
    asr: asyncio.Task | None = None
    stopped: UserStopped | None = None   # the VAD ended the turn while we were judging


@dataclass
class _Pause:
    """A silence inside a turn that may be its end (semantic end of turn)."""
    speech_end: float
    start: float
    model: asyncio.Task | None
    began: float                         # perf_counter when the model was asked
    model_s: float | None = None         # how long the model took
    text: str | None = None              # the words, once the prepared reply heard them
    words_expected: bool = False


class TurnDetector:
    def __init__(self, cfg: Config, clock: SessionClock, timeline: SpeakerTimeline, *,
                 asr: Transcriber | None = None, turn_end: TurnEndModel | None = None, vad_model=None):
        self.cfg, self.clock, self.timeline = cfg.turns, clock, timeline
        self.end_s = cfg.vad.end_s
        self.turn_end = turn_end if cfg.turns.end_of_turn == "semantic" else None
        vad_cfg = cfg.vad
        if self.turn_end is not None:  # the VAD ends only turns left unfinished; the rest end here
            vad_cfg = dataclasses.replace(vad_cfg, end_s=max(cfg.turns.incomplete_end_s, cfg.vad.end_s))
        self.vad = StreamingVAD(vad_cfg, clock.rate, vad_model, clock=clock)  # its own model: Silero keeps state
        self.asr = asr if cfg.turns.overlap == "words" else None
        self.backchannel_words = frozenset(w.lower() for w in cfg.turns.backchannel_words)
        self._start = 0.0                  # onset of the VAD turn in progress
        self._overlap: _Overlap | None = None
        self._agent_said = ""              # the reply heard so far: its echo is not a barge-in
        self._backchannel = False          # the VAD turn in progress was judged a backchannel
        self._pause: _Pause | None = None
        self._warm = False

    @property
    def in_turn(self) -> bool:
        return self.vad.in_turn

    @property
    def busy(self) -> bool:
        """A model is judging (the ASR on an overlap, the end-of-turn model)."""
        tasks = (self._overlap.asr if self._overlap else None, self._pause.model if self._pause else None)
        return any(t is not None and not t.done() for t in tasks)

    def warm_up(self) -> None:
        """Compile and load what the first ticks would otherwise wait for (blocking).
        Once only: later calls return at once (the VAD may be listening by then)."""
        if self._warm:
            return
        self._warm = True
        self.vad.warm_up()
        if self.turn_end is not None:
            self.turn_end.warm_up()

    # ── the tick ──────────────────────────────────────────────────────────────────────

    def push(self, mic: np.ndarray, played: np.ndarray | None, *, voice_playing: bool,
             agent_speaking: bool, agent_said: str = "") -> list[Event]:
        """One tick of mic audio (the clock has passed it). `voice_playing`: agent voice was
        just handed out (echo guard); `agent_speaking`: a reply is being heard, so new
        speech is an overlap; `agent_said`: what of the reply has played so far."""
        self._agent_said = agent_said
        out: list[Event] = []
        for v in self.vad.push(mic, played, voice_playing):
            if v.kind == "user_started":
                self._started(v.t, agent_speaking, out)
            elif v.kind == "user_paused":
                self._paused(v.t, v.audio, out)
            elif v.kind == "user_resumed":
                self._resumed(v.t, agent_speaking, out)
            else:
                self._stopped(UserStopped(v.t, self._start, v.audio), out)
        if self._overlap is not None:
            self._judge_overlap(out)
        if self._pause is not None:
            self._judge_pause(out)
        return out

    def _started(self, t: float, agent_speaking: bool, out: list) -> None:
        self.timeline.start(USER, t)
        if self._overlap is not None:  # more speech before the last was judged: it takes the turn
            self._barge_in("", out)
            agent_speaking = False     # (the barge-in stops the agent)
        self._start, self._backchannel, self._pause = t, False, None
        if agent_speaking:
            self._overlap = _Overlap(t)
        out.append(UserStarted(t, overlap=agent_speaking))

    def _paused(self, t: float, audio: np.ndarray, out: list) -> None:
        if self._overlap is not None or self._backchannel:
            return  # not a turn of its own (yet)
        out.append(UserPaused(t, self._start, audio))
        if self.turn_end is not None:
            task = asyncio.create_task(asyncio.to_thread(self.turn_end.complete, audio), name="turn-end")
            self._pause = _Pause(t, self._start, task, time.perf_counter())

    def _resumed(self, t: float, agent_speaking: bool, out: list) -> None:
        self._cancel_pause()
        if self._backchannel:
            self._backchannel = False
            if agent_speaking:       # more speech over the agent after a backchannel: judge it
                self._overlap = _Overlap(t)
                out.append(UserStarted(t, overlap=True))
            return                   # else the acknowledgement and what follows are one turn
        if self._overlap is None:
            out.append(UserResumed(t))

    def _stopped(self, stopped: UserStopped, out: list) -> None:
        self.timeline.stop(USER, stopped.t)
        pause, self._pause = self._pause, None
        if pause is not None and pause.model is not None:
            pause.model.cancel()
        if self._overlap is not None:
            self._overlap.stopped = stopped   # answered or dropped once judged
        elif self._backchannel:
            self._backchannel = False
        else:
            out.append(stopped)

    # ── speech over the agent ─────────────────────────────────────────────────────────

    def _judge_overlap(self, out: list) -> None:
        ov, cfg = self._overlap, self.cfg
        now = self.clock.now
        speech_end = ov.stopped.t if ov.stopped is not None else self.vad.last_speech_end
        spoken, silent = speech_end - ov.onset, now - speech_end
        if self.asr is None:             # duration alone
            if ov.stopped is None and spoken >= cfg.backchannel_s:
                self._barge_in("", out)
            elif silent >= cfg.backchannel_gap_s:
                self._backchannel_heard("", out)
            return
        if spoken >= cfg.max_backchannel_s:     # the guard: no backchannel is this long
            self._barge_in("", out)
            return
        if ov.asr is not None and ov.asr.done():
            text = self._asr_text(ov.asr)
            ov.asr = None
            if not (is_backchannel(text, self.backchannel_words) or is_own_echo(text, self._agent_said)):
                self._barge_in(text, out)
                return
            if silent >= cfg.backchannel_gap_s and ov.heard_until >= speech_end:
                self._backchannel_heard(text, out)
                return
        if ov.asr is None:
            if silent >= cfg.backchannel_gap_s and ov.heard_until < speech_end:
                self._look(ov, speech_end)
            elif not ov.looked_early and spoken >= cfg.first_look_s:
                ov.looked_early = True
                self._look(ov, speech_end)

    def _look(self, ov: _Overlap, speech_end: float) -> None:
        audio = ov.stopped.audio if ov.stopped is not None else self.vad.turn_audio(since=ov.onset)
        ov.heard_until = speech_end
        ov.asr = asyncio.create_task(asyncio.to_thread(self.asr.transcribe, audio, words=False), name="overlap-asr")

    @staticmethod
    def _asr_text(task: asyncio.Task) -> str:
        try:
            return task.result().text
        except Exception as e:  # a failed look is judged as nothing heard; the guard still holds
            log.warning("ASR of the overlapping speech failed: %s", e)
            return ""

    def _barge_in(self, text: str, out: list) -> None:
        ov, self._overlap = self._overlap, None
        if ov.asr is not None:
            ov.asr.cancel()
        out.append(BargeIn(ov.onset, self.clock.now, text))
        if ov.stopped is not None:
            out.append(ov.stopped)       # the turn is already over: answer it
        elif self.vad.in_turn and self.clock.now - self.vad.last_speech_end >= self.vad.cfg.pause_s:
            self._paused(self.vad.last_speech_end, self.vad.turn_audio(), out)

    def _backchannel_heard(self, text: str, out: list) -> None:
        ov, self._overlap = self._overlap, None
        self._backchannel = ov.stopped is None   # the rest of this VAD turn is part of it
        out.append(Backchannel(ov.onset, self.clock.now, text))

    def settle_overlap(self) -> list[Event]:
        """The agent stopped by other means (the Interrupt button): speech over it in
        progress is simply the user's turn."""
        ov, self._overlap = self._overlap, None
        if ov is None:
            return []
        if ov.asr is not None:
            ov.asr.cancel()
        return [ov.stopped] if ov.stopped is not None else []

    # ── semantic end of turn ──────────────────────────────────────────────────────────

    def heard(self, text: str) -> None:
        """The words of the turn up to the pause (from the reply prepared there)."""
        if self._pause is not None:
            self._pause.text = text

    def expect_words(self) -> None:
        """A reply was prepared at the pause: its words will come (`heard`); wait for them
        before ending the turn at `vad.end_s`."""
        if self._pause is not None:
            self._pause.words_expected = True

    def _judge_pause(self, out: list) -> None:
        pause = self._pause
        if not self.vad.in_turn or self.vad.last_speech_end != pause.speech_end:
            self._cancel_pause()
            return
        complete = False
        if pause.model is not None and pause.model.done():
            pause.model_s = time.perf_counter() - pause.began
            try:
                complete = pause.model.result() >= self.cfg.complete_threshold
            except Exception as e:
                log.warning("the end-of-turn model failed: %s", e)
            pause.model = None
        silence = self.clock.now - pause.speech_end
        words_known = pause.text is not None or not pause.words_expected
        ends = complete or (silence >= self.end_s and words_known and not trails_off(pause.text or ""))
        if ends:
            self._pause = None
            event = self.vad.end_turn()
            self.timeline.stop(USER, event.t)
            out.append(UserStopped(event.t, pause.start, event.audio, semantic=complete,
                                   end_of_turn_s=pause.model_s))

    def _cancel_pause(self) -> None:
        if self._pause is not None and self._pause.model is not None:
            self._pause.model.cancel()
        self._pause = None

    async def close(self) -> None:
        tasks = [t for t in (self._overlap.asr if self._overlap else None,
                             self._pause.model if self._pause else None) if t is not None]
        self._overlap = self._pause = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
