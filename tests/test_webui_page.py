"""The page's tools in a real browser (tests/browser_page.py): bad portraits each get
their sentence while the call goes on, a good one is animated, the Interrupt button
stops the reply's voice in the page, and Record gives an MP4 with both voices.

Same sandbox as tests/test_webui.py (root, `unshare -n`, Debian's Chromium).
UPDATE_DOCS=1 also saves the screenshot of the Live tab as docs/live.png.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import av
import cv2
import numpy as np

import assets
from avatar_engine.media import read_audio
from config import load_config, to_yaml
from speech import synthetic
from speech.audio import write_wav
from test_avatar_reference import png_header_only
from test_webui import CHROMIUM, CONFIG, MIC_RATE, QUESTION, ROOT, needs_browser

LEAD_S, TAIL_S = 22.0, 40.0      # the uploads happen while the greeting plays and after
INTERRUPT_GOAL_S = 0.3
RATE = 16000


def bad_files(folder) -> dict:
    """Each bad portrait and a word its sentence must contain."""
    files = {"empty.png": (b"", "empty"),
             "notes.png": (b"these are my notes, not a photo", "not an image"),
             "wall.png": (cv2.imencode(".png", np.full((300, 400, 3), 90, np.uint8))[1].tobytes(), "no face"),
             "holiday.jpg": (b"\xff\xd8" + bytes(50 * 2**20), "MB"),
             "poster.png": (png_header_only(30000, 30000), "megapixels")}
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: word for name, (_, word) in files.items()}


def blue_portrait(path) -> None:
    """The astronaut mirrored and tinted blue: a face the page must visibly switch to."""
    image = assets.default_portrait()[:, ::-1].astype(np.int16)
    image[..., 0] = image[..., 0] * 3 // 4
    image[..., 2] = np.minimum(image[..., 2] + 60, 255)
    cv2.imwrite(str(path), image.astype(np.uint8)[:, :, ::-1])


def rms(audio: np.ndarray, t0: float, t1: float) -> float:
    x = audio[int(t0 * RATE):int(t1 * RATE)]
    return float(np.sqrt(np.mean(x ** 2))) if len(x) else 0.0


@needs_browser
def test_portraits_interrupt_and_record_in_the_page(tts, tmp_path):
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run_tests.sh installs it (apt-get install chromium)"
    question = synthetic.say(tts, QUESTION, MIC_RATE)
    wav = tmp_path / "mic.wav"
    write_wav(wav, np.concatenate([np.zeros(int(LEAD_S * MIC_RATE), np.float32), question,
                                   np.zeros(int(TAIL_S * MIC_RATE), np.float32)]), MIC_RATE)
    expected = bad_files(tmp_path)
    blue_portrait(tmp_path / "me.png")
    config = tmp_path / "config.yaml"
    config.write_text(to_yaml(load_config(overrides=CONFIG)))
    out = tmp_path / "out"
    out.mkdir()
    command = ["unshare", "-n", sys.executable, str(ROOT / "tests" / "browser_page.py"), "--wav", str(wav),
               "--config", str(config), "--portrait", str(tmp_path / "me.png"), "--profile", str(tmp_path / "chromium"),
               "--out", str(out)]
    for name in expected:
        command += ["--bad", str(tmp_path / name)]
    subprocess.run(command, cwd=ROOT, check=True, timeout=300)
    r = json.loads((out / "result.json").read_text())
    log = (out / "app.log").read_text()
    print(json.dumps(r, indent=2))
    assert "error" not in r, f"{r['error']}\n--- app log ---\n{log[-3000:]}"

    assert load_config(overrides=CONFIG).llm.model in r["brain"], "the settings panel names the active brain"
    assert r["mic_level_max"] > 0.05, "the mic meter did not move while the question was asked"
    # every bad file: its own one sentence, the call still up and its video still moving
    for bad in r["bad"]:
        note = bad["note"]
        assert bad["file"] in note and expected[bad["file"]] in note and "\n" not in note, bad
        assert "assert" not in note.lower() and "Traceback" not in note
        assert bad["pc"] == "connected" and bad["state"] != "idle" and bad["frames_meanwhile"] > 5, bad
    # the good one is animated: the picture turns blue
    before, after = r["colour_before"], r["colour_after"]
    assert after[2] - after[0] > before[2] - before[0] + 40, (before, after)

    assert r["state_during_reply"] == "speaking"
    assert r["interrupt_in_page_s"] <= INTERRUPT_GOAL_S, f"Interrupt took {r['interrupt_in_page_s']:.2f} s"
    assert "interrupted" in r["transcript"].lower()
    after = r["voice_after_interrupt"]   # the track, 3-4.5 s after the click: the server stopped
    assert after["samples"] > 20 and after["peak"] < 0.02, f"the reply went on after Interrupt: {after}"

    # the recording: 512² video and audio, as long as it says, with the user's question
    # and the agent's voice where its transcript puts them
    mp4, turns = out / "recording.mp4", json.loads((out / "recording.json").read_text())
    with av.open(str(mp4)) as f:
        video, audio_stream = f.streams.video[0], f.streams.audio[0]
        assert (video.width, video.height) == (512, 512)
        duration = float(f.duration / av.time_base)
    seconds = float(r["recording_link"].split("(")[1].split(" s")[0])
    assert abs(duration - seconds) < 0.5 and seconds > 10
    audio = read_audio(mp4, RATE)
    start = turns["start_s"]
    # (the question's words are not checked: on a starved CPU the server skips mic audio)
    turn = next(t for t in turns["turns"] if t["first_audio_at"] is not None)
    user = rms(audio, turn["user_start"] - start, turn["user_end"] - start)
    agent = rms(audio, turn["first_audio_at"] - start, turn["first_audio_at"] - start + 0.5)
    quiet = rms(audio, turn["user_end"] - start + 0.2, turn["first_audio_at"] - start - 0.1)
    assert user > 0.02 and agent > 0.02, (user, agent)
    assert quiet < 0.3 * min(user, agent), "silence between the question and the reply"
    assert "Traceback" not in log, log[-3000:]
    if os.environ.get("UPDATE_DOCS") == "1":
        shutil.copy(out / "live.png", ROOT / "docs" / "live.png")


@needs_browser
def test_two_agents_tab_plays_both_avatars_and_offers_the_mp4(tmp_path):
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run_tests.sh installs it (apt-get install chromium)"
    blue_portrait(tmp_path / "juno.png")
    config = tmp_path / "config.yaml"
    config.write_text(to_yaml(load_config(overrides=CONFIG)))
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["unshare", "-n", sys.executable, str(ROOT / "tests" / "browser_page.py"), "--two-agents",
                    "--turns", "2", "--config", str(config), "--portrait", str(tmp_path / "juno.png"),
                    "--profile", str(tmp_path / "chromium"), "--out", str(out)], cwd=ROOT, check=True, timeout=300)
    r = json.loads((out / "result.json").read_text())
    log = (out / "app.log").read_text()
    print(json.dumps(r, indent=2))
    assert "error" not in r, f"{r['error']}\n--- app log ---\n{log[-3000:]}"

    # live in the page: both avatars side by side, both moving, and voices
    two = r["two"]
    assert (two["width"], two["height"]) == (1024, 512) and two["frames"] > 100
    # (most of the time one listens and the LLM thinks: small motions, so a low bar)
    assert min(two["leftChanged"], two["rightChanged"]) >= max(10, 0.05 * two["compared"]), two
    assert two["voicePeak"] > 0.02 and two["loudTicks"] > 50, "the voices did not play in the page"
    names = [line for line in r["transcript"].splitlines()]
    assert "Ada" in names and "Basil" in names, r["transcript"]

    # the MP4 offered: side by side with sound, each persona's voice where its transcript says
    mp4, record = out / "two_agents.mp4", json.loads((out / "two_agents.json").read_text())
    with av.open(str(mp4)) as f:
        assert (f.streams.video[0].width, f.streams.video[0].height) == (1024, 512)
        assert len(f.streams.audio) == 1
    audio = read_audio(mp4, RATE)
    for side in ("a", "b"):
        spoken = [t for t in record[side]["turns"] if t["first_audio_at"] is not None]
        assert spoken, f"{side} never spoke"
        t = spoken[0]["first_audio_at"]
        assert rms(audio, t, t + 0.5) > 0.02, f"no voice of {side} at {t:.1f} s"
    assert "Traceback" not in log, log[-3000:]
    if os.environ.get("UPDATE_DOCS") == "1":
        shutil.copy(out / "two_agents_tab.png", ROOT / "docs" / "two_agents_tab.png")
