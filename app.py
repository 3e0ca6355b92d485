"""Entry point: the web UI, headless runs, two-agent recordings, and the component check.

    python app.py                         # web UI on the offline default stack
    python app.py --host 0.0.0.0 --cert cert.pem --key key.pem   # HTTPS for the LAN
    python app.py --local                 # booth: this machine's microphone and speaker
    python app.py --check                 # which default components are installed
    python app.py --headless --input user.wav --output out.mp4
    python app.py --two-agents ada max --turns 6 --topic "the moon" --output talk.mp4
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Nothing leaves the machine unless the user configures it.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from config import ConfigError, load_config, tls_files  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="A face-to-face AI persona with a streaming avatar.")
    p.add_argument("--config", help="config YAML (default: config.yaml beside app.py)")
    p.add_argument("--host", help="web UI host (overrides server.host)")
    p.add_argument("--port", type=int, help="web UI port (overrides server.port)")
    p.add_argument("--cert", help="HTTPS certificate, PEM (overrides server.cert; needs --key)")
    p.add_argument("--key", help="HTTPS private key, PEM (overrides server.key)")
    p.add_argument("--local", action="store_true",
                   help="booth mode: talk through this machine's microphone and speaker; the page shows the avatar")
    p.add_argument("--check", action="store_true", help="load every default component and print a table")
    p.add_argument("--headless", action="store_true", help="run one conversation from --input to --output")
    p.add_argument("--input", help="headless: the user's microphone as a WAV file")
    p.add_argument("--output", help="headless / two agents: the MP4 to write")
    p.add_argument("--fast", action="store_true", help="headless: run faster than real time")
    p.add_argument("--two-agents", nargs=2, metavar=("A", "B"), help="record two personas talking")
    p.add_argument("--turns", type=int, default=6, help="two agents: replies in all")
    p.add_argument("--realtime", action="store_true", help="two agents: take as long as the recording lasts")
    p.add_argument("--topic", default="", help="two agents: what they talk about")
    return p.parse_args(argv)


def run_check() -> int:
    import assets
    rows = assets.check()
    print(assets.format_check(rows))
    missing = [r for r in rows if r["status"] != "found"]
    print(f"\n{len(rows) - len(missing)}/{len(rows)} components found")
    return 1 if missing else 0


def user_errors() -> tuple[type[Exception], ...]:
    """Errors that mean the user must change something: shown as one line, no traceback."""
    from agent.llm_server import LLMServerError
    from agent.persona import PersonaError
    from assets import MissingAsset
    from avatar_engine.reference import ReferenceImageError
    from speech.audio import AudioError
    from speech.devices import NoAudioDevice
    errors = (ConfigError, PersonaError, LLMServerError, MissingAsset, ReferenceImageError, AudioError,
              NoAudioDevice, FileNotFoundError)
    try:
        from avatar_engine.causal_dit.backend import BackendError
        from avatar_engine.causal_dit.checkpoint import CheckpointError
        errors += (BackendError, CheckpointError)
    except ImportError:  # the diffusion backend is optional at run time
        pass
    return errors


def main(argv=None) -> int:
    try:
        return run(parse_args(argv))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130
    except user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    server = (("host", args.host), ("port", args.port), ("cert", args.cert), ("key", args.key))
    overrides = {"server": {k: v for k, v in server if v is not None}}
    cfg = load_config(args.config, overrides)
    if args.check:
        return run_check()
    if args.headless:
        return run_headless(cfg, args)
    if args.two_agents:
        return run_two_agents(cfg, args)
    return run_web_ui(cfg, booth=args.local)


def run_web_ui(cfg, booth: bool = False) -> int:
    import logging
    tls_files(cfg.server)  # before the web stack loads: a bad certificate is a one-line error at once
    devices = None
    if booth:  # opened before the web stack loads: no sound device is a one-line error at once
        from speech.devices import SoundCard
        devices = (SoundCard(cfg.audio.sample_rate),)
    from webui import serve
    # calls opening and ending, and why; other libraries only when something is wrong
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("webui").setLevel(logging.INFO)
    serve(cfg, booth=devices)
    return 0


def run_headless(cfg, args) -> int:
    import asyncio
    from agent.headless import run_headless as run
    if not args.input or not args.output:
        print("error: --headless needs --input user.wav and --output out.mp4", file=sys.stderr)
        return 2
    result = asyncio.run(run(cfg, args.input, args.output, fast=args.fast, progress=print))
    s = result["summary"]
    p50 = "-" if s["response_p50_s"] is None else f"{s['response_p50_s']:.2f} s"
    print(f"wrote {args.output} and {Path(args.output).with_suffix('.json')}: {s['turns']} turns, "
          f"{s['replied']} replied, response p50 {p50}")
    return 0


def run_two_agents(cfg, args) -> int:
    import asyncio
    from agent.two_agents import run_two_agents as run
    output = args.output or "two_agents.mp4"
    a, b = args.two_agents
    asyncio.run(run(cfg, a, b, args.turns, args.topic, output, fast=not args.realtime, progress=print))
    print(f"wrote {output} and {Path(output).with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
