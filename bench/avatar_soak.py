"""Soak: an hour (or more) of simulated conversation through the avatar runtime and the
portrait backend, as fast as the CPU renders. Prints RSS growth and the per-block render
cost at the start vs the end: both must stay flat for sessions of any length.

The script cycles 20 s exchanges: an agent reply (real Piper speech with phonemes), a
user turn (speech as mic audio), idle; every third reply is cut short (barge-in). Cost
is measured as the render thread's CPU time (robust to other load on the machine) and
as wall time.

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

EXCHANGE_S = 20.0          # one exchange: reply at 0 s, user speaks 8–14 s, idle after
BARGE_IN_S = 2.0           # every third reply is cut here
USER_S = (8.0, 14.0)
WINDOW_S = 300.0           # RSS and cost are compared over 5-minute windows
REPLIES = ["Sure, I can help with that. Let me think about the best way to explain it.",
           "That is a wonderful idea, and I think your friends would enjoy it very much.",
           "Here is what I found: the museum opens at nine and closes at five."]


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of process `pid` (this one by default), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
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
    window = max(1, int(WINDOW_S / block_s))
    wall, cpu, rss = np.zeros(n_blocks), np.zeros(n_blocks), []
    started = time.perf_counter()
    for k in range(n_blocks):
        t = k * block_s
        exchange, at = int(t // EXCHANGE_S), t % EXCHANGE_S
        if at < block_s:                                   # the agent replies
            reply = replies[exchange % len(replies)]
            rt.push_talk(reply.audio, reply.sample_rate, reply.phonemes)
        elif BARGE_IN_S <= at < BARGE_IN_S + block_s and exchange % 3 == 2:
            rt.flush()                                     # every third reply is cut short
        if USER_S[0] <= at < USER_S[1]:                    # the user speaks
            user = replies[(exchange + 1) % len(replies)]
            per = rt.block_samples * user.sample_rate // rt.sample_rate
            i = int((at - USER_S[0]) / block_s) * per % max(len(user.audio) - per, 1)
            rt.push_listen(user.audio[i:i + per], user.sample_rate, speaking=True)
        w, c = time.perf_counter(), time.thread_time()
        rt.step()
        wall[k], cpu[k] = time.perf_counter() - w, time.thread_time() - c
        if k % window == 0:
            rss.append(rss_mb())
    elapsed = time.perf_counter() - started
    rss.append(rss_mb())
    simulated = n_blocks * block_s
    first, last = slice(window, 2 * window), slice(-window, None)    # skip the first (warm-up) window
    print(f"simulated {simulated / 60:.1f} min in {elapsed / 60:.1f} min wall ({simulated / elapsed:.1f}× real time), "
          f"{cfg.avatar.frames_per_block}-frame blocks at {cfg.avatar.fps} fps, {cfg.avatar.size}×{cfg.avatar.size}")
    print(f"RSS: {rss[1]:.1f} MB after the first {WINDOW_S / 60:.0f} min → {rss[-1]:.1f} MB at the end "
          f"(growth {rss[-1] - rss[1]:+.1f} MB; max {max(rss):.1f} MB)")
    for name, cost in (("CPU time", cpu), ("wall time", wall)):
        a, b = np.median(cost[first]), np.median(cost[last])
        print(f"per block {name}: minutes {WINDOW_S / 60:.0f}–{2 * WINDOW_S / 60:.0f} {1e3 * a:.2f} ms median, "
              f"last {WINDOW_S / 60:.0f} min {1e3 * b:.2f} ms (ratio last/first {b / a:.2f})")


if __name__ == "__main__":
    main()
