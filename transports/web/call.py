"""One browser connection: its peer connection, its media tracks, its conversation.

The conversation runs on a worker of its own (transports/web/call_media.py on a
transports/web/worker.py thread and event loop): rendering, VAD and the echo canceller
never hold up the server's loop, which keeps what aiortc needs, the tracks and the peer
connection, for every call. Mic frames go to the worker as they arrive (bounded), and
the A/V blocks come back (bounded); an `Interruption` drops what the tracks still
hold, so the page falls silent at once. State, transcript and latencies go to the page
over the data channel the browser opened, whenever they change. The call ends when the
browser hangs up ("bye" on the channel, the connection closing or failing, the mic
track ending) or the server stops; then the worker stops (the conversation closed
there), and the tracks and the peer connection are closed, whichever way it ended.

From the page, on the data channel: "interrupt" (the Interrupt button: the reply stops
as on a barge-in, and what the tracks still hold is dropped), "record:on" / "record:off"
(the Record switch: an MP4 of the call, announced with its download URL when it ends).
Over HTTP (transports/web/signaling.py): a new portrait, `use_backend`.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from agent.conversation import Conversation
from agent.persona import Persona
from agent.session import Stack
from transports.web.call_media import CallError, CallMedia
from transports.web.recording import Recordings
from transports.web.tracks import AvatarVideoTrack, VoiceTrack, mic_samples
from transports.web.video import send_video
from transports.web.worker import Handoff, Worker

__all__ = ["Call", "CallError"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20.0   # ICE + DTLS; with no usable candidate pair a call stays in "new" forever
BUFFERED_BLOCKS = 2        # outgoing media buffered at most: bounds what plays after a barge-in
REPORT_FLUSH_S = 1.0       # time given to the last message before the connection closes


class Call:
    def __init__(self, pc: RTCPeerConnection, conv: Conversation, stack: Stack, persona: Persona, frame_size: int,
                 recordings: Recordings, max_recording_s: float, video_codec: str):
        """`conv` (made on `stack`, with LLM clients of its own: transports.web.worker.
        worker_stack) runs on the call's worker from `start` on, and is closed there."""
        self.pc = pc
        self.id = secrets.token_hex(8)     # names the call in HTTP requests from its page
        self._loop = asyncio.get_running_loop()
        self._video_codec = video_codec
        fps, block_frames = conv.fps, conv.frames_per_block
        buffered_s = BUFFERED_BLOCKS * block_frames / fps
        self.video = AvatarVideoTrack(np.zeros((frame_size, frame_size, 3), np.uint8), fps,
                                      max_frames=BUFFERED_BLOCKS * block_frames)
        self.voice = VoiceTrack(conv.rate, max_seconds=buffered_s)
        self._blocks: Handoff = Handoff(self._loop, BUFFERED_BLOCKS)   # the worker's blocks on their way
        self._worker = Worker(f"call-{self.id}")
        self._media = CallMedia(conv, stack, persona, self, self._worker.loop, buffered_s, frame_size,
                                recordings, max_recording_s)
        self._conv = conv
        self.channel = None
        self._update: str | None = None    # the page's newest snapshot, sent once the channel is open
        self._created = time.monotonic()
        self._mic_track = None             # set by answer()
        self._connected = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        pc.on("connectionstatechange", self._on_connection_state)
        pc.on("datachannel", self._on_channel)

    async def answer(self, sdp: str, kind: str) -> RTCSessionDescription:
        """Take the browser's offer (mic audio, video to receive) and answer it."""
        send_video(self.pc, self.video, self._video_codec, self._conv.fps, sdp)   # fixes the codec: before the offer
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        self._mic_track = next((t.receiver.track for t in self.pc.getTransceivers() if t.kind == "audio"), None)
        if self._mic_track is None:
            raise CallError("the browser offered no microphone audio")
        self.pc.addTrack(self.voice)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription

    async def discard(self) -> None:
        """A call that never started (its offer refused): close its peer connection and
        the loop its worker made for it and never ran."""
        await self.pc.close()
        self._worker.close()

    def start(self) -> asyncio.Task:
        """Run the call in a task; the task closes everything when the call ends."""
        self._task = asyncio.create_task(self._run(), name=f"call-{self.id}")
        return self._task

    def hang_up(self) -> None:
        if self._task is not None and not self._closing:
            self._closing = True
            self._task.cancel()

    def use_backend(self, backend) -> None:
        """Go on with another face (a backend already reset to it)."""
        self._worker.call_soon(self._conv.use_backend, backend)

    # ── the call ──────────────────────────────────────────────────────────────────────

    async def _run(self) -> None:
        media = asyncio.create_task(self._worker.run(self._media.run), name="media")
        helpers = [asyncio.create_task(self._forward(), name="forward")]
        try:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    await self._connected.wait()
            except TimeoutError:
                raise CallError(f"no connection after {CONNECT_TIMEOUT_S:.0f} s; on another machine than "
                                "the server, set server.ice_servers in config.yaml") from None
            helpers.append(asyncio.create_task(self._read_mic(), name="mic"))
            self._worker.call_soon(self._media.start)
            await media
        except CallError as e:
            await self._report(str(e))
        except Exception as e:  # a bug must end this call with a message, not the server
            log.exception("call crashed")
            await self._report(f"the call stopped: {type(e).__name__}: {e}")
        finally:
            self._closing = True
            for task in [media, *helpers]:
                task.cancel()
            await asyncio.gather(media, *helpers, return_exceptions=True)   # the worker has ended
            self.video.stop()
            self.voice.stop()
            await self.pc.close()

    async def _read_mic(self) -> None:
        """Every mic frame to the worker as soon as it arrives (aiortc's own receive queue
        is unbounded; the worker's is not)."""
        try:
            while True:
                frame = await self._mic_track.recv()
                self._media.hear(mic_samples(frame), frame.sample_rate)
        except MediaStreamError:
            self._media.hear(None)

    async def _forward(self) -> None:
        while True:
            block = await self._blocks.get()
            self.video.push(block.frames)
            self.voice.push(block.audio)

    # ── CallOutput: from the worker ───────────────────────────────────────────────────

    def show(self, block) -> None:
        self._blocks.put(block)

    def drop_shown(self) -> None:
        self._blocks.clear()
        self._on_loop(self._clear_tracks)

    def update(self, message: str) -> None:
        self._on_loop(self._show_update, message)

    def notify(self, message: str) -> None:
        self._on_loop(self._send, message)

    def _on_loop(self, fn, *args) -> None:
        with contextlib.suppress(RuntimeError):  # the server's loop is gone: so is the page
            self._loop.call_soon_threadsafe(fn, *args)

    def _clear_tracks(self) -> None:
        # Blocks taken off `_blocks` before the worker cleared it are in the tracks now;
        # at worst the first block after the interruption (no voice) goes too.
        self.video.clear()
        self.voice.clear()

    # ── the page ──────────────────────────────────────────────────────────────────────

    def _show_update(self, message: str | None = None) -> None:
        """Send the newest snapshot, now or once the channel opens."""
        if message is not None:
            self._update = message
        if self._update is not None and self.channel is not None and self.channel.readyState == "open":
            self.channel.send(self._update)
            self._update = None

    def _send(self, message: str) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(message)

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
        channel.on("open", self._show_update)
        self._show_update()

    def _on_channel_message(self, message) -> None:
        if message == "bye":
            self.hang_up()
        elif message == "interrupt":                  # the page's Interrupt button
            self._worker.call_soon(self._conv.interrupt)   # its Interruption clears the tracks
        elif message in ("record:on", "record:off"):
            self._worker.call_soon(self._media.want_recording, message == "record:on")
