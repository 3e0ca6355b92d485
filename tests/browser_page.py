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
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import browser_call
from browser_call import CHROMIUM, MEASURE, PROBE, ROOT, VETH, cpu_seconds, page_up, wait_for

BUDGET_S = 260   # the whole run (browser_call's waits stop at its END)

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


def run(args, result: dict, app: subprocess.Popen) -> None:
    from playwright.sync_api import sync_playwright
    url = f"http://127.0.0.1:{args.port}/"
    wait_for("page served", lambda: served(app, url), 60, 0.5)
    app_pid = app.pid
    with sync_playwright() as pw:
        browser = launch(pw, args, 900, fake_mic=args.wav)
        page = browser.pages[0] if browser.pages else browser.new_page()
        try:
            page.add_init_script(PROBE)
            page.goto(url, timeout=30000)
            button = page.locator("#call-button")
            button.wait_for(state="visible", timeout=30000)
            wait_for("models ready (Start enabled)", button.is_enabled, 90, 0.25)
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
    p.add_argument("--turns", type=int, default=2, help="two agents: replies in all")
    p.add_argument("--wav", type=Path, help="48 kHz mono s16: the fake microphone")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--bad", action="append", type=Path, default=[], help="a portrait that must be refused")
    p.add_argument("--portrait", type=Path, help="a portrait that must be taken")
    p.add_argument("--port", type=int, default=7861)
    p.add_argument("--profile", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args()
    browser_call.END = time.monotonic() + BUDGET_S
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
        (run_booth if args.booth else run_two_agents if args.two_agents else run)(args, result, app)
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
