"""The web UI in a real browser: `python app.py`, headless Chromium with a fake microphone
asking a question, a WebRTC call, and the answer seen and heard in the page.

Everything runs inside a throwaway network namespace (tests/browser_call.py): in the
default one Chromium sends DNS and multicast traffic off the machine, and ICE would pick
the external address. Needs root (for `unshare -n`) and Debian's Chromium (.ci/run
installs it). UPDATE_DOCS=1 also saves the screenshot taken during the reply as docs/ui.png.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from config import load_config, to_yaml
from speech import synthetic
from speech.audio import write_wav
from transports.web.calls import CallRefused, Calls
from transports.web.recording import MAX_KEPT, Recordings
from transports.web.shared_stack import SharedStack

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/lib/chromium/chromium")
QUESTION, WORD = "What is the biggest planet in our solar system?", "planet"
CUT_IN = "Wait, stop. Tell me about Mars instead."
MIC_RATE = 48000
# The fake mic starts with the call; the question must come after the greeting is over.
LEAD_S, TAIL_S = 15.0, 40.0
TIMEOUT_S = 200
# One llama.cpp thread: on a busy machine two spinning threads slow each other down by
# an order of magnitude. Short replies: one sentence shows the whole path. Greedy
# decoding: the same (long enough to cut into) reply every run.
CONFIG = {"llm": {"threads": 1, "max_tokens": 30, "temperature": 0.0}}

def can_isolate() -> bool:
    """Root may make a network namespace here (containers can forbid it)."""
    return (os.geteuid() == 0 and shutil.which("ip") is not None
            and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0)


# The browser may only talk inside a network namespace of its own; where the machine
# forbids making one, this test cannot run safely. (Chromium itself is installed by the
# test command, run_tests.sh: its absence is a failure, not a skip.)
needs_browser = pytest.mark.skipif(
    not (shutil.which("unshare") and can_isolate()),
    reason="needs root allowed to `unshare -n` and `ip` (containers can forbid network namespaces)")


@needs_browser
def test_a_spoken_question_gets_a_spoken_reply_with_live_video_and_a_cut_in_stops_it(tts, tmp_path):
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run_tests.sh installs it (apt-get install chromium)"
    question = synthetic.say(tts, QUESTION, MIC_RATE)
    wav = tmp_path / "mic.wav"
    write_wav(wav, np.concatenate([np.zeros(int(LEAD_S * MIC_RATE), np.float32), question,
                                   np.zeros(int(TAIL_S * MIC_RATE), np.float32)]), MIC_RATE)
    cut_in = synthetic.say(tts, CUT_IN, MIC_RATE)
    onset, _ = synthetic.speech_bounds(cut_in, MIC_RATE)
    write_wav(tmp_path / "cut_in.wav", cut_in[int(onset * MIC_RATE):], MIC_RATE)
    config = tmp_path / "config.yaml"
    config.write_text(to_yaml(load_config(overrides=CONFIG)))
    result, screenshot = tmp_path / "result.json", tmp_path / "ui.png"
    subprocess.run(["unshare", "-n", sys.executable, str(ROOT / "tests" / "browser_call.py"), "--wav", str(wav),
                    "--config", str(config), "--interrupt", str(tmp_path / "cut_in.wav"),
                    "--expect", WORD, "--profile", str(tmp_path / "chromium"), "--screenshot", str(screenshot),
                    "--result", str(result)], cwd=ROOT, check=True, timeout=TIMEOUT_S)
    r = json.loads(result.read_text())
    log = result.with_suffix(".log").read_text()
    print(json.dumps(r, indent=2))
    assert "error" not in r, f"{r['error']}\n--- app log ---\n{log[-3000:]}"
    assert r["requests_outside"] == [], "the page asked for something beyond the app"

    assert r["connect_s"] < 20
    video = r["video"]
    assert (video["width"], video["height"]) == (512, 512)
    assert video["frames"] > 100 and video["fps"] > 10, "the avatar's video did not keep arriving"
    assert video["changed"] >= 0.2 * video["compared"], "the avatar's picture does not move"

    audio = r["audio"]
    assert audio["micOff"] < audio["replyAt"], "no voice after the question"
    assert audio["replyPeak"] > 0.02, "the reply is too quiet to be speech"
    assert r["state_during_reply"] == "speaking"
    # cutting in: the voice stops (VAD onset, a tick, the buffered blocks, the network and
    # the browser's jitter buffer); bounded loosely, the machine may be busy
    assert r["barge_in_in_page_s"] < 2.0
    transcript = r["transcript"].lower()
    assert WORD in transcript and "replied in" in transcript and "interrupted" in transcript

    assert r["state_after_stop"] == "idle" and r["pc_after_stop"] == "closed"
    assert r["state_1s_after_stop"] == "idle", "a late update relabelled the stopped call"
    assert r["server_closed_call_s"] < 5, "Stop did not end the call on the server"
    assert r["second_call"] == "connected and closed" and r["second_call_persona_locked"]
    assert r["app_exit_code"] in (0, 130), f"the app did not stop cleanly:\n{log[-3000:]}"
    assert "Traceback" not in log, log[-3000:]
    if os.environ.get("UPDATE_DOCS") == "1":
        shutil.copy(screenshot, ROOT / "docs" / "ui.png")


def refusal(calls: Calls, persona: str = "ada") -> tuple[int, str]:
    with pytest.raises(CallRefused) as e:
        asyncio.run(calls.open("v=0", "offer", persona))
    return e.value.status, e.value.message


def test_offers_are_refused_with_a_reason_while_loading_when_full_and_for_unknown_personas(cfg):
    shared = SharedStack(cfg)
    shared.status = "starting the local LLM server"
    calls = Calls(cfg, shared, Recordings())
    assert refusal(calls) == (503, "still getting ready (starting the local LLM server); try again soon")
    shared.error = "could not load the models: no Whisper model"
    assert refusal(calls) == (503, "could not load the models: no Whisper model")

    shared.error, shared.stack = None, object()   # ready: the checks below come before any model is used
    status, message = refusal(calls, "nobody")
    assert status == 400 and message.startswith("no persona 'nobody' (available: ada")
    calls._opening = cfg.server.max_sessions      # every slot taken by calls being answered
    assert refusal(calls) == (429, f"the avatar is already talking with {cfg.server.max_sessions} people; "
                                   "try again in a moment")
    with pytest.raises(CallRefused) as e:
        asyncio.run(calls.use_portrait("0123456789abcdef", b"", "me.png"))
    assert e.value.status == 404 and "press Start" in e.value.message
    calls.recordings.close()


def test_recordings_are_found_only_by_their_token_and_only_the_newest_are_kept():
    recordings = Recordings()
    try:
        made = []
        for _ in range(MAX_KEPT + 2):
            token, path = recordings.new()
            path.write_bytes(b"mp4")
            path.with_suffix(".json").write_text("{}")
            made.append(token)
        assert recordings.path(made[0], ".mp4") is None and not list(recordings.folder.glob(f"{made[0]}.*"))
        assert recordings.path(made[-1], ".mp4").read_bytes() == b"mp4"
        assert recordings.path(made[-1], ".json") is not None
        for bad in ("../etc/passwd", made[-1].upper(), made[-1][:-1]):
            assert recordings.path(bad, ".mp4") is None
        assert recordings.path(made[-1], ".portrait") is None
        assert len(list(recordings.folder.glob("*.mp4"))) == MAX_KEPT
    finally:
        recordings.close()
    assert not recordings.folder.exists()
