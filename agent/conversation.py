"""The conversation: who speaks when, on one clock, as a small state machine.

One `Conversation` runs one session on one `SessionClock`: the microphone's samples. A
transport (web call, booth, WAV file, the other agent) calls `step(mic)` once per tick
(`TICK_S`) with that tick's mic audio and gets back the A/V blocks now ready to show.
Inside, three stages do the work and report what they did as typed events
(agent.frames):

    TurnDetector     mic → VAD → UserStarted/Paused/Resumed/Stopped, and for speech over
                     the agent's voice: Backchannel or BargeIn, judged by its words
    ReplyRunner      a user turn → the brain (ASR → LLM → TTS, or omni) → speech in the playout
    OutputScheduler  the playout → one tick of voice → the avatar → A/V blocks

The conversation reacts to the events by moving between the states of `State`:

    LISTENING ─pause→ PREPARING ─end of turn→ THINKING ─first voice→ SPEAKING ─played→ LISTENING
        └──────────────end of turn────────────────┘          speech over it ↓   ↑ backchannel
                                                                        DUCKED ─barge-in→ LISTENING

Prepared replies: after `vad.pause_s` of silence the reply is started but held silent;
when the turn ends it speaks at once, and if the user goes on talking it is dropped.
Ducking: speech over the agent's voice pauses it at once (the VAD reports the onset
after `echo_guard.start_s_while_playing`); a backchannel resumes it where it paused, a
barge-in is an `Interruption`: the reply is cancelled (the brain's task, with it the
LLM's HTTP request and the TTS), the playout and every queued avatar block are dropped,
the history keeps what was said, marked interrupted, and the words that cut in are
answered as the next turn. `interrupt()` does the same for an Interrupt button.

Everything that happens is published to subscribers (`subscribe`) in order: the turn log
(`TurnMetrics`, an observer) is one, and a transport is another: on `Interruption` it
drops the voice and video it still holds.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

import numpy as np

from agent.brain import Brain
from agent.frames import (AgentStarted, Backchannel, BargeIn, Event, FirstFrame, Interruption, ReplyEnded,
                          ReplyStarted, State, StateChanged, TurnEnded, UserPaused, UserResumed, UserStarted,
                          UserStopped, UserTranscript)
from agent.history import History
from agent.metrics import TurnLog, TurnMetrics
from agent.output import AvatarSink, OutputScheduler
from agent.replies import APOLOGY, NO_ANSWER, Reply, ReplyRunner
from agent.turns import Transcriber, TurnDetector, TurnEndModel
from config import Config
from speech.timeline import SessionClock, SpeakerTimeline

__all__ = ["APOLOGY", "NO_ANSWER", "TICK_S", "Conversation", "State", "TurnLog"]

log = logging.getLogger(__name__)
TICK_S = 0.02           # what a transport feeds per step (any length works; this is the norm)
MAX_SUBSCRIBERS = 16


class Conversation:
    def __init__(self, cfg: Config, brain: Brain, avatar: AvatarSink, *, clock: SessionClock | None = None,
                 rate: int = 16000, history: History | None = None, timeline: SpeakerTimeline | None = None,
                 asr: Transcriber | None = None, turn_end: TurnEndModel | None = None, vad_model=None,
                 max_turn_logs: int = 1000):
        self.clock = clock if clock is not None else getattr(avatar, "clock", None) or SessionClock(rate)
        if getattr(avatar, "clock", self.clock) is not self.clock:
            raise ValueError("the avatar must run on the conversation's session clock")
        self.rate = self.clock.rate
        self.history = history if history is not None else History.from_config(cfg.agent)
        timeline = timeline if timeline is not None else SpeakerTimeline()
        self.detector = TurnDetector(cfg, self.clock, timeline, asr=asr, turn_end=turn_end, vad_model=vad_model)
        self.output = OutputScheduler(avatar, self.clock, timeline)
        self.runner = ReplyRunner(brain, self.output.playout, self.history, self._publish)
        self.brain = brain
        self.metrics = TurnMetrics(self.clock, max_turn_logs)
        self._subscribers: list[Callable[[Event], None]] = [self.metrics]
        self.state = State.LISTENING
        self.answering = True               # False: hear turns, but start no more replies
        self._reply: Reply | None = None
        self._next_turn = 0
        self._carry = np.zeros(0, np.float32)    # a turn the user continued before we answered
        self._carry_start = 0.0

    # ── the public surface ────────────────────────────────────────────────────────────

    @property
    def now(self) -> float:
        return self.clock.now

    @property
    def tick_samples(self) -> int:
        return int(round(TICK_S * self.rate))

    @property
    def fps(self) -> int:
        return self.output.avatar.fps

    @property
    def frames_per_block(self) -> int:
        return self.output.avatar.frames_per_block

    @property
    def turns(self):
        """The turn log (`TurnLog`s, oldest first, bounded)."""
        return self.metrics.turns

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call `callback(event)` for every event from now on (on the loop, in order;
        keep it quick). Returns the function that unsubscribes."""
        if len(self._subscribers) >= MAX_SUBSCRIBERS:
            raise RuntimeError(f"a conversation takes at most {MAX_SUBSCRIBERS} subscribers")
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    async def step(self, mic: np.ndarray, played: np.ndarray | None = None) -> list:
        """Advance one tick. `mic`: this tick's microphone audio (float32, session rate);
        `played`: what the speaker played meanwhile, if it can leak into the mic.
        Returns the avatar's A/V blocks that became ready."""
        t = self.clock.now
        self.clock.advance(len(mic))
        reply = self._reply
        speaking = reply is not None and self.state is not State.PREPARING and (reply.voiced or bool(self.output.playout))
        said = reply.spoken if reply is not None else ""
        for event in self.detector.push(mic, played, voice_playing=self.output.playing(t), agent_speaking=speaking,
                                        agent_said=said):
            self._handle(event)
        await asyncio.sleep(0)  # let the brain's task run between ticks
        reply = self._reply
        out = self.output.tick(t, mic, audible=self.state in (State.THINKING, State.SPEAKING))
        if reply is not None and out.voiced:
            reply.played += out.texts
            if not reply.voiced:
                reply.voiced = True
                self._publish(AgentStarted(reply.turn, t))
                self._set_state(State.SPEAKING)
        if reply is not None and reply.voiced and out.voice_shown_at is not None and not reply.shown:
            reply.shown = True
            self._publish(FirstFrame(reply.turn, out.voice_shown_at))
        self._finish_if_played()
        return out.blocks

    def interrupt(self) -> bool:
        """Stop the agent now (an Interrupt button): the same `Interruption` as a
        barge-in. False when it was not saying or preparing anything."""
        pending = self.detector.settle_overlap()
        stopped = self._interrupt("interrupt", None)
        for event in pending:
            self._handle(event)
        return stopped

    def use_backend(self, backend) -> None:
        """Go on with another face (an avatar backend already reset to it) from the next block."""
        self.output.avatar.use_backend(backend)

    async def greet(self, text: str) -> None:
        """Speak a line (the persona's greeting) outside any user turn; returns once it
        is made (it may still be playing)."""
        if self._reply is not None:
            return
        self._reply = self.runner.say(text)
        self._set_state(State.THINKING)
        await asyncio.wait([self._reply.task])   # an interruption ends it early

    async def warm_up(self) -> None:
        """Get the brain and the detector ready for the first turn (call before the
        session starts)."""
        await asyncio.to_thread(self.detector.warm_up)
        await self.brain.warm_up()

    def warm_up_listening(self) -> None:
        """The detector's part of `warm_up`, blocking (for a worker thread)."""
        self.detector.warm_up()

    @property
    def replying(self) -> bool:
        """A reply is in progress: being made, or still to be played."""
        return self._reply is not None or bool(self.output.playout)

    @property
    def idle(self) -> bool:
        """Nothing to say and nothing in progress."""
        return not self.replying and not self.detector.in_turn

    @property
    def busy(self) -> bool:
        """Work is under way that the session must wait for in real time: the brain on a
        reply not yet playing or re-reading its history, or a model judging the user's speech."""
        return (self._reply is not None and not self._reply.done and not self.output.playout) or \
            self.runner.rereading or self.detector.busy

    async def close(self) -> None:
        """Cancel everything still running (at the end of a session or on disconnect)."""
        if self._reply is not None:
            self._end_reply("closed")
        await self.detector.close()
        await self.runner.close()

    # ── reacting to the detector ──────────────────────────────────────────────────────

    def _handle(self, event: Event) -> None:
        self._publish(event)
        reply = self._reply
        if isinstance(event, UserStarted):
            if event.overlap:
                self._set_state(State.DUCKED)     # the voice pauses from this tick on
            elif reply is not None and self.state is State.THINKING:
                # The user went on talking before we said anything: answer the whole thing.
                self._carry, self._carry_start = reply.audio, reply.user_start
                self._end_reply("dropped")
        elif isinstance(event, UserPaused):
            # Perhaps the end of the turn: prepare the answer now, speak it only once the
            # turn is known to be over.
            if reply is None and self.answering:
                self._start_reply(event.audio, event.start, event.t, prepared=True)
                self.detector.expect_words()
        elif isinstance(event, UserResumed):
            if self.state is State.PREPARING:
                self._end_reply("dropped")        # it was only a pause
        elif isinstance(event, UserStopped):
            if self.state is State.PREPARING:
                self._carry = np.zeros(0, np.float32)
                self._publish(TurnEnded(reply.turn, self.now, event.t, event.semantic, event.end_of_turn_s))
                self._set_state(State.THINKING)
            elif reply is None and self.answering:
                self._start_reply(event.audio, event.start, event.t, prepared=False)
                self._publish(TurnEnded(self._reply.turn, self.now, event.t, event.semantic, event.end_of_turn_s))
        elif isinstance(event, Backchannel):
            if self.state is State.DUCKED:
                self._set_state(State.SPEAKING if reply is not None and reply.voiced else State.THINKING)
        elif isinstance(event, BargeIn):
            self._interrupt("barge_in", event.onset)

    def _start_reply(self, audio: np.ndarray, start: float, end: float, prepared: bool) -> None:
        if len(self._carry):
            audio, start = np.concatenate([self._carry, audio]), self._carry_start
        if not prepared:
            self._carry = np.zeros(0, np.float32)
        turn, self._next_turn = self._next_turn, self._next_turn + 1
        self._publish(ReplyStarted(turn, self.now, start, end, prepared))
        self._reply = self.runner.start(turn, audio, start)
        self._set_state(State.PREPARING if prepared else State.THINKING)

    # ── ending a reply ────────────────────────────────────────────────────────────────

    def _interrupt(self, reason: str, onset: float | None) -> bool:
        reply = self._reply
        if reply is None:
            return False
        # The voice paused when the onset was detected; its last sample shown has been
        # heard by the time the Interruption is out (blocks are far shorter than a word).
        stopped_at = self.output.voice_heard_until
        self._publish(Interruption(self.now, reason, onset, reply.turn))
        self._end_reply("interrupted", audio_stopped_at=stopped_at)
        return True

    def _finish_if_played(self) -> None:
        reply = self._reply
        if (reply is not None and reply.done and not self.output.playout
                and self.state in (State.THINKING, State.SPEAKING)):
            self._end_reply("played")

    def _end_reply(self, outcome: str, audio_stopped_at: float | None = None) -> None:
        """outcome: played | interrupted | dropped (a prepared reply not needed, or an
        answer to a turn the user went on with) | closed (the session ended)."""
        reply, self._reply = self._reply, None
        self.runner.cancel(reply)
        if outcome == "interrupted":
            self.output.clear()
        elif outcome != "played":
            self.output.playout.clear()
        if outcome in ("played", "interrupted"):
            self.runner.finish(reply, interrupted=outcome == "interrupted")
        if outcome == "dropped" and reply.turn is not None:
            self._next_turn = reply.turn        # its number goes to the turn that replaces it
        self._publish(ReplyEnded(reply.turn, self.now, outcome, reply.spoken, audio_stopped_at))
        self._set_state(State.LISTENING)

    # ── events ────────────────────────────────────────────────────────────────────────

    def _set_state(self, state: State) -> None:
        if state is not self.state:
            self.state = state
            self._publish(StateChanged(self.now, state))

    def _publish(self, event: Event) -> None:
        if isinstance(event, UserTranscript) and self.state is State.PREPARING:
            self.detector.heard(event.text)
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken subscriber must not stop the conversation
                log.exception("subscriber %r failed on %s", callback, type(event).__name__)
