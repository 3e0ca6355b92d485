"""The Two agents tab: two personas talk (agent/two_agents.py) while the page watches
both avatars side by side and hears both voices, live; the side-by-side MP4 and its
transcript are offered when they are done.

One run at a time. It uses the web app's shared stack: with a single local LLM server
both personas take turns on it (each reply re-reads its persona's prompt; slower than
`python app.py --two-agents`, which starts a server per persona).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import logging

import numpy as np
from aiortc import RTCSessionDescription

from agent.persona import load_persona, persona_ids
from agent.session import SESSION_RATE, make_conversation
from avatar_engine.media import MP4Writer
from avatar_engine.reference import MAX_FILE_MB, ReferenceImageError
from transports.two_agents import opening_line, talk, two_agent_transcript, with_topic
from transports.web.calls import CallRefused, checked_backend, peer_connection
from transports.web.recording import Recordings
from transports.web.shared_stack import SharedStack
from transports.web.tracks import AvatarVideoTrack, VoiceTrack
from transports.web.transcript import snapshot
from transports.web.video import VideoCodecError, send_video

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20.0
MAX_TURNS = 20
BUFFERED_S = 0.5        # media buffered per track at most


class TwoAgents:
    def __init__(self, shared: SharedStack, recordings: Recordings):
        self.shared, self.recordings = shared, recordings
        self.cfg = shared.cfg
        self._task: asyncio.Task | None = None
        self._pc = None

    async def open(self, sdp: str, kind: str, a: str, b: str, topic: str, turns: int,
                   images: dict[str, tuple[str, str]]) -> RTCSessionDescription:
        """Answer a receive-only offer and start the run. `images`: seat ("a"/"b") →
        (file name, base64 data) of an uploaded portrait. Raises CallRefused."""
        stack = self.shared.stack
        if stack is None:
            raise CallRefused(503, self.shared.error or f"still getting ready ({self.shared.status}); try again soon")
        if self._task is not None and not self._task.done():
            raise CallRefused(429, "two agents are already talking; wait for them to finish")
        for persona in (a, b):
            if persona not in persona_ids():
                raise CallRefused(400, f"no persona '{persona}' (available: {', '.join(persona_ids())})")
        if not 1 <= turns <= MAX_TURNS:
            raise CallRefused(400, f"turns must be between 1 and {MAX_TURNS}, got {turns}")
        pa, pb = load_persona(a), load_persona(b)
        pa, pb = with_topic(pa, topic, pb.name), with_topic(pb, topic, pa.name)
        pa = await self._with_image(pa, images.get("a"))
        pb = await self._with_image(pb, images.get("b"))

        if self._pc is not None:  # the page that watched the last run
            await self._pc.close()
        pc = peer_connection(self.cfg.server.ice_servers)
        size, fps = self.cfg.avatar.size, self.cfg.avatar.fps
        video = AvatarVideoTrack(np.zeros((size, 2 * size, 3), np.uint8), fps, max_frames=int(BUFFERED_S * fps))
        voice = VoiceTrack(SESSION_RATE, max_seconds=BUFFERED_S)
        channel = {}
        pc.on("datachannel", lambda ch: channel.setdefault("events", ch))
        connected = asyncio.Event()

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected":
                connected.set()
            elif pc.connectionState in ("failed", "closed") and self._task is not None:
                self._task.cancel()

        try:
            send_video(pc, video, self.cfg.server.video_codec, fps, sdp)
        except VideoCodecError as e:
            await pc.close()
            raise CallRefused(400, str(e)) from None
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        pc.addTrack(voice)
        await pc.setLocalDescription(await pc.createAnswer())
        self._pc = pc
        self._task = asyncio.create_task(self._run(pc, video, voice, channel, connected, pa, pb, topic, turns),
                                         name="two-agents")
        return pc.localDescription

    async def _with_image(self, persona, image: tuple[str, str] | None):
        """The persona with an uploaded portrait, checked as the engine checks it."""
        if image is None:
            return persona
        name, data = image
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise CallRefused(400, f"'{name}' did not arrive as a file; choose it again") from None
        if len(raw) > MAX_FILE_MB * 2**20:
            raise CallRefused(413, f"'{name}' is larger than {MAX_FILE_MB} MB; use a smaller photo")
        try:
            await asyncio.to_thread(checked_backend, self.cfg, raw, name)
        except ReferenceImageError as e:
            raise CallRefused(400, f"{persona.name}: {e}") from None
        _, path = self.recordings.new()   # kept, and deleted, with the recordings
        path = path.with_suffix(".portrait")
        path.write_bytes(raw)
        return dataclasses.replace(persona, image=str(path))

    async def _run(self, pc, video, voice, channel, connected, pa, pb, topic, turns) -> None:
        def send(message: dict | str) -> None:
            events = channel.get("events")
            if events is not None and events.readyState == "open":
                events.send(message if isinstance(message, str) else json.dumps(message))

        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await connected.wait()
            stack = self.shared.stack
            seat_b = 1 if len(stack.llms) > 1 else 0
            conv_a, conv_b = await asyncio.gather(asyncio.to_thread(make_conversation, stack, pa, seat=0),
                                                  asyncio.to_thread(make_conversation, stack, pb, seat=seat_b))
            token, path = self.recordings.new()
            shown = None

            def on_pair(frames: np.ndarray, audio: np.ndarray) -> None:
                nonlocal shown
                writer.write(frames, audio)
                video.push(frames)
                voice.push(audio)
                update = json.dumps({"type": "update", "a": snapshot(conv_a, pa), "b": snapshot(conv_b, pb)})
                if update != shown:
                    shown = update
                    send(update)

            size = self.cfg.avatar.size
            with MP4Writer(path, self.cfg.avatar.fps, 2 * size, size, SESSION_RATE) as writer:
                talked = await talk(conv_a, conv_b, opening_line(pa, topic), turns, on_pair, fast=False,
                                    progress=lambda line: log.info("two agents: %s", line.strip()))
            path.with_suffix(".json").write_text(json.dumps(two_agent_transcript(conv_a, conv_b, pa, pb, topic, path.name, talked),
                                                            indent=2))
            send({"type": "done", "url": f"recordings/{token}.mp4", "transcript": f"recordings/{token}.json",
                  "seconds": round(conv_a.now, 1)})
            log.info("two agents done: recordings/%s.mp4", token)
        except TimeoutError:
            log.info("two agents: no connection after %.0f s", CONNECT_TIMEOUT_S)
        except Exception as e:  # a bug must end this run with a message, not the server
            log.exception("two agents crashed")
            send({"type": "error", "message": f"the two agents stopped: {type(e).__name__}: {e}"})
        finally:
            video.stop()
            voice.stop()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._pc is not None:
            await self._pc.close()
