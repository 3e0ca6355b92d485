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
    with_sound = min(len(frames), len(audio) * FPS // SAMPLE_RATE)
    usable = min(with_sound, int(seconds * FPS)) // block * block
    if usable == 0:
        raise ClipError(f"{path}: {with_sound / FPS:.2f} s of video with sound is shorter than one block "
                        f"({block / FPS:.2f} s)")
    return frames[:usable], audio[:usable * SAMPLE_RATE // FPS], mask[:usable]


def _load_npz(path: Path):
    try:
        with np.load(path) as data:
            frames, audio = data["video"], data["audio"].astype(np.float32)
            mask = data["mask"] if "mask" in data else np.full(len(frames), TALK_BIT, np.uint8)
    except (OSError, ValueError, KeyError) as e:
        raise ClipError(f"{path}: not a clip .npz with 'video' (T,H,W,3) uint8 and 'audio' 16 kHz ({e})") from None
    return frames, audio, mask


def _load_video(path: Path, size: int, seconds: float):
    """Frames are scaled as they are decoded, so a long or large video costs little memory."""
    import av

    from avatar_engine.media import read_audio
    times, frames = [], []
    try:
        with av.open(str(path)) as f:
            for frame in f.decode(f.streams.video[0]):
                t = frame.time if frame.time is not None else len(times) / FPS
                if t >= seconds:
                    break
                times.append(t)
                frames.append(_square(frame.to_ndarray(format="rgb24"), size))
        audio = read_audio(path, SAMPLE_RATE, seconds)
    except (av.error.FFmpegError, IndexError, ValueError) as e:
        raise ClipError(f"{path}: not a video with sound that can be read ({type(e).__name__}: {e})") from None
    if not frames:
        raise ClipError(f"{path}: no video frames")
    # to 25 fps by timestamps (variable frame rates too): each frame shows the last one decoded by then
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1 / FPS
    shown = np.arange(int(round((times[-1] + step) * FPS))) / FPS
    pick = np.clip(np.searchsorted(times, shown + 1e-6, side="right") - 1, 0, len(frames) - 1)
    return np.stack(frames)[pick], audio, talk_mask(audio, len(pick))


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
