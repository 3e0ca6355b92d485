"""Live Avatar's audio front end: 16 kHz speech → 25 wav2vec2 layer features per video frame.

What the reference does (Wan2.2 `wan/modules/s2v/audio_encoder.py`, called by LiveAvatar's
`causal_s2v_pipeline_tpp.py` `encode_audio`), reproduced here step for step:
1. the Wav2Vec2 feature extractor normalises the whole waveform (zero mean, unit variance);
2. `wav2vec2-large-xlsr-53-english` gives all 25 hidden states (1024 wide) at 50 Hz;
3. linear interpolation (align_corners) to int(T / 50 · 30) frames at 30 Hz;
4. video frame i (25 fps) takes 30 Hz frame round(i · 30 / 25); frames past the end of the
   audio are zeros, and the whole file is padded to clips of 48 frames.
The DiT's casual_audio_encoder then takes a block of 12 video frames, (B, 25, 1024, 12), and
prefixes it with copies of its first frame itself; blocks are independent of each other.

transformers 5 changed `hidden_states[-1]` of this (stable-layer-norm) model to the state
before the final LayerNorm; the reference ran transformers ≤ 4.51, where it is the state
after it, i.e. `last_hidden_state`. We take the first 24 from `hidden_states` and the 25th
from `last_hidden_state`, which is the reference's layer stack under either version.

`Wav2VecFeatures.video_features` is the reference's whole-file path. A conversation has no
whole file: `Wav2VecBlockStream` encodes a bounded window of the most recent audio with the
same path at each block and keeps the block's frames; its only departure is the frame at
the live edge, which holds the last feature frame where a file's end would give zeros.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .audio import SAMPLE_RATE, AudioEncoderError

WAV2VEC_DIR = "wav2vec2-large-xlsr-53-english"
DOWNLOAD = "from the Hugging Face repo Wan-AI/Wan2.2-S2V-14B"
STATE_RATE = 50          # wav2vec2 hidden states per second
FEATURE_RATE = 30        # the reference resamples them to this rate (AudioEncoder.video_rate)
FPS = 25                 # Live Avatar's video rate (sample_fps)
CLIP_FRAMES = 48         # video frames per clip (infer_frames): the whole-file padding unit
MIN_SAMPLES = 720        # 2 wav2vec2 states (400-sample window, 320 hop): 1 frame at 30 Hz


def interpolate_states(states: torch.Tensor) -> torch.Tensor:
    """(L, T50, D) at 50 Hz → (L, int(T50 / 50 · 30), D) at 30 Hz, linear, corners aligned."""
    length = int(states.shape[1] / float(STATE_RATE) * FEATURE_RATE)     # the reference's rounding
    return F.interpolate(states.transpose(1, 2), size=length, mode="linear", align_corners=True).transpose(1, 2)


def frame_indices(n_frames: int, fps: int = FPS) -> np.ndarray:
    """30 Hz feature index of each of n_frames video frames: round(i · 30 / fps)."""
    times = np.linspace(0, n_frames / fps, n_frames, endpoint=False)
    return np.round(times * FEATURE_RATE).astype(int)


def video_frames(features: torch.Tensor, n_frames: int, fps: int = FPS, hold_last: bool = False) -> torch.Tensor:
    """(L, T30, D) at 30 Hz → (1, L, D, n_frames) at the video rate. Frames past the features
    are zeros (the reference), or the last feature frame with hold_last."""
    index = torch.from_numpy(frame_indices(n_frames, fps))
    past_end = index >= features.shape[1]
    frames = features[:, index.clamp(max=features.shape[1] - 1)]          # (L, n_frames, D)
    if not hold_last:
        frames[:, past_end] = 0
    return frames.permute(0, 2, 1)[None].contiguous()


def whole_file_frames(n_features: int, fps: int = FPS) -> int:
    """Video frames the reference gives a file of n_features 30 Hz frames: whole clips of 48."""
    scale = FEATURE_RATE / fps                       # the reference's float expression, rounding included
    clips = int(n_features / (CLIP_FRAMES * scale)) + 1
    return clips * CLIP_FRAMES


class Wav2VecFeatures:
    """wav2vec2-large-xlsr-53-english from a Wan2.2-S2V-14B directory, in `dtype` on `device`.

    layer_features(wave (S,) float at 16 kHz) → (25, T30, 1024) float32
    video_features(wave)                      → (1, 25, 1024, 48 · clips) float32
    """

    def __init__(self, checkpoint_dir: str | Path, device="cpu", dtype=torch.float32):
        model_dir = Path(checkpoint_dir) / WAV2VEC_DIR
        weights = [model_dir / "model.safetensors", model_dir / "pytorch_model.bin"]
        for path in [model_dir, model_dir / "config.json", model_dir / "preprocessor_config.json"]:
            if not path.exists():
                raise AudioEncoderError(f"{path} not found: download {WAV2VEC_DIR}/ {DOWNLOAD} "
                                        f"and put it in {checkpoint_dir}")
        if not any(w.is_file() for w in weights):
            raise AudioEncoderError(f"{weights[0]} not found: download {WAV2VEC_DIR}/ {DOWNLOAD} "
                                    f"and put it in {checkpoint_dir}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")      # read at import: never reach a hub
        try:
            from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC
            from transformers.utils.logging import disable_progress_bar
        except ImportError:
            raise AudioEncoderError("the wav2vec2 front end needs the transformers package "
                                    "(pip install -r requirements.txt)") from None
        disable_progress_bar()          # no loading bar in the app's log
        self.extractor = Wav2Vec2FeatureExtractor.from_pretrained(model_dir, local_files_only=True)
        model = Wav2Vec2ForCTC.from_pretrained(model_dir, local_files_only=True)
        self.model = model.wav2vec2.to(device, dtype).eval().requires_grad_(False)   # the CTC head is unused
        self.device, self.dtype = torch.device(device), dtype
        self.layers = model.config.num_hidden_layers + 1

    @torch.no_grad()
    def layer_features(self, wave: np.ndarray) -> torch.Tensor:
        """The reference's `extract_audio_feat(..., return_all_layers=True)`."""
        if len(wave) < MIN_SAMPLES:
            raise ValueError(f"{len(wave)} samples of audio are too short: wav2vec2 features need at least "
                             f"{MIN_SAMPLES} ({MIN_SAMPLES * 1000 // SAMPLE_RATE} ms at {SAMPLE_RATE} Hz)")
        inputs = self.extractor(np.asarray(wave, dtype=np.float32), sampling_rate=SAMPLE_RATE,
                                return_tensors="pt").input_values
        out = self.model(inputs.to(self.device, self.dtype), output_hidden_states=True)
        states = torch.cat([*out.hidden_states[:-1], out.last_hidden_state])   # (25, T50, D), see docstring
        return interpolate_states(states).float()

    def video_features(self, wave: np.ndarray, fps: int = FPS) -> torch.Tensor:
        """The reference's `encode_audio` for a whole file: (1, 25, D, 48 · clips), zeros after the audio."""
        features = self.layer_features(wave)
        return video_frames(features, whole_file_frames(features.shape[1], fps), fps)


class Wav2VecBlockStream:
    """Features of each block of audio as it arrives, over the last `context_s` seconds.

    push(block_audio (12 · 640,) at 16 kHz) → (1, 25, D, 12): the block's video frames.
    """

    def __init__(self, features: Wav2VecFeatures, context_s: float, fps: int = FPS):
        self.features, self.fps = features, fps
        self.frame_samples = SAMPLE_RATE // fps
        self.max_frames = max(1, int(context_s * fps))      # window in whole video frames
        self.reset()

    def reset(self):
        self._buffer = np.zeros(0, np.float32)

    def push(self, audio: np.ndarray) -> torch.Tensor:
        audio = np.asarray(audio, dtype=np.float32)
        n = len(audio) // self.frame_samples
        if n == 0 or len(audio) != n * self.frame_samples:
            raise ValueError(f"a block's audio must be whole video frames of {self.frame_samples} samples "
                             f"at {SAMPLE_RATE} Hz, got {len(audio)} samples")
        window = max(self.max_frames, n) * self.frame_samples     # a block longer than the window: all of it
        self._buffer = np.concatenate([self._buffer, audio])[-window:]
        total = len(self._buffer) // self.frame_samples
        frames = video_frames(self.features.layer_features(self._buffer), total, self.fps, hold_last=True)
        return frames[..., total - n:]
