"""The embedded LLM: llama.cpp's OpenAI-compatible server with a bundled model, on loopback.

    async with LocalLLMServer.from_config(cfg.llm) as server:   # started and answering
        llm = TextLLM(cfg.llm, server=server)
        ...

What it takes care of:
- start llama.cpp's server (`agent/llama_server_main.py`: AMX kept out) on 127.0.0.1 and a free port (or `llm.port`), and
  wait until `/v1/models` answers, bounded by `llm.start_timeout_s`, logging progress;
- a taken port, a crash while loading, a timeout, a base model asked to chat →
  `LLMServerError`, one line;
- chat requests are rendered with the chat template inside the GGUF;
- the persona prefix and the history are evaluated once, not every turn: llama.cpp
  keeps the last request's context and evaluates only what follows the longest common
  prefix. Its RAM prompt cache (`--cache`) stays off: with Gemma's 262k-token vocabulary
  each saved state copies ~1 MB of logits per token, 3.0 s after a 1,000-token request
  that otherwise costs 25 ms;
- a watchdog notices when the process dies and restarts it on the same port, logging
  why; `wait_ready()` lets requests wait for the restart instead of failing;
- the process never outlives us: stopped on exit from the context, at interpreter exit
  (atexit, also after Ctrl-C), and by the kernel when we die of SIGTERM/SIGKILL
  (PR_SET_PDEATHSIG); it runs in its own process group, so Ctrl-C in the terminal reaches
  only us and we stop it in order.
"""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import httpx2

from config import LLMConfig

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
# At most this many restarts within RESTART_WINDOW_S; more means a crash loop: give up.
MAX_RESTARTS = 3
RESTART_WINDOW_S = 600.0
WATCH_INTERVAL_S = 0.25
STOP_GRACE_S = 5.0
# Run by path: it must start whatever the working directory.
LAUNCHER = Path(__file__).with_name("llama_server_main.py")


class LLMServerError(RuntimeError):
    """The local LLM server cannot run; the message says why and what to do."""


class LocalLLMServer:
    def __init__(self, model_path: Path, *, model_alias: str, port: int = 0, n_ctx: int = 2048,
                 n_threads: int = 2, start_timeout_s: float = 60.0, verbose: bool = False):
        self.model_path = Path(model_path)
        self.model_alias = model_alias
        self._auto_port = port == 0
        self.port = port or _free_port()
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.start_timeout_s = start_timeout_s
        self.verbose = verbose  # llama.cpp's per-request timings and prefix reuse, in the log
        self.log_path = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
        self._proc: subprocess.Popen | None = None
        self._ready = asyncio.Event()
        self._failure: LLMServerError | None = None  # set when we gave up restarting
        self._restarts: deque[float] = deque()
        self._watchdog: asyncio.Task | None = None

    @classmethod
    def from_config(cls, cfg: LLMConfig, **overrides) -> LocalLLMServer:
        from assets import BASE_MODELS, llm_gguf  # resolves/assembles the bundled weights once
        if cfg.api == "chat" and cfg.model in BASE_MODELS:
            raise LLMServerError(f"{cfg.model} is a base model without a chat template: "
                                 "set llm.api: completions in config.yaml")
        kwargs = dict(model_alias=cfg.model, port=cfg.port, n_ctx=cfg.context_tokens, n_threads=cfg.threads,
                      start_timeout_s=cfg.start_timeout_s)
        return cls(overrides.pop("model_path", None) or llm_gguf(cfg.model), **{**kwargs, **overrides})

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def __aenter__(self) -> LocalLLMServer:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def start(self) -> None:
        """Launch the server and wait until it answers; then watch it. Raises LLMServerError."""
        atexit.register(self._kill_now)
        await self._launch()
        self._watchdog = asyncio.create_task(self._watch(), name="llm-server-watchdog")

    async def stop(self) -> None:
        if self._watchdog:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        self._ready.clear()
        await asyncio.to_thread(self._terminate)
        self.log_path.unlink(missing_ok=True)
        atexit.unregister(self._kill_now)

    async def wait_ready(self) -> None:
        """Return once the server answers (at once when it does); wait through a restart,
        bounded by start_timeout_s. Raises LLMServerError when it is down for good."""
        if self._failure:
            raise self._failure
        if self._proc is None or self._proc.poll() is not None:
            self._ready.clear()  # died since the watchdog last looked: wait for its restart
        try:
            async with asyncio.timeout(self.start_timeout_s):
                await self._ready.wait()
        except TimeoutError:
            raise LLMServerError(f"local LLM server on port {self.port} did not come back "
                                 f"within {self.start_timeout_s:g} s") from None
        if self._failure:
            raise self._failure

    async def has_died(self, pid: int | None, within_s: float = 2.0) -> bool:
        """Whether process `pid` (the one a failed request went to) has exited, or does
        within `within_s`. A request that failed against a dying server (it may still
        accept connections while it goes down) then waits for the restart instead of
        failing the user's turn. The watchdog may have replaced it already: that counts."""
        deadline = time.monotonic() + within_s
        while self._proc is not None and self._proc.pid == pid and self._proc.poll() is None:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        if self._proc is None or self._proc.pid == pid:
            self._ready.clear()  # gone and not yet replaced: wait_ready waits for the watchdog
        return True

    # ── internals ─────────────────────────────────────────────────────────────────────

    async def _launch(self) -> None:
        if not _port_free(self.port) and self._auto_port and self._proc is None:
            self.port = _free_port()  # taken since we picked it; nobody knows our URL yet
        if not _port_free(self.port):
            raise LLMServerError(f"port {self.port} on {HOST} is already in use; set llm.port: 0 "
                                 "in config.yaml for a free port, or stop what is using it")
        cmd = [sys.executable, str(LAUNCHER), "--model", str(self.model_path),
               "--model_alias", self.model_alias, "--host", HOST, "--port", str(self.port),
               # Reading the prompt too: its own default is every core, busy on a shared machine.
               "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads), "--n_threads_batch", str(self.n_threads),
               "--verbose", str(self.verbose)]
        t0 = time.monotonic()
        with self.log_path.open("wb") as out:  # the child keeps its own handle
            # Spawned from this (the event loop's) thread: PDEATHSIG fires when the
            # spawning thread ends, so a short-lived worker thread would kill the server.
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True, preexec_fn=_die_with_parent)
        log.info("llm server: starting %s on port %d (pid %d)", self.model_path.name, self.port, self._proc.pid)
        try:
            await self._wait_answering(t0)
        except BaseException:
            await asyncio.to_thread(self._terminate)
            raise
        log.info("llm server: ready on %s in %.1f s", self.base_url, time.monotonic() - t0)
        self._ready.set()

    async def _wait_answering(self, t0: float) -> None:
        next_progress = t0 + 2.0
        async with httpx2.AsyncClient(timeout=1.0) as http:
            while True:
                code = self._proc.poll()
                if code is not None:
                    raise self._died_while_starting(code)
                with contextlib.suppress(httpx2.HTTPError):
                    if (await http.get(f"{self.base_url}/models")).status_code == 200:
                        return
                now = time.monotonic()
                if now - t0 > self.start_timeout_s:
                    raise LLMServerError(f"local LLM server did not answer within {self.start_timeout_s:g} s "
                                         f"(llm.start_timeout_s); last output: {self._log_tail()}")
                if now >= next_progress:
                    log.info("llm server: loading the model… %.0f s", now - t0)
                    next_progress = now + 2.0
                await asyncio.sleep(0.1)

    def _died_while_starting(self, code: int) -> LLMServerError:
        tail = self._log_tail()
        if "address already in use" in tail.lower():
            return LLMServerError(f"port {self.port} on {HOST} is already in use; set llm.port: 0 "
                                  "in config.yaml for a free port, or stop what is using it")
        if "No module named" in tail:
            return LLMServerError(f"llama.cpp server is not installed: pip install 'llama-cpp-python[server]' ({tail})")
        return LLMServerError(f"local LLM server exited with code {code} while starting: {tail}")

    async def _watch(self) -> None:
        """Restart the server whenever it dies, until it crash-loops."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            code = self._proc.poll()
            if code is None:
                continue
            self._ready.clear()
            now = time.monotonic()
            while self._restarts and now - self._restarts[0] > RESTART_WINDOW_S:
                self._restarts.popleft()
            if len(self._restarts) >= MAX_RESTARTS:
                self._failure = LLMServerError(
                    f"local LLM server keeps dying ({MAX_RESTARTS} restarts in {RESTART_WINDOW_S / 60:.0f} min, "
                    f"last exit code {code}); giving up: {self._log_tail()}")
                log.error("%s", self._failure)
                self._ready.set()  # wake waiters so they see the failure
                return
            self._restarts.append(now)
            log.warning("llm server: process %d exited with code %d (%s); restarting (%d/%d)",
                        self._proc.pid, code, _signal_name(code), len(self._restarts), MAX_RESTARTS)
            try:
                await self._launch()
            except (LLMServerError, OSError) as e:
                log.error("llm server: restart failed: %s", e)
                # The dead process is reaped; the next tick counts another restart.

    def _terminate(self) -> None:
        """SIGTERM the server's process group, SIGKILL it if it lingers. Blocking."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def _kill_now(self) -> None:
        # atexit: the event loop is gone; no grace period for a server we are abandoning.
        if self._proc and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        self.log_path.unlink(missing_ok=True)

    def _log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no output)"
        tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(tail) or "(no output)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As uvicorn binds: SO_REUSEADDR, so a port in TIME_WAIT counts as free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def _signal_name(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return "exited"


try:  # resolved here, not in the forked child, where loading libraries is unsafe
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
