"""One call's conversation, on its worker's event loop (transports/web/worker.py).

The browser's microphone is the clock. Every mic frame the call hands over (`hear`,
from the server's loop) is resampled to the session rate and cut into ticks; each tick
goes through `conv.step` with the echo reference (the agent's voice on its way to the
browser), and the A/V blocks that come back go to the call's tracks; on an
`Interruption` what is on its way is dropped at once. Also here, off the server's loop:
the Record switch's MP4, and what the page shows (a JSON snapshot whenever it changes).
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Protocol

import numpy as np

from agent.conversation import Conversation
from agent.frames import Interruption
from agent.metrics import summary, transcript
from agent.persona import Persona
from agent.session import Stack
from speech.audio import StreamResampler
from transports.web.recording import Recorder, Recordings
from transports.web.transcript import snapshot
from transports.web.worker import Handoff, close_worker_stack

log = logging.getLogger(__name__)

MIC_TIMEOUT_S = 5.0            # browsers send mic frames (silence too) every 20 ms
MAX_MIC_BACKLOG_FRAMES = 100   # 2 s of 20 ms frames waiting to be heard, at most


class CallError(RuntimeError):
    """Why a call could not go on, as one line for the page."""


class CallOutput(Protocol):
    """The call's side on the server's loop; every method may be called from any thread."""

    def show(self, block) -> None:
        """An A/V block for the tracks."""

    def drop_shown(self) -> None:
        """An interruption: what the tracks and the way to them still hold was never said."""

    def update(self, message: str) -> None:
        """The page's view of the call (a JSON snapshot), changed."""

    def notify(self, message: str) -> None:
        """A one-off JSON message for the page."""


class EchoReference:
    """The agent's voice handed to the voice track and not yet heard back: each mic tick
    takes its length. The buffers, the network and the browser add a delay, which the
    VAD's echo canceller searches for."""

    def __init__(self, max_samples: int):
        self._max = max_samples
        self._audio = np.zeros(0, np.float32)

    def add(self, audio: np.ndarray) -> None:
        self._audio = np.concatenate([self._audio, audio])[-self._max:]

    def take(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        head = self._audio[:n]
        out[:len(head)] = head
        self._audio = self._audio[len(head):]
        return out

    def clear(self) -> None:
        self._audio = np.zeros(0, np.float32)


class CallMedia:
    def __init__(self, conv: Conversation, stack: Stack, persona: Persona, out: CallOutput,
                 loop: asyncio.AbstractEventLoop, buffered_s: float, frame_size: int,
                 recordings: Recordings, max_recording_s: float):
        """`loop`: the worker's; `stack`: the conversation's (its own LLM clients, closed
        with it); `buffered_s`: what the tracks hold at most."""
        self.conv, self.persona = conv, persona
        self._stack, self._out = stack, out
        self._mic: Handoff[tuple[np.ndarray, int] | None] = Handoff(loop, MAX_MIC_BACKLOG_FRAMES)
        self._reference = EchoReference(int(buffered_s * conv.rate))
        self._frame_size = frame_size
        self._recordings, self._max_recording_s = recordings, max_recording_s
        self._recorder: Recorder | None = None
        self._record_wanted = False
        self._shown: str | None = None     # the last snapshot sent
        self._started = asyncio.Event()

    # ── from the server's loop (`hear`), or through Worker.call_soon (the rest) ───────

    def hear(self, samples: np.ndarray | None, rate: int = 0) -> None:
        """A mic frame (mono float32 at `rate`), or None: the mic has ended. Any thread."""
        self._mic.put(None if samples is None else (samples, rate))

    def start(self) -> None:
        """Connected: greet, and listen."""
        self._started.set()

    def want_recording(self, on: bool) -> None:
        self._record_wanted = on      # the pump starts or stops it

    # ── the call ──────────────────────────────────────────────────────────────────────

    async def run(self) -> None:
        """Until the mic ends (raises CallError when it stops sending); cancel to hang up.
        Closes the conversation, whichever way it ends."""
        unsubscribe = self.conv.subscribe(self._on_event)
        helpers: list[asyncio.Task] = []   # the greeting and the warm-up, once connected
        try:
            await self._started.wait()
            helpers = [asyncio.create_task(self.conv.greet(self.persona.greeting), name="greeting"),
                       # the LLM reads the persona prompt while the greeting plays
                       asyncio.create_task(self.conv.warm_up(), name="warm-up")]
            await self._pump()
        finally:
            for task in helpers:
                task.cancel()
            for task, result in zip(helpers, await asyncio.gather(*helpers, return_exceptions=True)):
                if isinstance(result, Exception):
                    log.warning("%s failed: %s", task.get_name(), result)
            unsubscribe()
            await self._stop_recording()
            await self.conv.close()
            await close_worker_stack(self._stack)
            log.info("call closed (mic: at most %d frames waiting, %d skipped): %s", self._mic.most_waiting,
                     self._mic.dropped, json.dumps(summary(self.conv.turns), default=float))

    def _on_event(self, event) -> None:
        if isinstance(event, Interruption):
            self._reference.clear()
            self._out.drop_shown()

    async def _pump(self) -> None:
        tick = self.conv.tick_samples
        to_session_rate: StreamResampler | None = None
        pending = np.zeros(0, np.float32)
        while True:
            try:
                heard = await asyncio.wait_for(self._mic.get(), MIC_TIMEOUT_S)
            except TimeoutError:
                raise CallError(f"no microphone audio for {MIC_TIMEOUT_S:.0f} s") from None
            if heard is None:
                return  # the browser hung up
            samples, rate = heard
            if to_session_rate is None:
                to_session_rate = StreamResampler(rate, self.conv.rate)
            pending = np.concatenate([pending, to_session_rate(samples)])
            while len(pending) >= tick:
                mic, pending = pending[:tick], pending[tick:]
                if self._recorder is not None:
                    self._recorder.hear(mic)
                for block in await self.conv.step(mic, self._reference.take(tick)):
                    self._reference.add(block.audio)
                    self._out.show(block)
                    if self._recorder is not None:
                        self._recorder.write(block)
            if self._record_wanted and self._recorder is None:
                self._start_recording()
            elif self._recorder is not None and (not self._record_wanted or self._recorder.full):
                self._record_wanted = False
                await self._stop_recording()
            self._publish()

    def _publish(self) -> None:
        message = json.dumps(snapshot(self.conv, self.persona))
        if message != self._shown:
            self._out.update(message)
            self._shown = message

    # ── recording ─────────────────────────────────────────────────────────────────────

    def _start_recording(self) -> None:
        _, path = self._recordings.new()
        self._recorder = Recorder(path, self.conv.fps, self._frame_size, self.conv.rate,
                                  start_sample=self.conv.clock.samples, max_s=self._max_recording_s)
        self._out.notify(json.dumps({"type": "recording", "state": "on"}))

    async def _stop_recording(self) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            return
        await asyncio.to_thread(recorder.close)
        # the turns on the recording's clock: session times minus `start_s`
        recorder.path.with_suffix(".json").write_text(json.dumps(
            transcript(self.conv.turns, persona=self.persona.id, start_s=recorder.start_s), indent=2))
        self._out.notify(json.dumps({"type": "recording", "state": "off", "url": f"recordings/{recorder.path.name}",
                                     "transcript": f"recordings/{recorder.path.stem}.json",
                                     "seconds": round(recorder.seconds, 2)}))
