"""Headless runs: a WAV file plays as the microphone through the whole loop, and the
avatar video (agent voice + user voice mixed) and a JSON transcript come out.

Real time by default. With `fast`, the file is read as fast as the machine allows while
the conversation only waits on its own work: whenever the brain is busy and no voice is
ready, the session clock advances at wall-clock pace, so latencies stay honest.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import Callable

import numpy as np

from agent.conversation import Conversation
from agent.metrics import transcript
from agent.persona import load_persona
from agent.session import SESSION_RATE, make_conversation, open_stack
from avatar_engine.media import MP4Writer
from config import Config
from speech.audio import RecentAudio, prepare, read_wav

log = logging.getLogger(__name__)
TAIL_S = 1.0            # keep recording this long after the last reply
MAX_SESSION_S = 3600.0  # a headless run never goes on for longer than this


class Pacer:
    """Keeps the session clock from running ahead of the wall clock when it must not."""

    def __init__(self, realtime: bool):
        self.realtime = realtime
        self._anchor: tuple[float, float] | None = None   # (wall, session) when pacing began

    async def wait(self, session_t: float, must_pace: bool) -> None:
        if not (self.realtime or must_pace):
            self._anchor = None
            return
        if self._anchor is None:
            self._anchor = (time.monotonic(), session_t)
        wall0, t0 = self._anchor
        delay = wall0 + (session_t - t0) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class WavUser:
    """The microphone as a fixed recording; it does not react to the agent."""

    def __init__(self, audio: np.ndarray):
        self.audio, self._pos = audio, 0

    @property
    def done(self) -> bool:
        return self._pos >= len(self.audio)

    def hear(self, t: float, agent_voiced: bool, agent_done: bool = True) -> None:
        pass

    def speak(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        chunk = self.audio[self._pos:self._pos + n]
        out[:len(chunk)] = chunk
        self._pos += n
        return out


class Loudspeaker:
    """What the agent's output sounds like tick by tick: blocks arrive one block length at
    a time and then play out, so a listener (a scripted user, the other agent) hears them
    over the following ticks. Bounded by the blocks in flight (one or two)."""

    def __init__(self, tick: int):
        self.tick = tick
        self._ticks: deque[np.ndarray] = deque()

    def play(self, blocks) -> None:
        for b in blocks:
            self._ticks.extend(np.split(b.audio, len(b.audio) // self.tick))

    def next_tick(self) -> np.ndarray:
        return self._ticks.popleft() if self._ticks else np.zeros(self.tick, np.float32)


async def run_conversation(conv: Conversation, user, writer: MP4Writer | None, *, fast: bool = False,
                           max_s: float = MAX_SESSION_S, progress: Callable[[str], None] = log.info) -> None:
    """Drive `conv` tick by tick with `user` (WavUser, speech.synthetic.ScriptedUser) as
    the microphone until the user is done and the agent has finished; the user hears
    the agent's output. Every A/V block is written with agent voice and mic mixed."""
    tick = conv.tick_samples
    pacer = Pacer(realtime=not fast)
    heard = RecentAudio(int(10.0 * SESSION_RATE))
    speaker = Loudspeaker(tick)
    quiet_since = None
    reported = 0
    started = conv.now
    await conv.warm_up()
    while True:
        await pacer.wait(conv.now, must_pace=conv.busy)
        mic = user.speak(tick)
        heard.push(mic)
        blocks = await conv.step(mic)
        for block in blocks:
            if writer is not None:
                writer.write(block.frames, block.audio + heard.get(int(round(block.t0 * SESSION_RATE)), len(block.audio)))
        speaker.play(blocks)
        user.hear(conv.now, bool(np.any(speaker.next_tick())), agent_done=not conv.replying)
        if len(conv.turns) > reported:
            reported = len(conv.turns)
            progress(f"{conv.now:6.1f}s  user turn {reported} heard")
        if user.done:
            quiet_since = (quiet_since or conv.now) if conv.idle else None
            if quiet_since and conv.now - quiet_since >= TAIL_S:
                break
        if conv.now - started > max_s:
            progress(f"stopping: the session passed its limit of {max_s:.0f} s")
            break
    await conv.close()


async def run_headless(cfg: Config, input_wav: str | Path, output_mp4: str | Path, *, fast: bool = False,
                       progress: Callable[[str], None] = log.info) -> dict:
    """The whole loop from a WAV to an MP4 + `<output>.json`. Returns the transcript dict."""
    data, rate = read_wav(str(input_wav))
    mic = prepare(data, rate, SESSION_RATE, min_rate=cfg.audio.min_input_rate, max_rate=cfg.audio.max_input_rate)
    persona = load_persona(cfg.agent.persona)
    async with open_stack(cfg, progress) as stack:
        conv = make_conversation(stack, persona)
        size = cfg.avatar.size
        with MP4Writer(output_mp4, cfg.avatar.fps, size, size, SESSION_RATE) as writer:
            await run_conversation(conv, WavUser(mic), writer, fast=fast, progress=progress)
    result = transcript(conv.turns, input=str(input_wav), output=str(output_mp4), persona=persona.id,
                        mode=cfg.agent.mode, input_seconds=len(mic) / SESSION_RATE)
    Path(output_mp4).with_suffix(".json").write_text(json.dumps(result, indent=2))
    return result
