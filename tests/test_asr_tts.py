"""ASR word error rate on synthesized speech; TTS streaming, alignments, cancel."""
import asyncio
import threading

import numpy as np
import pytest

from speech.asr import word_error_rate
from speech.audio import resample

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


def test_asr_transcribes_a_synthesized_sentence(asr, say):
    t = asr.transcribe(say(SENTENCE))
    assert word_error_rate(SENTENCE, t.text) <= 0.10, t.text
    assert t.words and all(0 <= w.start <= w.end <= t.seconds + 0.1 for w in t.words)
    assert [w.start for w in t.words] == sorted(w.start for w in t.words)
    assert " ".join(w.text for w in t.words) == t.text
    quick = asr.transcribe(say(SENTENCE), words=False)  # what a reply needs: the text alone
    assert quick.text == t.text and quick.words == ()


def test_asr_on_silence_and_blips_returns_nothing(asr):
    assert asr.transcribe(np.zeros(16000 * 3, np.float32)).text == ""
    assert asr.transcribe(np.zeros(0, np.float32)).text == ""


def test_word_error_rate():
    assert word_error_rate("a b c d", "a x c d") == 0.25
    assert word_error_rate("Hello, world!", "hello world") == 0.0
    assert word_error_rate("a b", "") == 1.0


def test_tts_streams_sentences_with_alignments_matching_the_audio(tts):
    chunks = list(tts.stream("Hello there. How are you today? I am fine, thank you."))
    assert len(chunks) == 3
    for c in chunks:
        assert c.audio.dtype == np.float32 and c.sample_rate == 22050 and len(c.audio) > 0
        assert c.phonemes, "Piper alignments are missing"
        # the phoneme spans tile the chunk: sum of durations = audio length (± one video frame)
        assert abs(c.phonemes[-1].end - c.seconds) <= 1 / 25
        assert all(a.end == b.start for a, b in zip(c.phonemes, c.phonemes[1:]))


def test_tts_cancel_stops_mid_utterance(tts):
    cancel = threading.Event()
    got = []
    for c in tts.stream("One. Two. Three. Four. Five.", cancel):
        got.append(c)
        cancel.set()
    assert len(got) == 1


def test_tts_async_stream_can_be_cancelled(tts):
    async def main():
        got = []

        async def consume():
            async for c in tts.astream("First sentence here. Second one. Third one. Fourth one."):
                got.append(c)
                await asyncio.sleep(10)  # the consumer is busy playing: cancel it meanwhile
        task = asyncio.create_task(consume())
        while not got:
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return got
    assert len(asyncio.run(main())) == 1


def test_tts_of_nothing_is_nothing(tts):
    assert list(tts.stream("")) == []
    assert tts.synthesize("   ").audio.size == 0


def test_tts_speech_is_understood_by_asr(tts, asr):
    c = tts.synthesize("Good morning, my name is Ada.")
    text = asr.transcribe(resample(c.audio, c.sample_rate, 16000)).text
    assert word_error_rate("Good morning, my name is Ada.", text) <= 0.2, text


def median_f0(audio: np.ndarray, rate: int) -> float:
    """Median pitch of the voiced 40 ms frames, by autocorrelation (60-400 Hz)."""
    n, lo, hi = int(0.04 * rate), int(rate / 400), int(rate / 60)
    loud = np.percentile(np.abs(audio), 90) * 0.3
    f0 = []
    for start in range(0, len(audio) - n, n // 2):
        x = audio[start:start + n] - audio[start:start + n].mean()
        if np.abs(x).max() < loud:
            continue
        ac = np.correlate(x, x, "full")[n - 1:]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5 * ac[0]:               # clearly periodic: voiced
            f0.append(rate / lag)
    return float(np.median(f0))


@pytest.mark.parametrize("semitones", [3, -2])
def test_a_persona_pitch_shifts_the_voice_but_not_its_pace_or_words(tts, asr, semitones):
    text = "Good morning, my name is Ada. I like the stars and the sea."

    def voice(pitch: float) -> tuple[float, float, np.ndarray]:
        """Mean F0 and duration over 5 renditions (Piper samples its prosody: F0 varies
        by ~2.5 % between renditions), and the last clip."""
        f0, seconds = [], []
        for _ in range(5):
            c = tts.synthesize(text, pitch=pitch)
            clip = resample(c.audio, c.sample_rate, 16000)   # as the conversation plays it
            assert abs(c.phonemes[-1].end - c.seconds) < 1 / 25  # timings still tile the audio
            f0.append(median_f0(clip, 16000))
            seconds.append(c.seconds)
        return float(np.mean(f0)), float(np.mean(seconds)), clip

    (f0_plain, s_plain, _), (f0, s, clip) = voice(0), voice(semitones)
    assert abs(f0 / f0_plain - 2 ** (semitones / 12)) < 0.06, (f0, f0_plain)
    assert abs(s / s_plain - 1) < 0.12, (s, s_plain)          # spoken at about the same pace
    assert word_error_rate(text, asr.transcribe(clip).text) <= 0.2
