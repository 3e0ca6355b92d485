"""Media in and out of one WebRTC connection, as numpy arrays.

Outgoing: the avatar's A/V blocks arrive in bursts (one block every few ticks); the
browser wants a steady stream. `AvatarVideoTrack` sends one frame per 1/fps and
`VoiceTrack` one 20 ms frame of 48 kHz audio per 20 ms, each on its own clock. Both
buffers are bounded to a few blocks: a block handed over late is shown late, never
queued up behind others, so the picture and voice stay within a block of the
conversation (what the user hears is what the conversation thinks was said). When a
buffer runs dry the picture holds its last frame and the voice plays silence.

Incoming: `MicBacklog` bounds the mic frames waiting to be heard, and `mic_samples`
turns aiortc's decoded Opus frames into mono float32.
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
    """The agent's voice. Also keeps what it was given, at the session rate, as the echo
    reference for the conversation's VAD (`take_played`)."""

    kind = "audio"

    def __init__(self, session_rate: int, max_seconds: float):
        super().__init__()
        self._to_voice_rate = StreamResampler(session_rate, VOICE_RATE)
        self._frame = int(VOICE_FRAME_S * VOICE_RATE)
        self._pending = np.zeros(0, np.float32)                 # 48 kHz, waiting to be sent
        self._max = int(max_seconds * VOICE_RATE)
        self._reference = np.zeros(0, np.float32)              # session rate, not yet taken
        self._max_reference = int(max_seconds * session_rate)
        self._pacer = _Pacer(1 / VOICE_FRAME_S)

    def push(self, audio: np.ndarray) -> None:
        """One block's agent voice (float32 at the session rate; zeros when quiet)."""
        self._pending = np.concatenate([self._pending, self._to_voice_rate(audio)])[-self._max:]
        self._reference = np.concatenate([self._reference, audio])[-self._max_reference:]

    def clear(self) -> None:
        """An interruption: drop the voice not yet sent, and its echo reference."""
        self._pending = np.zeros(0, np.float32)
        self._reference = np.zeros(0, np.float32)

    def take_played(self, n: int) -> np.ndarray:
        """The next `n` session-rate samples of the voice on its way to the browser
        (zero-padded): the echo reference for one mic tick. The buffers, the network and
        the browser add a delay, which the VAD's echo canceller searches for."""
        out = np.zeros(n, np.float32)
        head = self._reference[:n]
        out[:len(head)] = head
        self._reference = self._reference[len(head):]
        return out

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


class MicBacklog:
    """The browser's mic frames, taken from aiortc as soon as they arrive and kept in a
    bounded queue. aiortc's own receive queue is unbounded; a server that fell behind
    (CPU starved) skips the oldest audio rather than answer ever later."""

    def __init__(self, track: MediaStreamTrack, max_frames: int):
        self._track = track
        self._frames: asyncio.Queue[av.AudioFrame | None] = asyncio.Queue(maxsize=max_frames)
        self.dropped_s = 0.0
        self.most_waiting = 0          # frames waiting at worst: how far the server fell behind

    async def run(self) -> None:
        """Move frames over until the track ends (then `get` returns None)."""
        try:
            while True:
                self._put(await self._track.recv())
        except MediaStreamError:
            self._put(None)

    async def get(self) -> av.AudioFrame | None:
        return await self._frames.get()

    def _put(self, frame: av.AudioFrame | None) -> None:
        if self._frames.full():
            oldest = self._frames.get_nowait()
            self.dropped_s += oldest.samples / oldest.sample_rate
        self._frames.put_nowait(frame)
        self.most_waiting = max(self.most_waiting, self._frames.qsize())


def mic_samples(frame: av.AudioFrame) -> np.ndarray:
    """A decoded mic frame (packed or planar, mono or stereo) → mono float32."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        data = data.reshape(channels, -1)
    else:
        data = data.reshape(-1, channels)
    return to_mono_float32(data, frame.sample_rate)
