"""Audio in and out: format checks, mono float conversion, anti-aliased resampling.

Everything downstream works on 1-D float32 arrays in [-1, 1] at a known rate. The
functions here are the one door into that world: they accept what microphones, files
and HTTP APIs hand us (int16/int32/float32/float64, mono or interleaved/planar stereo,
8–48 kHz) and never modify the caller's buffer.
"""
from __future__ import annotations

import io
import wave

import numpy as np
import soxr


class AudioError(ValueError):
    """Audio that cannot be used, phrased as one line for the user."""


def to_mono_float32(audio, rate: int, *, min_rate: int = 8000, max_rate: int = 48000) -> np.ndarray:
    """A fresh 1-D float32 copy of `audio` in [-1, 1], channels averaged.

    `audio` is (samples,), (samples, channels) or (channels, samples) with ≤ 8 channels.
    Integer samples are scaled by their type's full range. Raises AudioError for NaN/inf,
    an unsupported dtype or shape, or a rate outside [min_rate, max_rate].
    """
    if not isinstance(rate, (int, np.integer)) or not min_rate <= rate <= max_rate:
        raise AudioError(f"sample rate {rate!r} Hz is not supported; use {min_rate}–{max_rate} Hz")
    a = np.asarray(audio)
    if a.dtype == np.int16:
        x = a.astype(np.float32) / 32768.0
    elif a.dtype == np.int32:
        x = (a.astype(np.float64) / 2147483648.0).astype(np.float32)
    elif a.dtype in (np.float32, np.float64):
        if not np.all(np.isfinite(a)):
            raise AudioError("audio contains NaN or infinite samples; check the source")
        x = a.astype(np.float32)  # astype copies: the caller's buffer stays as it was
    else:
        raise AudioError(f"audio sample type {a.dtype} is not supported; use int16, int32 or float")
    if x.ndim == 2:
        # The short axis holds the channels.
        if min(x.shape) > 8:
            raise AudioError(f"audio shape {a.shape} looks like neither mono nor multi-channel")
        x = x.mean(axis=1 if x.shape[1] <= x.shape[0] else 0, dtype=np.float32)
    elif x.ndim != 1:
        raise AudioError(f"audio must be 1-D or 2-D, got shape {a.shape}")
    # Float input beyond full scale is clipped audio: keep it, bounded.
    np.clip(x, -1.0, 1.0, out=x)
    return x


def resample(x: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample 1-D float32 `x` with a proper low-pass (soxr HQ): no aliasing."""
    if src_rate == dst_rate:
        return x.copy()
    if x.size == 0:
        return np.zeros(0, np.float32)
    return soxr.resample(x, src_rate, dst_rate, quality="HQ").astype(np.float32, copy=False)


def prepare(audio, rate: int, target_rate: int, **limits) -> np.ndarray:
    """Any accepted input → mono float32 at `target_rate` (the common front door)."""
    return resample(to_mono_float32(audio, rate, **limits), rate, target_rate)


class StreamResampler:
    """Chunk-by-chunk resampling with no seams between chunks (for live microphones)."""

    def __init__(self, src_rate: int, dst_rate: int):
        self.src_rate, self.dst_rate = src_rate, dst_rate
        self._stream = None if src_rate == dst_rate else soxr.ResampleStream(
            src_rate, dst_rate, 1, dtype="float32", quality="HQ")

    def __call__(self, chunk: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return chunk.copy()
        return self._stream.resample_chunk(chunk, last=last)


def to_int16(x: np.ndarray) -> np.ndarray:
    """Float [-1, 1] → int16 PCM (clipped)."""
    return (np.clip(x, -1.0, 1.0) * 32767.0).round().astype(np.int16)


def wav_bytes(x: np.ndarray, rate: int) -> bytes:
    """Mono float audio as a 16-bit PCM WAV file in memory."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(to_int16(x).tobytes())
    return buf.getvalue()


def read_wav(path_or_bytes) -> tuple[np.ndarray, int]:
    """Read a WAV/FLAC/OGG file (path or bytes) → (samples as stored, rate).

    Returns the file's own dtype and channels; pass the result through `prepare`.
    """
    import soundfile as sf
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
    try:
        data, rate = sf.read(src, dtype="float32", always_2d=False)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise AudioError(f"cannot read audio {path_or_bytes if isinstance(src, str) else '(bytes)'}: {e}") from None
    return data, rate


def write_wav(path, x: np.ndarray, rate: int) -> None:
    with open(path, "wb") as f:
        f.write(wav_bytes(x, rate))


def rms_db(x: np.ndarray) -> float:
    """Root-mean-square level in dBFS (−inf for digital silence)."""
    if x.size == 0:
        return float("-inf")
    p = float(np.mean(np.square(x, dtype=np.float64)))
    return 10 * np.log10(p) if p > 0 else float("-inf")


class RecentAudio:
    """The last `size` samples of a stream, addressable by absolute sample index (a ring:
    sample i lives at i mod size, so pushing a tick copies only the tick). `start`: the
    index of the first sample pushed."""

    def __init__(self, size: int, start: int = 0):
        self.buf = np.zeros(size, np.float32)
        self.end = start                 # absolute index after the newest sample

    def push(self, x: np.ndarray) -> None:
        self.buf.put(np.arange(self.end, self.end + len(x)), x, mode="wrap")
        self.end += len(x)

    def get(self, start: int, n: int) -> np.ndarray:
        """Samples [start, start + n), or zeros where they are not (or no longer) held."""
        if start < self.end - len(self.buf) or start + n > self.end:
            return np.zeros(n, np.float32)
        return self.buf.take(np.arange(start, start + n), mode="wrap")
