"""A fake omni endpoint: a real HTTP server on 127.0.0.1 that streams the documented
OpenAI-compatible chunk shapes, so the omni client is tested over real sockets with the
same code that talks to the hosted services.

The request's `model` picks the scenario:

    audio       transcript + base64 PCM16 audio deltas (split at odd byte counts),
                a finish chunk, a usage-only chunk with no choices, [DONE]
    wav         as audio, but the first delta starts with a RIFF header at WAV_RATE
    wavs        every delta is a little WAV file at WAV_RATE
    text        plain `delta.content` deltas only
    extras      as audio, plus unknown fields everywhere and garbage events in between
    cut         half the audio, then the connection dies mid-body (incomplete chunked read)
    eof         half the audio, then a clean end of body without finish_reason or [DONE]
    midstream   one audio delta, then an error object inside the stream
    slow        audio deltas every 20 ms for up to 30 s; notes when the client disconnects
    stall       headers and one delta, then nothing
    ping        headers and one delta, then only keep-alive comments
    silent      reads the request, never answers
    auth        401 unless the key is GOOD_KEY, else as audio
    429         always 429 (with Retry-After)
    429x2       429 twice (per server), then as audio
    500         an internal server error
    anything else: 404 "model not found", as OpenAI answers it
"""
from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

RATE = 24000
WAV_RATE = 16000
GOOD_KEY = "test-key-123"
TRANSCRIPT = ["Hello", "! I am", " a fake", " omni model."]
TEXT = ["Hi", " there.", " How can", " I help?"]
RETRY_AFTER_S = 0.05
# Odd sizes on purpose: deltas must be joined at byte, not sample, boundaries.
DELTA_BYTES = 1001


def reply_pcm(seconds: float = 0.5, rate: int = RATE) -> np.ndarray:
    """The int16 speech every audio scenario streams: a 440 Hz tone with a rising envelope."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t) * np.linspace(0.2, 1.0, t.size) * 32767).astype(np.int16)


def wav_header(rate: int, n_bytes: int) -> bytes:
    return (b"RIFF" + struct.pack("<I", 36 + n_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", n_bytes))


class FakeOmniServer:
    def __init__(self):
        self.requests: list[dict] = []       # {"path", "headers", "body"} per request
        self.counts: Counter[str] = Counter()
        self.disconnected = threading.Event()  # a client went away mid-stream
        self.disconnected_at: float | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-omni", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOmniServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()  # wakes handlers that sleep (stall, silent, slow)
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.counts.clear()
        self.disconnected.clear()
        self.disconnected_at = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked bodies, like vLLM and the hosted services

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        fake: FakeOmniServer = self.server.fake
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        model = str(body.get("model", ""))
        with fake._lock:
            fake.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
            fake.counts[model] += 1
            count = fake.counts[model]
        if model == "auth":
            if self.headers.get("Authorization") != f"Bearer {GOOD_KEY}":
                return self._error(401, "Incorrect API key provided.", "invalid_api_key")
            model = "audio"
        if model == "429" or (model == "429x2" and count <= 2):
            return self._error(429, "Rate limit reached, slow down.", "rate_limit_exceeded",
                               {"Retry-After": str(RETRY_AFTER_S)})
        if model == "500":
            return self._error(500, "The server had an error while processing your request.", None)
        if model == "silent":
            fake._stopping.wait(30)
            self.close_connection = True
            return
        scenario = STREAMS.get("audio" if model == "429x2" else model)
        if scenario is None:
            return self._error(404, f"The model `{model}` does not exist.", "model_not_found")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            getattr(self, scenario)(fake)
        except (BrokenPipeError, ConnectionResetError):
            fake.disconnected_at = time.monotonic()
            fake.disconnected.set()
            self.close_connection = True

    # ── the scenarios ──

    def _audio(self, fake, extras: bool = False) -> None:
        pcm = reply_pcm().tobytes()
        self._event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]})
        for i, start in enumerate(range(0, len(pcm), DELTA_BYTES)):
            if i < len(TRANSCRIPT):
                self._event(self._chunk({"audio": {"transcript": TRANSCRIPT[i]}}))
            if extras:
                self._garbage(i)
            audio = {"id": "audio_1", "data": _b64(pcm[start:start + DELTA_BYTES]), "expires_at": 1}
            self._event(self._chunk({"audio": audio}, extras=extras))
        self._finish()

    def _extras(self, fake) -> None:
        self._audio(fake, extras=True)

    def _wav(self, fake) -> None:
        pcm = reply_pcm(rate=WAV_RATE).tobytes()
        first = wav_header(WAV_RATE, len(pcm)) + pcm[:DELTA_BYTES]
        self._event(self._chunk({"audio": {"data": _b64(first)}}))
        for start in range(DELTA_BYTES, len(pcm), DELTA_BYTES):
            self._event(self._chunk({"audio": {"data": _b64(pcm[start:start + DELTA_BYTES])}}))
        self._finish()

    def _wavs(self, fake) -> None:
        pcm = reply_pcm(rate=WAV_RATE).tobytes()
        for start in range(0, len(pcm), 2 * DELTA_BYTES):  # whole samples per little file
            piece = pcm[start:start + 2 * DELTA_BYTES]
            self._event(self._chunk({"audio": {"data": _b64(wav_header(WAV_RATE, len(piece)) + piece)}}))
        self._finish()

    def _text(self, fake) -> None:
        for piece in TEXT:
            self._event(self._chunk({"content": piece}))
        self._finish()

    def _cut(self, fake, clean_end: bool = False) -> None:
        pcm = reply_pcm().tobytes()
        for start in range(0, len(pcm) // 2, DELTA_BYTES):
            self._event(self._chunk({"audio": {"data": _b64(pcm[start:start + DELTA_BYTES])}}))
        if clean_end:
            self._write(b"0\r\n\r\n")  # the body ends properly, the reply does not
        else:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def _eof(self, fake) -> None:
        self._cut(fake, clean_end=True)

    def _error(self, status: int, message: str, code: str | None, headers: dict | None = None) -> None:
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                     "param": None, "code": code}}).encode()
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _midstream(self, fake) -> None:
        self._event(self._chunk({"audio": {"data": _b64(reply_pcm().tobytes()[:DELTA_BYTES])}}))
        self._event({"error": {"message": "Model overloaded, try later", "code": "overloaded"}})
        self._done()

    def _slow(self, fake) -> None:
        pcm = reply_pcm(1.0).tobytes()
        end = time.monotonic() + 30
        while time.monotonic() < end and not fake._stopping.is_set():
            self._event(self._chunk({"audio": {"data": _b64(pcm[:960])}}))
            time.sleep(0.02)
        self._finish()

    def _ping(self, fake) -> None:
        self._event(self._chunk({"audio": {"data": _b64(reply_pcm().tobytes()[:DELTA_BYTES])}}))
        end = time.monotonic() + 30
        while time.monotonic() < end and not fake._stopping.wait(0.1):
            self._write(b": keep-alive\n\n")
        self.close_connection = True

    def _stall(self, fake) -> None:
        self._event(self._chunk({"audio": {"data": _b64(reply_pcm().tobytes()[:DELTA_BYTES])}}))
        fake._stopping.wait(30)
        self.close_connection = True

    # ── SSE framing ──

    def _chunk(self, delta: dict, extras: bool = False, finish: str | None = None) -> dict:
        chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": "fake",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if extras:  # fields no spec names: vendors add their own
            chunk["x_vendor_trace"] = {"shard": 7}
            chunk["choices"][0]["logprobs"] = None
            chunk["choices"][0]["x_score"] = 0.5
            delta["reasoning_content"] = ""
            if "audio" in delta:
                delta["audio"]["x_codec"] = "pcm16"
        return chunk

    def _garbage(self, i: int) -> None:
        kinds = [
            b"data: {not json\n\n",
            b": keep-alive comment\n\n",
            b"event: ping\ndata: [1, 2, 3]\n\n",
            b'data: {"choices": "not a list"}\n\n',
            b'data: {"choices": [{"delta": "not a dict"}]}\n\n',
            b'data: {"choices": [{"delta": {"audio": {"data": "%%% not base64 %%%"}}}]}\n\n',
            b'data: {"choices": [{"delta": {"audio": "not a dict", "content": 42}}]}\n\n',
            b"id: 17\nretry: 1000\n\n",
        ]
        self._write(kinds[i % len(kinds)])

    def _finish(self) -> None:
        self._event(self._chunk({}, finish="stop"))
        self._event({"id": "chatcmpl-fake", "choices": [],
                     "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}})
        self._done()

    def _done(self) -> None:
        self._write(b"data: [DONE]\n\n")
        self._write(b"0\r\n\r\n")

    def _event(self, obj) -> None:
        self._write(b"data: " + json.dumps(obj).encode() + b"\n\n")

    def _write(self, payload: bytes) -> None:
        if payload == b"0\r\n\r\n":
            self.wfile.write(payload)
        else:
            self.wfile.write(f"{len(payload):X}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()


STREAMS = {name: f"_{name}" for name in ("audio", "wav", "wavs", "text", "extras", "cut", "eof", "midstream", "slow", "stall", "ping")}


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")
