"""Memory a long-running server gives back after each call, so that it keeps constant memory.

Two things hold on to an ended call's memory:
- reference cycles (aiortc's peer connection and its transports, cancelled tasks'
  tracebacks): ~15 MB a call that only a full collection frees, and Python's own
  schedule seldom runs one. `collect_after_call` runs it; it is quick because the
  shared models are frozen out of the collector once loaded (`freeze_shared`).
- glibc's malloc, which keeps freed native memory (codecs, ONNX Runtime, numpy) in an
  arena per thread that once used it: every call's threads grew RSS by 20–90 MB that
  never came back (bench/web_soak.py). Fewer arenas, and trimming them after each call,
  return it. Elsewhere than glibc both are left out.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc

M_ARENA_MAX = -8          # mallopt's parameter (glibc's malloc.h)
ARENAS = 2                # one per core here; the default is 8 per core


def _glibc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


LIBC = _glibc()


def freeze_shared() -> None:
    """What is alive now lives until the server stops: out of the collector's way, with
    malloc limited to `ARENAS` arenas for the threads calls start from now on."""
    gc.freeze()
    if LIBC is not None:
        LIBC.mallopt(M_ARENA_MAX, ARENAS)


def unfreeze_shared() -> None:
    """The shared stack closed: its objects are garbage like any other now."""
    gc.unfreeze()


async def collect_after_call() -> None:
    """Free what an ended call left in cycles, then give the freed native memory back
    to the system (malloc_trim releases the GIL: it runs off the loop)."""
    gc.collect()
    if LIBC is not None:
        await asyncio.to_thread(LIBC.malloc_trim, 0)
