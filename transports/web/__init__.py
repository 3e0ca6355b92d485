"""The web UI: a Gradio page where a person talks to a persona over WebRTC.

    from transports.web import serve
    serve(cfg)            # http(s)://server.host:server.port until interrupted

Modules: `server` (the app and its lifetime, HTTPS), `page` (the Gradio layout: the
Live and Two agents tabs), `signaling` (offers and answers, portraits, recordings over
HTTP), `calls` (the live calls, limited; portrait checks), `call` (one connection:
mic → conversation → avatar video and voice; Interrupt, Record), `recording` (MP4s made
in the page), `two_agents` (the Two agents tab's runs), `tracks` (the media as numpy), `transcript` (what the
page shows), `shared_stack` (the models, loaded once), `static/` (the page's script and
style).
"""
from transports.web.server import serve

__all__ = ["serve"]
