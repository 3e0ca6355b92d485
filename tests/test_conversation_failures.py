"""A failing brain never ends the conversation: the user hears a short apology, the
avatar goes back to listening, and the next turn works. Omni mode against a real local
HTTP server that speaks the documented protocol (tests/omni_server.py)."""
import asyncio
import dataclasses
import socket

import pytest

from agent.conversation import APOLOGY, State
from agent.omni import OmniClient
from agent.persona import load_persona
from agent.session import Stack, make_conversation
from speech.synthetic import Cue, ScriptedUser
from transports.headless import run_conversation
from omni_server import GOOD_KEY, FakeOmniServer

KEY_ENV = "TEST_OMNI_KEY"


@pytest.fixture(scope="module")
def server():
    with FakeOmniServer() as s:
        yield s


def omni_cfg(cfg, base_url, model, **omni):
    o = dataclasses.replace(cfg.omni, base_url=base_url, model=model, api_key_env=KEY_ENV,
                            timeout_s=omni.pop("timeout_s", 2.0), max_retries=omni.pop("max_retries", 1), **omni)
    return dataclasses.replace(cfg, omni=o, agent=dataclasses.replace(cfg.agent, mode="omni"))


def converse(cfg, asr, tts, lines):
    async def main():
        omni = OmniClient(cfg.omni)
        try:
            stack = Stack(cfg, asr, tts, omni=omni)
            conv = make_conversation(stack, load_persona("ada"))
            user = ScriptedUser(tts, [Cue(text, "after", 0.3) for text in lines])
            await asyncio.wait_for(run_conversation(conv, user, None, fast=True, max_s=60), timeout=120)
            return conv
        finally:
            await omni.close()
    return asyncio.run(main())


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: connections are refused


@pytest.mark.parametrize("model, key, expect", [
    ("auth", None, KEY_ENV),          # 401: names the env var to set
    ("500", GOOD_KEY, "500"),
    ("cut", GOOD_KEY, "broke off"),   # the stream dies mid-reply
    ("stall", GOOD_KEY, "stalled"),
    ("midstream", GOOD_KEY, ""),      # an error object inside the stream
    ("dead", GOOD_KEY, "refused"),
])
def test_failures_become_a_spoken_apology(cfg, asr, tts, server, monkeypatch, model, key, expect):
    server.reset()
    if key:
        monkeypatch.setenv(KEY_ENV, key)
    else:
        monkeypatch.delenv(KEY_ENV, raising=False)
    base = f"http://127.0.0.1:{dead_port()}/v1" if model == "dead" else server.base_url
    conv = converse(omni_cfg(cfg, base, model), asr, tts, ["Hello, can you hear me?"])
    (turn,) = conv.turns
    assert turn.failure and expect.lower() in turn.failure.lower(), turn.failure
    assert APOLOGY in turn.agent_text                # the user heard the apology
    assert turn.first_frame_at is not None and conv.state == State.LISTENING
    assert turn.user_text                            # the question itself is kept


def test_the_conversation_goes_on_after_a_failure(cfg, asr, tts, server, monkeypatch):
    server.reset()
    monkeypatch.setenv(KEY_ENV, GOOD_KEY)
    # 429 twice: the first turn fails after its one retry, the second gets the reply
    conv = converse(omni_cfg(cfg, server.base_url, "429x2"), asr, tts,
                    ["Hello, can you hear me?", "Tell me something nice."])
    first, second = conv.turns
    assert first.failure and "429" in first.failure or "rate" in (first.failure or "").lower()
    assert second.failure is None and second.first_frame_at is not None
    assert second.reply_text  # the fake model's transcript
    assert [t.role for t in conv.history.turns][-2:] == ["user", "agent"]
