"""Entry point: the web UI, headless runs, two-agent recordings, and the component check.

    python app.py                         # web UI on the offline default stack
    python app.py --host 0.0.0.0 --cert cert.pem --key key.pem   # HTTPS for the LAN
    python app.py --local                 # booth: this machine's microphone and speaker
    python app.py --check                 # which default components are installed
    python app.py --check --checkpoint Wan2.2-S2V-14B --lora liveavatar.safetensors
                                          # ... and every file of the Live Avatar model
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
    p.add_argument("--check", action="store_true", help="load every default component and print a table; "
                   "with a Live Avatar checkpoint, check its files from their headers too")
    p.add_argument("--checkpoint", help="causal_dit weights: a trained file or the Wan2.2-S2V-14B directory "
                   "(sets avatar.checkpoint and avatar.backend causal_dit)")
    p.add_argument("--lora", help="Live Avatar's liveavatar.safetensors (sets avatar.lora)")
    p.add_argument("--headless", action="store_true", help="run one conversation from --input to --output")
    p.add_argument("--input", help="headless: the user's microphone as a WAV file")
    p.add_argument("--output", help="headless / two agents: the MP4 to write")
    p.add_argument("--fast", action="store_true", help="headless: run faster than real time")
    p.add_argument("--two-agents", nargs=2, metavar=("A", "B"), help="record two personas talking")
    p.add_argument("--turns", type=int, default=6, help="two agents: replies in all")
    p.add_argument("--realtime", action="store_true", help="two agents: take as long as the recording lasts")
    p.add_argument("--topic", default="", help="two agents: what they talk about")
    return p.parse_args(argv)


def run_check(cfg) -> int:
    import assets
    rows = assets.check()
    print(assets.format_check(rows))
    missing = [r for r in rows if r["status"] != "found"]
    print(f"\n{len(rows) - len(missing)}/{len(rows)} components found")
    ok = not missing
    if cfg.avatar.checkpoint and Path(cfg.avatar.checkpoint).is_dir():
        ok = check_liveavatar(cfg) and ok
    return 0 if ok else 1


def check_liveavatar(cfg) -> bool:
    """One line per Live Avatar file, the verdict, and what the configured setup needs per GPU."""
    from avatar_engine.causal_dit.liveavatar_files import check_liveavatar, verdict
    from avatar_engine.causal_dit.sizing import liveavatar_plan
    lines = check_liveavatar(cfg.avatar.checkpoint, cfg.avatar.lora)
    print(f"\nLive Avatar checkpoint {cfg.avatar.checkpoint} + {cfg.avatar.lora or '(no avatar.lora)'}:")
    print("\n".join(c.line() for c in lines))
    print(verdict(lines))
    c = cfg.causal_dit
    try:
        plan = liveavatar_plan(c.height, c.width, c.ranks, c.weights)
        print(f"plan (causal_dit.*): {c.height}×{c.width}, {c.ranks} rank(s), {c.weights}: " + ", ".join(
            f"rank {i} ({r.role}) {r.total_bytes / 2**30:.1f} GiB" for i, r in enumerate(plan.per_rank)))
    except ValueError as e:
        print(f"plan: {e}")
    return all(x.ok for x in lines)


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
        from avatar_engine.causal_dit.preflight import PreflightError
        errors += (BackendError, CheckpointError, PreflightError)
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
    overrides = {"server": {k: v for k, v in server if v is not None},
                 "avatar": {k: v for k, v in (("checkpoint", args.checkpoint), ("lora", args.lora)) if v is not None}}
    if args.checkpoint is not None:
        overrides["avatar"]["backend"] = "causal_dit"
    cfg = load_config(args.config, overrides)
    if args.check:
        return run_check(cfg)
    if cfg.avatar.backend == "causal_dit" and cfg.avatar.checkpoint and Path(cfg.avatar.checkpoint).is_dir():
        from avatar_engine.causal_dit.preflight import preflight
        c = cfg.causal_dit   # files, GPUs and memory before anything heavy loads
        preflight(cfg.avatar.checkpoint, cfg.avatar.lora, c.ranks, c.weights, c.height, c.width)
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
    from transports.web import serve
    # calls opening and ending, and why; other libraries only when something is wrong
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("transports").setLevel(logging.INFO)
    serve(cfg, booth=devices)
    return 0


def run_headless(cfg, args) -> int:
    import asyncio
    from transports.headless import run_headless as run
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
    from transports.two_agents import run_two_agents as run
    output = args.output or "two_agents.mp4"
    a, b = args.two_agents
    asyncio.run(run(cfg, a, b, args.turns, args.topic, output, fast=not args.realtime, progress=print))
    print(f"wrote {output} and {Path(output).with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
