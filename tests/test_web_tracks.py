"""The outgoing voice track: what it plays when blocks come in bursts."""
import asyncio

import numpy as np

from transports.web.tracks import VOICE_FRAME_S, VoiceTrack

RATE = 16000
BLOCK_S = 0.08          # one avatar block: 2 frames at 25 fps


def block(voiced: bool) -> np.ndarray:
    t = np.arange(int(BLOCK_S * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32) if voiced else np.zeros(len(t), np.float32)


def played(blocks: list[bool], seconds: float) -> list[bool]:
    """Push the blocks at once into a track bounded at two blocks; which of the 20 ms
    frames it then sends carry voice. (The resampler to 48 kHz holds back a few ms, so
    the voice comes up to one frame later and its last frame is partly still in it.)"""
    async def run():
        track = VoiceTrack(RATE, max_seconds=2 * BLOCK_S)
        for voiced in blocks:
            track.push(block(voiced))
        frames = [await track.recv() for _ in range(round(seconds / VOICE_FRAME_S))]
        track.stop()
        return [int(np.abs(f.to_ndarray()).max()) > 300 for f in frames]
    return asyncio.run(run())


def test_a_burst_of_voice_over_the_bound_is_played_whole():
    # three blocks at once: 240 ms against a 160 ms bound, none of it cut (a cut is a click)
    frames = played([True, True, True], 0.32)
    assert frames[:11] == [True] * 11 and not any(frames[12:]), frames


def test_silence_over_the_bound_is_dropped_first():
    # 80 ms of the leading silence go, so the voice starts 80 ms sooner than queued
    frames = played([False, False, True], 0.24)
    assert frames.index(True) in (4, 5) and sum(frames) in (3, 4), frames


def test_voice_past_twice_the_bound_is_cut_back_to_it():
    # 400 ms at once lags the conversation: only the newest 160 ms are played
    frames = played([True] * 5, 0.24)
    assert sum(frames) in (7, 8) and not any(frames[8:]), frames
