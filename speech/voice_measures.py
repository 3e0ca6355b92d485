"""How two voices differ, measured: the pitch, and how far apart their formants sit.

Used by the tests and the two-agent sample to show that two personas speak with
different voices, not one voice at two speeds: pitch and formants can move apart.
"""
from __future__ import annotations

import numpy as np

from speech.formants import FLOOR, analysis, log_envelope

MIN_HZ, MAX_HZ = 60.0, 400.0        # the pitch range searched
VOICED = 0.5                         # autocorrelation (of its energy) of a voiced frame
BAND_HZ = (250.0, 4000.0)            # where the first formants are
STEP = 0.1                           # semitones between envelope samples


def pitch_hz(audio: np.ndarray, rate: int) -> float:
    """The median fundamental frequency over the voiced frames (autocorrelation); nan
    when nothing is voiced."""
    n = int(0.04 * rate)
    lo, hi = int(rate / MAX_HZ), int(rate / MIN_HZ)
    loud = 0.3 * np.percentile(np.abs(audio), 90) if len(audio) else 0.0
    found = []
    for start in range(0, len(audio) - n, n // 2):
        x = audio[start:start + n] - audio[start:start + n].mean()
        if np.abs(x).max() < loud:
            continue
        r = np.fft.irfft(np.abs(np.fft.rfft(x, 2 * n)) ** 2)[:n]
        lag = lo + int(np.argmax(r[lo:hi]))
        if r[lag] > VOICED * r[0]:
            found.append(rate / lag)
    return float(np.median(found)) if found else float("nan")


def formant_shift_semitones(a: np.ndarray, rate_a: int, b: np.ndarray, rate_b: int) -> float:
    """How many semitones above `a`'s formants `b`'s sit: the shift along a log-frequency
    axis that best lines up their average spectral envelopes."""
    env_a, env_b = _mean_envelope(a, rate_a), _mean_envelope(b, rate_b)
    lags = range(-int(8 / STEP), int(8 / STEP) + 1)
    margin = len(lags) // 2
    core = env_a[margin:-margin]
    best = max(lags, key=lambda k: np.corrcoef(core, env_b[margin + k:len(env_b) - margin + k])[0, 1])
    return best * STEP


def _mean_envelope(audio: np.ndarray, rate: int) -> np.ndarray:
    """The log spectral envelope of the louder frames, averaged, on a semitone grid that
    reaches 8 semitones beyond BAND_HZ on each side."""
    n, hop, window = analysis(rate)
    frames = np.lib.stride_tricks.sliding_window_view(audio, n)[::hop]
    energy = (frames ** 2).sum(axis=1)
    frames = frames[energy > 0.1 * energy.max()]
    envelope = log_envelope(np.log(np.abs(np.fft.rfft(frames * window, axis=1)) + FLOOR), rate).mean(axis=0)
    semitones = np.arange(-8, 12 * np.log2(BAND_HZ[1] / BAND_HZ[0]) + 8 + STEP / 2, STEP)
    hz = BAND_HZ[0] * 2 ** (semitones / 12)
    return np.interp(hz, np.fft.rfftfreq(n, 1 / rate), envelope)


def compare_voices(audio: np.ndarray, rate: int, spans_a: list, spans_b: list) -> dict:
    """Two speakers of one recording, each heard in its own [start, end] spans (seconds):
    the pitch of each, and how far B's formants sit above A's."""
    def voice(spans) -> np.ndarray:
        return np.concatenate([audio[int(t0 * rate):int(t1 * rate)] for t0, t1 in spans] or [np.zeros(0, np.float32)])
    a, b = voice(spans_a), voice(spans_b)
    return {"pitch_hz": [round(pitch_hz(a, rate), 1), round(pitch_hz(b, rate), 1)],
            "formants_b_above_a": round(formant_shift_semitones(a, rate, b, rate), 1)}
