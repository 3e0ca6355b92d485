"""Web soak: call after call for `--minutes`, from a looping fake microphone, against the
app's own calls on the real default stack. Prints how the app's memory and its asyncio
tasks fare: both must come back after every call, however long the server runs.

Each call is a real WebRTC call in this process (tests/aiortc_browser.py: an aiortc peer
plays the browser, `Calls` answers as the web server does): it waits for the greeting,
asks `--questions` questions spoken in espeak-ng voices (never the agent's), each once
the previous reply ended, and hangs up the way people do, in turn: Stop ("bye"), the
tab closed, the tab closed while the agent is still talking. After each call the script
waits for the server's loop to settle and reads the process's RSS (the browser side
lives in it too, so it is counted against us), the asyncio tasks against their idle
count before the first call, the call objects left in memory (without collecting
itself: the app must), and the LLM server's RSS. Targets (issue 10): RSS growth at most
50 MB from the end of the warm-up (WARM_UP_MIN; the growth from the first call's end is
printed too) to the end of the run, tasks back to idle after every call. Writes a plot
of RSS over the run (SVG) with `--plot`.

    python bench/web_soak.py [--minutes 30] [--questions 2] [--plot docs/web_soak.svg] [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from aiortc_browser import MIC_RATE, Browser, call_threads, live, serving  # noqa: E402
from avatar_soak import rss_mb  # noqa: E402
from config import load_config  # noqa: E402
from conversation import QUESTIONS  # noqa: E402
from speech.audio import resample  # noqa: E402
from speech.espeak import VOICES, speak  # noqa: E402
from transports.web.call import Call  # noqa: E402

RSS_TARGET_MB = 50.0
GREETING_S = 60.0        # connected to the end of the greeting, at most
REPLY_S = 60.0           # a question said to its reply ended, at most
SETTLE_S = 10.0          # hung up to the worker gone and the tasks back to idle, at most
WARM_UP_MIN = 5.0        # the first minutes fill caches once (a persona's first call, the
                         # largest inputs yet, malloc's arenas): growth is counted after them
ENDINGS = ("bye", "tab closed", "tab closed mid-reply")
PERSONAS = ("ada", "juno")


async def one_call(calls, persona: str, questions: list, ending: str) -> dict:
    """A call from connect to hang-up; what it did and how long it took."""
    browser = Browser()
    t0 = time.monotonic()
    replies = 0
    try:
        await browser.call(calls, persona)
        await browser.until(lambda b: b.state == "listening" and "speaking" in b.states, GREETING_S)
        for i, q in enumerate(questions):
            browser.mic.say(q)
            if ending.endswith("mid-reply") and i == len(questions) - 1:
                await browser.until(lambda b: b.state == "speaking" and sum(bool(t["user"]) for t in b.turns) > replies,
                                    REPLY_S)
                break
            await browser.until(lambda b: b.replied and sum(bool(t["agent"]) for t in b.turns if t["user"]) > replies,
                                REPLY_S)
            replies += 1
        if ending == "bye":
            browser.bye()
            with contextlib.suppress(TimeoutError):
                await browser.until(lambda b: b.pc.connectionState in ("closed", "failed"), SETTLE_S)
    finally:
        errors = list(browser.errors)
        await browser.close()
    return dict(replies=replies, seconds=time.monotonic() - t0, errors=errors)


async def settle(idle_tasks: int) -> float:
    """Seconds until the call's worker is gone and the loop is back to its idle tasks."""
    t0 = time.monotonic()
    # (the app's collection after the call is one of the loop's tasks until it is done)
    while (call_threads() or len(asyncio.all_tasks()) > idle_tasks) and time.monotonic() - t0 < SETTLE_S:
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


async def soak(minutes: float, n_questions: int) -> dict:
    cfg = load_config()
    voices = [resample(u.audio, u.rate, MIC_RATE)
              for u in (speak(q, VOICES[i % len(VOICES)]) for i, q in enumerate(QUESTIONS))]
    rows: list[dict] = []
    async with serving(cfg) as calls:
        llm_pid = next((llm.server.pid for llm in calls.shared.stack.llms if llm.server), None)
        idle_tasks = len(asyncio.all_tasks())
        start, rss_start = time.monotonic(), rss_mb()
        print(f"idle: rss {rss_start:.0f} MB, {idle_tasks} tasks", file=sys.stderr)
        k = 0
        while time.monotonic() - start < minutes * 60:
            qs = [voices[(k * n_questions + j) % len(voices)] for j in range(n_questions)]
            ending, persona = ENDINGS[k % len(ENDINGS)], PERSONAS[k % len(PERSONAS)]
            try:
                r = await one_call(calls, persona, qs, ending)
            except TimeoutError:
                r = dict(replies=None, seconds=None, errors=["timed out"])
            r.update(call=k + 1, ending=ending, persona=persona, settle_s=await settle(idle_tasks))
            r.update(minute=(time.monotonic() - start) / 60, rss_mb=rss_mb(), tasks=len(asyncio.all_tasks()),
                     threads=len(call_threads()), calls_in_memory=live(Call),
                     llm_rss_mb=rss_mb(llm_pid) if llm_pid else None)
            rows.append(r)
            print(f"call {r['call']:3d} at {r['minute']:5.1f} min ({persona}, {ending}): {r['replies']} replies, "
                  f"rss {r['rss_mb']:.0f} MB ({r['rss_mb'] - rss_start:+.0f}), tasks {r['tasks']}/{idle_tasks}, "
                  f"calls in memory {r['calls_in_memory']}, llm rss {r['llm_rss_mb'] or 0:.0f} MB"
                  + (f", errors {r['errors']}" if r["errors"] else ""), file=sys.stderr)
            k += 1
    return dict(minutes=minutes, idle_rss_mb=rss_start, idle_tasks=idle_tasks, calls=rows)


def svg_plot(result: dict, path: Path) -> None:
    """RSS over the run: the app process (and the LLM server's), one point per call."""
    rows = result["calls"]
    w, h, pad = 720, 320, 50
    xs = [r["minute"] for r in rows]
    series = [("app + browser peer", "#1f77b4", [r["rss_mb"] for r in rows])]
    if rows and rows[0]["llm_rss_mb"]:
        series.append(("LLM server", "#ff7f0e", [r["llm_rss_mb"] for r in rows]))
    lo = min(min(v) for _, _, v in series) - 50
    hi = max(max(v) for _, _, v in series) + 50
    x_max = max(xs[-1], 1e-6)

    def px(x, y):
        return pad + (w - 2 * pad) * x / x_max, h - pad - (h - 2 * pad) * (y - lo) / (hi - lo)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
             f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{w / 2}" y="20" text-anchor="middle">RSS after each call, {len(rows)} calls in '
             f'{result["minutes"]:.0f} min (bench/web_soak.py)</text>',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
             f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle">minutes</text>']
    for i in range(5):
        y = lo + (hi - lo) * i / 4
        _, yy = px(0, y)
        parts.append(f'<text x="{pad - 4}" y="{yy + 4}" text-anchor="end">{y:.0f} MB</text>')
    for i in range(5):
        x = x_max * i / 4
        xx, _ = px(x, lo)
        parts.append(f'<text x="{xx}" y="{h - pad + 16}" text-anchor="middle">{x:.0f}</text>')
    for n, (label, colour, ys) in enumerate(series):
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in (px(x, y) for x, y in zip(xs, ys)))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{w - pad}" y="{pad + 16 * n}" text-anchor="end" fill="{colour}">{label}</text>')
    path.write_text("\n".join(parts + ["</svg>"]) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="how long to keep calling")
    ap.add_argument("--questions", type=int, default=2, help="questions per call")
    ap.add_argument("--plot", type=Path, help="write RSS over the run here (SVG)")
    ap.add_argument("--json", type=Path, help="write every call's figures here")
    args = ap.parse_args()
    if args.minutes <= 0 or args.questions < 1:
        ap.error("--minutes must be above 0 and --questions at least 1")
    result = asyncio.run(soak(args.minutes, args.questions))
    rows = result["calls"]
    if len(rows) < 2:
        sys.exit(f"only {len(rows)} call in {args.minutes:g} min: run longer to see growth (--minutes)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if args.plot:
        svg_plot(result, args.plot)
    warm = next((r for r in rows if r["minute"] >= WARM_UP_MIN), rows[0])
    growth = rows[-1]["rss_mb"] - warm["rss_mb"]
    peak = max(r["rss_mb"] for r in rows if r["minute"] >= warm["minute"]) - warm["rss_mb"]
    not_idle = [r["call"] for r in rows if r["tasks"] > result["idle_tasks"] or r["threads"]]
    failed = [r["call"] for r in rows if r["replies"] is None or r["errors"]]
    llm = [r["llm_rss_mb"] for r in rows if r["llm_rss_mb"]]
    print(f"web soak: {len(rows)} calls in {rows[-1]['minute']:.1f} min, "
          f"{sum(r['replies'] or 0 for r in rows)} replies, {len(failed)} calls failed {failed or ''}")
    print(f"app RSS: idle {result['idle_rss_mb']:.0f} MB, after the first call {rows[0]['rss_mb']:.0f} MB, "
          f"after the warm-up (call {warm['call']}, {warm['minute']:.1f} min) {warm['rss_mb']:.0f} MB, "
          f"at the end {rows[-1]['rss_mb']:.0f} MB")
    print(f"app RSS growth after the warm-up: {growth:+.1f} MB (peak {peak:+.1f}) "
          f"= {growth / RSS_TARGET_MB:.2f}× the {RSS_TARGET_MB:.0f} MB target; "
          f"from the first call's end: {rows[-1]['rss_mb'] - rows[0]['rss_mb']:+.1f} MB")
    print(f"asyncio tasks back to idle ({result['idle_tasks']}) after {len(rows) - len(not_idle)}/{len(rows)} calls"
          + (f"; not after calls {not_idle}" if not_idle else "")
          + f"; call objects left in memory at the end: {rows[-1]['calls_in_memory']}")
    if llm:
        print(f"LLM server RSS: {llm[0]:.0f} → {llm[-1]:.0f} MB ({llm[-1] - llm[0]:+.0f})")


if __name__ == "__main__":
    main()
