"""Writing A/V to an MP4 file as it is produced (H.264 video + AAC audio, via PyAV).

The writer takes blocks of frames with the audio they show and keeps both streams on
one timeline, so a recording of any length is written incrementally in constant memory.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

AUDIO_FRAME = 1024  # samples per AAC frame


class MP4Writer:
    def __init__(self, path: str | Path, fps: int, width: int, height: int, sample_rate: int = 16000,
                 crf: int = 23):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps, self.rate = fps, sample_rate
        self._out = av.open(str(self.path), "w")
        self._video = self._out.add_stream("libx264", rate=fps)
        self._video.width, self._video.height = width - width % 2, height - height % 2
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(crf), "preset": "veryfast"}
        self._audio = self._out.add_stream("aac", rate=sample_rate)
        self._audio.layout = "mono"
        self._pending = np.zeros(0, np.float32)
        self._frames = self._samples = 0

    def write(self, frames: np.ndarray, audio: np.ndarray) -> None:
        """Append frames (n, H, W, 3) uint8 RGB and the mono float32 audio they span."""
        h, w = self._video.height, self._video.width
        for f in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:h, :w]), format="rgb24")
            vf.pts, vf.time_base = self._frames, Fraction(1, self.fps)
            self._frames += 1
            self._out.mux(self._video.encode(vf))
        self._pending = np.concatenate([self._pending, np.clip(audio, -1, 1).astype(np.float32)])
        while len(self._pending) >= AUDIO_FRAME:
            self._write_audio(self._pending[:AUDIO_FRAME])
            self._pending = self._pending[AUDIO_FRAME:]

    def _write_audio(self, x: np.ndarray) -> None:
        af = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="flt", layout="mono")
        af.sample_rate, af.pts, af.time_base = self.rate, self._samples, Fraction(1, self.rate)
        self._samples += len(x)
        self._out.mux(self._audio.encode(af))

    def close(self) -> None:
        if self._out is None:
            return
        if len(self._pending):
            self._write_audio(self._pending)
        self._out.mux(self._video.encode(None))
        self._out.mux(self._audio.encode(None))
        self._out.close()
        self._out = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_mp4(path: str | Path) -> tuple[np.ndarray, np.ndarray, int, float]:
    """(frames (n, H, W, 3) uint8, mono float32 audio, audio rate, video fps) of a file."""
    with av.open(str(path)) as f:
        frames = np.stack([fr.to_ndarray(format="rgb24") for fr in f.decode(f.streams.video[0])])
        fps, rate = float(f.streams.video[0].average_rate), f.streams.audio[0].rate
    return frames, read_audio(path, rate), rate, fps


def read_audio(path: str | Path, rate: int, max_seconds: float = float("inf")) -> np.ndarray:
    """A file's first audio stream as mono float32 at `rate`, whatever its sample format
    (planar or packed, float or integer) and channel layout; at most `max_seconds`."""
    # planar float keeps the channels apart; their mean is the mono signal (FFmpeg's own
    # downmix would add 3 dB)
    resampler = av.AudioResampler(format="fltp", rate=rate)
    chunks = []
    with av.open(str(path)) as f:
        for frame in f.decode(f.streams.audio[0]):
            if frame.time is not None and frame.time >= max_seconds:
                break
            chunks += [out.to_ndarray().mean(axis=0) for out in resampler.resample(frame)]
    chunks += [out.to_ndarray().mean(axis=0) for out in resampler.resample(None)]
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return audio[:int(max_seconds * rate)] if max_seconds < float("inf") else audio
