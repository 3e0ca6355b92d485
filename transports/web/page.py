"""The Gradio page: persona picker, Start/Stop, the live avatar, state, transcript, latency.

Gradio lays the page out and reports model loading; the call itself (WebRTC, the
video element, the state badge, the transcript) lives in the browser, in
static/client.js, driven by the Start/Stop button and the call's data channel.
"""
from __future__ import annotations

import asyncio
import html

import gradio as gr

from agent.persona import load_persona, persona_ids
from transports.web.shared_stack import SharedStack

STATUS_POLL_S = 0.25

STAGE = """
<div id="stage" class="stage">
  <video id="avatar-video" autoplay playsinline></video>
  <div id="stage-hint" class="stage-hint">Press <b>Start</b> and say hello</div>
  <div id="call-state" class="call-state" data-state="idle">not connected</div>
  <div id="call-note" class="call-note"></div>
</div>
"""

CALL_TOOLS = """
<div class="call-tools">
  <button id="interrupt-button" class="tool" disabled title="stop the persona's reply">Interrupt</button>
  <label class="tool record"><input type="checkbox" id="record-switch" disabled> Record</label>
  <span id="recording-note" class="recording-note"></span>
</div>
<div class="portrait-tool">
  <label for="portrait-file">Your portrait</label>
  <input type="file" id="portrait-file" accept="image/*">
  <div id="portrait-note" class="portrait-note"></div>
</div>
"""

SETTINGS = """
<details class="settings" open>
  <summary>Settings</summary>
  <div class="setting"><span>Brain</span><span id="brain">{brain}</span></div>
  <div class="setting"><span>Microphone</span><meter id="mic-level" min="0" max="1" low="0.05" value="0"></meter></div>
</details>
"""

CONVERSATION = """
<div class="conversation">
  <div class="conversation-head"><span>Conversation</span><span id="latency-summary"></span></div>
  <ol id="transcript" class="transcript"><li class="empty">What you and the persona say appears here.</li></ol>
</div>
"""


BOOTH_STAGE = STAGE.replace("Press <b>Start</b> and say hello", "Press <b>Watch</b> to see the avatar") + \
    '<div id="booth-mode" hidden></div>'


def status_line(shared: SharedStack, booth: bool = False) -> str:
    if shared.error:
        return f"**Error:** {shared.error}"
    if shared.stack is None:
        return f"Getting ready: {shared.status}…"
    if booth:
        return ("Booth mode: talk to this machine's microphone, hear the persona from its speaker. "
                "Press **Watch** to see the avatar here.")
    return "Ready. Pick a persona, press **Start** and talk; speak over the persona to interrupt it."


TWO_STAGE = """
<div id="two-stage" class="stage two">
  <video id="two-video" autoplay playsinline></video>
  <div class="stage-hint">Pick two personas and a topic, and press <b>Start</b></div>
  <div id="two-state" class="call-state" data-state="idle">not started</div>
  <div id="two-note" class="call-note"></div>
</div>
"""

TWO_TOOLS = """
<div class="portrait-tool"><label for="two-image-a">Image for A</label><input type="file" id="two-image-a" accept="image/*"></div>
<div class="portrait-tool"><label for="two-image-b">Image for B</label><input type="file" id="two-image-b" accept="image/*"></div>
<div id="two-result" class="recording-note"></div>
"""

TWO_TRANSCRIPT = """
<div class="conversation">
  <div class="conversation-head"><span>Their conversation</span></div>
  <ol id="two-transcript" class="transcript short"><li class="empty">What they say appears here.</li></ol>
</div>
"""


def brain_line(cfg) -> str:
    """Which brain answers, in a few words (the settings panel)."""
    if cfg.agent.mode == "omni":
        return f"omni model {cfg.omni.model or '(unset)'} at {cfg.omni.base_url or '(unset)'}"
    where = "local llama.cpp" if cfg.llm.provider == "local" else cfg.llm.base_url
    return f"Whisper {cfg.asr.model} → {cfg.llm.model} ({where}) → Piper"


def build_page(shared: SharedStack, booth: bool = False) -> gr.Blocks:
    """The page; in `booth` mode it shows the local conversation and has no call tools."""
    personas = [(load_persona(p).name, p) for p in persona_ids()]
    default = shared.cfg.agent.persona

    async def watch_loading():
        """Stream the loading progress to this page until the models are ready."""
        shown = None
        while True:
            line = status_line(shared, booth)
            if line != shown:
                shown = line
                ready = shared.stack is not None
                yield line, gr.Button(interactive=ready), gr.Button(interactive=ready)
            if shared.settled:
                return
            await asyncio.sleep(STATUS_POLL_S)

    with gr.Blocks(title="Persona", analytics_enabled=False) as page:
        gr.HTML("<header class='title'><h1>Persona</h1><p>Talk to an AI face to face. "
                "Everything runs on this machine.</p></header>")
        with gr.Tabs():
            with gr.Tab("Live", elem_id="live-tab"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=5, min_width=360):
                        gr.HTML(BOOTH_STAGE if booth else STAGE)
                    with gr.Column(scale=4, min_width=320):
                        with gr.Row(elem_classes="controls"):
                            persona = gr.Dropdown(personas, value=default, label="Persona", scale=3,
                                                  elem_id="persona-picker", interactive=not booth)
                            button = gr.Button("Watch" if booth else "Start", variant="primary",
                                               elem_id="call-button", scale=1, interactive=False)
                        status = gr.Markdown(status_line(shared, booth), elem_id="status")
                        if not booth:
                            gr.HTML(CALL_TOOLS)
                        gr.HTML(CONVERSATION)
                        gr.HTML(SETTINGS.format(brain=html.escape(brain_line(shared.cfg))))
            with gr.Tab("Two agents", elem_id="two-agents-tab", visible=not booth):
                gr.HTML(TWO_STAGE)
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=320):
                        with gr.Row():
                            two_a = gr.Dropdown(personas, value=default, label="Persona A", elem_id="two-a")
                            two_b = gr.Dropdown(personas, value=next(p for _, p in personas if p != default),
                                                label="Persona B", elem_id="two-b")
                        topic = gr.Textbox(label="Topic", placeholder="the moon", elem_id="two-topic")
                        turns = gr.Slider(1, 12, value=4, step=1, label="Replies in all", elem_id="two-turns")
                        gr.HTML(TWO_TOOLS)
                        two_button = gr.Button("Start", variant="primary", elem_id="two-button", interactive=False)
                    with gr.Column(scale=1, min_width=320):
                        gr.HTML(TWO_TRANSCRIPT)
        button.click(None, inputs=[persona], js="(persona) => window.personaCall.toggle(persona)")
        two_button.click(None, inputs=[two_a, two_b, topic, turns],
                         js="(a, b, topic, turns) => window.personaTwoAgents.toggle(a, b, topic, turns)")
        page.load(watch_loading, outputs=[status, button, two_button], concurrency_limit=None, show_progress="hidden")
    return page
