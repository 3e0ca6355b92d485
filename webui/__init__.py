"""The web UI: a Gradio page where a person talks to a persona over WebRTC.

    from webui import serve
    serve(cfg)            # http://server.host:server.port until interrupted

Modules: `server` (the app and its lifetime), `page` (the Gradio layout), `signaling`
(offer/answer over HTTP), `calls` (the live calls, limited), `call` (one connection:
mic → conversation → avatar video and voice), `tracks` (the media as numpy),
`transcript` (what the page shows), `shared_stack` (the models, loaded once),
`static/` (the page's script and style).
"""
from webui.server import serve

__all__ = ["serve"]
