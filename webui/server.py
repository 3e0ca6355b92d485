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

from config import Config
from webui.calls import Calls
from webui.page import build_page
from webui.shared_stack import SharedStack
from webui.signaling import signaling_routes

STATIC = Path(__file__).with_name("static")


def build_app(cfg: Config) -> FastAPI:
    shared = SharedStack(cfg)
    calls = Calls(cfg, shared)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.create_task(shared.hold(), name="shared-stack")
        try:
            yield
        finally:
            await calls.close_all()
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)

    app = FastAPI(lifespan=lifespan)
    app.include_router(signaling_routes(calls, cfg.server.ice_servers))
    app.mount("/webui", StaticFiles(directory=STATIC), name="webui")
    return gr.mount_gradio_app(app, build_page(shared), path="/", ssr_mode=False, theme=gr.themes.Soft(), footer_links=[],
                               css_paths=[STATIC / "style.css"], head='<script src="webui/client.js"></script>')


def serve(cfg: Config) -> None:
    """Serve the web UI on server.host:server.port until interrupted."""
    print(f"web UI on http://{cfg.server.host}:{cfg.server.port}", flush=True)
    uvicorn.run(build_app(cfg), host=cfg.server.host, port=cfg.server.port, log_level="warning")
