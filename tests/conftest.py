"""Shared fixtures: real models loaded once per session, real speech made by Piper."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from config import load_config  # noqa: E402
from speech import synthetic  # noqa: E402

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


@pytest.fixture(scope="session")
def say(tts):
    """say(text) → float32 speech at 16 kHz (cached per text)."""
    cache = {}

    def _say(text: str) -> np.ndarray:
        if text not in cache:
            cache[text] = synthetic.say(tts, text, RATE)
        return cache[text]
    return _say


@pytest.fixture(scope="session")
def conversation(tts):
    """A three-turn user recording with silences of known length between turns."""
    return synthetic.script(tts, ["Hello there, can you hear me?",
                                  "I would like to know how far away the moon is.",
                                  "Thanks, that is all for now."], gaps=[0.8, 1.2, 1.5, 1.0])


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread on a shared 2-core machine; restored after."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
