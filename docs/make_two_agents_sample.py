"""Remake docs/two_agents.mp4 (+ .json) and docs/two_agents.png: Ada and Juno talking,
recorded with the app's own two-agent mode, and one frame of each speaking.

    python docs/make_two_agents_sample.py
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avatar_engine.media import read_mp4  # noqa: E402

NAME = "docs/two_agents.mp4"  # relative: the transcript JSON records it as given
OUT = ROOT / NAME


def widest_mouth(frames: np.ndarray, fps: float, t0: float, t1: float, half: int) -> int:
    """The frame in [t0, t1) whose mouth (of the left or right avatar) differs most from rest."""
    ys, xs = slice(260, 340), slice(512 * half + 180, 512 * half + 330)
    rest = frames[0][ys, xs].astype(int)
    return max(range(int(t0 * fps), min(int(t1 * fps), len(frames))),
               key=lambda i: np.abs(frames[i][ys, xs].astype(int) - rest).mean())


def main() -> None:
    subprocess.run([sys.executable, str(ROOT / "app.py"), "--two-agents", "ada", "juno", "--turns", "4",
                    "--topic", "the moon", "--output", NAME], check=True, cwd=ROOT)
    frames, _, _, fps = read_mp4(OUT)
    result = json.loads(OUT.with_suffix(".json").read_text())
    first_b = result["b"]["turns"][0]["first_audio_at"]
    rows = []
    for (t0, t1, half), label in (((1.0, 4.0, 0), "Ada speaks (greeting, voice pitch +3); Juno listens"),
                                  ((first_b, first_b + 3.0, 1), "Juno speaks (voice pitch -2); Ada listens")):
        i = widest_mouth(frames, fps, t0, t1, half)
        image = Image.fromarray(frames[i]).resize((frames.shape[2] // 2, frames.shape[1] // 2), Image.LANCZOS)
        row = Image.new("RGB", (image.width, image.height + 22), "white")
        row.paste(image, (0, 0))
        ImageDraw.Draw(row).text((6, image.height + 5), f"{label}   (t={i / fps:.1f} s)", fill="black")
        rows.append(np.asarray(row))
    Image.fromarray(np.concatenate(rows)).save(OUT.with_suffix(".png"), optimize=True)
    print(f"wrote {OUT}, {OUT.with_suffix('.json')} and {OUT.with_suffix('.png')}")


if __name__ == "__main__":
    main()
