"""The espeak-ng user voice: real espeak-ng audio, true speech bounds, the room's SNR."""
import numpy as np
import pytest

from speech import espeak
from speech.espeak import VOICES, EspeakError, Room, Voice, speak


def test_speaks_16k_float32_with_the_true_bounds_of_speech():
    u = speak("Hello there, how are you?", lead_s=0.5, tail_s=0.7)
    assert u.audio.dtype == np.float32 and u.audio.ndim == 1 and u.rate == 16000
    assert abs(float(np.max(np.abs(u.audio))) - 0.5) < 1e-3
    # the silence added (plus espeak-ng's own padding) lies outside the bounds
    total = len(u.audio) / 16000
    assert 0.5 <= u.start < 0.65 and total - 0.7 - 0.5 < u.end <= total - 0.7
    hop = 160
    outside = np.r_[u.audio[: int(u.start * 16000) - hop], u.audio[int(u.end * 16000) + hop:]]
    assert np.max(np.abs(outside)) < 0.01
    inside = u.audio[int(u.start * 16000): int(u.start * 16000) + 1600]
    assert np.max(np.abs(inside)) > 0.02        # speech begins right at `start`


def test_voices_and_speeds_differ():
    slow = speak("What do bees make from nectar?", Voice("en-us", 120))
    fast = speak("What do bees make from nectar?", Voice("en-us", 220))
    assert (slow.end - slow.start) / (fast.end - fast.start) > 1.5
    a, b = (speak("ten plus five", v).audio for v in VOICES[:2])
    assert len(a) != len(b) or not np.allclose(a, b)


def test_room_adds_noise_at_the_requested_snr_and_keeps_the_bounds():
    dry = speak("Could you tell me what your name is?", lead_s=0.3, tail_s=0.3)
    for snr in (10.0, 20.0):
        wet = speak("Could you tell me what your name is?", room=Room(snr_db=snr), lead_s=0.3, tail_s=0.3, seed=1)
        assert (wet.start, wet.end) == (dry.start, dry.end) and len(wet.audio) == len(dry.audio)
        lead = wet.audio[: int(0.25 * 16000)]                     # noise alone
        speech = wet.audio[int(wet.start * 16000): int(wet.end * 16000)]
        measured = 10 * np.log10(np.mean(speech ** 2) / np.mean(lead ** 2))
        assert abs(measured - snr) < 2.0, measured   # speech + noise over noise ≈ SNR (+0.4 dB at 10)
    same = speak("Could you tell me what your name is?", room=Room(), seed=3).audio
    assert np.array_equal(same, speak("Could you tell me what your name is?", room=Room(), seed=3).audio)


def test_reverb_decays_by_rt60():
    h = espeak.room_response(Room(rt60_s=0.4), np.random.default_rng(0))
    assert len(h) == int(0.4 * 16000) and h[0] == 1.0
    early, late = (float(np.mean(h[a:a + 800] ** 2)) for a in (80, 80 + 3200))   # 0.2 s apart
    assert 20 < 10 * np.log10(early / late) < 40      # ~30 dB per half of rt60


def test_one_line_errors(monkeypatch):
    with pytest.raises(EspeakError, match="voice 'xx-nowhere'.*espeak-ng --voices"):
        speak("hi", Voice("xx-nowhere"))
    with pytest.raises(EspeakError, match="empty"):
        speak("  ")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EspeakError, match="apt-get install espeak-ng"):
        speak("hi")
