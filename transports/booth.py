"""Booth mode (`python app.py --local`): one conversation through this machine's
microphone and speaker; the page shows the avatar, its state and the transcript.

The sound card is the clock, as the mic is in a web call: each 20 ms block it delivers
is one tick of the conversation, paired with what its speaker played during that block,
the echo reference (the VAD's echo canceller finds the fixed delay of the room). The
agent's voice is queued to the card as the avatar's blocks come out. The conversation
runs on a worker of its own, as a web call's does (transports/web/worker.py); pages that
open (`/webrtc/watch`) only receive, on the server's loop: video, and updates on a data
channel.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription

from agent.metrics import summary
from agent.persona import load_persona
from config import Config
from speech.devices import NoAudioDevice, SoundCard
from transports.web.shared_stack import SharedStack
from transports.web.tracks import AvatarVideoTrack
from transports.web.transcript import snapshot
from transports.web.video import VideoCodecError, send_video
from transports.web.worker import Worker, close_worker_stack, worker_stack

log = logging.getLogger(__name__)

MIC_TIMEOUT_S = 2.0        # a sound card delivers a block every 20 ms
MAX_VIEWERS = 4
VIEWER_FRAMES = 4          # frames buffered per viewer (two blocks)


class _Viewer:
    def __init__(self, pc: RTCPeerConnection, video: AvatarVideoTrack):
        self.pc, self.video, self.channel = pc, video, None
        self.shown: str | None = None


class Booth:
    def __init__(self, cfg: Config, shared: SharedStack, peer_connection, card: SoundCard):
        """`card`: 20 ms blocks (its default) at the session rate."""
        self.cfg, self.shared = cfg, shared
        self._peer_connection = peer_connection     # () → an RTCPeerConnection with the configured ICE servers
        self.card = card
        self.persona = load_persona(cfg.agent.persona)
        self.conv = None
        self._viewers: list[_Viewer] = []
        self._loop: asyncio.AbstractEventLoop | None = None   # the server's, where the viewers live
        self.error: str | None = None

    async def run(self) -> None:
        """Wait for the models, then converse until cancelled, on a worker of its own (as
        a web call does): the server's loop stays free for the pages watching."""
        while self.shared.stack is None:
            if self.shared.error:
                return
            await asyncio.sleep(0.1)
        self._loop = asyncio.get_running_loop()
        stack = worker_stack(self.shared.stack, self._loop)
        worker = Worker("booth")
        try:
            await worker.run(lambda: self._converse(stack))
        except NoAudioDevice as e:
            self.error = str(e)
            log.error("booth: %s", e)

    async def _converse(self, stack) -> None:
        """On the worker's loop: the conversation, from the models' warm-up to the end."""
        from transports.web.calls import conversation
        try:
            self.conv = await asyncio.to_thread(conversation, stack, self.persona)
        except BaseException:
            await close_worker_stack(stack)
            raise
        tasks = [asyncio.create_task(self.conv.warm_up(), name="warm-up"),
                 asyncio.create_task(self.conv.greet(self.persona.greeting), name="greeting")]
        try:
            with self.card:
                log.info("booth: talking through the local microphone and speaker, on the %s thread",
                         threading.current_thread().name)
                await self._hear_and_speak()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.conv.close()
            await close_worker_stack(stack)
            log.info("booth closed: %s", summary(self.conv.turns))

    async def _hear_and_speak(self) -> None:
        while True:
            pair = self.card.read(0)   # behind: blocks are waiting, take them without a thread hop
            if pair is None:
                pair = await asyncio.to_thread(self.card.read, MIC_TIMEOUT_S)
            if pair is None:
                raise NoAudioDevice("the microphone stopped sending audio: check that it is plugged in")
            heard, played = pair
            frames = []
            for block in await self.conv.step(heard, played):
                self.card.play(block.audio)
                frames.append(block.frames)
            if frames or self._viewers:
                message = json.dumps(snapshot(self.conv, self.persona)) if self._viewers else None
                self._loop.call_soon_threadsafe(self._show, frames, message)

    def _show(self, frames: list[np.ndarray], message: str | None) -> None:
        """On the server's loop: the new frames and what the page shows, to every viewer."""
        for viewer in self._viewers:
            for block in frames:
                viewer.video.push(block)
            if (message and message != viewer.shown
                    and viewer.channel is not None and viewer.channel.readyState == "open"):
                viewer.channel.send(message)
                viewer.shown = message

    # ── pages watching ────────────────────────────────────────────────────────────────

    async def watch(self, sdp: str, kind: str) -> RTCSessionDescription:
        """Answer a page's receive-only offer with the avatar's video."""
        while len(self._viewers) >= MAX_VIEWERS:  # the oldest page makes room
            await self._drop(self._viewers[0])
        pc = self._peer_connection()
        size = self.cfg.avatar.size
        viewer = _Viewer(pc, AvatarVideoTrack(np.zeros((size, size, 3), np.uint8), self.cfg.avatar.fps,
                                              max_frames=VIEWER_FRAMES))
        pc.on("datachannel", lambda channel: setattr(viewer, "channel", channel))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._drop(viewer)

        try:
            send_video(pc, viewer.video, self.cfg.server.video_codec, self.cfg.avatar.fps, sdp)
        except VideoCodecError:
            await pc.close()
            raise
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        await pc.setLocalDescription(await pc.createAnswer())
        self._viewers.append(viewer)
        return pc.localDescription

    async def _drop(self, viewer: _Viewer) -> None:
        if viewer in self._viewers:
            self._viewers.remove(viewer)
        viewer.video.stop()
        await viewer.pc.close()

    async def close(self) -> None:
        for viewer in list(self._viewers):
            await self._drop(viewer)
