"""A short synthetic talking clip whose motion follows its audio (for training smoke tests).

A face-coloured disc on a gradient background bobs slowly; a dark mouth opens with the
loudness envelope of a buzzy, syllable-like tone. Deterministic for a given seed.
"""
from __future__ import annotations

import numpy as np

from .audio import SAMPLE_RATE


def talking_clip(n_frames: int, size: int = 32, fps: int = 25, seed: int = 0):
    """→ video (T, size, size, 3) uint8, audio (T·16000/fps,) float32, mask (T,) uint8 all TALK."""
    rng = np.random.default_rng(seed)
    n_samples = n_frames * SAMPLE_RATE // fps
    t = np.arange(n_samples) / SAMPLE_RATE
    rates = rng.uniform(2.5, 4.5, 3)
    envelope = np.clip(sum(np.sin(2 * np.pi * r * t + p) for r, p in zip(rates, rng.uniform(0, 6, 3))) / 2, 0, 1)
    tone = np.sign(np.sin(2 * np.pi * 140 * t)) * 0.5 + np.sin(2 * np.pi * 420 * t) * 0.5
    audio = (0.3 * envelope * tone).astype(np.float32)
    per_frame = envelope[: n_frames * (SAMPLE_RATE // fps)].reshape(n_frames, -1).mean(1)

    yy, xx = np.mgrid[0:size, 0:size] / size
    background = np.stack([0.2 + 0.5 * yy, 0.3 + 0.2 * xx, 0.6 - 0.3 * yy], -1)
    video = np.empty((n_frames, size, size, 3), np.uint8)
    for f in range(n_frames):
        cx = 0.5 + 0.05 * np.sin(2 * np.pi * f / 40)
        face = ((xx - cx) ** 2 + (yy - 0.5) ** 2) < 0.3 ** 2
        mouth = ((xx - cx) / 0.12) ** 2 + ((yy - 0.62) / (0.02 + 0.1 * per_frame[f])) ** 2 < 1
        frame = background.copy()
        frame[face] = (0.9, 0.7, 0.55)
        frame[mouth] = (0.3, 0.05, 0.05)
        video[f] = np.round(frame * 255).astype(np.uint8)
    return video, audio, np.ones(n_frames, np.uint8)
