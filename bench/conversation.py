"""Response and barge-in latency of the whole local stack over a scripted conversation.

A scripted user asks questions, waits for each answer, and cuts in on some replies, in
espeak-ng voices (six accents and speeds, every other one in a noisy room), never the
agent's own Piper voice. Everything runs for real: Silero VAD, Smart Turn, the ASR, the
LLM on the embedded llama.cpp server, Piper, the portrait avatar. The session clock runs
faster than real time only while nothing is pending, so every latency is what a live
user would wait, measured from the true end of the user's speech.

    python bench/conversation.py [--questions 12] [--barge-ins 3]

Prints p50/p90 of each stage (from the end of the user's speech), where each 100 ms of
the response went (stage by stage, each from the one before), the first turn of the
session on its own, and the ratio of the response latency to the 1.0 s target (p90 to
1.4 s) and of barge-in latency to the 300 ms target.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.metrics import transcript  # noqa: E402
from agent.persona import load_persona  # noqa: E402
from agent.session import make_conversation, open_stack  # noqa: E402
from config import load_config  # noqa: E402
from speech.espeak import VOICES, Room, speak  # noqa: E402
from speech.synthetic import Cue, ScriptedUser  # noqa: E402
from transports.headless import run_conversation  # noqa: E402

QUESTIONS = [
    "Why is the sky blue?", "How far away is the moon?", "What is a black hole?",
    "Why do cats purr?", "How do bees make honey?", "What is lightning?",
    "Why is the sea salty?", "How do plants eat?", "What are stars made of?",
    "Why do we dream?", "How does a rainbow form?", "What is gravity?",
    "Why do leaves change colour?", "How hot is the sun?",
]
CUT_INS = ["Wait, hold on a second.", "Sorry, stop, one more thing.", "Hang on, let me ask something else."]


def cues(questions: int, barge_ins: int) -> list[Cue]:
    out = []
    every = max(1, questions // max(barge_ins, 1))
    for i in range(questions):
        out.append(Cue(QUESTIONS[i % len(QUESTIONS)], "after", 1.0))
        if barge_ins and i % every == every - 1 and len([c for c in out if c.when == "during"]) < barge_ins:
            out.append(Cue(CUT_INS[len([c for c in out if c.when == "during"]) % len(CUT_INS)], "during", 0.8))
    return out


def espeak_voices(lines: list[Cue]):
    """Each line in the next espeak-ng voice, every other one heard in a noisy room."""
    voice = {c.text: (VOICES[i % len(VOICES)], Room(snr_db=20) if i % 2 else None) for i, c in enumerate(lines)}
    return lambda text: speak(text, *voice[text]).audio


def pct(values, q):
    values = sorted(v for v in values if v is not None)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


async def run(questions: int, barge_ins: int, out: Path | None, config: str | None):
    cfg = load_config(config)
    async with open_stack(cfg, lambda m: print(m, file=sys.stderr)) as stack:
        lines = cues(questions, barge_ins)
        user = ScriptedUser(None, lines, voice=espeak_voices(lines))
        conv = make_conversation(stack, load_persona(cfg.agent.persona))
        await run_conversation(conv, user, None, fast=True, max_s=900,
                               progress=lambda m: print(m, file=sys.stderr))
    result = transcript(conv.turns)
    if out:
        out.write_text(json.dumps(result, indent=2))
    return list(conv.turns)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=12)
    ap.add_argument("--barge-ins", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the transcript with all timings here")
    ap.add_argument("--config", help="config YAML (default: config.yaml)")
    args = ap.parse_args()
    turns = asyncio.run(run(args.questions, args.barge_ins, args.json, args.config))
    replied = [t for t in turns if t.first_frame_at is not None]
    def since_end(stage):  # when a stage's result arrived, counted from the end of the user's speech
        return [t.stage_at[stage] - t.user_end for t in replied if stage in t.stage_at]
    stages = [
        ("reply started (at the pause)", [t.reply_started_at - t.user_end for t in replied]),
        ("end of turn detected", [t.detected_at - t.user_end for t in replied]),
        ("ASR done", since_end("asr")),
        ("LLM first token", since_end("llm_first_token")),
        ("LLM first clause (to TTS)", since_end("llm_first_clause")),
        ("TTS first audio", since_end("tts_first_audio")),
        ("first voice to the avatar", [t.first_audio_at - t.user_end for t in replied]),
        ("first avatar frame + voice", [t.response_s for t in replied]),
    ]
    print(f"{len(turns)} user turns, {len(replied)} replied, {sum(t.interrupted for t in turns)} interrupted, "
          f"{sum(t.failure is not None for t in turns)} failed")
    print("from the end of the user's speech     p50      p90")
    for name, values in stages:
        print(f"  {name:<32} {pct(values, .5):6.2f} s {pct(values, .9):6.2f} s")
    print("where the response went (each stage from the one before)  p50      p90")
    parts = [t.breakdown() for t in replied]
    for name in (parts[0] if parts else {}):
        values = [p[name] for p in parts]
        print(f"  {name:<32} {pct(values, .5):6.2f} s {pct(values, .9):6.2f} s")
    if replied:
        first = replied[0]
        print(f"first turn of the session: response {first.response_s:.2f} s "
              + ", ".join(f"{k} {v:.2f}" for k, v in first.breakdown().items() if v is not None))
    semantic = sum(t.semantic_end for t in replied)
    print(f"{semantic}/{len(replied)} turns ended early by the end-of-turn model")
    p50, p90 = pct(stages[-1][1], .5), pct(stages[-1][1], .9)
    print(f"response latency p50 {p50:.2f} s = {p50 / 1.0:.2f}x the 1.0 s target, "
          f"p90 {p90:.2f} s = {p90 / 1.4:.2f}x the 1.4 s target")
    barge = [t.barge_in_s for t in turns if t.barge_in_s is not None]
    if barge:
        print(f"barge-in (onset → last agent sample heard) p50 {pct(barge, .5) * 1e3:.0f} ms, "
              f"max {max(barge) * 1e3:.0f} ms = {max(barge) / 0.3:.2f}x the 300 ms target, n={len(barge)}")
    print(f"mean response {np.mean(stages[-1][1]):.2f} s")


if __name__ == "__main__":
    main()
