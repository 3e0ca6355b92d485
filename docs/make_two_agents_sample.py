"""Remake docs/two_agents.mp4 (+ .json) and docs/two_agents.png: Ada and Juno, each with
her own face and voice, talking for 8 replies, recorded with the app's own two-agent
mode, and one frame of each speaking. Prints the transcript and its checks (nobody cut
off, the voices never at once, no reply said twice, most replies on the topic, two
voices measured apart); exits 1 when one fails. The voices' measures go in the JSON.

    python docs/make_two_agents_sample.py
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.persona import load_persona  # noqa: E402
from avatar_engine.media import read_mp4  # noqa: E402
from speech.voice_measures import compare_voices  # noqa: E402
from transports.two_agents import spoken_replies  # noqa: E402

NAME = "docs/two_agents.mp4"  # relative: the transcript JSON records it as given
OUT = ROOT / NAME
A, B, TURNS, TOPIC = "ada", "juno", 8, "the moon"


def widest_mouth(frames: np.ndarray, fps: float, t0: float, t1: float, half: int) -> int:
    """The frame in [t0, t1) whose mouth (of the left or right avatar) differs most from rest."""
    ys, xs = slice(260, 340), slice(512 * half + 180, 512 * half + 330)
    rest = frames[0][ys, xs].astype(int)
    return max(range(int(t0 * fps), min(int(t1 * fps), len(frames))),
               key=lambda i: np.abs(frames[i][ys, xs].astype(int) - rest).mean())


def checks(result: dict) -> list[str]:
    """What would make the recording not sound like a conversation; empty when fine."""
    turns = spoken_replies(result)
    said = [" ".join(re.findall(r"[a-z']+", t["agent_text"].lower())) for t in turns]
    problems = [f"reply {i} was cut off" for i, t in enumerate(turns) if t["interrupted"]]
    problems += [f"reply {i} repeats an earlier one" for i, s in enumerate(said) if s in said[:i]]
    if result["overlap_s"] > 0.3:
        problems.append(f"both voices at once for {result['overlap_s']:.2f} s")
    if len(turns) < TURNS:
        problems.append(f"only {len(turns)} of {TURNS} replies")
    if result["on_topic"]["share"] < 0.5:
        problems.append(f"only {result['on_topic']['share']:.0%} of the replies on the topic")
    voices = result["voices"]
    pitch_a, pitch_b = voices["pitch_hz"]
    if abs(12 * np.log2(pitch_a / pitch_b)) < 2 and abs(voices["formants_b_above_a"]) < 1:
        problems.append(f"the voices sound alike ({voices})")
    return problems


def label(persona_id: str) -> str:
    p = load_persona(persona_id)
    face = "astronaut" if p.image == "astronaut" else Path(p.image).stem
    formants = "with the pitch" if p.voice_formant is None else f"{p.voice_formant:+g}"
    return f"{p.name} speaks ({face}; voice pitch {p.voice_pitch:+g}, formants {formants})"


def main() -> int:
    subprocess.run([sys.executable, str(ROOT / "app.py"), "--two-agents", A, B, "--turns", str(TURNS),
                    "--topic", TOPIC, "--output", NAME], check=True, cwd=ROOT)
    frames, audio, rate, fps = read_mp4(OUT)
    result = json.loads(OUT.with_suffix(".json").read_text())
    result["voices"] = compare_voices(audio, rate, result["a"]["voice"], result["b"]["voice"])
    OUT.with_suffix(".json").write_text(json.dumps(result, indent=2))
    first_b = result["b"]["turns"][0]["first_audio_at"]
    rows = []
    for (t0, t1, half), text in (((1.0, 4.0, 0), label(A) + " (greeting)"),
                                 ((first_b, first_b + 3.0, 1), label(B))):
        i = widest_mouth(frames, fps, t0, t1, half)
        image = Image.fromarray(frames[i]).resize((frames.shape[2] // 2, frames.shape[1] // 2), Image.LANCZOS)
        row = Image.new("RGB", (image.width, image.height + 22), "white")
        row.paste(image, (0, 0))
        ImageDraw.Draw(row).text((6, image.height + 5), f"{text}   (t={i / fps:.1f} s)", fill="black")
        rows.append(np.asarray(row))
    Image.fromarray(np.concatenate(rows)).save(OUT.with_suffix(".png"), optimize=True)
    names = {id(t): result[side]["persona"] for side in "ab" for t in result[side]["turns"]}
    for t, topical in zip(spoken_replies(result), result["on_topic"]["replies"]):
        print(f"{t['first_audio_at']:6.1f}s  {names[id(t)]}: {t['agent_text']}" + ("" if topical else "  (off the topic)"))
    print(f"voices: pitch {result['voices']['pitch_hz']} Hz, {B}'s formants "
          f"{result['voices']['formants_b_above_a']:+.1f} semitones from {A}'s")
    print(f"wrote {OUT}, {OUT.with_suffix('.json')} and {OUT.with_suffix('.png')}")
    problems = checks(result)
    print("checks: " + ("; ".join(problems) if problems else "no interruptions, no overlap, no repeats, on the topic, two voices"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
