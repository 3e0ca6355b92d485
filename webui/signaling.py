"""The HTTP half of WebRTC: the browser posts its offer and gets the server's answer.

    GET  /webrtc/config   {"iceServers": [...]}            the same servers as the server side
    POST /webrtc/offer    {"sdp", "type", "persona"}  →  {"sdp", "type"}  or  {"error": one line}
"""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from webui.calls import CallRefused, Calls


class Offer(BaseModel):
    sdp: str
    type: Literal["offer"]
    persona: str


def signaling_routes(calls: Calls, ice_servers: tuple[str, ...]) -> APIRouter:
    router = APIRouter(prefix="/webrtc")

    @router.get("/config")
    def config() -> dict:
        return {"iceServers": [{"urls": url} for url in ice_servers]}

    @router.post("/offer")
    async def offer(offer: Offer):
        try:
            answer = await calls.open(offer.sdp, offer.type, offer.persona)
        except CallRefused as e:
            return JSONResponse({"error": e.message}, status_code=e.status)
        return {"sdp": answer.sdp, "type": answer.type}

    return router
