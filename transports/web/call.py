"""One browser connection: its peer connection, its conversation, its media.

The browser's microphone is the clock. Every mic frame is resampled to the session
rate and cut into ticks; each tick goes through `conv.step`, and the A/V blocks that
come back are handed to the outgoing video and voice tracks; on an `Interruption` (a
barge-in, or "interrupt" from the page's button) the tracks drop what they still hold,
so the page falls silent at once. State, transcript and
latencies go to the page over the data channel the browser opened, whenever they
change. The call ends when the browser hangs up ("bye" on the channel, the connection
closing or failing, the mic track ending) or the server stops; then the conversation,
the tracks and the peer connection are closed, whichever way it ended.

From the page, on the data channel: "interrupt" (the Interrupt button: the reply stops
as on a barge-in, and what the tracks still hold is dropped), "record:on" / "record:off"
(the Record switch: an MP4 of the call, announced with its download URL when it ends).
Over HTTP (transports/web/signaling.py): a new portrait, `use_backend`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription

from agent.conversation import Conversation
from agent.frames import Interruption
from agent.metrics import summary, transcript
from agent.persona import Persona
from speech.audio import StreamResampler
from transports.web.recording import Recorder, Recordings
from transports.web.tracks import AvatarVideoTrack, MicBacklog, VoiceTrack, mic_samples
from transports.web.transcript import snapshot
from transports.web.video import send_video

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20.0   # ICE + DTLS; with no usable candidate pair a call stays in "new" forever
MIC_TIMEOUT_S = 5.0        # browsers send mic frames (silence too) every 20 ms
BUFFERED_BLOCKS = 2        # outgoing media buffered at most: bounds what plays after a barge-in
MAX_MIC_BACKLOG_FRAMES = 100  # 2 s of 20 ms frames waiting to be heard, at most
REPORT_FLUSH_S = 1.0       # time given to the last message before the connection closes


class CallError(RuntimeError):
    """Why a call could not go on, as one line for the page."""


class Call:
    def __init__(self, pc: RTCPeerConnection, conv: Conversation, persona: Persona, frame_size: int,
                 recordings: Recordings, max_recording_s: float, video_codec: str = "vp8"):
        self.pc, self.conv, self.persona = pc, conv, persona
        self.id = secrets.token_hex(8)     # names the call in HTTP requests from its page
        self.frame_size, self._video_codec = frame_size, video_codec
        self._recordings, self._max_recording_s = recordings, max_recording_s
        self._recorder: Recorder | None = None
        self._record_wanted = False
        fps, block_frames = conv.fps, conv.frames_per_block
        self.video = AvatarVideoTrack(np.zeros((frame_size, frame_size, 3), np.uint8), fps,
                                      max_frames=BUFFERED_BLOCKS * block_frames)
        self.voice = VoiceTrack(conv.rate, max_seconds=BUFFERED_BLOCKS * block_frames / fps)
        self.channel = None
        self._created = time.monotonic()
        self._mic: MicBacklog | None = None     # set by answer()
        self._connected = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self._shown: str | None = None     # the last snapshot the page received
        pc.on("connectionstatechange", self._on_connection_state)
        pc.on("datachannel", self._on_channel)
        self._unsubscribe = conv.subscribe(self._on_event)

    def _on_event(self, event) -> None:
        if isinstance(event, Interruption):  # what the tracks still hold was never said
            self.video.clear()
            self.voice.clear()

    async def answer(self, sdp: str, kind: str) -> RTCSessionDescription:
        """Take the browser's offer (mic audio, video to receive) and answer it."""
        send_video(self.pc, self.video, self._video_codec, self.conv.fps, sdp)   # fixes the codec: before the offer
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        track = next((t.receiver.track for t in self.pc.getTransceivers() if t.kind == "audio"), None)
        if track is None:
            raise CallError("the browser offered no microphone audio")
        self._mic = MicBacklog(track, MAX_MIC_BACKLOG_FRAMES)
        self.pc.addTrack(self.voice)
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
        helpers: list[asyncio.Task] = []   # the mic reader, the greeting and the warm-up, once connected
        try:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    await self._connected.wait()
            except TimeoutError:
                raise CallError(f"no connection after {CONNECT_TIMEOUT_S:.0f} s; on another machine than "
                                "the server, set server.ice_servers in config.yaml") from None
            helpers = [asyncio.create_task(self._mic.run(), name="mic"),
                       asyncio.create_task(self.conv.greet(self.persona.greeting), name="greeting"),
                       # the LLM reads the persona prompt while the greeting plays
                       asyncio.create_task(self.conv.warm_up(), name="warm-up")]
            await self._pump()
        except CallError as e:
            await self._report(str(e))
        except Exception as e:  # a bug must end this call with a message, not the server
            log.exception("call crashed")
            await self._report(f"the call stopped: {type(e).__name__}: {e}")
        finally:
            self._closing = True
            for task in helpers:
                task.cancel()
            for task, result in zip(helpers, await asyncio.gather(*helpers, return_exceptions=True)):
                if isinstance(result, Exception):
                    log.warning("%s failed: %s", task.get_name(), result)
            await self._close()
            log.info("call closed (mic: at most %d frames waiting, %.1f s skipped): %s", self._mic.most_waiting,
                     self._mic.dropped_s, summary(self.conv.turns))

    async def _pump(self) -> None:
        tick = self.conv.tick_samples
        to_session_rate: StreamResampler | None = None
        pending = np.zeros(0, np.float32)
        while True:
            try:
                frame = await asyncio.wait_for(self._mic.get(), MIC_TIMEOUT_S)
            except TimeoutError:
                raise CallError(f"no microphone audio for {MIC_TIMEOUT_S:.0f} s") from None
            if frame is None:
                return  # the browser hung up
            if to_session_rate is None:
                to_session_rate = StreamResampler(frame.sample_rate, self.conv.rate)
            pending = np.concatenate([pending, to_session_rate(mic_samples(frame))])
            while len(pending) >= tick:
                heard, pending = pending[:tick], pending[tick:]
                if self._recorder is not None:
                    self._recorder.hear(heard)
                for block in await self.conv.step(heard, self.voice.take_played(tick)):
                    self.video.push(block.frames)
                    self.voice.push(block.audio)
                    if self._recorder is not None:
                        self._recorder.write(block)
            if self._record_wanted and self._recorder is None:
                self._start_recording()
            elif self._recorder is not None and (not self._record_wanted or self._recorder.full):
                self._record_wanted = False
                await self._stop_recording()
            self._publish()

    # ── what the page asks for ────────────────────────────────────────────────────────

    def use_backend(self, backend) -> None:
        """Go on with another face (a backend already reset to it)."""
        self.conv.use_backend(backend)

    def _start_recording(self) -> None:
        _, path = self._recordings.new()
        self._recorder = Recorder(path, self.conv.fps, self.frame_size, self.conv.rate,
                                  start_sample=self.conv.clock.samples, max_s=self._max_recording_s)
        self._send({"type": "recording", "state": "on"})

    async def _stop_recording(self) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            return
        await asyncio.to_thread(recorder.close)
        # the turns on the recording's clock: session times minus `start_s`
        recorder.path.with_suffix(".json").write_text(json.dumps(
            transcript(self.conv.turns, persona=self.persona.id, start_s=recorder.start_s), indent=2))
        self._send({"type": "recording", "state": "off", "url": f"recordings/{recorder.path.name}",
                    "transcript": f"recordings/{recorder.path.stem}.json", "seconds": round(recorder.seconds, 2)})

    async def _close(self) -> None:
        self._unsubscribe()
        await self._stop_recording()
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

    def _send(self, message: dict) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps(message))

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

        channel.on("message", self._on_channel_message)

    def _on_channel_message(self, message) -> None:
        if message == "bye":
            self.hang_up()
        elif message == "interrupt":     # the page's Interrupt button
            self.conv.interrupt()        # its Interruption clears the tracks (_on_event)
        elif message in ("record:on", "record:off"):
            self._record_wanted = message == "record:on"   # the pump starts or stops it
