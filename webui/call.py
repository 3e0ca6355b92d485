"""One browser connection: its peer connection, its conversation, its media.

The browser's microphone is the clock. Every mic frame is resampled to the session
rate and cut into ticks; each tick goes through `conv.step`, and the A/V blocks that
come back are handed to the outgoing video and voice tracks. State, transcript and
latencies go to the page over the data channel the browser opened, whenever they
change. The call ends when the browser hangs up ("bye" on the channel, the connection
closing or failing, the mic track ending) or the server stops; then the conversation,
the tracks and the peer connection are closed, whichever way it ended.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from agent.conversation import Conversation
from agent.headless import TICK_S, summary
from agent.persona import Persona
from speech.audio import StreamResampler
from webui.tracks import AvatarVideoTrack, VoiceTrack, mic_samples
from webui.transcript import snapshot

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20.0   # ICE + DTLS; with no usable candidate pair a call stays in "new" forever
MIC_TIMEOUT_S = 5.0        # browsers send mic frames (silence too) every 20 ms
BUFFERED_BLOCKS = 2        # outgoing media buffered at most: bounds what plays after a barge-in
# aiortc queues received frames without bound; a server that fell this far behind
# (CPU starved) skips audio to catch up rather than answer ever later.
MAX_MIC_LATE_S = 2.0
REPORT_FLUSH_S = 1.0       # time given to the last message before the connection closes


class CallError(RuntimeError):
    """Why a call could not go on, as one line for the page."""


class Call:
    def __init__(self, pc: RTCPeerConnection, conv: Conversation, persona: Persona, frame_size: int):
        self.pc, self.conv, self.persona = pc, conv, persona
        fps, block_frames = conv.avatar.fps, conv.avatar.runtime.frames_per_block
        self.video = AvatarVideoTrack(np.zeros((frame_size, frame_size, 3), np.uint8), fps,
                                      max_frames=BUFFERED_BLOCKS * block_frames)
        self.voice = VoiceTrack(conv.rate, max_seconds=BUFFERED_BLOCKS * block_frames / fps)
        self.channel = None
        self.mic_late_s = 0.0        # the most a mic frame was handled late (after the first)
        self.mic_dropped_s = 0.0
        self._created = time.monotonic()
        self._mic = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self._shown: str | None = None     # the last snapshot the page received
        pc.on("connectionstatechange", self._on_connection_state)
        pc.on("datachannel", self._on_channel)

    async def answer(self, sdp: str, kind: str) -> RTCSessionDescription:
        """Take the browser's offer (mic audio, video to receive) and answer it."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        self._mic = next((t.receiver.track for t in self.pc.getTransceivers() if t.kind == "audio"), None)
        if self._mic is None:
            raise CallError("the browser offered no microphone audio")
        self.pc.addTrack(self.voice)
        self.pc.addTrack(self.video)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription

    def start(self) -> asyncio.Task:
        """Run the call in a task; the task closes everything when the call ends."""
        self._task = asyncio.create_task(self._run(), name=f"call-{id(self):x}")
        return self._task

    def hang_up(self) -> None:
        if self._task is not None and not self._closing:
            self._task.cancel()

    # ── the call ──────────────────────────────────────────────────────────────────────

    async def _run(self) -> None:
        greeting = None
        try:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    await self._connected.wait()
            except TimeoutError:
                raise CallError(f"no connection after {CONNECT_TIMEOUT_S:.0f} s; on another machine than "
                                "the server, set server.ice_servers in config.yaml") from None
            greeting = asyncio.create_task(self.conv.greet(self.persona.greeting), name="greeting")
            await self._pump()
        except CallError as e:
            await self._report(str(e))
        except Exception as e:  # a bug must end this call with a message, not the server
            log.exception("call crashed")
            await self._report(f"the call stopped: {type(e).__name__}: {e}")
        finally:
            self._closing = True
            if greeting is not None:
                greeting.cancel()
                for result in await asyncio.gather(greeting, return_exceptions=True):
                    if isinstance(result, Exception):
                        log.warning("greeting failed: %s", result)
            await self._close()
            log.info("call closed (mic handled up to %.2f s late, %.1f s skipped): %s", self.mic_late_s,
                     self.mic_dropped_s, summary(self.conv.turns))

    async def _pump(self) -> None:
        tick = int(TICK_S * self.conv.rate)
        to_session_rate: StreamResampler | None = None
        pending = np.zeros(0, np.float32)
        while True:
            try:
                frame = await asyncio.wait_for(self._mic.recv(), MIC_TIMEOUT_S)
            except MediaStreamError:
                return  # the browser hung up
            except TimeoutError:
                raise CallError(f"no microphone audio for {MIC_TIMEOUT_S:.0f} s") from None
            # How late this frame is handled, against the browser's clock: a server
            # that cannot keep up hears the user (and answers) late.
            received = time.monotonic()
            if to_session_rate is None:
                to_session_rate = StreamResampler(frame.sample_rate, self.conv.rate)
                first = (received, frame.time)
            late = (received - first[0]) - (frame.time - first[1])
            self.mic_late_s = max(self.mic_late_s, late)
            if late > MAX_MIC_LATE_S:
                self.mic_dropped_s += frame.samples / frame.sample_rate
                continue
            pending = np.concatenate([pending, to_session_rate(mic_samples(frame))])
            while len(pending) >= tick:
                mic, pending = pending[:tick], pending[tick:]
                for block in await self.conv.step(mic, self.voice.take_played(tick)):
                    self.video.push(block.frames)
                    self.voice.push(block.audio)
            self._publish()

    async def _close(self) -> None:
        await self.conv.close()
        self.video.stop()
        self.voice.stop()
        await self.pc.close()

    # ── the page ──────────────────────────────────────────────────────────────────────

    def _publish(self) -> None:
        if self.channel is None or self.channel.readyState != "open":
            return  # sent once the channel opens
        message = json.dumps(snapshot(self.conv, self.persona))
        if message != self._shown:
            self.channel.send(message)
            self._shown = message

    async def _report(self, message: str) -> None:
        log.info("call ended: %s", message)
        if self.channel is None or self.channel.readyState != "open":
            return
        self.channel.send(json.dumps({"type": "error", "message": message}))
        deadline = time.monotonic() + REPORT_FLUSH_S
        while self.channel.bufferedAmount and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    # ── peer connection events ────────────────────────────────────────────────────────

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and not self._connected.is_set():
            log.info("call connected in %.2f s", time.monotonic() - self._created)
            self._connected.set()
        elif state in ("failed", "closed"):
            self.hang_up()

    def _on_channel(self, channel) -> None:
        self.channel = channel

        @channel.on("message")
        def on_message(message) -> None:
            if message == "bye":
                self.hang_up()
