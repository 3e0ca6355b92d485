"""Semantic end of turn: does what the user said so far sound finished?

Pipecat's Smart Turn v3 (v3.2, the 8 MB CPU ONNX build shipped inside the `pipecat-ai`
wheel, BSD-2-Clause like the rest of pipecat) hears the last 8 s of a turn, words and
prosody together, and returns the probability that the speaker has finished: "What is
the biggest planet?" → high, "I'd like to... um..." → low. Only the ONNX file is taken
from the wheel (by path, without importing pipecat); its input is Whisper's 80-bin
log-mel of the zero-mean, unit-variance waveform, which faster-whisper's feature
extractor computes.
"""
from __future__ import annotations

import importlib.metadata

import numpy as np

RATE = 16000
WINDOW_S = 8                      # the model hears the last 8 s, zero-padded in front
MODEL_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"


class TurnEndModelMissing(RuntimeError):
    pass


def model_path() -> str:
    try:
        path = importlib.metadata.distribution("pipecat-ai").locate_file(MODEL_FILE)
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.exists():
        raise TurnEndModelMissing("the Smart Turn model comes with pipecat-ai: pip install --no-deps "
                                  "pipecat-ai==1.14.0, or set turns.end_of_turn: silence in config.yaml")
    return str(path)


class SmartTurn:
    def __init__(self, threads: int = 1):
        import onnxruntime as ort
        from faster_whisper.feature_extractor import FeatureExtractor
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(model_path(), sess_options=options, providers=["CPUExecutionProvider"])
        self._features = FeatureExtractor(feature_size=80, sampling_rate=RATE, hop_length=160,
                                          chunk_length=WINDOW_S, n_fft=400)

    def complete(self, audio: np.ndarray) -> float:
        """Probability that the turn in `audio` (float32, 16 kHz, its end last) is over."""
        n = WINDOW_S * RATE
        x = np.asarray(audio, np.float32)[-n:]
        x = np.pad(x, (n - len(x), 0))
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        mel = self._features(x, padding=0)[:, :n // 160]          # (80, 800)
        (p,) = self._session.run(None, {"input_features": mel[None].astype(np.float32)})
        return float(np.asarray(p).reshape(-1)[0])

    def warm_up(self) -> None:
        self.complete(np.zeros(RATE, np.float32))
