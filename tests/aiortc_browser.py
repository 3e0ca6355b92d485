"""A browser played by an aiortc peer in this process, calling the app's own `Calls`.

    async with serving(cfg) as calls:
        browser = Browser()
        await browser.call(calls, "ada")
        await browser.until(lambda b: b.state == "listening" and "speaking" in b.states, 20)
        browser.mic.say(question_48k)
        ...
        await browser.close()

`Browser` sends a live microphone (`FakeMic`: silence, and whatever it is told to say,
in real time), receives the avatar's voice and video, and reads the page's snapshots
from the data channel, as the page does. ICE uses no server at all (aiortc's default is
a public STUN server). Used by tests/test_call_worker.py, tests/test_call_lifecycle.py
and bench/web_soak.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import threading
import time
from collections import deque
from fractions import Fraction
from typing import Callable

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from speech.audio import to_int16
from transports.web.calls import Calls
from transports.web.recording import Recordings
from transports.web.shared_stack import SharedStack

MIC_RATE = 48000
FRAME = 960                      # 20 ms
TICK_S = FRAME / MIC_RATE
CONNECT_S = 20.0


class FakeMic(MediaStreamTrack):
    """A browser's microphone: 20 ms frames at 48 kHz in real time, silence unless `say` gave it audio."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        self._audio = np.zeros(0, np.int16)
        self._i = 0
        self._start: float | None = None

    def say(self, audio: np.ndarray) -> None:
        """Float32 mono at 48 kHz, played after what is still to play."""
        self._audio = np.concatenate([self._audio, to_int16(audio)])

    @property
    def saying(self) -> bool:
        return len(self._audio) > 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        self._start = self._start or time.monotonic()
        delay = self._start + self._i * TICK_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        chunk, self._audio = self._audio[:FRAME], self._audio[FRAME:]
        frame = av.AudioFrame.from_ndarray(np.pad(chunk, (0, FRAME - len(chunk)))[None, :], format="s16",
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = MIC_RATE, self._i * FRAME, Fraction(1, MIC_RATE)
        self._i += 1
        return frame


class Browser:
    def __init__(self):
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = FakeMic()
        self.voice_peak = 0.0             # the loudest sample of the agent's voice heard
        self.frames = 0                   # video frames received
        self.state: str | None = None     # the page's state (listening, thinking, speaking)
        self.states: deque[str] = deque(maxlen=100)   # the states shown, in order
        self.turns: list[dict] = []       # the page's transcript
        self.errors: list[str] = []       # the server's one-line errors
        self._receivers: list[asyncio.Task] = []
        self.pc.addTrack(self.mic)
        self.pc.addTransceiver("video", direction="recvonly")
        self.channel = self.pc.createDataChannel("events")
        self.channel.on("message", self._on_message)
        self.pc.on("track", lambda track: self._receivers.append(asyncio.create_task(self._receive(track))))

    async def call(self, calls: Calls, persona: str) -> None:
        """Offer, answer, and wait until connected."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        _, answer = await calls.open(self.pc.localDescription.sdp, "offer", persona)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer.sdp, answer.type))
        await self.until(lambda b: b.pc.connectionState == "connected", CONNECT_S)

    async def until(self, done: Callable[[Browser], bool], timeout_s: float) -> None:
        """Wait for `done(self)`; TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while not done(self):
                await asyncio.sleep(0.05)

    @property
    def replied(self) -> bool:
        """The agent answered something the user said, and is done speaking."""
        return self.state == "listening" and any(t["user"] and t["agent"] for t in self.turns)

    def bye(self) -> None:
        """What the page sends when its Stop button hangs up."""
        self.channel.send("bye")

    async def close(self) -> None:
        """Gone without a word, as a closed or reloaded tab."""
        await self.pc.close()
        for task in self._receivers:
            task.cancel()
        await asyncio.gather(*self._receivers, return_exceptions=True)

    def _on_message(self, message: str) -> None:
        m = json.loads(message)
        if m["type"] == "update":
            self.state, self.turns = m["state"], m["turns"]
            self.states.append(m["state"])
        elif m["type"] == "error":
            self.errors.append(m["message"])

    async def _receive(self, track) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if track.kind == "audio":
                    self.voice_peak = max(self.voice_peak, float(np.abs(frame.to_ndarray()).max()) / 32768)
                else:
                    self.frames += 1


def call_threads() -> list[threading.Thread]:
    """The calls' worker threads still running."""
    return [t for t in threading.enumerate() if t.name.startswith("call-")]


def live(kind: type) -> int:
    """How many objects of exactly `kind` are in memory (without collecting first)."""
    return sum(type(o) is kind for o in gc.get_objects())


@contextlib.asynccontextmanager
async def serving(cfg):
    """The app's calls on its shared stack (the real models), loaded; all hung up after."""
    shared = SharedStack(cfg)
    loading = asyncio.create_task(shared.hold(), name="shared-stack")
    calls = Calls(cfg, shared, Recordings())
    try:
        while not shared.settled:
            await asyncio.sleep(0.1)
        if shared.stack is None:
            raise RuntimeError(shared.error)
        yield calls
    finally:
        await calls.close_all()
        loading.cancel()
        await asyncio.gather(loading, return_exceptions=True)
        calls.recordings.close()
