"""Hearing right: word error rate and latency of each ASR option on voices that are not the
agent's (espeak-ng accents and speeds, in a room with reverberation and noise).

Each line is cut as the conversation hands it to ASR: from 0.1 s before the speech (the
VAD's pad) to 0.25 s after it (the pause at which the reply is prepared). Latency is the
reply path's, `transcribe(words=False)`, on `asr.threads` threads.

    python bench/asr.py [--voices 6] [--sentences 10 (of 20)] [--dry] [--options tiny.en:30s,base:10s+hint]

Prints, per option: WER over all lines and per voice, ms per utterance p50/p90 warm
(wall clock) and the p50 of the process's CPU time (on a loaded machine, the figure
that shows what the option costs), the first call of a fresh model without its warm-up
(cold) and with it ("1st"), and the ratios to the 10 % WER target and the 0.2 s ASR
share of the 1.0 s reply budget.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.persona import load_persona  # noqa: E402
from config import load_config  # noqa: E402
from speech.asr import ASR, normalize_words, word_error_rate  # noqa: E402
from speech.espeak import VOICES, Room, speak  # noqa: E402

# Typical of the conversations: questions, names, numbers, short social turns, and the
# three lines the issue found misheard.
SENTENCES = [
    "What do bees make from nectar?",
    "What is ten plus five?",
    "Hello there.",
    "Could you tell me what your name is?",
    "What is the biggest planet in our solar system?",
    "Hi Ada, how are you today?",
    "How many legs does a spider have?",
    "Why is the sky blue?",
    "What is twelve times three?",
    "Tell me something about black holes.",
    "Wait, stop, I have another question.",
    "My friend Juno says the moon is made of cheese.",
    "Can you explain how a rainbow forms?",
    "How far away is the sun?",
    "Okay, thank you, that was very helpful.",
    "Ada, what did I just ask you?",
    "Which is heavier, a kilo of feathers or a kilo of iron?",
    "Where do penguins live?",
    "How old is the universe?",
    "Yeah, right, goodbye for now.",
]
# One room per voice: a laptop's microphone in a study, a living room, a kitchen.
ROOMS = [Room(0.25, 6.0, 30.0), Room(0.3, 3.0, 20.0), Room(0.4, 3.0, 25.0),
         Room(0.3, 6.0, 20.0), Room(0.35, 3.0, 25.0), Room(0.4, 3.0, 20.0)]
LEAD_S, TAIL_S = 0.1, 0.25
DEFAULT_OPTIONS = "tiny.en:30s,tiny.en:10s,tiny.en:10s+hint,base:30s,base:10s,base:10s+hint"
WER_TARGET, LATENCY_BUDGET_S = 0.10, 0.2


def utterances(voices: int, sentences: int, rooms: bool = True) -> list[tuple[int, str, object]]:
    """(voice index, text, audio) for every voice × sentence, cut as the VAD would."""
    out = []
    for v in range(voices):
        for i, text in enumerate(SENTENCES[:sentences]):
            u = speak(text, VOICES[v], ROOMS[v] if rooms else None, lead_s=0.5, tail_s=0.5, seed=100 * v + i)
            out.append((v, text, u.audio[int((u.start - LEAD_S) * u.rate): int((u.end + TAIL_S) * u.rate)]))
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


class ColdASR(ASR):
    """An ASR whose constructor skips the warm-up: what the first turn paid before."""

    def warm_up(self) -> None:
        pass


def measure(cfg, option: str, lines, hint_text: str) -> dict:
    model, _, how = option.partition(":")
    window, *extras = how.split("+")
    beam = next((int(e[4:]) for e in extras if e.startswith("beam")), cfg.asr.beam_size)
    acfg = replace(cfg.asr, model=model, window_s=float(window.rstrip("s")) if window else cfg.asr.window_s,
                   beam_size=beam)
    hint = hint_text if "hint" in extras else ""
    cold = ColdASR(acfg)
    t = time.perf_counter()
    cold.transcribe(lines[0][2], words=False, hint=hint)
    cold_s = time.perf_counter() - t
    del cold
    t = time.perf_counter()
    asr = ASR(acfg)
    load_s = time.perf_counter() - t
    errors, words, seconds, cpu, texts = {}, {}, [], [], []
    for v, text, audio in lines:
        t, c = time.perf_counter(), time.process_time()
        heard = asr.transcribe(audio, words=False, hint=hint).text
        seconds.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        n = len(normalize_words(text))
        errors[v] = errors.get(v, 0) + word_error_rate(text, heard) * n
        words[v] = words.get(v, 0) + n
        texts.append((v, text, heard))
    return dict(option=option, wer=sum(errors.values()) / sum(words.values()),
                per_voice={v: errors[v] / words[v] for v in errors}, p50=pct(seconds, .5), p90=pct(seconds, .9),
                cpu50=pct(cpu, .5),
                first=seconds[0], cold=cold_s, load=load_s, texts=texts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voices", type=int, default=len(VOICES))
    ap.add_argument("--sentences", type=int, default=10)
    ap.add_argument("--options", default=DEFAULT_OPTIONS,
                    help="comma-separated MODEL:WINDOW[+hint][+beamN], e.g. base:10s+hint+beam5")
    ap.add_argument("--errors", action="store_true", help="also print every misheard line")
    ap.add_argument("--dry", action="store_true", help="no room: the voices as espeak-ng makes them")
    args = ap.parse_args()
    cfg = load_config()
    hint_text = load_persona(cfg.agent.persona).greeting
    lines = utterances(min(args.voices, len(VOICES)), args.sentences, not args.dry)
    audio_s = sum(len(a) for _, _, a in lines) / 16000
    print(f"{len(lines)} utterances ({audio_s / len(lines):.1f} s each on average), voices: "
          + ", ".join(f"{VOICES[v].name}@{VOICES[v].wpm}wpm" + ("" if args.dry else f"/{ROOMS[v].snr_db:.0f}dB")
                      for v in range(args.voices))
          + f"; {cfg.asr.threads} threads; hint: {hint_text!r}")
    print(f"{'option':<20} {'WER':>5}  {'per voice':<30} {'p50 ms':>7} {'p90 ms':>7} {'cpu ms':>7} {'cold ms':>8} "
          f"{'1st ms':>7}  WER/target  p50/budget")
    for option in args.options.split(","):
        r = measure(cfg, option.strip(), lines, hint_text)
        per_voice = " ".join(f"{w:4.0%}" for w in r["per_voice"].values())
        print(f"{r['option']:<20} {r['wer']:5.1%}  {per_voice:<30} {r['p50'] * 1e3:7.0f} {r['p90'] * 1e3:7.0f} "
              f"{r['cpu50'] * 1e3:7.0f} "
              f"{r['cold'] * 1e3:8.0f} {r['first'] * 1e3:7.0f}  {r['wer'] / WER_TARGET:10.2f} "
              f"{r['p50'] / LATENCY_BUDGET_S:11.2f}", flush=True)
        if args.errors:
            for v, text, heard in r["texts"]:
                if normalize_words(text) != normalize_words(heard):
                    print(f"    [{VOICES[v].name}] {text!r} -> {heard!r}")


if __name__ == "__main__":
    main()
