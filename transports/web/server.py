"""The web app: the Gradio page, the signaling routes and the page's script on one
FastAPI app, and the lifetime of what they share (the models, the live calls)."""
from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import gradio as gr
import uvicorn
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from config import Config, tls_files
from transports.booth import Booth
from transports.web.calls import Calls, peer_connection
from transports.web.page import build_page
from transports.web.recording import Recordings
from transports.web.shared_stack import SharedStack
from transports.web.signaling import signaling_routes
from transports.web.two_agents import TwoAgents

STATIC = Path(__file__).with_name("static")


def build_app(cfg: Config, booth: tuple | None = None) -> FastAPI:
    """The app; with `booth` (a speech.devices Microphone and Speaker), one conversation
    runs on them and pages only watch."""
    shared = SharedStack(cfg)
    recordings = Recordings()
    calls = Calls(cfg, shared, recordings)
    two_agents = TwoAgents(shared, recordings)
    local = Booth(cfg, shared, lambda: peer_connection(cfg.server.ice_servers), *booth) if booth else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.create_task(shared.hold(), name="shared-stack")
        booth_task = asyncio.create_task(local.run(), name="booth") if local else None
        try:
            yield
        finally:
            await calls.close_all()
            await two_agents.close()
            if local is not None:
                booth_task.cancel()
                await asyncio.gather(booth_task, return_exceptions=True)
                await local.close()
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            recordings.close()

    app = FastAPI(lifespan=lifespan)
    app.include_router(signaling_routes(calls, two_agents, recordings, cfg.server.ice_servers, local))
    app.mount("/webui", StaticFiles(directory=STATIC), name="webui")
    return gr.mount_gradio_app(app, build_page(shared, booth=local is not None), path="/", ssr_mode=False, theme=gr.themes.Soft(), footer_links=[],
                               css_paths=[STATIC / "style.css"], head='<script src="webui/client.js"></script>')


def serve(cfg: Config, booth: tuple | None = None) -> None:
    """Serve the web UI on server.host:server.port until interrupted (`booth`: see build_app)."""
    tls = tls_files(cfg.server)  # checked again: serve() may be called without app.py
    app = build_app(cfg, booth)
    scheme = "https" if tls else "http"
    print(f"web UI on {scheme}://{cfg.server.host}:{cfg.server.port}", flush=True)
    if not tls and cfg.server.host not in ("127.0.0.1", "localhost", "::1"):
        print("note: browsers on other machines open the microphone only over HTTPS: add --cert and --key",
              flush=True)
    uvicorn.run(app, host=cfg.server.host, port=cfg.server.port, log_level="warning", **tls)
