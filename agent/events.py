"""The typed events an LLM reply streams, and the one error type a failed reply carries.

Every reply stream (omni or text) yields content events as they arrive and ends with
exactly one terminal event: `ReplyDone` or `ReplyFailed`. Service failures never
escape as exceptions, so the orchestrator has one place to turn them into an apology;
only cancellation (barge-in) ends a stream without a terminal event.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


class FailureKind(str, Enum):
    AUTH = "auth"               # 401/403: the API key is missing or was rejected
    RATE_LIMIT = "rate_limit"   # 429, still after the bounded retries
    TIMEOUT = "timeout"         # no answer, or the stream stalled
    CONNECTION = "connection"   # refused, unreachable, reset before the reply began
    SERVER = "server"           # 5xx, or an error object sent inside the stream
    REQUEST = "request"         # another 4xx: unknown model, bad parameters
    STREAM_CUT = "stream_cut"   # the reply stopped before its end


class LLMError(Exception):
    """A failed LLM request, with a one-line message for the user (never the key)."""

    def __init__(self, kind: FailureKind, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class TextDelta:
    """Reply text (a text model's output, or an omni model's text-only content)."""
    text: str


@dataclass(frozen=True)
class TranscriptDelta:
    """What an omni model is saying in its audio, as text."""
    text: str


@dataclass(frozen=True, eq=False)
class AudioDelta:
    """Agent speech as it arrives: mono float32 in [-1, 1]."""
    samples: np.ndarray
    sample_rate: int


@dataclass(frozen=True)
class Sentence:
    """A complete sentence of reply text, ready for TTS."""
    text: str


@dataclass(frozen=True)
class ReplyDone:
    """The reply ended normally. `text`: the whole reply (the transcript for omni)."""
    text: str
    finish_reason: str


@dataclass(frozen=True)
class ReplyFailed:
    """The reply failed; content events before it were real and may be kept."""
    error: LLMError

    @property
    def kind(self) -> FailureKind:
        return self.error.kind

    @property
    def message(self) -> str:
        return self.error.message


ReplyEvent = TextDelta | TranscriptDelta | AudioDelta | Sentence | ReplyDone | ReplyFailed
