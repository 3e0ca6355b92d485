"""The page's tools in a real browser, against `python app.py`, in a throwaway network
namespace (see tests/browser_call.py, whose probes and helpers this reuses).

    unshare -n python tests/browser_page.py --config config.yaml --wav question.wav \\
        --bad empty.png --bad notes.png ... --portrait mine.png --profile /tmp/chromium \\
        --out results/

One call: Record on; each --bad file is uploaded as the portrait (its sentence, and the
call going on, are noted); then --portrait, whose face must appear in the video; the
fake microphone asks its question, and once the reply plays the Interrupt button is
pressed (how soon the voice stops, measured in the page); Record off, and the MP4 and
its transcript are downloaded; Stop. Results go to `<out>/result.json` (and the
screenshot `live.png`, the recording `recording.mp4` + `.json`);
tests/test_webui_page.py judges them.

`--ask q1.wav --ask q2.wav ...`: questions in a row instead, each said once the agent is
quiet, with the in-page latency of each reply (end of the question to the first audible
sample) and the server's own figures; optionally a second tab calling while the call is
full (`--busy-tab`) and a cut-in on the last reply (`--interrupt`). `ask_in_browser` runs
it on espeak-ng questions (tests/test_webui_turns.py, bench/web_latency.py).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

import browser_call
from browser_call import CHROMIUM, MEASURE, PROBE, ROOT, VETH, cpu_seconds, page_up, wait_for

BUDGET_S = 260   # the whole run (browser_call's waits stop at its END)
MIC_RATE = 48000

# The picture's mean colour, from a small copy of the current video frame.
MEAN_COLOUR = """
() => {
  const video = document.getElementById("avatar-video"), c = document.createElement("canvas");
  c.width = c.height = 32;
  const g = c.getContext("2d");
  g.drawImage(video, 0, 0, 32, 32);
  const px = g.getImageData(0, 0, 32, 32).data, sum = [0, 0, 0];
  for (let i = 0; i < px.length; i += 4) for (let k = 0; k < 3; k++) sum[k] += px[i + k];
  return sum.map((s) => s / (px.length / 4));
}
"""


# Two agents: the side-by-side video's frames, how much each half changes, and the
# loudness of the voices received.
TWO_MEASURE = """
() => {
  const p = __probe, pc = p.pcs.at(-1), ctx = new AudioContext(), a = ctx.createAnalyser();
  a.fftSize = 1024;
  ctx.createMediaStreamSource(new MediaStream([pc.getReceivers().find((r) => r.track.kind === "audio").track])).connect(a);
  const buf = new Float32Array(1024);
  p.two = {frames: 0, width: 0, height: 0, compared: 0, leftChanged: 0, rightChanged: 0, voicePeak: 0, loudTicks: 0};
  setInterval(() => {
    a.getFloatTimeDomainData(buf);
    let s = 0;
    for (const x of buf) s += x * x;
    const v = Math.sqrt(s / buf.length);
    p.two.voicePeak = Math.max(p.two.voicePeak, v);
    if (v > 0.01) p.two.loudTicks += 1;
  }, 20);
  const video = document.getElementById("two-video"), c = document.createElement("canvas");
  c.width = 128; c.height = 64;
  const g = c.getContext("2d", {willReadFrequently: true});
  let previous = null;
  const onFrame = (now, meta) => {
    const t = p.two;
    t.frames += 1; t.width = meta.width; t.height = meta.height;
    if (t.frames % 5 === 0) {
      g.drawImage(video, 0, 0, 128, 64);
      const px = g.getImageData(0, 0, 128, 64).data;
      if (previous) {
        const d = [0, 0];
        for (let i = 0; i < px.length; i += 4) d[((i / 4) % 128) < 64 ? 0 : 1] += Math.abs(px[i] - previous[i]);
        t.compared += 1;
        if (d[0] / (px.length / 8) > 0.3) t.leftChanged += 1;
        if (d[1] / (px.length / 8) > 0.3) t.rightChanged += 1;
      }
      previous = px;
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}
"""


# The voice track as it arrives (the page keeps the element muted after Interrupt) from
# QUIET_FROM_S to QUIET_TO_S after the click: the server must have stopped sending speech.
QUIET_FROM_S, QUIET_TO_S = 3.0, 4.5
VOICE_AFTER = f"""
() => {{
  const p = __probe, pc = p.pcs.at(-1), ctx = new AudioContext(), a = ctx.createAnalyser();
  a.fftSize = 1024;
  const track = pc.getReceivers().find((r) => r.track.kind === "audio").track;
  ctx.createMediaStreamSource(new MediaStream([track])).connect(a);
  const buf = new Float32Array(1024);
  p.voiceAfter = {{peak: 0, samples: 0}};
  const timer = setInterval(() => {{
    const since = (performance.now() - p.saidAt) / 1000;
    if (since < {QUIET_FROM_S}) return;
    if (since > {QUIET_TO_S}) return clearInterval(timer);
    a.getFloatTimeDomainData(buf);
    let s = 0;
    for (const x of buf) s += x * x;
    p.voiceAfter.peak = Math.max(p.voiceAfter.peak, Math.sqrt(s / buf.length));
    p.voiceAfter.samples += 1;
  }}, 20);
}}
"""


def download(url: str, path: Path) -> None:
    with urllib.request.urlopen(url, timeout=30) as r:
        path.write_bytes(r.read())


def launch(pw, args, height: int, fake_mic: Path | None = None):
    """Headless Chromium on a fresh profile; `fake_mic`: a WAV as the microphone."""
    mic = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
           f"--use-file-for-fake-audio-capture={fake_mic}"] if fake_mic else []
    return pw.chromium.launch_persistent_context(
        user_data_dir=str(args.profile), executable_path=CHROMIUM, headless=True,
        viewport={"width": 1280, "height": height},
        args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required", *mic])


def served(app: subprocess.Popen, url: str) -> bool:
    if app.poll() is not None:
        raise RuntimeError(f"the app exited with code {app.returncode}")
    return page_up(url)


def open_live_page(page, url: str, ready_s: float):
    """The Live tab with the probe installed, once its models are ready: the Start button."""
    page.add_init_script(PROBE)
    page.goto(url, timeout=30000)
    button = page.locator("#call-button")
    button.wait_for(state="visible", timeout=30000)
    wait_for("models ready (Start enabled)", button.is_enabled, ready_s, 0.25)
    return button


def run(args, result: dict, app: subprocess.Popen) -> None:
    from playwright.sync_api import sync_playwright
    url = f"http://127.0.0.1:{args.port}/"
    wait_for("page served", lambda: served(app, url), 60, 0.5)
    app_pid = app.pid
    with sync_playwright() as pw:
        browser = launch(pw, args, 900, fake_mic=args.wav)
        page = browser.pages[0] if browser.pages else browser.new_page()
        try:
            button = open_live_page(page, url, ready_s=90)
            result["brain"] = page.locator("#brain").inner_text()
            button.click()
            wait_for("connected", lambda: page.evaluate("__probe.connectedAt"), 20)
            page.evaluate(MEASURE)
            page.evaluate("""() => { __probe.micLevelMax = 0; setInterval(() => { __probe.micLevelMax =
                Math.max(__probe.micLevelMax, document.getElementById('mic-level').value); }, 50); }""")
            wait_for("Record enabled", page.locator("#record-switch").is_enabled, 5)
            page.locator("#record-switch").check()
            wait_for("recording", lambda: "recording" in page.locator("#recording-note").inner_text(), 10)
            wait_for("the first frames", lambda: page.evaluate("__probe.video.frames") > 10, 10)
            result["colour_before"] = page.evaluate(MEAN_COLOUR)

            # bad portraits: one sentence each, and the call goes on
            note = page.locator("#portrait-note")
            result["bad"] = []
            for path in args.bad:
                frames = page.evaluate("__probe.video.frames")
                page.locator("#portrait-file").set_input_files(str(path))
                wait_for(f"the verdict on {path.name}", lambda: "bad" in (note.get_attribute("class") or ""), 30)
                page.wait_for_timeout(1000)
                result["bad"].append({"file": path.name, "note": note.inner_text(),
                                      "frames_meanwhile": page.evaluate("__probe.video.frames") - frames,
                                      "state": page.locator("#call-state").get_attribute("data-state"),
                                      "pc": page.evaluate("__probe.pcs.at(-1).connectionState")})
            page.locator("#portrait-file").set_input_files(str(args.portrait))
            wait_for("the new portrait in use", lambda: note.inner_text().startswith("now animating"), 30)
            page.wait_for_timeout(1000)
            result["portrait_note"] = note.inner_text()
            result["colour_after"] = page.evaluate(MEAN_COLOUR)

            audio = lambda: page.evaluate("__probe.audio")  # noqa: E731
            wait_for("question heard in the mic", lambda: audio()["micOff"], 60)
            cpu0, wall0 = cpu_seconds(app_pid), time.monotonic()
            wait_for("reply audio", lambda: audio()["replyAt"], 45)
            # the reply to the question, as the server sees it (a lagging server may still
            # be playing the greeting's end)
            state = page.locator("#call-state")
            wait_for("the reply speaking", lambda: state.get_attribute("data-state") == "speaking"
                     and "You" in page.locator("#transcript").inner_text(), 45)
            page.wait_for_timeout(300)
            result["state_during_reply"] = state.get_attribute("data-state")
            page.screenshot(path=str(args.out / "live.png"))
            # the Interrupt button: from the click to the voice going quiet in the page
            page.evaluate("__probe.saidAt = performance.now(); document.getElementById('interrupt-button').click()")
            wait_for("the voice stopping after Interrupt", lambda: audio().get("voiceStoppedAt"), 10)
            result["interrupt_in_page_s"] = (audio()["voiceStoppedAt"] - page.evaluate("__probe.saidAt")) / 1000
            wait_for("the reply marked interrupted", lambda: "interrupted" in page.locator("#transcript").inner_text(), 15)
            # the page does not play what was in flight; the track itself must go quiet, or
            # the server never stopped the reply
            page.evaluate(VOICE_AFTER)
            wait_for("the quiet check", lambda: (page.evaluate("performance.now() - __probe.saidAt") / 1000
                                                 > QUIET_TO_S + 0.2), 10)
            result["voice_after_interrupt"] = page.evaluate("__probe.voiceAfter")
            result["app_cpu_share_in_reply"] = (cpu_seconds(app_pid) - cpu0) / (time.monotonic() - wall0)
            page.wait_for_timeout(1000)

            page.locator("#record-switch").uncheck()
            link = page.locator("#recording-link")
            link.wait_for(state="attached", timeout=20000)
            result["recording_link"] = link.inner_text()
            href = link.get_attribute("href")
            download(url + href, args.out / "recording.mp4")
            download(url + href.replace(".mp4", ".json"), args.out / "recording.json")
            result["transcript"] = page.locator("#transcript").inner_text()
            result["mic_level_max"] = page.evaluate("__probe.micLevelMax")
            button.click()  # Stop
            result["state_after_stop"] = page.locator("#call-state").get_attribute("data-state")
        finally:
            if "transcript" not in result:  # failed on the way: what the page showed
                result["probe"] = page.evaluate("({audio: window.__probe && __probe.audio})")
                result["transcript"] = page.locator("#transcript").inner_text()
                page.screenshot(path=str(args.out / "failed.png"))
            browser.close()


# Questions in a row (--ask): each turn's question, said through the page's mic once the
# agent has been quiet for a second, and the first audible sample of the voice after it.
# A question ends where the mic goes quiet (for 500 ms, or until the voice comes); the
# reply is the first voice after that. `__probe.cut(b64)` cuts in on the voice playing,
# and `voiceStoppedAt` is when it went quiet (for 500 ms) after that.
TURNS_MEASURE = """
() => {
  const p = __probe, pc = p.pcs.at(-1), ctx = new AudioContext();
  const analyser = (stream) => {
    const a = ctx.createAnalyser();
    a.fftSize = 1024;
    ctx.createMediaStreamSource(stream).connect(a);
    return a;
  };
  const mic = analyser(p.mic), voice = analyser(new MediaStream([pc.getReceivers().find((r) => r.track.kind === "audio").track]));
  const buf = new Float32Array(1024);
  const rms = (a) => { a.getFloatTimeDomainData(buf); let s = 0; for (const x of buf) s += x * x; return Math.sqrt(s / buf.length); };
  const video = document.getElementById("avatar-video");
  Object.assign(p, {turns: [], voiceHeard: false, voiceQuietSince: performance.now(), cutAt: null, voiceStoppedAt: null});
  p.ask = (b64) => { p.turns.push({micOn: null, quietSince: null, micOff: null, replyAt: null}); return p.say(b64); };
  p.cut = (b64) => { p.cutAt = performance.now(); return p.say(b64); };
  setInterval(() => {
    const t = performance.now(), m = rms(mic), v = video.muted ? 0 : rms(voice);
    if (v > 0.003) p.voiceQuietSince = null;
    else if (p.voiceQuietSince === null) p.voiceQuietSince = t;
    if (v > 0.01) p.voiceHeard = true;
    if (p.cutAt !== null && p.voiceStoppedAt === null && p.voiceQuietSince !== null && t - p.voiceQuietSince > 500)
      p.voiceStoppedAt = Math.max(p.voiceQuietSince, p.cutAt);
    const turn = p.turns.at(-1);
    if (!turn || turn.replyAt !== null) return;
    if (m > 0.01) {
      turn.micOn = turn.micOn ?? t;
      turn.quietSince = turn.micOff = null;
    } else if (turn.micOn !== null && m < 0.003 && turn.quietSince === null) turn.quietSince = t;
    if (turn.quietSince === null) return;
    if (v > 0.01) turn.replyAt = t;
    if (turn.micOff === null && (t - turn.quietSince > 500 || turn.replyAt !== null)) turn.micOff = turn.quietSince;
  }, 20);
}
"""

# The video as the page decodes it: codec, decoder, size, frames.
VIDEO_STATS = """
async () => {
  const stats = await __probe.pcs.at(-1).getStats();
  let out = null;
  stats.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video")
      out = {codec: (stats.get(r.codecId) || {}).mimeType, decoder: r.decoderImplementation,
             width: r.frameWidth, height: r.frameHeight, frames: r.framesDecoded, fps: r.framesPerSecond};
  });
  return out;
}
"""
AGENT_QUIET_S = 1.0     # the greeting or the last reply is over: the next question may come


def cpu_with_children(pid: int) -> float:
    """CPU seconds of a process and all its descendants (the app and its LLM server)."""
    total = cpu_seconds(pid)
    # each thread lists the children it started (the LLM server comes from a worker thread)
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            try:
                total += cpu_with_children(int(child))
            except (FileNotFoundError, ProcessLookupError):
                pass   # ended meanwhile
    return total


def busy_tab(browser, url: str) -> dict:
    """A second tab presses Start while the call is full: what its page says."""
    page = browser.new_page()
    try:
        page.goto(url, timeout=30000)
        button = page.locator("#call-button")
        wait_for("the second tab ready", button.is_enabled, 60, 0.25)
        button.click()
        note = page.locator("#call-note")
        wait_for("the second tab's verdict", note.inner_text, 20)
        return {"note": note.inner_text(), "state": page.locator("#call-state").get_attribute("data-state")}
    finally:
        page.close()


def run_turns(args, result: dict, app: subprocess.Popen) -> None:
    """Questions in a row (--ask), measured in the page; --busy-tab: a second tab tries
    to call after the first reply; --interrupt: cut in on the last reply."""
    from playwright.sync_api import sync_playwright
    url = f"http://127.0.0.1:{args.port}/"
    wait_for("page served", lambda: served(app, url), 90, 0.5)
    with sync_playwright() as pw:
        browser = launch(pw, args, 900, fake_mic=args.wav)
        page = browser.pages[0] if browser.pages else browser.new_page()
        try:
            button, state = open_live_page(page, url, ready_s=120), page.locator("#call-state")
            button.click()
            wait_for("connected", lambda: page.evaluate("__probe.connectedAt"), 20)
            page.evaluate(TURNS_MEASURE)
            quiet = (f"__probe.voiceHeard && __probe.voiceQuietSince !== null"
                     f" && performance.now() - __probe.voiceQuietSince > {AGENT_QUIET_S * 1000}")
            turn = lambda key: page.evaluate(f"__probe.turns.at(-1).{key}")  # noqa: E731
            cpu0, app_cpu0, wall0 = cpu_with_children(app.pid), cpu_seconds(app.pid), time.monotonic()
            for i, wav in enumerate(args.ask):
                wait_for(f"the agent quiet before question {i + 1}", lambda: page.evaluate(quiet)
                         and state.get_attribute("data-state") == "listening", 120, 0.05)
                page.evaluate("b64 => __probe.ask(b64)", base64.b64encode(wav.read_bytes()).decode())
                wait_for(f"question {i + 1} heard in the mic", lambda: turn("micOff"), 30, 0.05)
                wait_for(f"reply {i + 1} audio", lambda: turn("replyAt"), 60, 0.05)
                if i == 0 and args.busy_tab:
                    result["busy_tab"] = busy_tab(browser, url)
            result["app_cpu_share"] = (cpu_seconds(app.pid) - app_cpu0) / (time.monotonic() - wall0)
            result["app_and_llm_cpu_share"] = (cpu_with_children(app.pid) - cpu0) / (time.monotonic() - wall0)
            if args.interrupt:
                page.wait_for_timeout(300)
                result["voice_playing_at_cut_in"] = page.evaluate("__probe.voiceQuietSince === null")
                page.evaluate("b64 => __probe.cut(b64)", base64.b64encode(args.interrupt.read_bytes()).decode())
                wait_for("the voice stopping after the cut-in", lambda: page.evaluate("__probe.voiceStoppedAt"), 10)
                result["barge_in_in_page_s"] = page.evaluate("(__probe.voiceStoppedAt - __probe.cutAt) / 1000")
            result["turns"] = [{k: t[k] for k in ("micOn", "micOff", "replyAt")} | {"in_page_s": (t["replyAt"] - t["micOff"]) / 1000}
                               for t in page.evaluate("__probe.turns")]
            result["video"] = page.evaluate(VIDEO_STATS)
            page.wait_for_timeout(1000)
            result["server_turns"] = page.evaluate("__probe.update.turns")
            result["transcript"] = page.locator("#transcript").inner_text()
            button.click()  # Stop
            result["state_after_stop"] = state.get_attribute("data-state")
        finally:
            if "transcript" not in result:  # failed on the way: what the page had measured
                result["probe"] = page.evaluate("window.__probe && {turns: __probe.turns, update: __probe.update}")
                result["transcript"] = page.locator("#transcript").inner_text()
                page.screenshot(path=str(args.out / "failed.png"))
            browser.close()


def ask_in_browser(config: Path, questions: list[str], folder: Path, *, busy_tab: bool = False,
                   cut_in: str | None = None, budget_s: float = BUDGET_S) -> tuple[dict, str]:
    """Run the --ask mode in its namespace on `questions`, each spoken by espeak-ng in the
    next of its voices (never the agent's Piper voice), the fake mic otherwise silent;
    `cut_in`: said over the last reply. Returns (the result, the app's log)."""
    from speech.audio import resample, write_wav
    from speech.espeak import RATE, VOICES, speak
    folder.mkdir(parents=True, exist_ok=True)
    write_wav(folder / "silence.wav", np.zeros(MIC_RATE, np.float32), MIC_RATE)

    def wav(name: str, text: str, voice) -> Path:
        u = speak(text, voice)
        path = folder / f"{name}.wav"
        write_wav(path, resample(u.audio[int(u.start * RATE):int((u.end + 0.2) * RATE)], RATE, MIC_RATE), MIC_RATE)
        return path
    command = ["unshare", "-n", sys.executable, str(Path(__file__)), "--config", str(config),
               "--wav", str(folder / "silence.wav"), "--profile", str(folder / "chromium"), "--out", str(folder),
               "--budget", str(budget_s)]
    for i, text in enumerate(questions):
        command += ["--ask", str(wav(f"q{i}", text, VOICES[i % len(VOICES)]))]
    if busy_tab:
        command.append("--busy-tab")
    if cut_in:
        command += ["--interrupt", str(wav("cut_in", cut_in, VOICES[len(questions) % len(VOICES)]))]
    subprocess.run(command, cwd=ROOT, check=True, timeout=budget_s + 60)
    return json.loads((folder / "result.json").read_text()), (folder / "app.log").read_text()


def run_two_agents(args, result: dict, app: subprocess.Popen) -> None:
    """The Two agents tab: B gets --portrait, two replies about a topic, watched live."""
    from playwright.sync_api import sync_playwright
    url = f"http://127.0.0.1:{args.port}/"
    wait_for("page served", lambda: served(app, url), 60, 0.5)
    with sync_playwright() as pw:
        browser = launch(pw, args, 1000)
        page = browser.pages[0] if browser.pages else browser.new_page()
        try:
            page.add_init_script(PROBE)
            page.goto(url, timeout=30000)
            page.get_by_role("tab", name="Two agents").click()
            button = page.locator("#two-button")
            button.wait_for(state="visible", timeout=30000)
            wait_for("models ready (Start enabled)", button.is_enabled, 90, 0.25)
            page.locator("#two-topic textarea").fill("the moon")
            turns = page.locator("#two-turns input[type=number]")
            turns.fill(str(args.turns))
            turns.press("Enter")
            page.locator("#two-image-b").set_input_files(str(args.portrait))
            button.click()
            wait_for("connected", lambda: page.evaluate("__probe.connectedAt"), 30)
            page.evaluate(TWO_MEASURE)
            state = page.locator("#two-state")
            wait_for("someone speaking", lambda: "speaking" in state.inner_text(), 60)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(args.out / "two_agents_tab.png"))
            link = page.locator("#two-recording-link")
            link.wait_for(state="attached", timeout=int(1000 * max(10, browser_call.END - time.monotonic() - 20)))
            result["two"] = page.evaluate("__probe.two")
            result["recording_link"] = link.inner_text()
            result["transcript"] = page.locator("#two-transcript").inner_text()
            href = link.get_attribute("href")
            download(url + href, args.out / "two_agents.mp4")
            download(url + href.replace(".mp4", ".json"), args.out / "two_agents.json")
        finally:
            if "transcript" not in result:
                result["probe"] = page.evaluate("window.__probe && __probe.two")
                result["transcript"] = page.locator("#two-transcript").inner_text()
                page.screenshot(path=str(args.out / "failed.png"))
            browser.close()


BOOTH_MEASURE = """
() => {
  const p = __probe, video = document.getElementById("avatar-video"), c = document.createElement("canvas");
  c.width = c.height = 64;
  const g = c.getContext("2d", {willReadFrequently: true});
  p.booth = {frames: 0, width: 0, height: 0, compared: 0, changed: 0};
  let previous = null;
  const onFrame = (now, meta) => {
    const s = p.booth;
    s.frames += 1; s.width = meta.width; s.height = meta.height;
    if (s.frames % 5 === 0) {
      g.drawImage(video, 0, 0, 64, 64);
      const px = g.getImageData(0, 0, 64, 64).data;
      if (previous) {
        let d = 0;
        for (let i = 0; i < px.length; i += 4) d += Math.abs(px[i] - previous[i]);
        s.compared += 1;
        if (d / (px.length / 4) > 0.3) s.changed += 1;
      }
      previous = px;
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}
"""


def run_booth(args, result: dict, app: subprocess.Popen) -> None:
    """Booth mode: the page watches the conversation the virtual sound card carries."""
    from playwright.sync_api import sync_playwright
    url = f"http://127.0.0.1:{args.port}/"
    wait_for("page served", lambda: served(app, url), 60, 0.5)
    with sync_playwright() as pw:
        browser = launch(pw, args, 900)
        page = browser.pages[0] if browser.pages else browser.new_page()
        try:
            page.add_init_script(PROBE)
            page.goto(url, timeout=30000)
            button = page.locator("#call-button")
            button.wait_for(state="visible", timeout=30000)
            wait_for("models ready (Watch enabled)", button.is_enabled, 90, 0.25)
            result["button"] = button.inner_text()
            result["has_call_tools"] = page.locator("#interrupt-button").count() > 0
            # the conversation has begun on the sound card; the page may need a retry
            wait_for("the booth ready", lambda: "Booth mode" in page.locator("#status").inner_text(), 30)
            page.wait_for_timeout(2000)
            button.click()
            wait_for("connected", lambda: page.evaluate("__probe.connectedAt"), 20)
            page.evaluate(BOOTH_MEASURE)
            transcript = page.locator("#transcript")
            wait_for("a reply to the question", lambda: "replied in" in transcript.inner_text(), 120)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(args.out / "booth.png"))
            page.wait_for_timeout(4000)
            result["booth"] = page.evaluate("__probe.booth")
            result["transcript"] = transcript.inner_text()
        finally:
            if "transcript" not in result:
                result["transcript"] = page.locator("#transcript").inner_text()
                page.screenshot(path=str(args.out / "failed.png"))
            browser.close()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--two-agents", action="store_true", help="test the Two agents tab instead")
    p.add_argument("--booth", type=Path, help="test booth mode instead: this 16 kHz WAV is the virtual sound "
                                               "card's microphone; the speaker goes to <out>/speaker.f32")
    p.add_argument("--ask", action="append", type=Path, default=[],
                   help="questions in a row instead (48 kHz WAVs, said through the page's mic in turn)")
    p.add_argument("--busy-tab", action="store_true", help="--ask: a second tab tries to call after the first reply")
    p.add_argument("--interrupt", type=Path, help="--ask: cut in on the last reply with this WAV (speech from its start)")
    p.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for the whole run")
    p.add_argument("--turns", type=int, default=2, help="two agents: replies in all")
    p.add_argument("--wav", type=Path, help="48 kHz mono s16: the fake microphone")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--bad", action="append", type=Path, default=[], help="a portrait that must be refused")
    p.add_argument("--portrait", type=Path, help="a portrait that must be taken")
    p.add_argument("--port", type=int, default=7861)
    p.add_argument("--profile", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args()
    browser_call.END = time.monotonic() + args.budget
    for command in VETH:
        subprocess.run(command.split(), check=True)
    result: dict = {}
    log = open(args.out / "app.log", "w")
    command, env = [sys.executable, "app.py", "--config", str(args.config), "--port", str(args.port)], dict(os.environ)
    if args.booth:
        command.append("--local")
        env.update(PYTHONPATH=f"{ROOT / 'tests' / 'fake_audio'}:{env.get('PYTHONPATH', '')}",
                   PERSONA_FAKE_MIC=str(args.booth), PERSONA_FAKE_SPEAKER=str(args.out / "speaker.f32"))
    app = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        mode = run_booth if args.booth else run_two_agents if args.two_agents else run_turns if args.ask else run
        mode(args, result, app)
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        app.send_signal(signal.SIGINT)
        try:
            result["app_exit_code"] = app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
            result["app_exit_code"] = "killed: did not stop within 30 s"
        log.close()
        (args.out / "result.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
