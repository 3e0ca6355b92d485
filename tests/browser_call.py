"""One real-browser call against `python app.py`, run inside a throwaway network namespace.

    unshare -n python tests/browser_call.py --config config.yaml --wav question.wav --expect word \\
        --interrupt cut_in.wav --profile /tmp/chromium --screenshot ui.png --result out.json

Inside the namespace only loopback and a veth pair exist (no route out, so nothing can
leave the machine); ICE uses the veth address. The app starts, headless Chromium opens
the page with a fake microphone playing `--wav`, presses Start, and measures in the
page: when the connection came up, video frames and whether they change, the mic's
question (its end), the agent's voice after it, how soon that voice stops when the user
cuts in, and the transcript. Results go to
`--result` as JSON; tests/test_webui.py judges them.
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

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 170                      # the whole run, so that the caller's timeout never has to fire
END = time.monotonic() + BUDGET_S
CHROMIUM = "/usr/lib/chromium/chromium"
VETH = ["ip link set lo up", "ip link add v0 type veth peer name v1", "ip addr add 10.231.0.1/24 dev v0",
        "ip link set v1 up", "ip link set v0 up"]

# Installed before the page's own scripts: remembers the peer connection and the mic
# stream the page creates, so the measurements below can tap them. The page's mic is the
# fake device with a second source mixed in, `__probe.say(base64 WAV)`: the user cutting
# in at a moment the test picks. The last update the server sent on the data channel is
# kept as `__probe.update` (its own latency figures).
PROBE = """
window.__probe = {pcs: [], mic: null, connectedAt: null, gatheredAt: null, update: null};
(() => {
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    createDataChannel(...args) {
      const channel = super.createDataChannel(...args);
      channel.addEventListener("message", (event) => {
        const message = JSON.parse(event.data);
        if (message.type === "update") __probe.update = message;
      });
      return channel;
    }
    constructor(...args) {
      super(...args);
      __probe.pcs.push(this);
      this.addEventListener("icegatheringstatechange", () => {
        if (this.iceGatheringState === "complete") __probe.gatheredAt = performance.now();
      });
      this.addEventListener("connectionstatechange", () => {
        if (this.connectionState === "connected" && __probe.connectedAt === null) __probe.connectedAt = performance.now();
      });
    }
  };
  const devices = navigator.mediaDevices, getUserMedia = devices.getUserMedia.bind(devices);
  devices.getUserMedia = async (constraints) => {
    const device = await getUserMedia(constraints), ctx = new AudioContext({sampleRate: 48000});
    const mixed = ctx.createMediaStreamDestination();
    ctx.createMediaStreamSource(device).connect(mixed);
    __probe.say = async (b64) => {
      const source = ctx.createBufferSource();
      source.buffer = await ctx.decodeAudioData(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer);
      source.connect(mixed);
      source.start();
      __probe.saidAt = performance.now();
    };
    return (__probe.mic = mixed.stream);
  };
})();
"""

# Started once connected. Audio: RMS of the mic and of the received voice every 20 ms
# (WebAudio analysers). Video: every frame the <video> presents, and every 5th frame
# drawn small to a canvas and compared with the previous one.
MEASURE = """
() => {
  const p = __probe, pc = p.pcs.at(-1);
  const ctx = new AudioContext();
  const analyser = (stream) => {
    const a = ctx.createAnalyser();
    a.fftSize = 1024;
    ctx.createMediaStreamSource(stream).connect(a);
    return a;
  };
  const voiceTrack = pc.getReceivers().find((r) => r.track.kind === "audio").track;
  const mic = analyser(p.mic), voice = analyser(new MediaStream([voiceTrack]));
  const buf = new Float32Array(1024);
  const rms = (a) => { a.getFloatTimeDomainData(buf); let s = 0; for (const x of buf) s += x * x; return Math.sqrt(s / buf.length); };
  p.audio = {micOn: null, micOff: null, replyAt: null, voicePeak: 0, replyPeak: 0, greetingAt: null,
             greetingEnd: null, quietBeforeReply: false};
  let quietSince = null, voiceQuietSince = null, greetingQuietSince = null, stopQuietSince = null;
  const video = document.getElementById("avatar-video");
  setInterval(() => {
    // the voice as the user hears it: nothing while the page mutes it
    const t = performance.now(), m = rms(mic), v = video.muted ? 0 : rms(voice), a = p.audio;
    a.voicePeak = Math.max(a.voicePeak, v);
    if (a.micOn === null) {
      if (v > 0.01 && a.greetingAt === null) a.greetingAt = t;
      if (m > 0.01) a.micOn = t;
    } else if (a.micOff === null) {
      quietSince = m < 0.003 ? (quietSince ?? t) : null;
      if (quietSince !== null && t - quietSince > 500) a.micOff = quietSince;
    } else if (a.replyAt === null) {
      // the reply: voice after at least 300 ms of quiet since the question ended
      voiceQuietSince = v < 0.003 ? (voiceQuietSince ?? t) : null;
      if (v > 0.01 && a.quietBeforeReply) a.replyAt = t;
      if (voiceQuietSince !== null && t - voiceQuietSince > 300) a.quietBeforeReply = true;
    } else {
      a.replyPeak = Math.max(a.replyPeak, v);
    }
    if (p.saidAt && a.voiceStoppedAt === undefined) {
      // the agent's voice going quiet (for longer than a pause between words) after the cut-in
      stopQuietSince = v < 0.003 ? (stopQuietSince ?? t) : null;
      if (stopQuietSince !== null && t - stopQuietSince > 500) a.voiceStoppedAt = stopQuietSince;
    }
    if (a.greetingAt !== null && a.greetingEnd === null) {
      greetingQuietSince = v < 0.003 ? (greetingQuietSince ?? t) : null;
      if (greetingQuietSince !== null && t - greetingQuietSince > 700) a.greetingEnd = greetingQuietSince;
    }
  }, 20);
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 64;
  const g = canvas.getContext("2d", {willReadFrequently: true});
  p.video = {frames: 0, compared: 0, changed: 0, width: 0, height: 0, since: performance.now()};
  let previous = null;
  const onFrame = (now, meta) => {
    const s = p.video;
    s.frames += 1;
    s.width = meta.width;
    s.height = meta.height;
    if (s.frames % 5 === 0) {
      g.drawImage(video, 0, 0, 64, 64);
      const px = g.getImageData(0, 0, 64, 64).data;
      if (previous) {
        let d = 0;
        for (let i = 0; i < px.length; i += 4) d += Math.abs(px[i] - previous[i]) + Math.abs(px[i + 1] - previous[i + 1]);
        s.compared += 1;
        if (d / (px.length / 2) > 0.3) s.changed += 1;
      }
      previous = px;
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}
"""


def wait_for(what: str, check, timeout_s: float, every_s: float = 0.1):
    deadline = min(time.monotonic() + timeout_s, END)
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not after {timeout_s:.0f} s")


def page_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args, result: dict, app_pid: int, app_log: Path) -> None:
    from playwright.sync_api import sync_playwright
    url = f"http://127.0.0.1:{args.port}/"
    wait_for("page served", lambda: page_up(url), 60, 0.5)
    outside = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            user_data_dir=str(args.profile), executable_path=CHROMIUM, headless=True,
            viewport={"width": 1280, "height": 820},
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
                  "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={args.wav}",
                  "--autoplay-policy=no-user-gesture-required"])
        try:
            browser.on("request", lambda r: None if r.url.startswith(url) else outside.append(r.url))
            page = browser.pages[0] if browser.pages else browser.new_page()
            page.add_init_script(PROBE)
            page.goto(url, timeout=30000)
            button = page.locator("#call-button")
            t = time.monotonic()
            button.wait_for(state="visible", timeout=30000)
            wait_for("models ready (Start enabled)", button.is_enabled, 90, 0.25)
            result["models_ready_s"] = time.monotonic() - t
            result["click_at_ms"] = page.evaluate("__probe.clickAt = performance.now()")
            button.click()
            connected = wait_for("connected", lambda: page.evaluate("__probe.connectedAt"), 20)
            clicked = page.evaluate("__probe.clickAt")
            result["connect_s"] = (connected - clicked) / 1000
            result["ice_gathered_s"] = (page.evaluate("__probe.gatheredAt") - clicked) / 1000
            page.evaluate(MEASURE)
            cpu0, wall0 = cpu_seconds(app_pid), time.monotonic()
            audio = lambda: page.evaluate("__probe.audio")  # noqa: E731
            wait_for("question heard in the mic", lambda: audio()["micOff"], 40)
            wait_for("reply audio", lambda: audio()["replyAt"], 45)
            # cut in early: the (greedy) reply is a single sentence of a few seconds
            page.wait_for_timeout(300)
            result["state_during_reply"] = page.locator("#call-state").get_attribute("data-state")
            page.evaluate("b64 => __probe.say(b64)", base64.b64encode(args.interrupt.read_bytes()).decode())
            page.screenshot(path=str(args.screenshot))  # the cut-in is not confirmed for another 0.4 s
            wait_for("the voice stopping after the cut-in", lambda: audio().get("voiceStoppedAt"), 10)
            result["barge_in_in_page_s"] = (audio()["voiceStoppedAt"] - page.evaluate("__probe.saidAt")) / 1000
            wait_for("the reply marked interrupted", lambda: "interrupted" in page.locator("#transcript").inner_text(), 15)
            wait_for("user words in the transcript", lambda: args.expect in page.locator("#transcript").inner_text().lower(), 20)
            page.wait_for_timeout(1500)
            result["audio"] = audio()
            result["video"] = page.evaluate("({...__probe.video, fps: __probe.video.frames * 1000 / (performance.now() - __probe.video.since)})")
            result["reply_audio_after_question_s"] = (result["audio"]["replyAt"] - result["audio"]["micOff"]) / 1000
            result["transcript"] = page.locator("#transcript").inner_text()
            result["latency_summary"] = page.locator("#latency-summary").inner_text()
            result["app_cpu_share_in_call"] = (cpu_seconds(app_pid) - cpu0) / (time.monotonic() - wall0)
            button.click()  # Stop
            result["state_after_stop"] = page.locator("#call-state").get_attribute("data-state")
            result["pc_after_stop"] = page.evaluate("__probe.pcs.at(-1).connectionState")
            t = time.monotonic()
            page.wait_for_timeout(1000)  # an update still on its way must not relabel the stopped call
            result["state_1s_after_stop"] = page.locator("#call-state").get_attribute("data-state")
            wait_for("the server closing the call", lambda: "call closed" in app_log.read_text(), 15)
            result["server_closed_call_s"] = time.monotonic() - t
            result["server_call_log"] = next(ln for ln in app_log.read_text().splitlines() if "call closed" in ln)
            # the same page calls again: the first call released everything it held
            page.evaluate("__probe.connectedAt = null")
            button.click()
            wait_for("connected again", lambda: page.evaluate("__probe.connectedAt"), 20)
            result["second_call_persona_locked"] = page.locator("#persona-picker input").first.is_disabled()
            button.click()
            wait_for("the second call closed", lambda: app_log.read_text().count("call closed") == 2, 15)
            result["second_call"] = "connected and closed"
        finally:
            result["requests_outside"] = outside
            if "audio" not in result:  # failed on the way: what the page had measured
                result["probe"] = page.evaluate("({audio: __probe.audio, video: __probe.video})")
                result["transcript"] = page.locator("#transcript").inner_text()
                page.screenshot(path=str(args.screenshot))
            browser.close()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--wav", required=True, type=Path, help="48 kHz mono s16: the fake microphone")
    p.add_argument("--expect", required=True, help="a word of the question the transcript must show")
    p.add_argument("--interrupt", required=True, type=Path, help="WAV said over the reply, speech from its start")
    p.add_argument("--config", required=True, type=Path, help="the app's config.yaml")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--profile", required=True, type=Path, help="a fresh Chromium user-data-dir")
    p.add_argument("--screenshot", required=True, type=Path)
    p.add_argument("--result", required=True, type=Path)
    args = p.parse_args()
    for command in VETH:
        subprocess.run(command.split(), check=True)
    result: dict = {}
    log_path = args.result.with_suffix(".log")
    log = open(log_path, "w")
    app = subprocess.Popen([sys.executable, "app.py", "--config", str(args.config), "--port", str(args.port)], cwd=ROOT,
                           stdout=log, stderr=subprocess.STDOUT)
    try:
        run(args, result, app.pid, log_path)
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        t = time.monotonic()
        app.send_signal(signal.SIGINT)
        try:
            result["app_exit_code"] = app.wait(timeout=30)
            result["app_shutdown_s"] = time.monotonic() - t
        except subprocess.TimeoutExpired:
            app.kill()
            result["app_exit_code"] = "killed: did not stop within 30 s"
        log.close()
        args.result.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
