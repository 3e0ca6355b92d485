"""A call that ends while the agent's reply is playing frees everything it had.

A real WebRTC call in this process (tests/aiortc_browser.py): an aiortc peer plays the
browser, the server side is the app's own `Calls` on the real models. The browser
waits for the greeting, asks a question in an espeak-ng voice and, once the reply is
playing, goes: its tab closed or reloaded (the peer connection closed, no "bye"), or
its Stop button ("bye" on the data channel, then closed). After it: no call left, the
call's worker thread ended within WORKER_END_S, the server loop's asyncio tasks back to
their number before the call, and no call or conversation object left in memory (the
test does not collect: the app must, transports/web/memory.py). And an offer a call
cannot answer is refused in one sentence, leaving no worker or task behind.
"""
from __future__ import annotations

import asyncio
import contextlib
import time

import numpy as np
import pytest

from agent.conversation import Conversation
from aiortc_browser import MIC_RATE, Browser, call_threads, live, serving
from config import load_config
from speech.audio import resample
from speech.espeak import VOICES, speak
from test_webui import CONFIG
from transports.web.call import Call
from transports.web.calls import CallRefused

GREETING_S = 30.0        # connected to the end of the greeting, at most
REPLY_S = 30.0           # the question said to its reply playing, at most
WORKER_END_S = 5.0       # hung up to the worker's thread gone
SETTLE_S = 5.0           # for the peer connections' own tasks to finish after that
TEST_S = 180.0           # the whole call, the models' loading included


async def hang_up_mid_reply(cfg, question: np.ndarray, say_bye: bool) -> dict:
    r: dict = {}
    async with serving(cfg) as calls:
        tasks_before = len(asyncio.all_tasks())
        browser = Browser()
        try:
            await browser.call(calls, "ada")
            await browser.until(lambda b: b.state == "listening" and "speaking" in b.states, GREETING_S)
            browser.mic.say(question)
            await browser.until(lambda b: b.state == "speaking" and any(t["user"] for t in b.turns), REPLY_S)
            [worker] = call_threads()
            hung_up = time.monotonic()
            if say_bye:
                browser.bye()
                # the server hangs up on its own, the browser still there (or the worker's
                # end, only once the browser closed below, comes too late)
                with contextlib.suppress(TimeoutError):
                    await browser.until(lambda b: not worker.is_alive(), WORKER_END_S)
        finally:
            await browser.close()
        loop = asyncio.get_running_loop()
        while worker.is_alive() and time.monotonic() - hung_up < 2 * WORKER_END_S:
            await asyncio.sleep(0.02)
        r["worker_end_s"] = time.monotonic() - hung_up
        deadline = loop.time() + SETTLE_S
        while len(asyncio.all_tasks()) > tasks_before and loop.time() < deadline:
            await asyncio.sleep(0.05)
        r.update(calls_left=calls.live, threads_left=[t.name for t in call_threads()], tasks_before=tasks_before,
                 tasks_left=sorted(t.get_name() for t in asyncio.all_tasks())[:20],
                 tasks_after=len(asyncio.all_tasks()), errors=browser.errors)
        del browser
        # No gc.collect() here: the app collects what its calls leave in reference cycles.
        r.update(calls_in_memory=live(Call), conversations_in_memory=live(Conversation))
    return r


@pytest.mark.parametrize("say_bye", [False, True], ids=["tab-closed", "bye"])
def test_hanging_up_mid_reply_frees_the_calls_tasks_threads_and_memory(say_bye):
    cfg = load_config(overrides=CONFIG)
    u = speak("Tell me about the history of the Roman empire.", VOICES[2])
    r = asyncio.run(asyncio.wait_for(hang_up_mid_reply(cfg, resample(u.audio, u.rate, MIC_RATE), say_bye), TEST_S))
    print(r)
    assert r["calls_left"] == 0, "the call is still live after the browser went"
    assert r["worker_end_s"] < WORKER_END_S and r["threads_left"] == [], \
        f"the call's worker thread ended {r['worker_end_s']:.1f} s after the hang-up, or not at all: {r['threads_left']}"
    assert r["tasks_after"] <= r["tasks_before"], \
        f"{r['tasks_after'] - r['tasks_before']} asyncio tasks left behind on the server's loop: {r['tasks_left']}"
    assert r["calls_in_memory"] == 0 and r["conversations_in_memory"] == 0, \
        f"still in memory: {r['calls_in_memory']} calls, {r['conversations_in_memory']} conversations"


async def refused_offer(cfg) -> dict:
    async with serving(cfg) as calls:
        tasks_before = len(asyncio.all_tasks())
        browser = Browser()
        try:
            await browser.pc.setLocalDescription(await browser.pc.createOffer())
            no_h264 = "\n".join(line for line in browser.pc.localDescription.sdp.split("\n") if "H264" not in line)
            with pytest.raises(CallRefused) as refused:
                await calls.open(no_h264, "offer", "ada")
        finally:
            await browser.close()
        await asyncio.sleep(0.5)
        return dict(status=refused.value.status, message=refused.value.message, calls_left=calls.live,
                    threads_left=[t.name for t in call_threads()], tasks_after=len(asyncio.all_tasks()),
                    tasks_before=tasks_before)


def test_an_offer_without_the_video_codec_is_refused_in_one_sentence_and_leaves_nothing():
    r = asyncio.run(asyncio.wait_for(refused_offer(load_config(overrides={**CONFIG, "server": {"video_codec": "h264"}})),
                                     TEST_S))
    assert (r["status"], r["message"]) == \
        (400, "this browser cannot receive H264 video; set server.video_codec to vp8 in config.yaml")
    assert r["calls_left"] == 0 and r["threads_left"] == [] and r["tasks_after"] <= r["tasks_before"], r
