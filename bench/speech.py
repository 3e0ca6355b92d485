"""Speech stack speed: VAD per 32 ms chunk, ASR real-time factor, TTS real-time factor and
time to first audio, and what each persona's voice (its pitch and formants) adds to a
sentence. Prints each figure with its ratio to the reference it must beat.

    python bench/speech.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.persona import load_persona  # noqa: E402
from config import load_config  # noqa: E402
from speech.asr import ASR, word_error_rate  # noqa: E402
from speech.audio import resample  # noqa: E402
from speech.formants import shift_formants  # noqa: E402
from speech.tts import TTS  # noqa: E402
from speech.vad import FRAME_SAMPLES, StreamingVAD  # noqa: E402

RATE = 16000
# No spelled-out numbers: Whisper writes digits, which a word match would count as errors.
TEXT = ("Good evening and welcome. Tonight we look at the moon, the bright companion of our "
        "planet, and ask why it always shows us the same face.")


def bench_vad(cfg, speech: np.ndarray, seconds: float = 20.0) -> dict:
    vad = StreamingVAD(cfg.vad, RATE)
    frame = FRAME_SAMPLES[RATE]
    audio = np.resize(speech, int(seconds * RATE))
    t = time.perf_counter()
    vad.push(audio)
    per_chunk = (time.perf_counter() - t) / (len(audio) // frame)
    # the echo canceller's extra cost while the agent plays
    vad = StreamingVAD(cfg.vad, RATE)
    t = time.perf_counter()
    vad.push(audio * 0.3, played=audio)
    per_chunk_echo = (time.perf_counter() - t) / (len(audio) // frame)
    return dict(vad_ms=per_chunk * 1e3, vad_echo_ms=per_chunk_echo * 1e3, chunk_ms=frame / RATE * 1e3)


def bench_asr(cfg, speech: np.ndarray, repeats: int) -> dict:
    asr = ASR(cfg.asr)
    asr.transcribe(speech[:RATE])  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        text = asr.transcribe(speech).text
        times.append(time.perf_counter() - t)
    secs = len(speech) / RATE
    return dict(asr_s=statistics.median(times), asr_audio_s=secs,
                asr_rtf=statistics.median(times) / secs, asr_wer=word_error_rate(TEXT, text))


def bench_tts(tts: TTS, repeats: int) -> dict:
    first, rtf = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        total_audio = 0.0
        for i, chunk in enumerate(tts.stream(TEXT)):
            if i == 0:
                first.append(time.perf_counter() - t)
            total_audio += chunk.seconds
        rtf.append((time.perf_counter() - t) / total_audio)
    return dict(tts_first_s=statistics.median(first), tts_rtf=statistics.median(rtf))


def bench_voice(tts: TTS, persona_id: str, repeats: int) -> dict:
    """First audio in the persona's voice, and the formant move's own cost per sentence
    (timed apart from Piper, on the sentences as Piper made them)."""
    p = load_persona(persona_id)
    voiced = tts.with_formants(p.voice_formant)
    factor = 1.0 if p.voice_formant is None else 2 ** ((p.voice_formant - p.voice_pitch) / 12)
    first, added, sentence = [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        next(iter(voiced.stream(TEXT, pitch=p.voice_pitch)))
        first.append(time.perf_counter() - t)
        for chunk in tts.stream(TEXT, pitch=p.voice_pitch):
            t = time.perf_counter()
            shift_formants(chunk.audio, chunk.sample_rate, factor)
            added.append(time.perf_counter() - t)
            sentence.append(chunk.seconds)
    return dict(name=p.name, pitch=p.voice_pitch, formant=p.voice_formant, first_s=statistics.median(first),
                added_ms=statistics.median(added) * 1e3, sentence_s=statistics.median(sentence))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cfg = load_config()
    tts = TTS(cfg.tts)
    clip = tts.synthesize(TEXT)
    speech = resample(clip.audio * 0.5, clip.sample_rate, RATE)

    r = {**bench_vad(cfg, speech), **bench_asr(cfg, speech, args.repeats), **bench_tts(tts, args.repeats)}
    print(f"VAD            {r['vad_ms']:.3f} ms per {r['chunk_ms']:.0f} ms chunk "
          f"= {r['vad_ms'] / r['chunk_ms']:.4f} of real time")
    print(f"VAD + echo     {r['vad_echo_ms']:.3f} ms per chunk while the agent plays "
          f"= {r['vad_echo_ms'] / r['chunk_ms']:.4f} of real time")
    print(f"ASR tiny.en    {r['asr_s'] * 1e3:.0f} ms for {r['asr_audio_s']:.1f} s of speech: "
          f"RTF {r['asr_rtf']:.3f} ({1 / r['asr_rtf']:.1f}x real time), WER {r['asr_wer']:.0%}")
    print(f"TTS Piper joe  RTF {r['tts_rtf']:.3f} ({1 / r['tts_rtf']:.1f}x real time), "
          f"first audio after {r['tts_first_s'] * 1e3:.0f} ms "
          f"= {r['tts_first_s'] / 0.2:.2f} of a 200 ms budget")
    for persona_id in ("ada", "juno"):
        v = bench_voice(tts, persona_id, args.repeats)
        print(f"voice {v['name']:<8} pitch {v['pitch']:+g}, formants {v['formant']:+g}: first audio after "
              f"{v['first_s'] * 1e3:.0f} ms = {v['first_s'] / 0.2:.2f} of 200 ms; the formant move adds "
              f"{v['added_ms']:.1f} ms to a {v['sentence_s']:.1f} s sentence = {v['added_ms'] / 20:.2f} of a 20 ms allowance")


if __name__ == "__main__":
    main()
