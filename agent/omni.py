"""Omni client: the user's turn as audio in, the agent's speech streamed out.

One client for every OpenAI-compatible omni endpoint; switching between Qwen3-Omni
(DashScope compatible mode, or a vLLM server) and OpenAI audio models is config only
(`omni.base_url`, `model`, `voice`, `audio_format`, `output_sample_rate`,
`api_key_env`, `input_audio`). The request follows the convention in DESIGN.md:

    messages[-1].content = [{"type": "input_audio", "input_audio": {"data": ..., "format": "wav"}}]
    modalities=["text", "audio"], audio={"voice": ..., "format": ...}, stream=True

and each streamed chunk may carry `delta.audio.data` (base64 PCM16),
`delta.audio.transcript`, and/or `delta.content`; anything else is ignored.

The `omni:` section per vendor (only config changes; the key stays in the environment):

    Qwen3-Omni, DashScope:  base_url: https://dashscope-intl.aliyuncs.com/compatible-mode/v1
                            model: qwen3-omni-flash, input_audio: data_url, voice: Cherry
                            api_key_env: DASHSCOPE_API_KEY
    Qwen3-Omni, vLLM:       base_url: http://<host>:8000/v1, model: Qwen/Qwen3-Omni-30B-A3B-Instruct
                            (persona voices Chelsie/Ethan/Aiden are this model's speakers)
    OpenAI:                 base_url: https://api.openai.com/v1, model: gpt-4o-audio-preview,
                            voice: alloy, audio_format: pcm16 (streaming needs pcm16),
                            api_key_env: OPENAI_API_KEY

    async with contextlib.aclosing(omni.reply(audio, 16000, persona, history)) as events:
        async for event in events:
            match event:
                case AudioDelta(samples, rate): ...      # to the avatar's talk stream
                case TranscriptDelta(text): ...
                case ReplyDone(text) | ReplyFailed(): ...
"""
from __future__ import annotations

import base64
import binascii
import logging
import struct
from collections.abc import AsyncIterator

import numpy as np

from config import ConfigError, OmniConfig
from speech.audio import wav_bytes
from agent.events import (AudioDelta, FailureKind, LLMError, ReplyDone, ReplyEvent, ReplyFailed, TextDelta,
                          TranscriptDelta)
from agent.history import History
from agent.persona import Persona
from agent.streaming import Endpoint, first_choice, mapping_at, string_at

log = logging.getLogger(__name__)


class OmniClient:
    def __init__(self, cfg: OmniConfig):
        if not cfg.base_url or not cfg.model:
            raise ConfigError("agent.mode omni needs omni.base_url and omni.model in config.yaml")
        self.cfg = cfg
        self.endpoint = Endpoint("omni", cfg.base_url, cfg.api_key_env,
                                 timeout_s=cfg.timeout_s, max_retries=cfg.max_retries)

    async def close(self) -> None:
        await self.endpoint.close()

    async def __aenter__(self) -> OmniClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def reply(self, audio: np.ndarray, sample_rate: int, persona: Persona, history: History, *,
                    text: str | None = None, voice: str | None = None) -> AsyncIterator[ReplyEvent]:
        """Stream the agent's reply to one user turn (`audio`: mono float32).

        `text` adds an instruction next to the audio (e.g. the topic in two-agent mode);
        `voice` is the persona's voice, used unless `omni.voice` pins one (voice names are
        vendor-specific, so a vendor switch must not depend on persona files). Ends with
        ReplyDone or ReplyFailed; closing the generator early closes the HTTP request.
        """
        voice = self.cfg.voice or voice
        if not voice:
            yield ReplyFailed(LLMError(FailureKind.REQUEST, "omni: no voice: set omni.voice in config.yaml "
                                                            f"or voice.omni in prompts/{persona.id}.yaml"))
            return
        params = dict(
            model=self.cfg.model,
            messages=[*persona.chat_messages(history), self._user_message(audio, sample_rate, text)],
            modalities=["text", "audio"],
            audio={"voice": voice, "format": self.cfg.audio_format},
        )
        decoder = PCM16Decoder(self.cfg.output_sample_rate)
        transcript: list[str] = []
        content: list[str] = []
        finish_reason = "stop"
        try:
            async for chunk in self.endpoint.stream(
                    self.endpoint.client.chat.completions.with_streaming_response.create, **params):
                choice = first_choice(chunk)
                finish_reason = string_at(choice, "finish_reason") or finish_reason
                delta = mapping_at(choice, "delta")
                if text := string_at(delta, "content"):
                    content.append(text)
                    yield TextDelta(text)
                audio_part = mapping_at(delta, "audio")
                if text := string_at(audio_part, "transcript"):
                    transcript.append(text)
                    yield TranscriptDelta(text)
                if data := string_at(audio_part, "data"):
                    samples = decoder.feed(data)
                    if samples.size:
                        yield AudioDelta(samples, decoder.sample_rate)
        except LLMError as e:
            yield ReplyFailed(e)
            return
        finally:
            if decoder.skipped:
                log.warning("omni: skipped %d audio delta(s) that were not base64", decoder.skipped)
        yield ReplyDone("".join(transcript) or "".join(content), finish_reason)

    def _user_message(self, audio: np.ndarray, sample_rate: int, text: str | None) -> dict:
        data = base64.b64encode(wav_bytes(audio, sample_rate)).decode("ascii")
        if self.cfg.input_audio == "data_url":
            data = "data:audio/wav;base64," + data
        parts = [{"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}]
        if text:
            parts.append({"type": "text", "text": text})
        return {"role": "user", "content": parts}


class PCM16Decoder:
    """base64 PCM16 deltas → float32 samples, seamless across deltas.

    A delta may end in the middle of a sample (base64 chunking knows nothing of samples):
    the odd byte is carried into the next delta. Servers asked for `format: wav` may put a
    RIFF header in front of the first delta, or send every delta as a little WAV file; the
    header's sample rate then wins over the configured one.
    """

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self._carry = b""
        self.skipped = 0  # deltas that were not base64

    def feed(self, data_b64: str) -> np.ndarray:
        try:
            raw = base64.b64decode(data_b64, validate=True)
        except (binascii.Error, ValueError):
            self.skipped += 1
            return np.zeros(0, np.float32)
        if raw[:4] == b"RIFF" and raw[8:12] == b"WAVE":
            raw = self._strip_wav_header(raw)
            self._carry = b""  # a new file starts on a sample boundary
        raw = self._carry + raw
        whole = len(raw) - len(raw) % 2
        self._carry = raw[whole:]
        return np.frombuffer(raw[:whole], "<i2").astype(np.float32) / 32768.0

    def _strip_wav_header(self, raw: bytes) -> bytes:
        pos = 12
        while pos + 8 <= len(raw):
            kind, size = raw[pos:pos + 4], struct.unpack_from("<I", raw, pos + 4)[0]
            if kind == b"fmt " and size >= 8:
                self.sample_rate = struct.unpack_from("<I", raw, pos + 12)[0]
            elif kind == b"data":
                return raw[pos + 8:]
            pos += 8 + size + size % 2
        return b""
