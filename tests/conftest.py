"""Shared fixtures: real models loaded once per session, real speech made by Piper."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from config import load_config  # noqa: E402
from speech.audio import resample  # noqa: E402

RATE = 16000


@pytest.fixture(scope="session")
def cfg():
    return load_config()


@pytest.fixture(scope="session")
def tts(cfg):
    from speech.tts import TTS
    return TTS(cfg.tts)


@pytest.fixture(scope="session")
def vad_model():
    from speech.vad import load_vad_model
    return load_vad_model()


@pytest.fixture(scope="session")
def asr(cfg):
    from speech.asr import ASR
    return ASR(cfg.asr)


def speech_bounds(x: np.ndarray, rate: int, rel: float = 0.02) -> tuple[float, float]:
    """First and last time (s) where the 10 ms RMS exceeds `rel` of the clip's peak RMS:
    the ground truth of where speech starts and ends inside a synthesized clip."""
    hop = rate // 100
    n = len(x) // hop
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1))
    on = np.flatnonzero(rms > rel * rms.max())
    return on[0] * hop / rate, (on[-1] + 1) * hop / rate


@dataclass
class Recording:
    audio: np.ndarray                    # float32 at 16 kHz
    turns: list[tuple[float, float]]     # true (start, end) of each utterance, seconds


@pytest.fixture(scope="session")
def say(tts):
    """say(text) → float32 speech at 16 kHz (cached per text)."""
    cache = {}

    def _say(text: str) -> np.ndarray:
        if text not in cache:
            chunk = tts.synthesize(text)
            cache[text] = resample(chunk.audio * 0.5, chunk.sample_rate, RATE)
        return cache[text]
    return _say


@pytest.fixture(scope="session")
def conversation(say):
    """A three-turn user recording with silences of known length between turns."""
    texts = ["Hello there, can you hear me?",
             "I would like to know how far away the moon is.",
             "Thanks, that is all for now."]
    gaps = [0.8, 1.2, 1.5, 1.0]  # lead-in, between turns, tail
    parts, turns, t = [np.zeros(int(gaps[0] * RATE), np.float32)], [], gaps[0]
    for text, gap in zip(texts, gaps[1:]):
        clip = say(text)
        s, e = speech_bounds(clip, RATE)
        turns.append((t + s, t + e))
        parts += [clip, np.zeros(int(gap * RATE), np.float32)]
        t += len(clip) / RATE + gap
    return Recording(np.concatenate(parts), turns)
