"""Brains: one user turn (audio) in, the agent's speech out, as a stream of typed events.

    CascadeBrain   ASR → text LLM → TTS, sentence by sentence (speech starts before the
                   LLM has finished)
    OmniBrain      an omni model hears the audio and streams speech back (no phonemes)

Both yield `UserText` (what was heard, when known), `Speech` chunks at the session rate,
and end with the LLM's own terminal event, `ReplyDone` or `ReplyFailed`. Cancelling the
consuming task cancels everything underneath: the HTTP request is closed and TTS stops
after the sentence in progress.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Protocol

import numpy as np

from agent.events import AudioDelta, ReplyDone, ReplyFailed, Sentence, TextDelta, TranscriptDelta
from agent.history import History
from agent.persona import Persona
from agent.text_llm import TextLLM
from speech.asr import ASR
from speech.audio import StreamResampler, resample
from speech.timeline import Phoneme
from speech.tts import TTS


@dataclass(frozen=True)
class UserText:
    text: str
    asr_s: float = 0.0              # wall time the ASR took


@dataclass(frozen=True, eq=False)
class Speech:
    """A piece of the agent's voice at the session rate; phonemes in seconds from its start."""
    audio: np.ndarray
    text: str = ""                  # the words it starts (joined as is: pieces carry their spaces)
    phonemes: tuple[Phoneme, ...] = field(default=())


@dataclass(frozen=True)
class Timing:
    """Wall-clock stage times of one reply, measured from the brain's start."""
    stage: str                      # "llm_first_token" | "llm_first_clause" | "tts_first_audio"
    seconds: float


BrainEvent = UserText | Speech | Timing | ReplyDone | ReplyFailed


class Brain(Protocol):
    def reply(self, audio: np.ndarray, history: History) -> AsyncIterator[BrainEvent]:
        """The agent's answer to one user turn (`audio`: float32 at the session rate)."""

    def speak(self, text: str) -> AsyncIterator[Speech]:
        """Say a fixed line (greeting, apology) in the agent's voice."""

    async def warm_up(self) -> None:
        """Prepare for the first turn (e.g. have the LLM read the persona prompt once)."""

    async def reread(self, history: History) -> None:
        """The history was trimmed (its start changed): read it again now, while the user
        speaks, rather than in the next reply."""


class LocalVoice:
    """Fixed lines (greeting, apology) in the local Piper voice, for every brain: an
    apology must reach the user even when the remote model is down."""
    tts: TTS
    persona: Persona
    rate: int

    async def speak(self, text: str) -> AsyncIterator[Speech]:
        # The text rides on the first chunk only, so what was said can be rebuilt from
        # the chunks that were played.
        first = True
        async with contextlib.aclosing(self.tts.astream(text, pitch=self.persona.voice_pitch)) as chunks:
            async for chunk in chunks:
                # phoneme times are in seconds, so they survive the change of rate
                yield Speech(resample(chunk.audio, chunk.sample_rate, self.rate), text + " " if first else "",
                             chunk.phonemes)
                first = False


class CascadeBrain(LocalVoice):
    def __init__(self, asr: ASR, llm: TextLLM, tts: TTS, persona: Persona, rate: int = 16000, *,
                 rereads: bool = True):
        self.asr, self.llm, self.tts, self.persona, self.rate = asr, llm, tts, persona, rate
        self.rereads = rereads

    async def reply(self, audio: np.ndarray, history: History) -> AsyncIterator[BrainEvent]:
        t0 = time.perf_counter()
        # The greeting names the persona and its topic: Whisper then spells "Ada".
        heard = await asyncio.to_thread(self.asr.transcribe, audio, words=False, hint=self.persona.greeting)
        yield UserText(heard.text, time.perf_counter() - t0)
        if not heard.text:
            yield ReplyDone("", "nothing_heard")  # a cough or noise: nothing to answer
            return
        first_token = first_clause = first_audio = False
        async with contextlib.aclosing(self.llm.spoken(self.persona, history, heard.text)) as events:
            async for event in events:
                if isinstance(event, TextDelta) and not first_token:
                    first_token = True
                    yield Timing("llm_first_token", time.perf_counter() - t0)
                elif isinstance(event, Sentence):
                    if not first_clause:
                        first_clause = True
                        yield Timing("llm_first_clause", time.perf_counter() - t0)
                    async for speech in self.speak(event.text):
                        if not first_audio:
                            first_audio = True
                            yield Timing("tts_first_audio", time.perf_counter() - t0)
                        yield speech
                elif isinstance(event, (ReplyDone, ReplyFailed)):
                    yield event

    async def warm_up(self) -> None:
        # Without this the first reply also pays for reading the persona prompt (~3 s),
        # and for the ASR's and the TTS's first calls (their lazy setup, ~0.5 s).
        await asyncio.gather(self.llm.warm_up(self.persona), warm_up_speech(self.asr, self.tts))

    async def reread(self, history: History) -> None:
        # A trimmed history is ~100 tokens the local server must read again, ~1.2 s on two
        # cores, once every few turns: done here, it overlaps the user's next question.
        # Only where this brain's server has the cores to itself (`rereads`): two servers
        # reading at once (two agents) slow each other down several times.
        if self.rereads:
            await self.llm.warm_up(self.persona, history)


class OmniBrain(LocalVoice):
    """Speech in, speech out through an OpenAI-compatible omni endpoint."""

    def __init__(self, omni, tts: TTS, persona: Persona, rate: int = 16000, asr: ASR | None = None):
        self.omni, self.tts, self.persona, self.rate, self.asr = omni, tts, persona, rate, asr

    async def reply(self, audio: np.ndarray, history: History) -> AsyncIterator[BrainEvent]:
        t0 = time.perf_counter()
        if self.asr is not None:  # only for the transcript; the model hears the audio itself
            heard = await asyncio.to_thread(self.asr.transcribe, audio, words=False, hint=self.persona.greeting)
            yield UserText(heard.text, time.perf_counter() - t0)
        resampler: StreamResampler | None = None
        first = True
        words = ""  # transcript not yet attached to audio: it rides on the next chunk
        async with contextlib.aclosing(self.omni.reply(audio, self.rate, self.persona, history,
                                                       voice=self.persona.omni_voice)) as events:
            async for event in events:
                if isinstance(event, (TranscriptDelta, TextDelta)):
                    words += event.text
                elif isinstance(event, AudioDelta):
                    if resampler is None:
                        resampler = StreamResampler(event.sample_rate, self.rate)
                    if first:
                        first = False
                        yield Timing("llm_first_token", time.perf_counter() - t0)
                        yield Timing("tts_first_audio", time.perf_counter() - t0)
                    yield Speech(resampler(event.samples), words)
                    words = ""
                elif isinstance(event, (ReplyDone, ReplyFailed)):
                    yield event

    async def warm_up(self) -> None:
        # a hosted model keeps its own caches; the local ASR and the apology's voice do not
        await warm_up_speech(self.asr, self.tts)

    async def reread(self, history: History) -> None:
        pass  # a hosted model keeps its own prompt cache


async def warm_up_speech(asr: ASR | None, tts: TTS) -> None:
    """One short call each, so the user's first turn does not pay for the first call."""
    def run():
        if asr is not None:
            noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.01  # 1 s
            asr.transcribe(noise, words=False)
        tts.synthesize("Hello.")
    await asyncio.to_thread(run)
