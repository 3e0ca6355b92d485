"""Soak: an hour (or more) of simulated conversation through the avatar runtime and the
portrait backend, as fast as the CPU renders. Prints RSS growth and the per-block render
cost at the start vs the end: both must stay flat for sessions of any length.

The script cycles agent replies (real Piper speech with phonemes), user turns (the same
speech as mic audio), barge-ins (flush mid-reply) and idle stretches.

    python bench/avatar_soak.py [--minutes 60]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import assets  # noqa: E402
from avatar_engine.portrait.backend import PortraitBackend  # noqa: E402
from avatar_engine.runtime import AvatarRuntime  # noqa: E402
from config import load_config  # noqa: E402
from speech.tts import TTS  # noqa: E402

REPLIES = ["Sure, I can help with that. Let me think about the best way to explain it.",
           "That is a wonderful idea, and I think your friends would enjoy it very much.",
           "Here is what I found: the museum opens at nine and closes at five."]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="simulated session length")
    args = ap.parse_args()
    cfg = load_config()
    tts = TTS(cfg.tts)
    replies = [tts.synthesize(t) for t in REPLIES]
    backend = PortraitBackend(cfg.avatar.size, cfg.avatar.seed)
    rt = AvatarRuntime.from_config(cfg.avatar, backend, assets.default_portrait(), cfg.audio.sample_rate)
    block_s = cfg.avatar.frames_per_block / cfg.avatar.fps
    n_blocks = int(args.minutes * 60 / block_s)
    costs, rss = np.zeros(n_blocks), []
    mic_chunk = rt.block_samples
    started = time.perf_counter()
    for k in range(n_blocks):
        phase = k % 100                       # one 48 s "exchange" per 100 blocks
        if phase == 0:                        # the agent replies
            r = replies[(k // 100) % len(replies)]
            rt.push_talk(r.audio, r.sample_rate, r.phonemes)
        elif phase == 8 and (k // 100) % 3 == 2:
            rt.flush()                        # every third reply is cut short (barge-in)
        if 30 <= phase < 45:                  # the user speaks
            user = replies[(k // 100 + 1) % len(replies)]
            start = ((phase - 30) * mic_chunk * user.sample_rate // rt.sample_rate) % len(user.audio)
            rt.push_listen(user.audio[start:start + mic_chunk * user.sample_rate // rt.sample_rate],
                           user.sample_rate, speaking=True)
        t = time.perf_counter()
        rt.step()
        costs[k] = time.perf_counter() - t
        if k % 500 == 0:
            rss.append(rss_mb())
    wall = time.perf_counter() - started
    rss.append(rss_mb())
    head, tail = costs[50:550], costs[-500:]       # skip warm-up blocks
    simulated = n_blocks * block_s
    print(f"simulated {simulated / 60:.1f} min in {wall / 60:.1f} min wall ({simulated / wall:.1f}× real time)")
    print(f"RSS: {rss[1]:.1f} MB after warm-up → {rss[-1]:.1f} MB at the end "
          f"(growth {rss[-1] - rss[1]:+.1f} MB; max {max(rss):.1f} MB)")
    print(f"per block ({cfg.avatar.frames_per_block} frames): first 500 {1e3 * np.median(head):.1f} ms median, "
          f"last 500 {1e3 * np.median(tail):.1f} ms median (ratio last/first {np.median(tail) / np.median(head):.2f})")


if __name__ == "__main__":
    main()
