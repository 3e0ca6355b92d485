"""The HTTP half of the page: WebRTC offers and answers, portraits, recordings.

    GET  /webrtc/config              {"iceServers": [...]}      the same servers as the server side
    POST /webrtc/offer               {"sdp", "type", "persona"}  →  {"sdp", "type", "call"}  or  {"error": one line}
    POST /webrtc/two-agents          {"sdp", "type", "a", "b", "topic", "turns", "images"}  →  {"sdp", "type"}
    POST /webrtc/watch               {"sdp", "type"}  →  {"sdp", "type"}     booth mode: the avatar, receive only
    POST /webrtc/portrait/<call>     the image file as the body, X-Filename: its name  →  {} or {"error": one line}
    GET  /recordings/<token>.mp4     a finished recording (.json: its transcript)
    GET  /webrtc/stats               {"calls", "tasks", "threads", "rss_mb"}   from this machine only:
                                     what the server holds (tests and bench/web_soak.py watch it)
"""
from __future__ import annotations

import asyncio
import os
import threading
from typing import Literal
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from avatar_engine.reference import MAX_FILE_MB
from transports.booth import Booth
from transports.web.calls import CallRefused, Calls
from transports.web.recording import Recordings
from transports.web.two_agents import TwoAgents
from transports.web.video import VideoCodecError


class Offer(BaseModel):
    sdp: str
    type: Literal["offer"]
    persona: str


class WatchOffer(BaseModel):
    sdp: str
    type: Literal["offer"]


class Upload(BaseModel):
    name: str
    data: str                      # base64


class TwoAgentsOffer(WatchOffer):
    a: str
    b: str
    topic: str = ""
    turns: int = 4
    images: dict[Literal["a", "b"], Upload] = {}


LOOPBACK = ("127.0.0.1", "::1")


def rss_mb() -> float:
    """This process's resident memory."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def refused(e: CallRefused) -> JSONResponse:
    return JSONResponse({"error": e.message}, status_code=e.status)


async def read_upload(request: Request) -> tuple[bytes, str]:
    """The body of an upload and its file name, refused past MAX_FILE_MB before it is all
    read (a browser sends Content-Length; the count also stops one that lies)."""
    name = unquote(request.headers.get("x-filename", "")) or "the upload"
    limit = MAX_FILE_MB * 2**20
    too_big = CallRefused(413, f"'{name}' is larger than {MAX_FILE_MB} MB; use a smaller photo")
    if int(request.headers.get("content-length") or 0) > limit:
        raise too_big
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise too_big
    return bytes(data), name


def signaling_routes(calls: Calls, two_agents: TwoAgents, recordings: Recordings, ice_servers: tuple[str, ...],
                     booth: Booth | None = None) -> APIRouter:
    router = APIRouter()

    @router.get("/webrtc/config")
    def config() -> dict:
        return {"iceServers": [{"urls": url} for url in ice_servers]}

    @router.get("/webrtc/stats")
    async def stats(request: Request):
        if request.client is None or request.client.host not in LOOPBACK:
            return JSONResponse({"error": "only from this machine"}, status_code=403)
        return {"calls": calls.live, "tasks": len(asyncio.all_tasks()), "threads": threading.active_count(),
                "rss_mb": round(rss_mb(), 1)}

    @router.post("/webrtc/offer")
    async def offer(offer: Offer):
        try:
            call_id, answer = await calls.open(offer.sdp, offer.type, offer.persona)
        except CallRefused as e:
            return refused(e)
        return {"sdp": answer.sdp, "type": answer.type, "call": call_id}

    @router.post("/webrtc/two-agents")
    async def two(offer: TwoAgentsOffer):
        images = {seat: (up.name, up.data) for seat, up in offer.images.items()}
        try:
            answer = await two_agents.open(offer.sdp, offer.type, offer.a, offer.b, offer.topic.strip(),
                                           offer.turns, images)
        except CallRefused as e:
            return refused(e)
        return {"sdp": answer.sdp, "type": answer.type}

    @router.post("/webrtc/watch")
    async def watch(offer: WatchOffer):
        if booth is None:
            return JSONResponse({"error": "not in booth mode (python app.py --local)"}, status_code=404)
        if booth.error:
            return JSONResponse({"error": booth.error}, status_code=503)
        if booth.conv is None:
            return JSONResponse({"error": "still getting ready; try again soon"}, status_code=503)
        try:
            answer = await booth.watch(offer.sdp, offer.type)
        except VideoCodecError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        return {"sdp": answer.sdp, "type": answer.type}

    @router.post("/webrtc/portrait/{call_id}")
    async def portrait(call_id: str, request: Request):
        try:
            data, name = await read_upload(request)
            await calls.use_portrait(call_id, data, name)
        except CallRefused as e:
            return refused(e)
        return {}

    @router.get("/recordings/{token}.{suffix}")
    def recording(token: str, suffix: str):
        path = recordings.path(token, f".{suffix}")
        if path is None:
            return JSONResponse({"error": "no such recording (only the newest few are kept)"}, status_code=404)
        kind = "video/mp4" if suffix == "mp4" else "application/json"
        return FileResponse(path, media_type=kind, filename=f"persona-{token}.{suffix}")

    return router
