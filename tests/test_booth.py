"""Booth mode (`python app.py --local`): this machine's microphone and speaker.

The sound card is a stand-in at the device layer (tests/fake_audio/sounddevice.py, first
on the app's PYTHONPATH): its microphone plays a WAV in real time plus what the speaker
played, attenuated and delayed, as in a room; its speaker writes to a file.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np

from config import load_config, to_yaml
from speech import synthetic
from speech.audio import write_wav
from test_webui import CHROMIUM, CONFIG, QUESTION, ROOT, needs_browser

RATE = 16000
FAKE = ROOT / "tests" / "fake_audio"


def local_app(env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "app.py", "--local", "--port", "0"], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **env})


def test_no_sound_device_is_one_line_that_says_what_to_plug_in():
    for env in ({"PYTHONPATH": str(FAKE), "PERSONA_FAKE_DEVICES": "none"},   # a machine without sound devices
                {}):                                                    # this machine, whatever it has
        r = local_app(env)
        if r.returncode == 0 or "web UI on" in r.stdout:
            continue  # this machine has a microphone and speaker (then only the stand-in case counts)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
        assert "microphone" in lines[0] or "PortAudio" in lines[0]
        assert "connect one" in lines[0] or "apt-get install" in lines[0]


def rms(x: np.ndarray, t0: float, t1: float) -> float:
    chunk = x[int(t0 * RATE):int(t1 * RATE)]
    return float(np.sqrt(np.mean(chunk ** 2))) if len(chunk) else 0.0


@needs_browser
def test_booth_talks_through_the_sound_card_and_the_page_watches(tts, tmp_path):
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run_tests.sh installs it (apt-get install chromium)"
    lead = 12.0   # the greeting plays (and echoes back into the mic) first
    question = synthetic.say(tts, QUESTION, RATE)
    write_wav(tmp_path / "mic.wav", np.concatenate([np.zeros(int(lead * RATE), np.float32), question,
                                                    np.zeros(60 * RATE, np.float32)]), RATE)
    _, q_end = synthetic.speech_bounds(question, RATE)
    config = tmp_path / "config.yaml"
    config.write_text(to_yaml(load_config(overrides=CONFIG)))
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["unshare", "-n", sys.executable, str(ROOT / "tests" / "browser_page.py"),
                    "--booth", str(tmp_path / "mic.wav"), "--config", str(config),
                    "--profile", str(tmp_path / "chromium"), "--out", str(out)], cwd=ROOT, check=True, timeout=300)
    r = json.loads((out / "result.json").read_text())
    log = (out / "app.log").read_text()
    print(json.dumps(r, indent=2))
    assert "error" not in r, f"{r['error']}\n--- app log ---\n{log[-3000:]}"
    assert r["button"] == "Watch" and not r["has_call_tools"]

    # the speaker: the greeting, then the reply after the question; one sample per mic sample
    speaker = np.fromfile(out / "speaker.f32", np.float32)
    assert rms(speaker, 0, lead) > 0.02, "no greeting from the speaker"
    reply_window = rms(speaker, lead + q_end + 0.3, len(speaker) / RATE)
    assert reply_window > 0.02, "no reply from the speaker after the question"
    # its own voice came back through the mic (the room echo) and did not cut it off:
    # the echo guard's reference is what the speaker played
    assert "on the booth thread" in log, "the booth's conversation runs on the server's loop, not its worker"
    closed = next(line for line in log.splitlines() if "booth closed" in line)
    assert "'turns': 1," in closed and "'interrupted': 0," in closed, closed
    # (what the user said is not checked word for word: a starved CPU drops mic blocks)
    assert r["transcript"].count("You\n") == 1 and "replied in" in r["transcript"]

    # the page showed the avatar, moving
    booth = r["booth"]
    assert (booth["width"], booth["height"]) == (512, 512) and booth["frames"] > 50
    assert booth["changed"] >= 0.1 * booth["compared"], booth
    assert "Traceback" not in log, log[-3000:]
    if os.environ.get("UPDATE_DOCS") == "1":
        shutil.copy(out / "booth.png", ROOT / "docs" / "booth.png")
