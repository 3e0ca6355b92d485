// The browser half of a call: the microphone goes to the server, the avatar's video and
// voice come back, and the call's state and transcript arrive on a data channel.
// Every wait is bounded: a WebRTC call with no usable network path stays in "new"
// without any error, so silence here must become a message, not a spinner.
(() => {
  const GATHER_TIMEOUT_MS = 3000;
  const CONNECT_TIMEOUT_MS = 20000;
  const STATE_LABELS = {
    idle: "not connected", connecting: "connecting…",
    listening: "listening", thinking: "thinking", speaking: "speaking",
  };

  const MIC_LEVEL_MS = 100;
  const RECORDING_WAIT_MS = 5000;   // Stop while recording: how long to wait for the file
  // Interrupt: the voice already on its way (the browser's jitter buffer grows past a
  // second on a starved CPU) is not played: the page stays muted until the next reply
  // begins (the server thinking about a new turn), long after that tail has drained.

  let call = null;   // {mic, pc, channel, timer, ended, id, meter, audio} while a call is up or being set up
  let portrait = null;   // the chosen portrait file: sent when a call connects, or at once
  let pendingRecording = null;   // resolves when the recording of a call being stopped arrives

  const $ = (id) => document.getElementById(id);

  function showState(state) {
    const badge = $("call-state");
    badge.dataset.state = state;
    badge.textContent = STATE_LABELS[state] || state;
  }

  function showButton(calling) {
    const button = $("call-button");
    button.textContent = calling ? "Stop" : watching() ? "Watch" : "Start";
    button.classList.toggle("calling", calling);
    // the persona is chosen when a call starts
    for (const input of document.querySelectorAll("#persona-picker input")) input.disabled = calling;
  }

  function note(text) {
    $("call-note").textContent = text || "";
  }

  function showTools(connected) {
    if (watching()) return;
    $("interrupt-button").disabled = !connected;
    $("record-switch").disabled = !connected;
    if (!connected) $("record-switch").checked = false;
  }

  // The settings panel's meter: the mic's RMS as the page sends it.
  function meterMic(mine) {
    const ctx = (mine.audio = new AudioContext());
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    ctx.createMediaStreamSource(mine.mic).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    mine.meter = setInterval(() => {
      analyser.getFloatTimeDomainData(buf);
      let s = 0;
      for (const x of buf) s += x * x;
      $("mic-level").value = Math.min(1, 4 * Math.sqrt(s / buf.length));
    }, MIC_LEVEL_MS);
  }

  async function sendPortrait(mine) {
    const file = portrait;
    if (!file || !mine.id || mine.ended) return;
    const shown = $("portrait-note");
    shown.className = "portrait-note";
    shown.textContent = `checking ${file.name}…`;
    const response = await fetch(`webrtc/portrait/${mine.id}`, {
      method: "POST", body: file,
      headers: { "X-Filename": encodeURIComponent(file.name), "Content-Type": "application/octet-stream" },
    }).catch(() => null);
    const reply = response ? await response.json().catch(() => ({})) : { error: "the server did not answer" };
    if (portrait !== file) return;   // another file was chosen meanwhile
    if (response && response.ok) {
      shown.textContent = `now animating ${file.name}`;
    } else {
      portrait = null;   // the call goes on with the previous face
      shown.className = "portrait-note bad";
      shown.textContent = reply.error || `the portrait was refused (HTTP ${response.status})`;
    }
  }

  function choosePortrait(file) {
    portrait = file || null;
    if (!portrait) return;
    if (call && call.id) sendPortrait(call);
    else $("portrait-note").textContent = `${portrait.name} will be used when the call starts`;
  }

  function showRecording(message) {
    const shown = $("recording-note");
    if (message.state === "on") {
      shown.textContent = "recording…";
      return;
    }
    const link = document.createElement("a");
    link.id = "recording-link";
    link.href = message.url;
    link.download = "";
    link.textContent = `Download the recording (${message.seconds.toFixed(1)} s)`;
    shown.replaceChildren(link);
    if (pendingRecording) pendingRecording();
  }

  function seconds(s) {
    return s == null ? "" : `${s.toFixed(2)} s`;
  }

  function line(who, text, name, detail, classes) {
    const li = document.createElement("li");
    li.className = `${who} ${classes || ""}`;
    const speaker = document.createElement("span");
    speaker.className = "speaker";
    speaker.textContent = name;
    const words = document.createElement("span");
    words.className = "words";
    words.textContent = text;
    li.append(speaker, words);
    if (detail) {
      const small = document.createElement("span");
      small.className = "detail";
      small.textContent = detail;
      li.append(small);
    }
    return li;
  }

  function showTranscript(update) {
    const list = $("transcript");
    const items = [line("agent", update.greeting, update.name)];
    for (const turn of update.turns) {
      items.push(line("user", turn.user || "…", "You"));
      const parts = [];
      if (turn.response_s != null) parts.push(`replied in ${seconds(turn.response_s)}`);
      if (turn.interrupted) parts.push(turn.barge_in_s != null ? `interrupted, stopped in ${seconds(turn.barge_in_s)}` : "interrupted");
      if (turn.failed) parts.push("failed");
      if (turn.agent || parts.length) {
        items.push(line("agent", turn.agent || "…", update.name, parts.join(" · "), turn.interrupted ? "interrupted" : ""));
      }
    }
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.replaceChildren(...items);
    if (atBottom) list.scrollTop = list.scrollHeight;
    const replies = update.turns.map((t) => t.response_s).filter((s) => s != null);
    const sorted = [...replies].sort((a, b) => a - b);
    $("latency-summary").textContent = replies.length
      ? `reply latency: last ${seconds(replies.at(-1))} · median ${seconds(sorted[(sorted.length - 1) >> 1])}`
      : "";
  }

  function onMessage(event) {
    const message = JSON.parse(event.data);
    if (message.type === "error") end(message.message);
    else if (message.type === "recording") showRecording(message);
    else if (message.type === "update") {
      unmuteForNextReply(message.state);
      showState(message.state);
      showTranscript(message);
    }
  }

  function iceGathered(pc) {
    // The server takes no trickled candidates: send the offer with all of them.
    return new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      const timer = setTimeout(resolve, GATHER_TIMEOUT_MS);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  // Booth mode (python app.py --local): the page only watches the avatar.
  const watching = () => $("booth-mode") !== null;

  async function start(mine, persona) {
    if (!watching()) {
      try {
        mine.mic = await navigator.mediaDevices.getUserMedia({
          audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
        });
      } catch (e) {
        throw new Error(`the microphone is not available (${e.name}); allow it and press Start again`);
      }
    }
    const config = await (await fetch("webrtc/config")).json();
    if (mine.ended) return release(mine);
    const pc = (mine.pc = new RTCPeerConnection({ iceServers: config.iceServers }));
    if (mine.mic) {
      for (const track of mine.mic.getAudioTracks()) pc.addTrack(track, mine.mic);
      meterMic(mine);
    }
    pc.addTransceiver("video", { direction: "recvonly" });
    mine.channel = pc.createDataChannel("events");
    // a message already on its way when the call ends must not relabel the stopped call
    mine.channel.onmessage = (event) => { if (!mine.ended) onMessage(event); };
    const remote = new MediaStream();
    const video = $("avatar-video");
    pc.ontrack = (event) => {
      remote.addTrack(event.track);
      if (video.srcObject !== remote) video.srcObject = remote;
      video.play().catch(() => note("click the video to hear the persona"));
    };
    pc.onconnectionstatechange = () => {
      if (mine.ended) return;
      const state = pc.connectionState;
      if (state === "connected") {
        clearTimeout(mine.timer);
        note("");
        $("stage").classList.add("in-call");
        showTools(true);
        sendPortrait(mine);
      } else if (state === "disconnected") {
        note("the connection is interrupted…");
      } else if (state === "failed" || state === "closed") {
        end("the connection to the server was lost");
      }
    };
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc);
    if (mine.ended) return release(mine);
    const offer = { sdp: pc.localDescription.sdp, type: "offer" };
    const response = await fetch(watching() ? "webrtc/watch" : "webrtc/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(watching() ? offer : { ...offer, persona }),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.error || `the server refused the call (HTTP ${response.status})`);
    if (mine.ended) return release(mine);
    mine.id = answer.call;
    mine.timer = setTimeout(() => end("no connection to the server after 20 s (check server.ice_servers)"),
                            CONNECT_TIMEOUT_MS);
    await pc.setRemoteDescription(answer);
  }

  function release(ending) {
    clearTimeout(ending.timer);
    $("avatar-video").muted = false;
    if (ending.channel && ending.channel.readyState === "open") ending.channel.send("bye");
    if (ending.pc) ending.pc.close();
    if (ending.mic) ending.mic.getTracks().forEach((t) => t.stop());
    clearInterval(ending.meter);
    if (ending.audio) ending.audio.close();
    if ($("mic-level")) $("mic-level").value = 0;
  }

  // Ends the current call (or the one being set up; its setup releases what it got).
  function end(message) {
    const ending = call;
    if (!ending) return;
    call = null;
    ending.ended = true;
    release(ending);
    $("avatar-video").srcObject = null;
    $("stage").classList.remove("in-call");
    showState("idle");
    showButton(false);
    showTools(false);
    note(message);
  }

  // Stop: a recording in progress is finished and offered first.
  async function stop() {
    const mine = call;
    if ($("record-switch") && $("record-switch").checked && mine.channel && mine.channel.readyState === "open") {
      const arrived = new Promise((resolve) => { pendingRecording = resolve; });
      mine.channel.send("record:off");
      await Promise.race([arrived, new Promise((r) => setTimeout(r, RECORDING_WAIT_MS))]);
      pendingRecording = null;
    }
    if (call === mine) end();
  }

  function send(message) {
    if (call && call.channel && call.channel.readyState === "open") call.channel.send(message);
  }

  function interrupt() {
    if (!call || !call.pc) return;
    send("interrupt");
    $("avatar-video").muted = true;
  }

  function unmuteForNextReply(state) {
    if (state === "thinking") $("avatar-video").muted = false;
  }

  function toggle(persona) {
    if (call) return stop();
    const mine = (call = {});
    note("");
    showButton(true);
    showState("connecting");
    start(mine, persona).catch((e) => {
      console.error(e);
      if (call === mine) end(e.message || String(e));
      else release(mine);
    });
  }

  window.addEventListener("pagehide", () => end());
  // the page's own controls (plain HTML inside the Gradio layout) exist once it has rendered
  document.addEventListener("click", (event) => {
    if (event.target.id === "interrupt-button") interrupt();
  });
  document.addEventListener("change", (event) => {
    if (event.target.id === "record-switch") send(event.target.checked ? "record:on" : "record:off");
    if (event.target.id === "portrait-file") choosePortrait(event.target.files[0]);
  });
  window.personaCall = { toggle };

  // ── the Two agents tab: a receive-only connection watching two personas talk ──────

  let show = null;   // {pc, channel, ended} while two agents are being watched
  let watched = null;   // the connection of a finished run, showing its last frame

  function showTwoState(state, label) {
    const badge = $("two-state");
    badge.dataset.state = state;
    badge.textContent = label;
  }

  function fileAsBase64(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result.split(",", 2)[1] || "");
      reader.onerror = () => reject(new Error(`could not read ${file.name}`));
      reader.readAsDataURL(file);
    });
  }

  // A opens with its greeting; B answers A, A answers B, … (each side's replies are its turns)
  function showTwoTranscript(a, b) {
    const items = [line("agent", a.greeting, a.name)];
    const n = Math.max(a.turns.length, b.turns.length);
    for (let i = 0; i < n; i++) {
      for (const [side, who] of [[b, "user"], [a, "agent"]]) {
        const turn = side.turns[i];
        if (turn && turn.agent) items.push(line(who, turn.agent, side.name, turn.interrupted ? "interrupted" : ""));
      }
    }
    $("two-transcript").replaceChildren(...items);
  }

  function onTwoMessage(message) {
    if (message.type === "update") {
      showTwoTranscript(message.a, message.b);
      const speaking = [message.a, message.b].find((s) => s.state === "speaking");
      showTwoState(speaking ? "speaking" : "thinking", speaking ? `${speaking.name} speaking` : "thinking");
    } else if (message.type === "done") {
      const link = document.createElement("a");
      link.id = "two-recording-link";
      link.href = message.url;
      link.download = "";
      link.textContent = `Download the side-by-side MP4 (${message.seconds.toFixed(1)} s)`;
      $("two-result").replaceChildren(link);
      showTwoState("idle", "done");
      endTwo(null, true);
    } else if (message.type === "error") {
      endTwo(message.message);
    }
  }

  async function startTwo(mine, a, b, topic, turns) {
    const images = {};
    for (const [seat, id] of [["a", "two-image-a"], ["b", "two-image-b"]]) {
      const file = $(id).files[0];
      if (file) images[seat] = { name: file.name, data: await fileAsBase64(file) };
    }
    const config = await (await fetch("webrtc/config")).json();
    if (mine.ended) return;
    const pc = (mine.pc = new RTCPeerConnection({ iceServers: config.iceServers }));
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    mine.channel = pc.createDataChannel("events");
    mine.channel.onmessage = (event) => { if (!mine.ended) onTwoMessage(JSON.parse(event.data)); };
    const remote = new MediaStream();
    const video = $("two-video");
    pc.ontrack = (event) => {
      remote.addTrack(event.track);
      if (video.srcObject !== remote) video.srcObject = remote;
      video.play().catch(() => {});
    };
    pc.onconnectionstatechange = () => {
      if (mine.ended) return;
      if (pc.connectionState === "connected") {
        $("two-stage").classList.add("in-call");
        showTwoState("thinking", "starting");
      } else if (pc.connectionState === "failed") {
        endTwo("the connection to the server was lost");
      }
    };
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc);
    if (mine.ended) return;
    const response = await fetch("webrtc/two-agents", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", a, b, topic, turns: Number(turns), images }),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.error || `the server refused (HTTP ${response.status})`);
    if (mine.ended) return;
    await pc.setRemoteDescription(answer);
  }

  // Stops watching; `finished`: the run is over and its last frame stays on screen.
  function endTwo(message, finished) {
    const ending = show;
    if (!ending) return;
    show = null;
    ending.ended = true;
    if (finished) {
      watched = ending.pc;
    } else {
      if (ending.pc) ending.pc.close();
      $("two-video").srcObject = null;
      $("two-stage").classList.remove("in-call");
      showTwoState("idle", "not started");
    }
    $("two-button").textContent = "Start";
    $("two-note").textContent = message || "";
  }

  function toggleTwo(a, b, topic, turns) {
    if (show) return endTwo();
    if (watched) watched.close();
    watched = null;
    const mine = (show = {});
    $("two-note").textContent = "";
    $("two-result").textContent = "";
    $("two-button").textContent = "Stop";
    showTwoState("connecting", "connecting…");
    startTwo(mine, a, b, topic, turns).catch((e) => {
      console.error(e);
      if (show === mine) endTwo(e.message || String(e));
    });
  }

  window.addEventListener("pagehide", () => endTwo());
  window.personaTwoAgents = { toggle: toggleTwo };
})();
