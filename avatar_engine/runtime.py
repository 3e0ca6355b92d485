"""The streaming avatar runtime: audio in, blocks of frames with their audio out.

Time is a grid of blocks on the session clock: block k shows frames
[k·F, (k+1)·F) and samples [k·S, (k+1)·S), with F frames per block and
S = F·sample_rate/fps. Every emitted `AVBlock` carries exactly the agent audio its
frames show, so picture and sound are paired by construction.

Inputs arrive whenever they arrive:
- talk: the agent's speech (any rate; phonemes with times inside the chunk when the
  TTS knows them). It is queued on the clock right after the talk before it; a reply
  that starts after a silence begins at the first block not yet handed out, dropping
  idle blocks rendered ahead, so look-ahead never delays a reply.
- listen: the user's microphone. Listening is a reaction, not lip sync, so each block
  takes the newest block-length of mic audio (robust to jitter and clock drift).
- the mask's LISTEN bits come from `listen_mask(t0, n_frames, fps)` (e.g.
  `SpeakerTimeline.mask` on the same clock) or else from the `speaking` flag sent with
  the mic audio. TALK bits are exact: frames that carry agent audio.

Output: `step()` renders the next block now (tests, offline recording); `stream()` is
an async iterator that renders in a worker thread up to `lookahead_blocks` ahead and,
in real time, hands each block over one frame before it is due. `flush()` (barge-in)
forgets queued talk and every block not yet handed over; the next block starts where
the viewer's last block ended, already listening, the mouth blending back to rest.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import AsyncIterator, Callable

import numpy as np

from avatar_engine.backend import Backend, Block
from speech.audio import prepare
from speech.timeline import LISTEN, TALK, Phoneme

ListenMask = Callable[[float, int, float], np.ndarray]


@dataclass(frozen=True)
class AVBlock:
    frames: np.ndarray        # (n_frames, H, W, 3) uint8 RGB
    audio: np.ndarray         # (samples,) float32: the agent's voice these frames show
    t0: float                 # session time of the first frame, seconds
    index: int                # block number on the session clock
    mask: np.ndarray          # (n_frames,) uint8 IDLE/TALK/LISTEN/BOTH
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


class TalkBufferFull(RuntimeError):
    """More agent speech queued than `max_talk_s`; wait (`put_talk`) or flush."""


class AvatarRuntime:
    def __init__(self, backend: Backend, reference: np.ndarray, *, fps: int = 25, frames_per_block: int = 12,
                 sample_rate: int = 16000, lookahead_blocks: int = 2, max_talk_s: float = 120.0,
                 listen_mask: ListenMask | None = None):
        block_samples = frames_per_block * sample_rate / fps
        if block_samples != int(block_samples):
            raise ValueError(f"{frames_per_block} frames at {fps} fps is not a whole number of samples at "
                             f"{sample_rate} Hz; pick frames_per_block so that frames·rate/fps is whole")
        self.backend = backend
        self.fps, self.frames_per_block, self.sample_rate = fps, frames_per_block, sample_rate
        self.block_samples = int(block_samples)
        self.lookahead_blocks = lookahead_blocks
        self.max_talk_samples = int(max_talk_s * sample_rate)
        self.listen_mask = listen_mask
        self._lock = threading.Lock()    # inputs arrive on other threads than rendering
        self._next = 0                # next block to render
        self._handed = 0              # blocks handed to the consumer (never taken back)
        self._generation = 0          # bumped when rendered-ahead blocks become invalid
        self._talk: deque[tuple[int, np.ndarray]] = deque()   # (first sample, audio)
        self._talk_end = 0            # sample after the last queued talk sample
        self._phonemes: deque[Phoneme] = deque()
        self._listen = _NewestAudio(self.block_samples)
        self._flush_backend = False
        backend.reset(reference)

    @classmethod
    def from_config(cls, cfg, backend: Backend, reference: np.ndarray, sample_rate: int = 16000,
                    listen_mask: ListenMask | None = None) -> AvatarRuntime:
        """From `config.AvatarConfig`."""
        return cls(backend, reference, fps=cfg.fps, frames_per_block=cfg.frames_per_block,
                   sample_rate=sample_rate, lookahead_blocks=cfg.lookahead_blocks, listen_mask=listen_mask)

    # ── input ─────────────────────────────────────────────────────────────────────────

    @property
    def handed(self) -> int:
        """Blocks handed over so far (the next one handed is block `handed`)."""
        return self._handed

    @property
    def talk_queued_s(self) -> float:
        """Agent speech queued but not yet rendered, seconds."""
        with self._lock:
            return max(self._talk_end - self._next * self.block_samples, 0) / self.sample_rate

    def push_talk(self, audio: np.ndarray, sample_rate: int, phonemes=()) -> float:
        """Queue agent speech; `phonemes` as Phoneme or (symbol, start, end) with times
        from the start of this chunk. Returns the session time it will start playing.
        Raises TalkBufferFull beyond `max_talk_s` queued (never blocks)."""
        x = prepare(audio, sample_rate, self.sample_rate)
        with self._lock:
            return self._queue_talk(x, phonemes)

    async def put_talk(self, audio: np.ndarray, sample_rate: int, phonemes=()) -> float:
        """`push_talk` that waits while the talk buffer is full (back-pressure)."""
        x = prepare(audio, sample_rate, self.sample_rate)
        while True:
            with self._lock:
                if self._queued_talk() + len(x) <= self.max_talk_samples:
                    return self._queue_talk(x, phonemes)
            await asyncio.sleep(self.frames_per_block / self.fps / 2)

    def push_listen(self, audio: np.ndarray, sample_rate: int, speaking: bool = True) -> None:
        """The user's microphone audio; `speaking`: the VAD says the user talks in it."""
        x = prepare(audio, sample_rate, self.sample_rate)
        with self._lock:
            self._listen.push(x, speaking)

    def flush(self) -> None:
        """Barge-in: drop queued talk and every block not yet handed over."""
        with self._lock:
            self._talk.clear()
            self._phonemes.clear()
            self._talk_end = min(self._talk_end, self._handed * self.block_samples)
            self._rewind(self._handed)
            self._flush_backend = True

    def use_backend(self, backend: Backend) -> None:
        """Go on with another backend, already `reset` to its reference (a new face
        mid-session: rigging it takes long, so it is done before, off the render path).
        Blocks rendered ahead with the old one are rendered again."""
        with self._lock:
            self.backend = backend
            self._rewind(self._handed)

    def _queued_talk(self) -> int:
        return max(self._talk_end - self._next * self.block_samples, 0)

    def _queue_talk(self, x: np.ndarray, phonemes) -> float:
        if self._queued_talk() + len(x) > self.max_talk_samples:
            raise TalkBufferFull(f"agent speech queued beyond {self.max_talk_samples / self.sample_rate:.0f} s; "
                                 "await put_talk() or flush()")
        if self._talk_end <= self._next * self.block_samples:
            # Talk had run dry: start at the first block not handed over and after the
            # last talk, and re-render anything idle that was rendered ahead there.
            start_block = max(self._handed, -(-self._talk_end // self.block_samples))
            self._rewind(start_block)
            self._talk_end = start_block * self.block_samples
        start = self._talk_end
        self._talk.append((start, x))
        self._talk_end = start + len(x)
        t = start / self.sample_rate
        for p in phonemes:
            symbol, a, b = (p.symbol, p.start, p.end) if isinstance(p, Phoneme) else p
            self._phonemes.append(Phoneme(symbol, t + a, t + b))
        return t

    def _rewind(self, block: int) -> None:
        if block < self._next:
            self._next = block
            self._generation += 1

    # ── output ────────────────────────────────────────────────────────────────────────

    def step(self) -> AVBlock:
        """Render the next block now and hand it over."""
        av, _ = self._render_next()
        with self._lock:
            self._handed = max(self._handed, av.index + 1)
        return av

    async def stream(self, realtime: bool = True) -> AsyncIterator[AVBlock]:
        """Blocks forever (idle frames when nothing is said). Rendering runs in a worker
        thread at most `lookahead_blocks` ahead; with `realtime`, each block is handed
        over one frame before it is due on the wall clock."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=self.lookahead_blocks)
        producer = asyncio.create_task(self._produce(queue))
        clock0 = None
        try:
            while True:
                av, generation = await queue.get()
                if isinstance(av, Exception):
                    raise av
                if generation != self._generation:
                    continue                     # rendered ahead, then flushed
                if realtime:
                    now = time.monotonic()
                    if clock0 is None:
                        clock0 = now - av.t0
                    due = clock0 + av.t0 - 1 / self.fps
                    if due > now:
                        await asyncio.sleep(due - now)
                    if generation != self._generation:
                        continue                 # flushed while we waited
                with self._lock:
                    if generation != self._generation:
                        continue
                    self._handed = av.index + 1
                yield av
        finally:
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)

    async def _produce(self, queue: asyncio.Queue) -> None:
        try:
            while True:
                await queue.put(await asyncio.to_thread(self._render_next))
        except Exception as error:      # the consumer re-raises it instead of waiting forever
            await queue.put((error, None))

    def _render_next(self) -> tuple[AVBlock, int]:
        """Take the inputs of the next block from the buffers and render it."""
        with self._lock:
            k, generation = self._next, self._generation
            self._next += 1
            flush_backend, self._flush_backend = self._flush_backend, False
            start = k * self.block_samples
            talk, talk_present = self._take_talk(start)
            t0 = start / self.sample_rate
            t1 = t0 + self.frames_per_block / self.fps
            phonemes = tuple(p for p in self._phonemes if p.end > t0 - 0.5 and p.start < t1 + 0.5)
            while self._phonemes and self._phonemes[0].end < t0 - 1.0:
                self._phonemes.popleft()
            listen, speaking = self._listen.take()
        mask = self._mask(t0, talk_present, speaking)
        block = Block(index=k, t0=t0, fps=self.fps, sample_rate=self.sample_rate, talk_audio=talk,
                      listen_audio=listen, mask=mask, phonemes=phonemes)
        if flush_backend:
            self.backend.flush()
        frames = self.backend.render(block)
        return AVBlock(frames, talk, t0, k, mask, self.sample_rate), generation

    def _take_talk(self, start: int) -> tuple[np.ndarray, np.ndarray]:
        """The talk samples of [start, start + S) (zeros where none) and where real."""
        end = start + self.block_samples
        audio = np.zeros(self.block_samples, np.float32)
        present = np.zeros(self.block_samples, bool)
        for first, x in self._talk:
            a, b = max(first, start), min(first + len(x), end)
            if a < b:
                audio[a - start:b - start] = x[a - first:b - first]
                present[a - start:b - start] = True
        # Rendered talk is never needed again: a rewind either flushes talk or re-renders
        # only blocks after the end of the talk.
        while self._talk and self._talk[0][0] + len(self._talk[0][1]) <= start:
            self._talk.popleft()
        return audio, present

    def _mask(self, t0: float, talk_present: np.ndarray, speaking: np.ndarray) -> np.ndarray:
        n, fps = self.frames_per_block, self.fps
        talk = _coverage(talk_present, n)
        if self.listen_mask is not None:
            listen = (np.asarray(self.listen_mask(t0, n, fps)) & LISTEN) > 0
        else:
            listen = _coverage(speaking, n)
        return (talk * TALK + listen * LISTEN).astype(np.uint8)


def _coverage(flags: np.ndarray, n_frames: int) -> np.ndarray:
    """Per frame: are at least half of its samples flagged?"""
    return np.array([c.mean() >= 0.5 for c in np.array_split(flags, n_frames)])


class _NewestAudio:
    """The newest `capacity` samples pushed since the last take (older ones dropped)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._chunks: deque[tuple[np.ndarray, bool]] = deque()
        self._size = 0

    def push(self, x: np.ndarray, speaking: bool) -> None:
        self._chunks.append((x[-self.capacity:], speaking))
        self._size += len(self._chunks[-1][0])
        while self._size - len(self._chunks[0][0]) >= self.capacity:
            self._size -= len(self._chunks.popleft()[0])

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """(audio, speaking flags), `capacity` long, newest last, zero-padded in front."""
        audio = np.zeros(self.capacity, np.float32)
        flags = np.zeros(self.capacity, bool)
        end = self.capacity
        for x, speaking in reversed(self._chunks):
            take = min(len(x), end)
            audio[end - take:end] = x[len(x) - take:]
            flags[end - take:end] = speaking
            end -= take
            if end == 0:
                break
        self._chunks.clear()
        self._size = 0
        return audio, flags
