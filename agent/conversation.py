"""The conversation orchestrator: who speaks when, what the agent says, and how fast.

One `Conversation` runs one session on one clock: the microphone's samples. A transport
(web, booth, headless file) calls `step(mic)` once per tick (20 ms) with that tick's mic
audio; the conversation

    1. runs the VAD (with the played audio as echo reference),
    2. turns VAD events into state changes:    LISTENING → THINKING → SPEAKING → LISTENING
    3. takes one tick of the agent's voice from the playout and hands it, with the mic
       audio, to the avatar, which returns the A/V blocks that are ready to show.

Prepared replies. After `vad.pause_s` of silence the reply is already started but held
silent; at `vad.end_s` the turn is over and it speaks at once, or, if the user goes on
talking, it is dropped. The answer's work thus starts a quarter second sooner.

Barge-in. User speech onset while the agent speaks pauses the agent's voice at once (the
VAD reports onset after ~0.2 s of speech). If the user keeps talking for `backchannel_s`,
the reply is cancelled: the brain's task (and with it the LLM's HTTP request and the TTS),
the buffered voice, and every queued avatar block; the history keeps what was actually
said, marked interrupted. If the user stops sooner ("mm-hm"), the agent resumes where it
paused and the backchannel gets no answer.

Failures of the brain (dead server, 401, 429, timeouts, a cut stream) become a short
spoken apology; the conversation and its history go on.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Protocol, Sequence

import numpy as np

from agent.brain import Brain, Speech, Timing, UserText
from agent.events import ReplyDone, ReplyFailed
from agent.history import History
from agent.playout import Playout
from config import Config
from speech.timeline import AGENT, TALK, USER, Phoneme, SpeakerTimeline
from speech.vad import StreamingVAD

log = logging.getLogger(__name__)

APOLOGY = "Sorry, I lost my train of thought. Could you say that again?"
# Said when the model answers with nothing: a small model sometimes does.
NO_ANSWER = "Hmm, I'm not sure. Could you put that another way?"


class Phase(str, Enum):
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"


class AvatarSink(Protocol):
    """What the conversation needs from the avatar engine."""

    fps: int

    def push(self, t: float, talk: np.ndarray, listen: np.ndarray,
             phonemes: Sequence[Phoneme]) -> list:
        """One tick from session time `t`: the agent voice played from `t` (possibly
        shorter than the tick) and the tick's mic audio. Returns the A/V blocks now
        ready (each with .t0, .mask, .audio)."""

    def flush(self) -> None:
        """Drop every queued block; the next block starts returning to listening."""


@dataclass
class TurnLog:
    """One user turn and the agent's reply, with timings on the session clock (s)."""
    index: int
    user_start: float
    user_end: float
    detected_at: float                     # when the VAD declared the turn over
    reply_started_at: float = 0.0          # when the brain began (at the pause, if prepared)
    user_text: str = ""
    reply_text: str = ""                   # what the brain produced
    agent_text: str = ""                   # what was actually played
    interrupted: bool = False
    failure: str | None = None
    asr_s: float | None = None             # wall-clock stage times from the reply's start
    llm_first_token_s: float | None = None
    llm_first_clause_s: float | None = None  # the first words handed to TTS
    tts_first_audio_s: float | None = None
    first_audio_at: float | None = None    # first agent sample handed to the avatar
    first_frame_at: float | None = None    # first frame of the reply shown, with its voice
    barge_in_at: float | None = None       # onset of the user speech that cut in
    audio_stopped_at: float | None = None  # end of the last agent sample played after it

    @property
    def response_s(self) -> float | None:
        """End of the user's speech → the reply's first voice and frame, as the user
        sees and hears them."""
        return None if self.first_frame_at is None else self.first_frame_at - self.user_end

    @property
    def barge_in_s(self) -> float | None:
        if self.barge_in_at is None or self.audio_stopped_at is None:
            return None
        return max(0.0, self.audio_stopped_at - self.barge_in_at)

    def to_json(self) -> dict:
        return {**asdict(self), "response_s": self.response_s, "barge_in_s": self.barge_in_s}


@dataclass
class _Reply:
    turn: TurnLog
    audio: np.ndarray               # the user's turn it answers
    task: asyncio.Task
    played: list[str] = field(default_factory=list)
    done: bool = False
    held: bool = False              # prepared at a pause; silent until the turn is over

    @property
    def spoken(self) -> str:
        """What the user has heard of it (text pieces carry their own spaces)."""
        return "".join(self.played).strip()


class Conversation:
    def __init__(self, cfg: Config, brain: Brain, avatar: AvatarSink, *,
                 rate: int = 16000, history: History | None = None, timeline: SpeakerTimeline | None = None,
                 max_turn_logs: int = 1000):
        self.cfg, self.brain, self.avatar, self.rate = cfg, brain, avatar, rate
        self.vad = StreamingVAD(cfg.vad, rate)  # its own model: Silero keeps recurrent state
        self.timeline = timeline if timeline is not None else SpeakerTimeline()
        self.history = history if history is not None else History.from_config(cfg.agent)
        self.playout = Playout(rate)
        self.turns: deque[TurnLog] = deque(maxlen=max_turn_logs)
        self.phase = Phase.LISTENING
        self.answering = True               # False: hear turns, but start no more replies
        self.samples = 0                    # session clock, in mic samples
        self._reply: _Reply | None = None
        self._paused_at: float | None = None     # onset of a possible interruption
        self._carry = np.zeros(0, np.float32)    # a turn the user continued before we answered
        self._ignore_turn = False                # the VAD turn in progress was a backchannel
        self._ignore_onset = 0.0
        self._voice_heard_until = 0.0            # when the last agent sample shown so far is heard
        self._voice_played_until = -1.0          # end of the last agent sample handed to the avatar
        self._onset = 0.0                        # onset of the user's current turn
        self._tasks: set[asyncio.Task] = set()

    @property
    def now(self) -> float:
        return self.samples / self.rate

    # ── the tick ──────────────────────────────────────────────────────────────────────

    async def step(self, mic: np.ndarray, played: np.ndarray | None = None) -> list:
        """Advance one tick. `mic`: this tick's microphone audio (float32, session rate);
        `played`: what the speaker played meanwhile, if it can leak into the mic.
        Returns the avatar's A/V blocks that became ready."""
        t = self.now
        # the voice's tail still counts as playing for one tick (the VAD looks at 32 ms)
        agent_playing = t - self._voice_played_until < 0.05
        for event in self.vad.push(mic, played, agent_playing):
            if event.kind == "user_started":
                self._on_user_started(event.t)
            elif event.kind == "user_paused":
                self._on_user_paused(event)
            elif event.kind == "user_resumed":
                self._on_user_resumed()
            else:
                self._on_user_stopped(event)
        self._check_interruption()
        await asyncio.sleep(0)  # let the brain's task run between ticks
        n = len(mic)
        held = self._reply is not None and self._reply.held
        tick = self.playout.take(0 if self._paused_at is not None or held else n)  # paused/held: silence
        reply = self._reply
        if tick.voiced:
            self.timeline.add(AGENT, t, t + tick.voiced / self.rate)
            self._voice_played_until = t + tick.voiced / self.rate
            if reply is not None:
                reply.played += tick.texts
                if reply.turn.first_audio_at is None:
                    reply.turn.first_audio_at = t
                    self.phase = Phase.SPEAKING
        self.samples += n
        phonemes = [Phoneme(p.symbol, t + p.start, t + p.end) for p in tick.phonemes]
        t_render = time.perf_counter()
        blocks = self.avatar.push(t, tick.audio[:tick.voiced], mic, phonemes)
        # A block reaches the user once it is rendered (the end of this tick plus the
        # render time), its frames and its voice together.
        shown_at = self.now + time.perf_counter() - t_render
        for b in blocks:
            voiced = np.flatnonzero(b.mask & TALK)
            if voiced.size:
                self._voice_heard_until = shown_at + (voiced[-1] + 1) / self.avatar.fps
                if reply is not None and reply.turn.first_audio_at is not None and reply.turn.first_frame_at is None:
                    reply.turn.first_frame_at = shown_at
        self._finish_reply_if_played()
        return blocks

    # ── VAD events ────────────────────────────────────────────────────────────────────

    def _on_user_started(self, onset: float) -> None:
        self.timeline.start(USER, onset)
        if self._reply is None:
            self._onset = onset
            return
        if self._reply.turn.first_audio_at is None and not self.playout:
            # The user went on talking before we said anything: answer the whole thing.
            self._carry = self._reply.audio
            self._onset = self._reply.turn.user_start
            self._cancel_reply(interrupted=False)
            self.turns.pop()
            return
        self._paused_at = onset  # possible barge-in: stop the voice now, decide soon

    def _on_user_stopped(self, event) -> None:
        self.timeline.stop(USER, event.t)
        if self._ignore_turn:
            self._ignore_turn = False
            return
        reply = self._reply
        if reply is not None and reply.held:
            # The reply prepared at the pause answers this turn: let it speak.
            reply.held = False
            reply.turn.user_end, reply.turn.detected_at = event.t, self.now
            self._carry = np.zeros(0, np.float32)
            self.phase = Phase.THINKING
            return
        if reply is not None or not self.answering:
            return  # speech over the agent that neither interrupted nor was a backchannel
        self._start_reply(event, held=False)

    def _on_user_paused(self, event) -> None:
        # Perhaps the end of the turn: prepare the answer now, speak it only once the
        # silence is long enough to be sure (user_stopped).
        if self._reply is None and self.answering and not self._ignore_turn:
            self._start_reply(event, held=True)

    def _on_user_resumed(self) -> None:
        if self._reply is not None and self._reply.held:
            self._cancel_reply(interrupted=False)  # it was only a pause: drop the prepared answer
            self.turns.pop()

    def _start_reply(self, event, held: bool) -> None:
        audio = np.concatenate([self._carry, event.audio]) if len(self._carry) else event.audio
        if not held:
            self._carry = np.zeros(0, np.float32)
            self.phase = Phase.THINKING
        index = self.turns[-1].index + 1 if self.turns else 0  # len() stops at the deque's bound
        turn = TurnLog(index, self._onset, event.t, self.now, reply_started_at=self.now)
        self.turns.append(turn)
        task = asyncio.create_task(self._run_reply(turn, audio), name=f"reply-{turn.index}")
        self._reply = _Reply(turn, audio, task, held=held)

    def _check_interruption(self) -> None:
        if self._paused_at is None and not (self._ignore_turn and self._reply is not None):
            return
        onset = self._paused_at if self._paused_at is not None else self._ignore_onset
        spoken = self.vad.last_speech_end - onset
        if self.vad.in_turn and spoken >= self.cfg.agent.backchannel_s:
            self._onset = onset
            self._barge_in(onset)
        elif self._paused_at is not None and self.now - self.vad.last_speech_end >= self.cfg.agent.backchannel_gap_s:
            # a backchannel: carry on where we paused, and don't answer it
            self._paused_at = None
            self._ignore_turn, self._ignore_onset = self.vad.in_turn, onset

    def _barge_in(self, onset: float) -> None:
        reply = self._reply
        self._paused_at = None
        self._ignore_turn = False  # this speech is a real turn: answer it when it ends
        if reply is None:
            return
        reply.turn.barge_in_at = onset
        # The voice paused when the onset was detected; its last sample has been heard
        # by now (blocks are far shorter than backchannel_s).
        reply.turn.audio_stopped_at = self._voice_heard_until
        self.avatar.flush()
        self._cancel_reply(interrupted=True)  # also clears the playout

    def interrupt(self) -> bool:
        """Stop the agent now, as a barge-in does (the page's Interrupt button): the
        reply is cancelled and its queued voice and avatar blocks are dropped. Also
        stops a greeting. Returns whether there was anything to stop."""
        if self._reply is not None:
            self._barge_in(self.now)
            return True
        if self.playout:
            self.avatar.flush()
            self.playout.clear()
            return True
        return False

    # ── the reply ─────────────────────────────────────────────────────────────────────

    async def _run_reply(self, turn: TurnLog, audio: np.ndarray) -> None:
        reply_started = time.perf_counter()
        spoke = False
        try:
            async with contextlib.aclosing(self.brain.reply(audio, self.history)) as events:
                async for event in events:
                    if isinstance(event, UserText):
                        turn.user_text, turn.asr_s = event.text, event.asr_s
                    elif isinstance(event, Timing):
                        setattr(turn, f"{event.stage}_s", event.seconds)
                    elif isinstance(event, Speech):
                        spoke = True
                        await self.playout.put(event)
                    elif isinstance(event, ReplyDone):
                        turn.reply_text = event.text
                        if not spoke and event.finish_reason != "nothing_heard":
                            await self._say(NO_ANSWER)
                    elif isinstance(event, ReplyFailed):
                        turn.failure = event.message
                        log.warning("reply failed (%s): %s", event.kind.value, event.message)
                        await self._say(APOLOGY)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug or a broken model must not end the conversation
            turn.failure = f"{type(e).__name__}: {e}"
            log.exception("reply crashed")
            await self._say(APOLOGY)
        finally:
            log.debug("reply %d produced in %.2fs", turn.index, time.perf_counter() - reply_started)
        if self._reply is not None and self._reply.turn is turn:
            self._reply.done = True

    async def _say(self, text: str) -> None:
        async for speech in self.brain.speak(text):
            await self.playout.put(speech)

    async def greet(self, text: str) -> None:
        """Speak a line (the persona's greeting) outside any user turn."""
        await self._say(text)

    async def warm_up(self) -> None:
        """Get the brain ready for the first turn (call before the session starts)."""
        await self.brain.warm_up()

    def _finish_reply_if_played(self) -> None:
        reply = self._reply
        if reply is None or not reply.done or self.playout or self._paused_at is not None:
            return
        self._record(reply, interrupted=False)
        self._reply = None
        self.phase = Phase.LISTENING

    def _record(self, reply: _Reply, interrupted: bool) -> None:
        """Write an ended reply into the turn log and the history. History is written only
        when a reply ends, so a prepared reply that was dropped leaves no trace; an
        apology for a failure is not something the model said, so it stays out."""
        reply.turn.interrupted = interrupted
        reply.turn.agent_text = reply.spoken
        if reply.turn.user_text:
            self.history.add_user(reply.turn.user_text)
        if reply.turn.agent_text and not reply.turn.failure:
            self.history.add_agent(reply.turn.agent_text, interrupted=interrupted)

    def _cancel_reply(self, interrupted: bool) -> None:
        reply = self._reply
        if reply is None:
            return
        reply.task.cancel()
        self._tasks.add(reply.task)
        reply.task.add_done_callback(self._tasks.discard)
        if interrupted:
            self._record(reply, interrupted=True)
        else:  # dropped, or the session ended: the transcript still says what was heard
            reply.turn.agent_text = reply.spoken
        self._reply = None
        self.playout.clear()
        self.phase = Phase.LISTENING

    async def close(self) -> None:
        """Cancel everything still running (at the end of a session or on disconnect)."""
        if self._reply is not None:
            self._cancel_reply(interrupted=False)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def replying(self) -> bool:
        """A reply is in progress: being made, or still to be played."""
        return self._reply is not None or bool(self.playout)

    @property
    def idle(self) -> bool:
        """Nothing to say and nothing in progress."""
        return not self.replying and not self.vad.in_turn

    @property
    def busy(self) -> bool:
        """The brain is working on a reply that has not started to play yet."""
        return self._reply is not None and not self._reply.done and not self.playout
