"""Portrait backend render speed at 512×512: frames per second while speaking (Piper
speech with phonemes), listening and idle, with the ratio to the 100 fps goal (4× real
time at 25 fps, leaving the CPU to ASR, LLM and TTS).

    python bench/portrait_fps.py [--seconds 20] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import assets  # noqa: E402
from avatar_engine.portrait.backend import PortraitBackend  # noqa: E402
from avatar_engine.runtime import AvatarRuntime  # noqa: E402
from config import load_config  # noqa: E402
from speech.tts import TTS  # noqa: E402

GOAL_FPS = 100.0
TEXT = "Good evening and welcome. Tonight we look at the moon, and ask why it always shows us the same face."


def measure(rt: AvatarRuntime, seconds: float, feed) -> float:
    """Frames per second of `rt.step()` over `seconds` of video, feeding inputs first."""
    n_blocks = max(1, round(seconds * rt.fps / rt.frames_per_block))
    feed(rt)
    t = time.perf_counter()
    for _ in range(n_blocks):
        rt.step()
    return n_blocks * rt.frames_per_block / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="video seconds per mode")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads (1: measured per core)")
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)
    cfg = load_config(overrides={"avatar": {"size": 512}})
    speech = TTS(cfg.tts).synthesize(TEXT)
    backend = PortraitBackend(512, cfg.avatar.seed)
    rt = AvatarRuntime.from_config(cfg.avatar, backend, assets.default_portrait(), cfg.audio.sample_rate)
    rt.step()  # warm-up

    def talk(r):
        for _ in range(int(args.seconds / speech.seconds) + 1):
            r.push_talk(speech.audio, speech.sample_rate, speech.phonemes)

    results = {"speaking": measure(rt, args.seconds, talk)}
    rt.flush()
    # listening: a block of the user's mic audio arrives before every block
    n_blocks = max(1, round(args.seconds * rt.fps / rt.frames_per_block))
    mic = np.resize(speech.audio, n_blocks * rt.block_samples * speech.sample_rate // rt.sample_rate + 1)
    per = rt.block_samples * speech.sample_rate // rt.sample_rate
    t = time.perf_counter()
    for k in range(n_blocks):
        rt.push_listen(mic[k * per:(k + 1) * per], speech.sample_rate, speaking=True)
        rt.step()
    results["listening"] = n_blocks * rt.frames_per_block / (time.perf_counter() - t)
    results["idle"] = measure(rt, args.seconds, lambda r: None)

    print(f"portrait backend, 512×512, {args.threads} OpenCV thread(s), {args.seconds:.0f} s of video per mode")
    for mode, fps in results.items():
        print(f"  {mode:9s} {fps:6.1f} fps  {1e3 / fps:5.2f} ms/frame  ratio to {GOAL_FPS:.0f} fps goal: {fps / GOAL_FPS:.2f}")
    overall = len(results) / sum(1 / f for f in results.values())
    print(f"  overall   {overall:6.1f} fps  ratio to goal: {overall / GOAL_FPS:.2f}  "
          f"({overall / rt.fps:.1f}× real time at {rt.fps} fps)")


if __name__ == "__main__":
    main()
