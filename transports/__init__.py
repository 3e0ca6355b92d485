"""The ways a conversation meets the world. Each drives the same `agent.conversation`
interface (`step(mic, played)`, `subscribe`, `interrupt`, `greet`, `close`) and nothing
inside it:

    web/          the web page: WebRTC calls (aiortc), the Gradio page, recordings, the
                  Two agents tab
    headless.py   a WAV file as the microphone → MP4 + JSON (`--headless`)
    two_agents.py two personas hearing each other → one side-by-side MP4 (`--two-agents`)
    booth.py      this machine's microphone and speaker, pages watch (`--local`)
"""
