"""The omni client over real HTTP against tests/omni_server.py: every chunk shape and failure."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import socket
import time
import wave

import numpy as np
import pytest

from agent.events import (AudioDelta, FailureKind, ReplyDone, ReplyFailed, TextDelta,
                          TranscriptDelta)
from agent.history import History
from agent.omni import OmniClient, PCM16Decoder
from agent.persona import load_persona
from tests.omni_server import (DELTA_BYTES, GOOD_KEY, RATE, TEXT, TRANSCRIPT, WAV_RATE,
                               FakeOmniServer, reply_pcm)

KEY_ENV = "OMNI_TEST_KEY"
USER_RATE = 16000


@pytest.fixture(scope="module")
def server():
    with FakeOmniServer() as s:
        yield s


@pytest.fixture
def fake(server, monkeypatch):
    server.reset()
    monkeypatch.setenv(KEY_ENV, GOOD_KEY)
    return server


def omni_client(cfg, fake, model: str, **omni) -> OmniClient:
    settings = dict(base_url=fake.base_url, model=model, api_key_env=KEY_ENV, timeout_s=2.0, max_retries=3)
    return OmniClient(cfg.omni.__class__(**{**settings, **omni}))


def user_audio(seconds: float = 0.4) -> np.ndarray:
    t = np.arange(int(seconds * USER_RATE)) / USER_RATE
    return (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def run_reply(cfg, fake, model: str, **omni) -> list:
    async def main():
        async with omni_client(cfg, fake, model, **omni) as client:
            history = History(8, 1024)
            history.add_user("Hi")
            history.add_agent("Hello! What shall we", interrupted=True)
            ada = load_persona("ada")
            return [e async for e in client.reply(user_audio(), USER_RATE, ada, history, voice=ada.omni_voice)]
    return asyncio.run(asyncio.wait_for(main(), 20))


def joined_audio(events) -> np.ndarray:
    chunks = [e.samples for e in events if isinstance(e, AudioDelta)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def assert_same_audio(got: np.ndarray, pcm: np.ndarray) -> None:
    assert got.dtype == np.float32 and got.size == pcm.size
    np.testing.assert_allclose(got, pcm / 32768.0, atol=1e-6)


def test_audio_and_transcript_stream_as_they_arrive(cfg, fake):
    events = run_reply(cfg, fake, "audio")
    assert_same_audio(joined_audio(events), reply_pcm())
    assert {e.sample_rate for e in events if isinstance(e, AudioDelta)} == {RATE}
    assert [e.text for e in events if isinstance(e, TranscriptDelta)] == TRANSCRIPT
    # Streamed, not buffered: the first audio comes long before the last transcript piece.
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("AudioDelta") < len(kinds) // 4
    assert events[-1] == ReplyDone("".join(TRANSCRIPT), "stop")


def test_request_follows_the_omni_convention(cfg, fake):
    run_reply(cfg, fake, "audio", voice="Ethan", audio_format="pcm16")
    (req,) = fake.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["authorization"] == f"Bearer {GOOD_KEY}"
    body = req["body"]
    assert body["stream"] is True and body["modalities"] == ["text", "audio"]
    assert body["audio"] == {"voice": "Ethan", "format": "pcm16"}
    system, *examples, heard, interrupted, user = body["messages"]
    assert system == {"role": "system", "content": load_persona("ada").system_prompt}
    assert heard == {"role": "user", "content": "Hi"}
    assert interrupted == {"role": "assistant", "content": "Hello! What shall we…"}  # cut off: what was heard, no marker
    (part,) = user["content"]
    assert part["type"] == "input_audio" and part["input_audio"]["format"] == "wav"
    with wave.open(io.BytesIO(base64.b64decode(part["input_audio"]["data"]))) as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (USER_RATE, 1, user_audio().size)


def test_persona_voice_unless_the_config_pins_one(cfg, fake):
    async def voice_sent(config_voice: str, persona_voice: str | None) -> str | None:
        async with omni_client(cfg, fake, "text", voice=config_voice) as client:
            fake.reset()
            events = [e async for e in client.reply(user_audio(), USER_RATE, load_persona("juno"), History(8, 1024),
                                                    voice=persona_voice)]
            return fake.requests[0]["body"]["audio"]["voice"] if fake.requests else events[-1].message

    async def main():
        return [await voice_sent("", "Aiden"), await voice_sent("alloy", "Aiden"), await voice_sent("", None)]
    assert asyncio.run(main()) == [
        "Aiden", "alloy", "omni: no voice: set omni.voice in config.yaml or voice.omni in prompts/juno.yaml"]


def test_dashscope_style_data_url_input(cfg, fake):
    run_reply(cfg, fake, "audio", input_audio="data_url")
    data = fake.requests[0]["body"]["messages"][-1]["content"][0]["input_audio"]["data"]
    assert data.startswith("data:audio/wav;base64,")
    assert base64.b64decode(data.split(",", 1)[1])[:4] == b"RIFF"


def test_text_only_deltas(cfg, fake):
    events = run_reply(cfg, fake, "text")
    assert [e.text for e in events if isinstance(e, TextDelta)] == TEXT
    assert not any(isinstance(e, AudioDelta) for e in events)
    assert events[-1] == ReplyDone("".join(TEXT), "stop")


@pytest.mark.parametrize("model", ["wav", "wavs"])
def test_wav_headers_in_deltas_set_the_rate(cfg, fake, model):
    events = run_reply(cfg, fake, model)
    assert_same_audio(joined_audio(events), reply_pcm(rate=WAV_RATE))
    assert {e.sample_rate for e in events if isinstance(e, AudioDelta)} == {WAV_RATE}


def test_unknown_fields_and_garbage_chunks_do_not_break_the_reply(cfg, fake):
    events = run_reply(cfg, fake, "extras")
    # Every real delta survives; every garbage event is skipped.
    assert_same_audio(joined_audio(events), reply_pcm())
    assert [e.text for e in events if isinstance(e, TranscriptDelta)] == TRANSCRIPT
    assert not any(isinstance(e, TextDelta) for e in events)
    assert isinstance(events[-1], ReplyDone)


@pytest.mark.parametrize("model", ["cut", "eof"])
def test_stream_cut_mid_reply_keeps_partial_audio_then_fails(cfg, fake, model):
    events = run_reply(cfg, fake, model)
    sent = len(range(0, reply_pcm().nbytes // 2, DELTA_BYTES)) * DELTA_BYTES // 2
    assert joined_audio(events).size == sent
    assert isinstance(events[-1], ReplyFailed) and events[-1].kind == FailureKind.STREAM_CUT
    assert "mid-reply" in events[-1].message or "before the reply" in events[-1].message
    assert sum(isinstance(e, (ReplyDone, ReplyFailed)) for e in events) == 1


def test_error_object_inside_the_stream(cfg, fake):
    events = run_reply(cfg, fake, "midstream")
    assert joined_audio(events).size == DELTA_BYTES // 2
    assert events[-1].kind == FailureKind.SERVER and "Model overloaded" in events[-1].message


def test_missing_key_names_the_env_var(cfg, fake, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    (event,) = run_reply(cfg, fake, "auth")
    assert event.kind == FailureKind.AUTH
    assert event.message == f"omni: no API key: set the environment variable {KEY_ENV}"


def test_rejected_key_names_the_env_var_and_hides_the_key(cfg, fake, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-wrong-secret-value")
    (event,) = run_reply(cfg, fake, "auth")
    assert event.kind == FailureKind.AUTH
    assert KEY_ENV in event.message and "rejected" in event.message and "401" in event.message
    assert "sk-wrong" not in event.message and "\n" not in event.message


def test_valid_key_gets_the_reply(cfg, fake):
    assert isinstance(run_reply(cfg, fake, "auth")[-1], ReplyDone)


def test_429_is_retried_with_backoff_then_succeeds(cfg, fake):
    t = time.monotonic()
    events = run_reply(cfg, fake, "429x2")
    assert isinstance(events[-1], ReplyDone)
    assert_same_audio(joined_audio(events), reply_pcm())
    assert fake.counts["429x2"] == 3
    assert time.monotonic() - t >= 2 * 0.05  # waited Retry-After twice


def test_429_retries_are_bounded(cfg, fake):
    (event,) = run_reply(cfg, fake, "429", max_retries=2)
    assert event.kind == FailureKind.RATE_LIMIT and "429" in event.message
    assert fake.counts["429"] == 3  # the first try + 2 retries


def test_500_fails_at_once_without_retry(cfg, fake):
    (event,) = run_reply(cfg, fake, "500")
    assert event.kind == FailureKind.SERVER and "500" in event.message
    assert fake.counts["500"] == 1


def test_unknown_model_is_a_request_error(cfg, fake):
    (event,) = run_reply(cfg, fake, "no-such-model")
    assert event.kind == FailureKind.REQUEST
    assert "404" in event.message and "does not exist" in event.message


def test_connection_refused_fails_fast(cfg, fake):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = time.monotonic()
    (event,) = run_reply(cfg, fake, "audio", base_url=f"http://127.0.0.1:{port}/v1")
    assert event.kind == FailureKind.CONNECTION and "connection refused" in event.message
    assert time.monotonic() - t < 2.0


@pytest.mark.parametrize("model", ["silent", "stall", "ping"])
def test_no_answer_or_stalled_stream_times_out(cfg, fake, model):
    t = time.monotonic()
    events = run_reply(cfg, fake, model, timeout_s=0.5)
    assert events[-1].kind == FailureKind.TIMEOUT
    assert time.monotonic() - t < 0.5 + 1.5  # httpx's timeout, or our backstop a second later


def test_cancelling_the_consumer_closes_the_http_request(cfg, fake):
    async def main():
        async with omni_client(cfg, fake, "slow") as client:
            got = []
            enough = asyncio.Event()

            async def consume():
                async for event in client.reply(user_audio(), USER_RATE, load_persona("ada"), History(8, 1024), voice="Chelsie"):
                    got.append(event)
                    if len(got) == 3:
                        enough.set()
            task = asyncio.create_task(consume())
            await asyncio.wait_for(enough.wait(), 5)
            task.cancel()
            cancelled_at = time.monotonic()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert await asyncio.to_thread(fake.disconnected.wait, 2.0), "the server never saw the disconnect"
            return fake.disconnected_at - cancelled_at
    assert asyncio.run(main()) < 0.5


def test_closing_the_stream_early_closes_the_http_request(cfg, fake):
    async def main():
        async with omni_client(cfg, fake, "slow") as client:
            events = client.reply(user_audio(), USER_RATE, load_persona("ada"), History(8, 1024), voice="Chelsie")
            async with contextlib.aclosing(events):
                async for event in events:
                    if isinstance(event, AudioDelta):
                        break
            return await asyncio.to_thread(fake.disconnected.wait, 2.0)
    assert asyncio.run(main())


def test_pcm_decoder_carries_odd_bytes_across_deltas():
    pcm = reply_pcm(0.01).tobytes()
    decoder = PCM16Decoder(RATE)
    pieces = [pcm[:1], pcm[1:4], pcm[4:5], pcm[5:]]
    got = np.concatenate([decoder.feed(base64.b64encode(p).decode()) for p in pieces])
    assert_same_audio(got, reply_pcm(0.01))
    assert decoder.feed("%%%").size == 0  # not base64: skipped, state intact
