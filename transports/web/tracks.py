"""Media in and out of one WebRTC connection, as numpy arrays.

Outgoing: the avatar's A/V blocks arrive in bursts (one block every few ticks); the
browser wants a steady stream. `AvatarVideoTrack` sends one frame per 1/fps and
`VoiceTrack` one 20 ms frame of 48 kHz audio per 20 ms, each on its own clock. Both
buffers are bounded to a few blocks: a block handed over late is shown late, never
queued up behind others, so the picture and voice stay within a block of the
conversation (what the user hears is what the conversation thinks was said). When a
buffer runs dry the picture holds its last frame and the voice plays silence.

Incoming: `mic_samples` turns aiortc's decoded Opus frames into mono float32.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from fractions import Fraction

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from speech.audio import StreamResampler, to_int16, to_mono_float32

VOICE_RATE = 48000                  # what Opus and the browser play at
VOICE_FRAME_S = 0.02                # aiortc packetizes audio in 20 ms frames
SILENT = 1e-3                       # voice samples below this are silence: dropping them cuts nothing
VIDEO_CLOCK = 90000                 # RTP video clock


class _Pacer:
    """Sleeps until item `i` of a stream of `rate` items per second is due."""

    def __init__(self, rate: float):
        self.rate = rate
        self.index = -1
        self._start: float | None = None

    async def next(self) -> int:
        self.index += 1
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self.index / self.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return self.index


class AvatarVideoTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, first_frame: np.ndarray, fps: int, max_frames: int):
        super().__init__()
        self.fps = fps
        self._frames: deque[np.ndarray] = deque(maxlen=max_frames)   # oldest dropped when full
        self._last = first_frame
        self._pacer = _Pacer(fps)

    def push(self, frames: np.ndarray) -> None:
        """(n, H, W, 3) uint8 RGB frames of one block."""
        self._frames.extend(frames)

    def clear(self) -> None:
        """An interruption: drop the frames not yet sent (the last one stays up)."""
        self._frames.clear()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        i = await self._pacer.next()
        if self._frames:
            self._last = self._frames.popleft()
        frame = av.VideoFrame.from_ndarray(self._last, format="rgb24")
        frame.pts = round(i * VIDEO_CLOCK / self.fps)
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        return frame


class VoiceTrack(MediaStreamTrack):
    """The agent's voice."""

    kind = "audio"

    def __init__(self, session_rate: int, max_seconds: float):
        super().__init__()
        self._to_voice_rate = StreamResampler(session_rate, VOICE_RATE)
        self._frame = int(VOICE_FRAME_S * VOICE_RATE)
        self._pending = np.zeros(0, np.float32)                 # 48 kHz, waiting to be sent
        self._max = int(max_seconds * VOICE_RATE)
        self._pacer = _Pacer(1 / VOICE_FRAME_S)

    def push(self, audio: np.ndarray) -> None:
        """One block's agent voice (float32 at the session rate; zeros when quiet).

        Blocks come in bursts (the call's worker shares the cores), so the buffer passes
        `max_seconds` now and then by a few ms. Over it, the oldest samples are dropped if
        they are silence; voice is cut only past twice the bound, where it would lag the
        conversation: a cut in the voice is a click the user hears (measured: 8 cuts of
        2-25 ms in a six-reply call when every excess was dropped)."""
        pending = np.concatenate([self._pending, self._to_voice_rate(audio)])
        over = len(pending) - self._max
        if over > 0 and (over > self._max or not np.any(np.abs(pending[:over]) > SILENT)):
            pending = pending[over:]
        self._pending = pending

    def clear(self) -> None:
        """An interruption: drop the voice not yet sent."""
        self._pending = np.zeros(0, np.float32)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        i = await self._pacer.next()
        out = np.zeros(self._frame, np.float32)
        head = self._pending[:self._frame]
        out[:len(head)] = head
        self._pending = self._pending[len(head):]
        frame = av.AudioFrame.from_ndarray(to_int16(out)[None, :], format="s16", layout="mono")
        frame.sample_rate = VOICE_RATE
        frame.pts = i * self._frame
        frame.time_base = Fraction(1, VOICE_RATE)
        return frame


def mic_samples(frame: av.AudioFrame) -> np.ndarray:
    """A decoded mic frame (packed or planar, mono or stereo) → mono float32."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        data = data.reshape(channels, -1)
    else:
        data = data.reshape(-1, channels)
    return to_mono_float32(data, frame.sample_rate)
