"""Training clips from files: a prepared .npz, or any video with sound that PyAV reads.

    frames, audio, mask = load_clip("talk.mp4", size=32, seconds=8, block=12)
      frames (T, size, size, 3) uint8 at 25 fps, audio (T·640,) float32 at 16 kHz,
      mask (T,) uint8: TALK where the speaker is heard, else IDLE

A video is centre-cropped to a square and scaled to `size`, resampled to 25 fps by
nearest frame, its sound mixed to mono at 16 kHz, cut to whole blocks. The talk mask comes
from the Silero VAD (the same detector that finds the user's turns): the model learns to
move the mouth where there is speech, and to rest where there is none.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .audio import SAMPLE_RATE, TALK_BIT

FPS = 25


class ClipError(ValueError):
    """A clip that cannot be trained on; the message says why, in one line."""


def load_clip(path: str | Path, *, size: int, seconds: float, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise ClipError(f"{path}: no such file")
    frames, audio, mask = _load_npz(path) if path.suffix == ".npz" else _load_video(path, size, seconds)
    usable = min(len(frames), len(audio) * FPS // SAMPLE_RATE, int(seconds * FPS)) // block * block
    if usable == 0:
        raise ClipError(f"{path}: {len(frames) / FPS:.2f} s is shorter than one block "
                        f"({block / FPS:.2f} s of video with sound)")
    return frames[:usable], audio[:usable * SAMPLE_RATE // FPS], mask[:usable]


def _load_npz(path: Path):
    try:
        data = np.load(path)
        frames, audio = data["video"], data["audio"].astype(np.float32)
    except (OSError, ValueError, KeyError) as e:
        raise ClipError(f"{path}: not a clip .npz with 'video' (T,H,W,3) uint8 and 'audio' 16 kHz ({e})") from None
    mask = data["mask"] if "mask" in data else np.full(len(frames), TALK_BIT, np.uint8)
    return frames, audio, mask


def _load_video(path: Path, size: int, seconds: float):
    import av

    from avatar_engine.media import read_mp4
    from speech.audio import prepare
    try:
        frames, audio, rate, fps = read_mp4(path, max_seconds=seconds)
    except (av.error.FFmpegError, IndexError, ValueError) as e:
        raise ClipError(f"{path}: not a video with sound that can be read ({type(e).__name__}: {e})") from None
    # to 25 fps by nearest frame
    keep = np.round(np.arange(int(len(frames) * FPS / fps)) * fps / FPS).astype(int)
    frames = np.stack([_square(f, size) for f in frames[np.minimum(keep, len(frames) - 1)]])
    audio = prepare(audio, rate, SAMPLE_RATE)
    return frames, audio, talk_mask(audio, len(frames))


def _square(frame: np.ndarray, size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    return np.asarray(Image.fromarray(frame[y:y + side, x:x + side]).resize((size, size), Image.LANCZOS))


def talk_mask(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """TALK for the video frames inside the speech the VAD finds, IDLE elsewhere."""
    from config import VADConfig
    from speech.vad import StreamingVAD
    vad = StreamingVAD(VADConfig(), SAMPLE_RATE)
    events = vad.push(audio) + vad.push(np.zeros(SAMPLE_RATE, np.float32))  # closes a turn at the end
    mask = np.zeros(n_frames, np.uint8)
    start = None
    for e in events:
        if e.kind == "user_started":
            start = e.t
        elif e.kind == "user_stopped" and start is not None:
            mask[int(start * FPS):int(np.ceil(e.t * FPS))] = TALK_BIT
            start = None
    return mask
