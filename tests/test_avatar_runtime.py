"""The streaming runtime: block sizes, exact A/V pairing, look-ahead, barge-in.

A tiny backend paints each frame with its mask value and its session frame number, so
what a block shows can be read back from its pixels.
"""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from avatar_engine.runtime import AvatarRuntime, TalkBufferFull
from speech.timeline import IDLE, LISTEN, TALK

RATE, FPS, PER_BLOCK = 16000, 25, 12
BLOCK = PER_BLOCK * RATE // FPS          # 7680 samples


class PaintingBackend:
    """Frame pixel [0, 0, 0] = mask value, [0, 0, 1] = frame number mod 256."""

    def __init__(self):
        self.flushes = 0

    def reset(self, reference):
        self.blocks = []

    def render(self, block):
        self.blocks.append(block)
        frames = np.zeros((block.n_frames, 4, 4, 3), np.uint8)
        frames[:, 0, 0, 0] = block.mask
        frames[:, 0, 0, 1] = (round(block.t0 * block.fps) + np.arange(block.n_frames)) % 256
        return frames

    def flush(self):
        self.flushes += 1


def make_runtime(**kw) -> tuple[AvatarRuntime, PaintingBackend]:
    backend = PaintingBackend()
    return AvatarRuntime(backend, np.zeros((8, 8, 3), np.uint8), fps=FPS, frames_per_block=PER_BLOCK,
                         sample_rate=RATE, **kw), backend


def tone(seconds: float, rate: int = RATE, f: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_blocks_carry_exactly_their_audio():
    rt, _ = make_runtime()
    speech = tone(1.32)                              # 33 frames
    start = rt.push_talk(speech, RATE)
    blocks = [rt.step() for _ in range(4)]
    assert start == 0.0
    for k, b in enumerate(blocks):
        assert b.frames.shape[0] == PER_BLOCK == round(FPS * b.seconds)
        assert len(b.audio) == BLOCK
        assert b.t0 == pytest.approx(k * PER_BLOCK / FPS)
    played = np.concatenate([b.audio for b in blocks])
    np.testing.assert_array_equal(played[:len(speech)], speech)
    assert not played[len(speech):].any()
    # TALK exactly on the frames that carry speech (≥ half a frame of it)
    mask = np.concatenate([b.mask for b in blocks])
    talking = 33
    assert (mask[:talking] == TALK).all() and (mask[talking:] == IDLE).all()


def test_talk_at_other_rates_is_resampled_and_queued_back_to_back():
    rt, backend = make_runtime()
    rt.push_talk(tone(0.5, 22050), 22050, [("a", 0.0, 0.5)])
    second = rt.push_talk(tone(0.5, 22050), 22050, [("m", 0.1, 0.2)])
    assert second == pytest.approx(0.5)
    rt.step()
    symbols = [(p.symbol, round(p.start, 3)) for p in backend.blocks[0].phonemes]
    assert symbols == [("a", 0.0), ("m", 0.6)]      # phonemes moved onto the session clock


def test_listen_takes_the_newest_mic_audio():
    rt, backend = make_runtime()
    for i in range(3):                               # the renderer fell behind by two blocks
        rt.push_listen(np.full(BLOCK, 0.1 * (i + 1), np.float32), RATE, speaking=(i == 2))
    b = rt.step()
    np.testing.assert_allclose(backend.blocks[0].listen_audio, 0.3)
    assert (b.mask == LISTEN).all()
    nxt = rt.step()
    assert (nxt.mask == IDLE).all()                  # nothing new from the mic: not listening


def test_listen_mask_from_a_timeline_function():
    calls = []

    def timeline_mask(t0, n, fps):
        calls.append((t0, n, fps))
        return np.full(n, LISTEN, np.uint8)

    rt, _ = make_runtime(listen_mask=timeline_mask)
    rt.step()
    assert calls == [(0.0, PER_BLOCK, FPS)]


def test_idle_when_nothing_comes():
    rt, backend = make_runtime()
    blocks = [rt.step() for _ in range(3)]
    assert all((b.mask == IDLE).all() and not b.audio.any() for b in blocks)
    assert [b.index for b in blocks] == [0, 1, 2]


def test_talk_buffer_is_bounded():
    rt, _ = make_runtime(max_talk_s=2.0)
    rt.push_talk(tone(1.5), RATE)
    with pytest.raises(TalkBufferFull):
        rt.push_talk(tone(1.0), RATE)
    assert rt.talk_queued_s == pytest.approx(1.5)


def test_put_talk_waits_for_room():
    async def run():
        rt, _ = make_runtime(max_talk_s=1.0)
        rt.push_talk(tone(0.9), RATE)
        waiting = asyncio.create_task(rt.put_talk(tone(0.5), RATE))
        await asyncio.sleep(0.05)
        assert not waiting.done()                    # back-pressure, not an error
        rt.step()                                    # 0.48 s consumed: room for 0.5 s
        return await asyncio.wait_for(waiting, 2.0)

    assert asyncio.run(run()) == pytest.approx(0.9)


def test_block_size_must_be_whole_samples():
    with pytest.raises(ValueError, match="whole number of samples"):
        AvatarRuntime(PaintingBackend(), np.zeros((8, 8, 3), np.uint8), fps=24, frames_per_block=5, sample_rate=16000)


async def _take(stream, n):
    return [await stream.__anext__() for _ in range(n)]


def test_reply_preempts_idle_blocks_rendered_ahead():
    async def run():
        rt, _ = make_runtime(lookahead_blocks=3)
        stream = rt.stream(realtime=False)
        first = await _take(stream, 1)
        await asyncio.sleep(0.05)                    # the renderer fills its look-ahead with idle
        start = rt.push_talk(tone(1.0), RATE)
        nxt = await _take(stream, 2)
        await stream.aclose()
        return first, start, nxt

    first, start, nxt = asyncio.run(run())
    assert start == pytest.approx(PER_BLOCK / FPS)   # right after the block handed over
    assert nxt[0].t0 == pytest.approx(start)
    assert (nxt[0].mask == TALK).all() and nxt[0].audio.any()


def test_flush_drops_queued_blocks_and_listens_next():
    async def run():
        rt, backend = make_runtime(lookahead_blocks=3)
        rt.push_talk(tone(5.0), RATE)
        stream = rt.stream(realtime=False)
        shown = await _take(stream, 2)
        await asyncio.sleep(0.05)                    # more talk blocks rendered ahead
        rt.push_listen(tone(0.5, f=150.0), RATE, speaking=True)
        rt.flush()
        after = await _take(stream, 1)
        await stream.aclose()
        return shown, after[0], backend

    shown, after, backend = asyncio.run(run())
    assert all((b.mask == TALK).all() for b in shown)
    assert after.t0 == pytest.approx(shown[-1].t0 + PER_BLOCK / FPS)   # no gap, no repeat
    assert after.index == shown[-1].index + 1
    assert (after.mask == LISTEN).all() and not after.audio.any()
    assert backend.flushes == 1
    frame_numbers = after.frames[:, 0, 0, 1].astype(int)
    assert frame_numbers[0] == (int(shown[-1].frames[-1, 0, 0, 1]) + 1) % 256


def test_realtime_stream_is_paced_by_the_clock():
    async def run():
        rt, _ = make_runtime(lookahead_blocks=2)
        loop = asyncio.get_running_loop()
        stream = rt.stream(realtime=True)
        t = loop.time()
        await _take(stream, 3)
        elapsed = loop.time() - t
        await stream.aclose()
        return elapsed

    # block 2 is due at 0.96 s and handed over one frame early
    assert asyncio.run(run()) == pytest.approx(2 * PER_BLOCK / FPS - 1 / FPS, abs=0.08)


def test_a_failing_backend_fails_the_stream_instead_of_hanging_it():
    class Broken(PaintingBackend):
        def render(self, block):
            raise RuntimeError("renderer exploded")

    async def run():
        rt = AvatarRuntime(Broken(), np.zeros((8, 8, 3), np.uint8))
        stream = rt.stream(realtime=False)
        with pytest.raises(RuntimeError, match="exploded"):
            await asyncio.wait_for(stream.__anext__(), 2.0)

    asyncio.run(run())
