"""The reply runner: one brain reply at a time, from a user turn to speech in the playout.

`start` runs the brain on a turn's audio in a task. What it hears and how long each
stage took go out as events (`UserTranscript`, `StageTiming`, `ReplyMade`); its speech
goes into the playout, which the output scheduler plays tick by tick. Failures of the
brain (dead server, 401, 429, timeouts, a cut stream, a crash) become a short spoken
apology; the conversation and its history go on. `cancel` stops the task, and with it
the LLM's HTTP request and the TTS. History is written only by `finish`, once the user
has heard what they heard: a prepared reply that was dropped leaves no trace, and an
apology is not something the model said. When writing it trimmed the history, the brain
reads the history again at once (`reread`), while the user speaks.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from agent.brain import Brain, Speech, Timing, UserText
from agent.events import ReplyDone, ReplyFailed
from agent.frames import Event, ReplyMade, StageTiming, UserTranscript
from agent.history import History
from agent.playout import Playout

log = logging.getLogger(__name__)

APOLOGY = "Sorry, I lost my train of thought. Could you say that again?"
# Said when the model answers with nothing: a small model sometimes does.
NO_ANSWER = "Hmm, I'm not sure. Could you put that another way?"
MAX_CANCELLED = 8   # cancelled replies still winding down (each closes an HTTP stream)


@dataclass
class Reply:
    turn: int | None                # None: a line outside any turn (the greeting)
    audio: np.ndarray               # the user's turn it answers
    user_start: float
    task: asyncio.Task | None = None
    user_text: str = ""
    failure: str | None = None
    played: list[str] = field(default_factory=list)
    done: bool = False              # the brain has finished; the voice may still play
    voiced: bool = False            # some of its voice has been played
    shown: bool = False             # a frame with its voice has been shown

    @property
    def spoken(self) -> str:
        """What the user has heard of it (text pieces carry their own spaces)."""
        return "".join(self.played).strip()


class ReplyRunner:
    def __init__(self, brain: Brain, playout: Playout, history: History, publish: Callable[[Event], None]):
        self.brain, self.playout, self.history, self.publish = brain, playout, history, publish
        self._cancelled: set[asyncio.Task] = set()
        self._rereading: asyncio.Task | None = None

    def start(self, turn: int, audio: np.ndarray, user_start: float) -> Reply:
        reply = Reply(turn, audio, user_start)
        reply.task = asyncio.create_task(self._run(reply), name=f"reply-{turn}")
        return reply

    def say(self, text: str) -> Reply:
        """A fixed line (the greeting) as a reply of no turn: it can be interrupted too."""
        reply = Reply(None, np.zeros(0, np.float32), 0.0)
        reply.task = asyncio.create_task(self._say_then_done(reply, text), name="say")
        return reply

    async def _say_then_done(self, reply: Reply, text: str) -> None:
        await self._say(text)
        reply.done = True

    async def _run(self, reply: Reply) -> None:
        spoke = False
        try:
            async with contextlib.aclosing(self.brain.reply(reply.audio, self.history)) as events:
                async for event in events:
                    if isinstance(event, UserText):
                        reply.user_text = event.text
                        self.publish(UserTranscript(reply.turn, event.text, event.asr_s))
                    elif isinstance(event, Timing):
                        self.publish(StageTiming(reply.turn, event.stage, event.seconds))
                    elif isinstance(event, Speech):
                        spoke = True
                        await self.playout.put(event)
                    elif isinstance(event, ReplyDone):
                        self.publish(ReplyMade(reply.turn, event.text))
                        if not spoke and event.finish_reason != "nothing_heard":
                            await self._say(NO_ANSWER)
                    elif isinstance(event, ReplyFailed):
                        reply.failure = event.message
                        self.publish(ReplyMade(reply.turn, "", event.message))
                        log.warning("reply failed (%s): %s", event.kind.value, event.message)
                        await self._say(APOLOGY)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug or a broken model must not end the conversation
            reply.failure = f"{type(e).__name__}: {e}"
            self.publish(ReplyMade(reply.turn, "", reply.failure))
            log.exception("reply crashed")
            await self._say(APOLOGY)
        reply.done = True

    async def _say(self, text: str) -> None:
        async for speech in self.brain.speak(text):
            await self.playout.put(speech)

    def cancel(self, reply: Reply) -> None:
        """Stop making the reply (its voice is the output scheduler's to clear)."""
        task = reply.task
        if task is None or task.done():
            return
        task.cancel()
        self._cancelled.add(task)
        task.add_done_callback(self._cancelled.discard)
        if len(self._cancelled) > MAX_CANCELLED:
            log.warning("%d cancelled replies still winding down", len(self._cancelled))

    @property
    def rereading(self) -> bool:
        return self._rereading is not None and not self._rereading.done()

    def finish(self, reply: Reply, interrupted: bool) -> None:
        """The user has heard all of the reply they will hear: write it into the history."""
        if reply.turn is None:
            return
        trims = self.history.trims
        if reply.user_text:
            self.history.add_user(reply.user_text)
        if reply.spoken and not reply.failure:
            self.history.add_agent(reply.spoken, interrupted=interrupted)
        if self.history.trims != trims and not self.rereading:
            self._rereading = asyncio.create_task(self.brain.reread(self.history), name="reread")
            self._rereading.add_done_callback(_log_failure)

    async def close(self) -> None:
        tasks = [*self._cancelled, *([self._rereading] if self._rereading else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _log_failure(task: asyncio.Task) -> None:
    # rereading only saves time: a failure is the next reply's to report
    if not task.cancelled() and task.exception() is not None:
        log.warning("reading the trimmed history again failed: %s", task.exception())
