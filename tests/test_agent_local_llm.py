"""The text path against the REAL embedded llama.cpp server: the default instruct model
on the chat API, the base model Gemma on the few-shot transcript, and the server's
lifecycle: start, prompt prefix reuse, a taken port, a killed process, exit on signals.

Each server is started once for the module (a model load takes a few seconds on 2 cores);
every test drives it on the same event loop, as the app does.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent.events import FailureKind, ReplyDone, ReplyFailed, Sentence, TextDelta
from agent.history import History
from agent.llm_server import LLMServerError, LocalLLMServer
from agent.persona import USER_LABEL, load_persona
from agent.text_llm import TextLLM, sentences

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def start_server(loop, llm_cfg):
    # One thread: the 2 cores are shared with the rest of the suite (and on a busy machine
    # one llama.cpp thread is faster than two fighting for a core). verbose: prefix reuse in its log.
    srv = LocalLLMServer.from_config(dataclasses.replace(llm_cfg, threads=1), verbose=True)
    loop.run_until_complete(asyncio.wait_for(srv.start(), 120))
    return srv


@pytest.fixture(scope="module")
def server(loop, cfg):
    """The default model (instruct, chat API)."""
    srv = start_server(loop, cfg.llm)
    yield srv
    loop.run_until_complete(srv.stop())


@pytest.fixture(scope="module")
def gemma_server(loop, gemma_cfg):
    srv = start_server(loop, gemma_cfg)
    yield srv
    loop.run_until_complete(srv.stop())


@pytest.fixture(scope="module")
def llm_cfg(cfg):
    # Greedy decoding: the same prompt gives the same reply, so tests can reason about it.
    # A long timeout: the suite shares two cores, and the first request reads the whole persona.
    return dataclasses.replace(cfg.llm, temperature=0.0, max_tokens=40, timeout_s=120.0)


@pytest.fixture(scope="module")
def gemma_cfg(llm_cfg):
    return dataclasses.replace(llm_cfg, model="gemma-3-270m", api="completions")


@pytest.fixture
def make_llm(loop):
    """TextLLM(...) whose HTTP clients are closed after the test."""
    made = []

    def make(*args, **kwargs) -> TextLLM:
        made.append(TextLLM(*args, **kwargs))
        return made[-1]
    yield make
    for llm in made:
        loop.run_until_complete(llm.close())


def run(loop, coro, timeout: float = 120):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


async def collect(events):
    return [e async for e in events]


def test_reply_streams_cleaned_text_from_gemma(loop, gemma_server, gemma_cfg, make_llm):
    llm = make_llm(gemma_cfg, server=gemma_server)
    history = History(8, 1024)
    history.add_user("Hi Ada!")
    history.add_agent("Hello! What would you like to know?")
    events = run(loop, collect(llm.reply(load_persona("ada"), history, "Why do stars twinkle?")))
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    done = events[-1]
    assert isinstance(done, ReplyDone), done
    assert len(deltas) >= 3 and done.text == "".join(deltas).strip() and len(done.text) > 10
    # A base model's continuation, cleaned: no role labels, a single paragraph.
    assert USER_LABEL not in done.text and "Ada:" not in done.text and "\n\n" not in done.text


def test_sentences_reach_tts_before_the_reply_ends(loop, server, llm_cfg, make_llm):
    llm = make_llm(llm_cfg, server=server)
    persona = load_persona("ada")
    stamped = []

    async def main():
        async for event in sentences(llm.reply(persona, History(8, 1024), "Tell me about the moon and the sun.",
                                               max_tokens=80)):
            stamped.append((time.monotonic(), event))
    run(loop, main())
    said = [e.text for _, e in stamped if isinstance(e, Sentence)]
    done = stamped[-1][1]
    assert isinstance(done, ReplyDone)
    assert len(said) >= 2, said
    # The sentences are the reply, in order, nothing lost or repeated.
    reply = " ".join(done.text.split())
    assert reply.startswith(" ".join(said)) and (done.finish_reason == "length" or reply == " ".join(said))
    # The first sentence was out while the model was still generating.
    first_sentence_at = next(t for t, e in stamped if isinstance(e, Sentence))
    last_delta_at = max(t for t, e in stamped if isinstance(e, TextDelta))
    assert first_sentence_at < last_delta_at


def test_the_default_model_answers_in_character_briefly(loop, server, llm_cfg, make_llm):
    llm = make_llm(llm_cfg, server=server)
    persona = load_persona("basil")
    history = History(8, 1024)

    def say(question: str) -> str:
        events = run(loop, collect(llm.spoken(persona, history, question)))
        assert isinstance(events[-1], ReplyDone), events[-1]
        said = " ".join(e.text for e in events if isinstance(e, Sentence))
        history.add_user(question)
        history.add_agent(said)
        return said

    name = say("Hello! Who am I talking to?")
    assert re.search(r"\bBasil\b", name), name
    answer = say("What is the capital of Italy?")
    assert "Rome" in answer and len(answer.split()) <= 40, answer
    follow_up = say("And which language do they speak there?")
    assert "Italian" in follow_up, follow_up
    for said in (name, answer, follow_up):
        assert not re.search(r"[*#`\[\]<>]|^\s*[-•]", said), said  # speakable: no markup


def test_asked_twice_the_persona_does_not_repeat_itself_verbatim(loop, server, llm_cfg, make_llm):
    llm = make_llm(llm_cfg, server=server)
    persona = load_persona("ada")
    history = History(8, 1024)
    replies = []
    for _ in range(2):  # greedy decoding: the same question would get the same answer
        events = run(loop, collect(llm.spoken(persona, history, "Why do cats purr?")))
        replies.append(" ".join(e.text for e in events if isinstance(e, Sentence)))
        history.add_user("Why do cats purr?")
        history.add_agent(replies[-1])
    assert replies[0] and replies[1] and replies[1] != replies[0], replies


def test_a_cut_off_reply_in_the_history_is_not_copied(loop, server, llm_cfg, make_llm):
    llm = make_llm(llm_cfg, server=server)
    history = History(8, 1024)
    for question, heard in [("Tell me about Mars.", "Mars is the fourth planet from the Sun,"),
                            ("What about Venus?", "Venus is the hottest planet,"),
                            ("And Mercury?", "")]:
        history.add_user(question)
        history.add_agent(heard, interrupted=True)
    events = run(loop, collect(llm.spoken(load_persona("ada"), history, "Sorry, go on about Venus.")))
    said = " ".join(e.text for e in events if isinstance(e, Sentence))
    assert said and "interrupt" not in said.lower() and "[" not in said, said


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_each_turn_evaluates_only_what_is_new(loop, api, request, make_llm):
    server = request.getfixturevalue("server" if api == "chat" else "gemma_server")
    llm = make_llm(request.getfixturevalue("llm_cfg" if api == "chat" else "gemma_cfg"), server=server)
    ada = load_persona("ada")
    history = History(8, 1024)

    def ask(question) -> re.Match:
        """How much of the prompt the server reused for this turn, from its log."""
        start = server.log_path.stat().st_size
        events = run(loop, collect(llm.reply(ada, history, question, max_tokens=12)))
        assert isinstance(events[-1], ReplyDone)
        history.add_user(question)
        history.add_agent(events[-1].text)
        log = server.log_path.read_bytes()[start:].decode(errors="replace")
        return re.search(r"(\d+) prefix-match hit, remaining (\d+) prompt tokens", log)

    assert run(loop, llm.warm_up(ada))
    # The persona text (~170 tokens) was evaluated by the warm-up; each turn then adds
    # only the previous reply's tail and its own question, however long the history grows.
    for question in ["What is light?", "And what is sound?", "Which one is faster?"]:
        hit = ask(question)
        assert hit and int(hit[1]) > 100 and int(hit[2]) < 25, (question, hit)


def test_cancelling_a_reply_closes_the_request_on_the_server(loop, server, llm_cfg, make_llm):
    llm = make_llm(llm_cfg, server=server)
    persona = load_persona("juno")
    start = server.log_path.stat().st_size

    async def main():
        async def consume():
            async for event in llm.reply(persona, History(8, 1024), "Argue both sides of free will at length.",
                                         max_tokens=400):
                if isinstance(event, TextDelta):
                    started.set()
        started = asyncio.Event()
        task = asyncio.create_task(consume())
        await asyncio.wait_for(started.wait(), 120)
        task.cancel()  # barge-in
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for _ in range(100):  # the server notices at its next token
            if b"Disconnected from client" in server.log_path.read_bytes()[start:]:
                break
            await asyncio.sleep(0.05)
        return await collect(llm.reply(persona, History(8, 1024), "Hello.", max_tokens=5))
    events = run(loop, main())
    log = server.log_path.read_bytes()[start:].decode(errors="replace")
    assert "Disconnected from client" in log, log[-1500:]
    assert isinstance(events[-1], ReplyDone)  # and it serves the next turn


def test_taken_port_is_a_clear_error(loop, server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        other = LocalLLMServer(server.model_path, model_alias="gemma", port=port)
        t = time.monotonic()
        with pytest.raises(LLMServerError, match=rf"^port {port} on 127.0.0.1 is already in use; set llm.port: 0"):
            run(loop, other.start())
        assert time.monotonic() - t < 1.0
        run(loop, other.stop())


def test_a_broken_model_file_is_a_clear_error(loop, tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a model")
    srv = LocalLLMServer(bad, model_alias="gemma", start_timeout_s=60)
    with pytest.raises(LLMServerError, match=r"^local LLM server exited with code \d+ while starting: "):
        run(loop, srv.start())
    run(loop, srv.stop())


def test_start_is_bounded_and_cleans_up(loop, server):
    slow = LocalLLMServer(server.model_path, model_alias="gemma", start_timeout_s=0.3)
    with pytest.raises(LLMServerError, match=r"^local LLM server did not answer within 0.3 s \(llm.start_timeout_s\)"):
        run(loop, slow.start())
    assert not _alive(slow.pid)  # the half-started process was stopped, not left behind
    run(loop, slow.stop())


def test_killed_server_is_detected_and_restarted(loop, server, llm_cfg, caplog, make_llm):
    llm = make_llm(llm_cfg, server=server)
    old_pid = server.pid
    caplog.set_level(logging.INFO, logger="agent.llm_server")
    os.kill(old_pid, signal.SIGKILL)
    # The next turn, even one sent while the process is still going down, waits through
    # the restart instead of failing.
    events = run(loop, collect(llm.reply(load_persona("ada"), History(8, 1024), "Are you back?", max_tokens=5)), 90)
    assert isinstance(events[-1], ReplyDone), events[-1]
    assert server.pid != old_pid
    assert any(f"process {old_pid} exited with code -9 (killed by SIGKILL); restarting (1/3)" in r.getMessage()
               for r in caplog.records)
    assert any("llm server: ready on" in r.getMessage() for r in caplog.records)
    # A request that failed on the old process retries even when the watchdog has
    # already replaced it; one that failed on the live one does not wait for a restart.
    assert run(loop, server.has_died(old_pid, within_s=0))
    assert not run(loop, server.has_died(server.pid, within_s=0.2))


def test_a_dead_endpoint_fails_fast(loop, llm_cfg, make_llm):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = make_llm(llm_cfg, base_url=f"http://127.0.0.1:{port}/v1")
    t = time.monotonic()
    (event,) = run(loop, collect(llm.reply(load_persona("ada"), History(8, 1024), "Hello?")))
    assert isinstance(event, ReplyFailed) and event.kind == FailureKind.CONNECTION
    assert time.monotonic() - t < 2.0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_server_does_not_outlive_the_app(server, sig):
    """Ctrl-C: the app unwinds and stops it; SIGTERM (no handler): the kernel stops it."""
    app = textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {str(ROOT)!r})
        from agent.llm_server import LocalLLMServer
        async def main():
            async with LocalLLMServer({str(server.model_path)!r}, model_alias="gemma") as srv:
                print(srv.pid, flush=True)
                await asyncio.sleep(60)
        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", app], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    child = None
    try:
        child = int(proc.stdout.readline())
        assert _alive(child)
        proc.send_signal(sig)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), f"llama server {child} outlived the app after {sig.name}"
    finally:
        proc.kill()
        if child and _alive(child):  # a failed test must not leave an orphan server behind
            os.killpg(child, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie is dead, just not reaped
    except FileNotFoundError:
        return False


def test_amx_is_read_from_the_cpu_flags(tmp_path):
    from agent.llama_server_main import cpu_has_amx
    (tmp_path / "with").write_text("flags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8\n")
    (tmp_path / "without").write_text("flags\t\t: fpu avx2 avx512f\n")
    assert cpu_has_amx(tmp_path / "with") and not cpu_has_amx(tmp_path / "without")
    assert not cpu_has_amx(tmp_path / "missing")


def test_the_amx_filter_refuses_only_the_amx_request():
    # a child process: a seccomp filter cannot be taken back
    probe = (
        "import ctypes, sys; sys.path.insert(0, '.')\n"
        "from agent.llama_server_main import refuse_amx_permission\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "assert refuse_amx_permission()\n"
        "refused = libc.syscall(158, 0x1023, 18), ctypes.get_errno()\n"
        "mask = ctypes.c_ulong()\n"
        "asked = libc.syscall(158, 0x1022, ctypes.byref(mask))\n"  # ARCH_GET_XCOMP_PERM still works
        "print(refused, asked, mask.value & 3)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["(-1,", "1)", "0", "3"]  # EPERM; x87 and SSE permitted as always
