"""In-page response latency of a browser call, for each way of sending the avatar's video.

For each video option, `python app.py` on the real default stack (config.yaml: the 1.5B
Qwen LLM, Whisper, Piper, the portrait avatar) answers `--questions` questions spoken
into a real headless Chromium's microphone in espeak-ng voices (never the agent's Piper
voice), one after the other as each reply ends, the first turn of the call included;
then the last reply is cut into. Everything (Chromium, the app, the LLM server) is pinned
to the same 2 cores. Measured in the page (tests/browser_page.py --ask): from the end of
each question to the first audible sample of its reply, and how soon the voice stops
after the cut-in. Printed per option: in-page p50/p90, the server's own figure for the
same turns, the app's CPU per call (% of one core, without the LLM server, and with it),
the page's barge-in stop time, and the ratio of the in-page p50 to the 1.5 s target.

Needs root (`unshare -n`: the browser talks only inside a network namespace) and
Debian's Chromium, as the browser tests do.

    python bench/web_latency.py [--video vp8-512,h264-512,vp8-384,h264-384] [--questions 6] [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from browser_page import ask_in_browser  # noqa: E402
from config import load_config, to_yaml  # noqa: E402
from conversation import CUT_INS, QUESTIONS, pct  # noqa: E402

TARGET_S = 1.5           # in-page p50, end of the question to the first reply sample
CORES = 2                # a booth laptop: browser, app and LLM on two cores
BUDGET_S = 420           # one option's run: the app starting, the turns, the cut-in
CALL_CLOSED = re.compile(r"call closed \(.*?\): (\{.*\})$", re.M)  # the app's summary of a call (JSON)


def server_breakdown(log: str) -> dict[str, float | None]:
    """The server's p50 of each response stage (agent/metrics.py `breakdown`) for the call in `log`."""
    found = CALL_CLOSED.findall(log)
    return json.loads(found[-1]).get("breakdown_p50_s", {}) if found else {}


def pin_to_cores(n: int) -> list[int]:
    """This process and everything it starts on the first `n` CPUs it may use."""
    cpus = sorted(os.sched_getaffinity(0))[:n]
    os.sched_setaffinity(0, cpus)
    return cpus


def option(text: str) -> tuple[str, int]:
    codec, _, size = text.partition("-")
    if codec not in ("vp8", "h264") or not size.isdigit():
        raise argparse.ArgumentTypeError(f"not a video option: {text!r} (codec-size, e.g. vp8-512 or h264-384)")
    return codec, int(size)


def run(codec: str, size: int, questions: int, base: str | None, folder: Path) -> dict:
    cfg = load_config(base, overrides={"server": {"video_codec": codec}, "avatar": {"size": size}})
    config = folder / "config.yaml"
    folder.mkdir(parents=True)
    config.write_text(to_yaml(cfg))
    r, log = ask_in_browser(config, QUESTIONS[:questions], folder, cut_in=CUT_INS[0], budget_s=BUDGET_S)
    if "error" in r:
        raise RuntimeError(f"{codec}-{size}: {r['error']}\n--- app log ---\n{log[-2000:]}")
    replied = [t for t in r["server_turns"] if t["user"] and t["response_s"] is not None]
    return {"in_page": [t["in_page_s"] for t in r["turns"]], "server": [t["response_s"] for t in replied][:questions],
            "app_cpu": r["app_cpu_share"], "with_llm": r["app_and_llm_cpu_share"], "video": r["video"],
            "barge_in": r.get("barge_in_in_page_s") if r.get("voice_playing_at_cut_in") else None,
            "stages": server_breakdown(log)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default="vp8-512,h264-512,vp8-384,h264-384",
                    type=lambda s: [option(o) for o in s.split(",")], help="codec-size options, comma-separated")
    ap.add_argument("--questions", type=int, default=6, help="spoken turns per option (at least 5)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of every option, interleaved; turns pooled")
    ap.add_argument("--config", help="base config YAML (default: config.yaml)")
    args = ap.parse_args()
    if os.geteuid() != 0 or subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        print("web_latency: needs root allowed to `unshare -n` (the browser runs in its own network namespace)")
        return 2
    cpus = pin_to_cores(CORES)
    print(f"Chromium, app and LLM on CPUs {cpus}; load average before: {os.getloadavg()[0]:.1f}", flush=True)
    runs: dict[str, list[dict]] = {f"{codec}-{size}": [] for codec, size in args.video}
    with tempfile.TemporaryDirectory(prefix="web_latency-") as tmp:
        # rounds interleave the options, so a change in the machine's load hits them all
        for round_ in range(args.rounds):
            for codec, size in args.video:
                label = f"{codec}-{size}"
                print(f"{label}, round {round_ + 1}: {args.questions} questions (load {os.getloadavg()[0]:.1f}) ...",
                      file=sys.stderr, flush=True)
                r = run(codec, size, args.questions, args.config, Path(tmp) / f"{label}-{round_}")
                runs[label].append(r)
                print(f"  in page {', '.join(f'{s:.2f}' for s in r['in_page'])} s; "
                      f"server {', '.join(f'{s:.2f}' for s in r['server'])} s", file=sys.stderr, flush=True)
                print("  server p50 by stage: " + ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items()
                                                        if v is not None), file=sys.stderr, flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(f"{'option':<10} {'turns':>5} {'page p50':>8} {'page p90':>8} {'1st turns':>11} {'srv p50':>7} {'srv p90':>7} "
          f"{'app CPU':>7} {'+LLM':>6} {'cut-in':>6} {'video in page':<22} {'p50/target':>10}")
    for label, rs in runs.items():
        page, server = [s for r in rs for s in r["in_page"]], [s for r in rs for s in r["server"]]
        cuts = [r["barge_in"] for r in rs if r["barge_in"] is not None]
        p50, v = statistics.median(page), rs[0]["video"]
        shown = f"{v['codec'].split('/')[1]} {v['width']}x{v['height']} {v['decoder']}"
        first = "/".join(f"{r['in_page'][0]:.1f}" for r in rs)
        cut = f"{statistics.median(cuts):5.2f}s" if cuts else "   n/a"
        print(f"{label:<10} {len(page):5d} {p50:7.2f}s {pct(page, .9):7.2f}s {first:>10}s "
              f"{statistics.median(server):6.2f}s {pct(server, .9):6.2f}s "
              f"{100 * statistics.mean(r['app_cpu'] for r in rs):6.0f}% "
              f"{100 * statistics.mean(r['with_llm'] for r in rs):5.0f}% {cut} {shown:<22} {p50 / TARGET_S:10.2f}")
    print(f"page: end of the question to the first audible reply sample, measured in the page (1st turns: the "
          f"first turn of each call, included in p50/p90); srv: the server's "
          f"own response figure for the same turns; app CPU: % of one core during the turns (+LLM: with the llama.cpp "
          f"server); cut-in: cut-in to the voice going quiet in the page; target: in-page p50 <= {TARGET_S} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
