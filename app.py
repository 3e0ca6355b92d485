"""Entry point: the web UI, headless runs, two-agent recordings, and the component check.

    python app.py                         # web UI on the offline default stack
    python app.py --check                 # which default components are installed
    python app.py --headless --input user.wav --output out.mp4
    python app.py --two-agents ada max --turns 6 --topic "the moon" --output talk.mp4
"""
from __future__ import annotations

import argparse
import os
import sys

# Nothing leaves the machine unless the user configures it.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from config import ConfigError, load_config  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="A face-to-face AI persona with a streaming avatar.")
    p.add_argument("--config", help="config YAML (default: config.yaml beside app.py)")
    p.add_argument("--host", help="web UI host (overrides server.host)")
    p.add_argument("--port", type=int, help="web UI port (overrides server.port)")
    p.add_argument("--check", action="store_true", help="load every default component and print a table")
    p.add_argument("--headless", action="store_true", help="run one conversation from --input to --output")
    p.add_argument("--input", help="headless: the user's microphone as a WAV file")
    p.add_argument("--output", help="headless / two agents: the MP4 to write")
    p.add_argument("--fast", action="store_true", help="headless: run faster than real time")
    p.add_argument("--two-agents", nargs=2, metavar=("A", "B"), help="record two personas talking")
    p.add_argument("--turns", type=int, default=6, help="two agents: number of turns")
    p.add_argument("--topic", default="", help="two agents: what they talk about")
    p.add_argument("--local", action="store_true", help="booth mode: this machine's mic and speaker")
    return p.parse_args(argv)


def run_check() -> int:
    import assets
    rows = assets.check()
    print(assets.format_check(rows))
    missing = [r for r in rows if r["status"] != "found"]
    print(f"\n{len(rows) - len(missing)}/{len(rows)} components found")
    return 1 if missing else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    overrides = {"server": {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}}
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        return run_check()
    print(f"config loaded; the web UI is not built yet (host {cfg.server.host}, port {cfg.server.port})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
