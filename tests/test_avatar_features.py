"""The audio front end, checked with numbers: visemes, closures, lead, prosody, mask."""
from __future__ import annotations

import numpy as np
import pytest

from avatar_engine.backend import Block
from avatar_engine.features import (LEAD_S, block_features, envelope_mouth, frame_times, listen_features,
                                    viseme_of, viseme_tracks)
from speech.timeline import IDLE, LISTEN, TALK, Phoneme

RATE, FPS = 16000, 25


def test_phonemes_map_to_visemes():
    assert viseme_of("p").closure == 1 and viseme_of("m").open == 0
    assert viseme_of("f").closure > 0.5
    assert viseme_of("a").open == 1.0
    assert viseme_of("u").spread < 0 < viseme_of("i").spread
    assert viseme_of(",").name == "rest"
    assert viseme_of("ˈ") is None and viseme_of("ː") is None


def test_every_lip_closure_reaches_a_frame():
    # A 20 ms /p/ between two open vowels, centred between two frame centres.
    times = frame_times(0.0, 25, FPS)
    for start in np.arange(0.40, 0.44, 0.005):
        phonemes = [("a", 0.0, start), ("p", start, start + 0.02), ("a", start + 0.02, 1.0)]
        open_, _, closure = viseme_tracks(phonemes, times, fps=FPS)
        shut = np.flatnonzero(closure == 1.0)
        assert len(shut) >= 1 and open_[shut].max() == 0.0


def test_picture_leads_the_sound():
    phonemes = [(",", 0.0, 0.5), ("a", 0.5, 0.8), (",", 0.8, 1.2)]
    times = frame_times(0.0, 30, FPS)
    led, _, _ = viseme_tracks(phonemes, times)
    plain, _, _ = viseme_tracks(phonemes, times + LEAD_S, lead_s=0.0)
    np.testing.assert_allclose(led, plain, atol=1e-6)
    # half open before the vowel is heard, closed again well after it
    rise = times[np.argmax(led > 0.5)]
    assert 0.5 - 0.06 < rise < 0.5


def test_coarticulation_blends_neighbours():
    times = frame_times(0.0, 50, FPS)
    # /u/ rounds the lips of the /t/ before it, /i/ spreads them
    round_t = viseme_tracks([("t", 0.4, 0.44), ("u", 0.44, 0.7)], times)[1]
    spread_t = viseme_tracks([("t", 0.4, 0.44), ("i", 0.44, 0.7)], times)[1]
    i = int(0.42 * FPS)
    assert round_t[i] < 0 < spread_t[i]


def test_mouth_from_audio_alone_follows_loudness():
    t = np.arange(RATE) / RATE
    quiet = 0.02 * np.sin(2 * np.pi * 200 * t)
    loud = 0.3 * np.sin(2 * np.pi * 200 * t)
    audio = np.concatenate([np.zeros(RATE), quiet, loud]).astype(np.float32)
    open_, spread = envelope_mouth(audio, RATE, 75)
    assert open_[:25].max() == 0 < open_[25:50].mean() < open_[50:].mean()
    assert spread[50:].mean() < 0                    # a dark 200 Hz tone: rounded, not spread


def test_listen_prosody_energy_voicing_and_pitch_rise():
    t = np.arange(RATE) / RATE
    f = 120 + 80 * t                                 # a rising voice, 120 → 200 Hz
    chirp = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / RATE)
    audio = np.concatenate([np.zeros(RATE // 2), chirp]).astype(np.float32)
    feats = listen_features(audio, RATE, 37)
    assert feats.energy[:12].max() == 0 and feats.voiced[:12].max() == 0
    assert feats.energy[14:].min() > 0.5 and feats.voiced[14:].mean() > 0.9
    pitch = feats.pitch[14:][feats.voiced[14:] > 0]
    assert pitch[-3:].mean() - pitch[:3].mean() == pytest.approx(12 * np.log2(195 / 125), abs=1.5)


def test_mask_is_applied_after_extraction():
    n = 12
    samples = n * RATE // FPS
    t = np.arange(samples) / RATE
    voice = (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    mask = np.array([TALK] * 4 + [IDLE] * 4 + [LISTEN] * 4, np.uint8)
    block = Block(index=0, t0=0.0, fps=FPS, sample_rate=RATE, talk_audio=voice, listen_audio=voice,
                  mask=mask, phonemes=(Phoneme("a", 0.0, 0.48),))
    f = block_features(block)
    assert f.talk.open[:4].min() > 0.5 and not f.talk.open[4:].any()
    assert not f.talk.energy[4:].any()
    assert not f.listen.energy[:8].any() and f.listen.energy[8:].min() > 0.5
