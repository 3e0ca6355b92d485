"""Portrait backend render speed at 512×512 through the runtime: frames per second while
speaking (Piper speech with phonemes), listening (mic audio each block) and idle, with
the ratio to the 100 fps goal (4× real time at 25 fps, leaving the CPU to ASR, LLM and
TTS). Reports wall-clock fps and CPU-time fps (the render thread's own CPU seconds,
which other load on a shared machine does not inflate).

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


def run(rt: AvatarRuntime, n_blocks: int, before_block) -> tuple[float, float]:
    """(wall fps, CPU-time fps) of `n_blocks` steps, calling `before_block(k)` first."""
    wall = cpu = 0.0
    for k in range(n_blocks):
        before_block(k)
        w, c = time.perf_counter(), time.thread_time()
        rt.step()
        wall += time.perf_counter() - w
        cpu += time.thread_time() - c
    frames = n_blocks * rt.frames_per_block
    return frames / wall, frames / cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="video seconds per mode")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads (1: the cost on one core)")
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)
    cfg = load_config(overrides={"avatar": {"size": 512}})
    speech = TTS(cfg.tts).synthesize(TEXT)
    backend = PortraitBackend(512, cfg.avatar.seed)
    rt = AvatarRuntime.from_config(cfg.avatar, backend, assets.default_portrait(), cfg.audio.sample_rate)
    n_blocks = max(1, round(args.seconds * rt.fps / rt.frames_per_block))
    rt.step()  # warm-up

    for _ in range(int(args.seconds / speech.seconds) + 1):
        rt.push_talk(speech.audio, speech.sample_rate, speech.phonemes)
    results = {"speaking": run(rt, n_blocks, lambda k: None)}
    rt.flush()
    per = rt.block_samples * speech.sample_rate // rt.sample_rate
    mic = np.resize(speech.audio, (n_blocks + 1) * per)
    results["listening"] = run(rt, n_blocks, lambda k: rt.push_listen(mic[k * per:(k + 1) * per],
                                                                      speech.sample_rate, speaking=True))
    results["idle"] = run(rt, n_blocks, lambda k: None)

    print(f"portrait backend through the runtime, 512×512, {rt.frames_per_block}-frame blocks, "
          f"{args.threads} OpenCV thread(s), {args.seconds:.0f} s of video per mode")
    print(f"  {'mode':9s} {'wall fps':>9s} {'CPU fps':>9s}  ratio to {GOAL_FPS:.0f} fps (wall / CPU)")
    for mode, (wall, cpu) in results.items():
        print(f"  {mode:9s} {wall:9.1f} {cpu:9.1f}  {wall / GOAL_FPS:.2f} / {cpu / GOAL_FPS:.2f}")
    wall = len(results) / sum(1 / w for w, _ in results.values())
    cpu = len(results) / sum(1 / c for _, c in results.values())
    print(f"  {'overall':9s} {wall:9.1f} {cpu:9.1f}  {wall / GOAL_FPS:.2f} / {cpu / GOAL_FPS:.2f}  "
          f"({cpu / rt.fps:.1f}× real time at {rt.fps} fps on one core's CPU time)")


if __name__ == "__main__":
    main()
