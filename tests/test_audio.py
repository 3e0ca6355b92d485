"""Audio front door: formats, rates, resampling quality, bad samples."""
import numpy as np
import pytest

from speech.audio import AudioError, StreamResampler, prepare, resample, to_mono_float32


def tone(freq, rate, seconds=1.0, amp=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def level_at(x, rate, freq):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(round(freq * len(x) / rate))
    return spec[max(k - 3, 0):k + 4].max() / spec.max()


def test_int16_stereo_both_layouts_become_the_same_mono():
    x = (tone(440, 48000) * 32767).astype(np.int16)
    interleaved = np.stack([x, x], axis=1)           # (samples, 2)
    planar = np.stack([x, x], axis=0)                # (2, samples)
    a = to_mono_float32(interleaved, 48000)
    b = to_mono_float32(planar, 48000)
    assert a.dtype == np.float32 and a.shape == (48000,)
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(a, x / 32768.0, atol=1e-6)


def test_caller_buffer_is_never_mutated():
    x = np.array([2.0, -3.0, 0.5], np.float64)      # clipped float input
    before = x.copy()
    out = to_mono_float32(x, 16000)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(out, [1.0, -1.0, 0.5])
    y = tone(300, 16000)
    r = resample(y, 16000, 16000)
    r[:] = 0
    assert np.abs(y).max() > 0.4


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_rejected(bad):
    x = tone(300, 16000)
    x[100] = bad
    with pytest.raises(AudioError, match="NaN or infinite"):
        prepare(x, 16000, 16000)


@pytest.mark.parametrize("rate", [4000, 96000, 44100.0])
def test_unsupported_rates_are_rejected(rate):
    with pytest.raises(AudioError, match="sample rate"):
        to_mono_float32(tone(300, 16000), rate)


def test_bad_types_and_shapes():
    with pytest.raises(AudioError, match="sample type"):
        to_mono_float32(np.zeros(10, np.uint8), 16000)
    with pytest.raises(AudioError, match="1-D or 2-D"):
        to_mono_float32(np.zeros((2, 2, 2), np.float32), 16000)


def test_empty_audio_is_empty_not_an_error():
    assert prepare(np.zeros(0, np.int16), 48000, 16000).shape == (0,)


def test_downsampling_does_not_alias():
    # 10 kHz is above the 8 kHz Nyquist of 16 kHz: it must vanish, not fold to 6 kHz.
    x = tone(10000, 48000) + tone(1000, 48000)
    y = resample(x, 48000, 16000)
    assert len(y) == 16000
    assert level_at(y, 16000, 6000) < 1e-3     # no alias
    assert level_at(y, 16000, 1000) > 0.9      # the in-band tone survives


def test_8k_and_48k_stereo_reach_16k_with_the_same_content():
    x8 = np.stack([tone(500, 8000)] * 2, axis=1)
    x48 = np.stack([tone(500, 48000)] * 2, axis=1)
    a, b = prepare(x8, 8000, 16000), prepare(x48, 48000, 16000)
    assert len(a) == len(b) == 16000
    np.testing.assert_allclose(a[1000:-1000], b[1000:-1000], atol=0.02)


def test_stream_resampler_has_no_seams():
    x = tone(700, 48000, seconds=0.5)
    whole = resample(x, 48000, 16000)
    rs = StreamResampler(48000, 16000)
    parts = [rs(x[i:i + 480]) for i in range(0, len(x), 480)] + [rs(np.zeros(0, np.float32), last=True)]
    streamed = np.concatenate(parts)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole)) - 200
    np.testing.assert_allclose(streamed[200:n], whole[200:n], atol=2e-3)
