"""A conversation's own thread and event loop, so that its media work (Silero, the echo
canceller, the avatar's rendering, run synchronously in every `step`) never holds up the
server's loop, which serves the pages, the peer connections and the other calls.

    worker = Worker("call-1f2e")
    result = await worker.run(work)     # work() on the worker's loop; cancel this to stop it
    worker.call_soon(conv.interrupt)    # from the server's loop, thread-safely

Between the two loops: `Handoff`, a bounded queue filled on one thread and emptied on
another loop, and `call_soon` either way. The conversation and its brain's tasks live on
the worker's loop; aiortc's tracks and peer connection stay on the server's.

The shared models are safe to use from several workers: Whisper, Piper and Smart Turn
are called through `asyncio.to_thread` (several at once, as several calls on one loop
always could), and each worker renders its own avatar with its own Silero. What belongs
to an event loop is the HTTP client of the LLM (its pooled connections): `worker_stack`
gives each worker clients of its own, to the same LLM server.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import threading
from collections import deque
from typing import Any, Awaitable, Callable, Generic, TypeVar

from agent.omni import OmniClient
from agent.session import Stack
from agent.text_llm import TextLLM

T = TypeVar("T")


class Worker:
    """Runs one coroutine on an event loop of its own, in a thread of its own; the
    thread ends when the coroutine does (its default executor shut down with it)."""

    def __init__(self, name: str):
        self.name = name
        self.loop = asyncio.new_event_loop()   # made here: `call_soon` works before the thread runs
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None   # set by `run`

    def call_soon(self, fn: Callable[..., Any], *args) -> None:
        """`fn(*args)` on the worker's loop, from any thread; dropped once the work is over."""
        with contextlib.suppress(RuntimeError):  # the loop is closed
            self.loop.call_soon_threadsafe(fn, *args)

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work()` in the worker; return what it returns, raise what it raises.
        Cancelled, it cancels the work and returns once the thread has ended."""
        done: concurrent.futures.Future = concurrent.futures.Future()
        thread = self._thread = threading.Thread(target=self._serve, args=(work, done), name=self.name,
                                                 daemon=True)
        thread.start()
        try:
            return await asyncio.shield(asyncio.wrap_future(done))
        except asyncio.CancelledError:
            self.call_soon(self._cancel)
            with contextlib.suppress(BaseException):  # what it raises on its way out: it was cancelled
                await asyncio.wrap_future(done)
            raise
        finally:
            await asyncio.to_thread(thread.join)   # `done` is set last: at once

    def close(self) -> None:
        """For a worker that never ran: its loop, made in __init__, is closed here."""
        if self._thread is None:
            self.loop.close()

    def _serve(self, work: Callable[[], Awaitable[T]], done: concurrent.futures.Future) -> None:
        outcome: tuple[bool, Any] = (False, None)
        with asyncio.Runner(loop_factory=lambda: self.loop) as runner:
            try:
                outcome = (True, runner.run(self._main(work)))
            except BaseException as e:  # noqa: B036 - handed to the awaiting loop, cancellation too
                outcome = (False, e)
        # after the runner closed the loop and joined its executor's threads
        ok, value = outcome
        if ok:
            done.set_result(value)
        elif isinstance(value, asyncio.CancelledError):
            done.cancel()
        else:
            done.set_exception(value)

    async def _main(self, work: Callable[[], Awaitable[T]]) -> T:
        self._task = asyncio.current_task()
        if self._stopping:
            raise asyncio.CancelledError
        return await work()

    def _cancel(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()


class Handoff(Generic[T]):
    """A bounded queue from any thread to one event loop. Full, it drops the oldest item:
    a consumer that fell behind skips old media rather than show it ever later."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int):
        self._loop, self._maxsize = loop, maxsize
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._ready = asyncio.Event()     # waited on only on `loop`
        self.dropped = 0                  # items dropped because the queue was full
        self.most_waiting = 0             # items waiting at worst: how far the consumer fell behind

    def put(self, item: T) -> None:
        """From any thread."""
        with self._lock:
            if len(self._items) >= self._maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.most_waiting = max(self.most_waiting, len(self._items))
        with contextlib.suppress(RuntimeError):  # the consumer's loop is closed: nobody waits
            self._loop.call_soon_threadsafe(self._ready.set)

    def clear(self) -> None:
        """From any thread: forget what is waiting."""
        with self._lock:
            self._items.clear()

    async def get(self) -> T:
        """On the consumer's loop: the oldest item, once there is one."""
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
                self._ready.clear()
            await self._ready.wait()


class _ServerOnLoop:
    """The local LLM server, watched from the server's loop, as a worker's TextLLM waits
    on it (ready, or restarting after a crash)."""

    def __init__(self, server, loop: asyncio.AbstractEventLoop):
        self._server, self._loop = server, loop

    @property
    def base_url(self) -> str:
        return self._server.base_url

    async def wait_ready(self) -> None:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._server.wait_ready(), self._loop))

    @property
    def pid(self) -> int | None:
        return self._server.pid

    async def has_died(self, pid: int | None, within_s: float = 2.0) -> bool:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._server.has_died(pid, within_s),
                                                                          self._loop))


def worker_stack(stack: Stack, loop: asyncio.AbstractEventLoop) -> Stack:
    """The shared stack with LLM clients of a worker's own (the same server: `loop`, the
    server's loop, watches it). Made on any thread, used and `close_worker_stack`d on
    the worker's loop."""
    llms = [TextLLM(stack.cfg.llm, base_url=llm.endpoint.base_url,
                    server=_ServerOnLoop(llm.server, loop) if llm.server else None) for llm in stack.llms]
    omni = OmniClient(stack.cfg.omni) if stack.omni is not None else None
    return dataclasses.replace(stack, llms=llms, omni=omni)


async def close_worker_stack(stack: Stack) -> None:
    for client in [*stack.llms, stack.omni]:
        if client is not None:
            await client.close()
