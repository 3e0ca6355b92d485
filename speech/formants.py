"""A different speaker from the same voice: move the formants, keep the pitch.

Formants are the resonances of the vocal tract; where they sit tells a listener how big
the speaker is, more than the pitch does (a shorter tract puts them higher). Piper's
pitch trick (tts.py) plays a sentence faster, which moves pitch and formants together:
the same speaker, sped up. `shift_formants` moves only the formants: each short-time
spectrum is split into its smooth envelope (the tract, from the low cepstrum) and its
fine structure (the voice's harmonics), and the envelope is stretched along the
frequency axis by `factor` before the two are put back together with the original
phase. Pitch, timing and loudness stay; a sentence of 2 s takes a few milliseconds.
"""
from __future__ import annotations

import numpy as np

WINDOW_S = 0.046   # 1024 samples at 22 kHz: a few pitch periods, so harmonics resolve
# The envelope keeps quefrencies below this: under the shortest pitch period expected
# (2.5 ms is a 400 Hz voice), so the harmonics stay in the fine structure.
LIFTER_S = 0.0015
FLOOR = 1e-9       # keeps the log finite in digital silence


def shift_formants(audio: np.ndarray, rate: int, factor: float) -> np.ndarray:
    """`audio` (float32 mono) with every formant at `factor` times its frequency."""
    if factor == 1.0 or len(audio) == 0:
        return audio
    n, hop, window = analysis(rate)
    frames, padded = _frames(audio, n, hop)
    spectra = np.fft.rfft(frames * window, axis=1)
    log_mag = np.log(np.abs(spectra) + FLOOR)
    envelope = log_envelope(log_mag, rate)
    # the new envelope at bin k is the old one at k / factor (clamped at the band's
    # edge), interpolated between the two bins around it
    top = log_mag.shape[1] - 1
    source = np.clip(np.arange(top + 1) / factor, 0, top)
    below = np.minimum(source.astype(int), top - 1)
    weight = source - below
    warped = envelope[:, below] * (1 - weight) + envelope[:, below + 1] * weight
    gain = np.exp(warped - envelope)
    out = np.fft.irfft(spectra * gain, n=n, axis=1) * window
    # a formant moved onto a strong harmonic can peak a little past full scale
    return np.clip(_overlap_add(out, window, hop, padded)[: len(audio)], -1.0, 1.0).astype(np.float32)


def analysis(rate: int) -> tuple[int, int, np.ndarray]:
    """(frame length, hop, window) of the short-time spectra at `rate`."""
    n = 1 << int(np.ceil(np.log2(WINDOW_S * rate)))
    return n, n // 4, np.hanning(n + 1)[:-1].astype(np.float32)


def log_envelope(log_mag: np.ndarray, rate: int) -> np.ndarray:
    """The smooth part of each log spectrum (rows): its cepstrum cut at LIFTER_S."""
    keep = max(2, int(LIFTER_S * rate))
    cepstrum = np.fft.irfft(log_mag, axis=1)
    cepstrum[:, keep:-keep] = 0.0
    return np.fft.rfft(cepstrum, axis=1).real


def _frames(audio: np.ndarray, n: int, hop: int) -> tuple[np.ndarray, int]:
    """Overlapping frames of `audio`, padded by a window on each side; the padded length."""
    count = int(np.ceil((len(audio) + n) / hop)) + 1
    padded = np.zeros((count - 1) * hop + n, np.float32)
    padded[n: n + len(audio)] = audio
    index = np.arange(n)[None, :] + hop * np.arange(count)[:, None]
    return padded[index], len(padded)


def _overlap_add(frames: np.ndarray, window: np.ndarray, hop: int, length: int) -> np.ndarray:
    """Frames summed back in place, divided by the summed squared window, the input's
    leading pad of one window dropped. Inside the padding every sample has the same
    number of frames over it, so the divisor repeats with each hop."""
    count, n = frames.shape
    quarters = n // hop                      # frames over each sample
    out = np.zeros((count + quarters - 1, hop))
    for q in range(quarters):               # each frame's q-th hop lands q hops on
        out[q:q + count] += frames[:, q * hop:(q + 1) * hop]
    out /= np.maximum((window.astype(np.float64) ** 2).reshape(quarters, hop).sum(axis=0), FLOOR)
    return out.reshape(-1)[n:length]
