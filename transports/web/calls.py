"""The live calls: opened from a browser's offer, at most `server.max_sessions` at once.

Each call gets its own conversation (persona, history, avatar, VAD, LLM client) built
on the one shared stack, run on a worker of its own, and its own peer connection with exactly the configured ICE servers
(aiortc would otherwise use a public STUN server).
"""
from __future__ import annotations

import asyncio
import logging
import time

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from agent.conversation import Conversation
from agent.persona import Persona, load_persona, persona_ids
from agent.session import Stack, make_backend, make_conversation
from avatar_engine.reference import ReferenceImageError, load_reference
from config import Config
from transports.web.call import Call, CallError
from transports.web.memory import collect_after_call
from transports.web.recording import Recordings
from transports.web.shared_stack import SharedStack
from transports.web.video import VideoCodecError
from transports.web.worker import close_worker_stack, worker_stack

log = logging.getLogger(__name__)


class CallRefused(Exception):
    """An offer that gets no call: an HTTP status and one line for the page."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def peer_connection(ice_servers: tuple[str, ...]) -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in ice_servers]))


def conversation(stack: Stack, persona: Persona) -> Conversation:
    conv = make_conversation(stack, persona)
    # Silero compiles TorchScript on its first calls: here, not on the call's first ticks.
    conv.warm_up_listening()
    return conv


def checked_backend(cfg: Config, data: bytes, name: str):
    """An avatar backend rigged on an uploaded portrait: the engine's own checks (the
    file, the image, the face). Raises ReferenceImageError with one sentence."""
    image = load_reference(data, name=name)
    backend = make_backend(cfg)
    try:
        backend.reset(image)
    except ReferenceImageError as e:  # the face: the message does not know the file's name
        raise ReferenceImageError(f"'{name}': {e}") from None
    return backend


class Calls:
    def __init__(self, cfg: Config, shared: SharedStack, recordings: Recordings):
        self.cfg, self.shared, self.recordings = cfg, shared, recordings
        self.limit = cfg.server.max_sessions
        self._live: dict[Call, asyncio.Task] = {}
        self._opening = 0                      # slots held by offers being answered
        self._collecting: set[asyncio.Task] = set()   # at most one per ended call, seconds long

    @property
    def live(self) -> int:
        """Calls going on (their workers running, or closing)."""
        return len(self._live)

    async def open(self, sdp: str, kind: str, persona_id: str) -> tuple[str, RTCSessionDescription]:
        """Answer a browser's offer and start the call: (the call's id, the answer).
        Raises CallRefused."""
        stack = self.shared.stack
        if stack is None:
            raise CallRefused(503, self.shared.error or f"still getting ready ({self.shared.status}); try again soon")
        if len(self._live) + self._opening >= self.limit:
            who = "someone else" if self.limit == 1 else f"{self.limit} people"
            raise CallRefused(429, f"the avatar is already talking with {who}; try again in a moment")
        if persona_id not in persona_ids():
            raise CallRefused(400, f"no persona '{persona_id}' (available: {', '.join(persona_ids())})")
        self._opening += 1
        try:
            t = time.perf_counter()
            stack = worker_stack(stack, asyncio.get_running_loop())   # the call's worker uses it
            try:
                persona = load_persona(persona_id)
                conv = await asyncio.to_thread(conversation, stack, persona)
            except Exception as e:  # a broken persona file or picture: say which
                log.exception("building the conversation failed")
                await close_worker_stack(stack)
                raise CallRefused(500, f"could not start the avatar: {e}") from None
            call = Call(peer_connection(self.cfg.server.ice_servers), conv, stack, persona, self.cfg.avatar.size,
                        self.recordings, self.cfg.server.max_recording_s, self.cfg.server.video_codec)
            try:
                answer = await call.answer(sdp, kind)
            except Exception as e:  # the worker never started: close here what it would have
                await conv.close()
                await close_worker_stack(stack)
                await call.discard()
                if isinstance(e, (CallError, VideoCodecError)):  # already one sentence
                    raise CallRefused(400, str(e)) from None
                raise CallRefused(400, f"not a usable WebRTC offer: {e}") from None
        finally:
            self._opening -= 1
        log.info("call %d/%d with %s answered in %.2f s", len(self._live) + 1, self.limit, persona_id,
                 time.perf_counter() - t)
        task = call.start()
        self._live[call] = task
        task.add_done_callback(lambda _: self._ended(call))
        return call.id, answer

    def _ended(self, call: Call) -> None:
        self._live.pop(call, None)
        # Once this callback, which still holds the call, has returned.
        task = asyncio.get_running_loop().create_task(collect_after_call(), name="collect-after-call")
        self._collecting.add(task)
        task.add_done_callback(self._collecting.discard)

    async def use_portrait(self, call_id: str, data: bytes, name: str) -> None:
        """A new face for a live call, checked first; the call keeps its face if it
        fails. Raises CallRefused with the reason in one sentence."""
        call = next((c for c in self._live if c.id == call_id), None)
        if call is None:
            raise CallRefused(404, "no call to change the portrait of; press Start first")
        try:
            backend = await asyncio.to_thread(checked_backend, self.cfg, data, name)
        except ReferenceImageError as e:
            raise CallRefused(400, str(e)) from None
        call.use_backend(backend)

    async def close_all(self) -> None:
        tasks = list(self._live.values())
        for call in list(self._live):
            call.hang_up()
        await asyncio.gather(*tasks, return_exceptions=True)
