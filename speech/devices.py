"""Local microphone and speaker for booth mode (sounddevice / PortAudio): `SoundCard`
(duplex, what booth mode uses), `Microphone` and `Speaker` (one direction each).

All raise `NoAudioDevice` with one line to act on when the machine has no sound card,
no PortAudio library, or no device of the needed kind (CI machines have none).
"""
from __future__ import annotations

import queue
import threading

import numpy as np


class NoAudioDevice(RuntimeError):
    """No usable local audio device; the message says what to do instead."""


def _sounddevice():
    try:
        import sounddevice as sd
    except OSError:  # the PortAudio shared library is missing
        raise NoAudioDevice("no audio system (PortAudio) on this machine: apt-get install libportaudio2, "
                            "or use the web UI / --headless --input FILE") from None
    return sd


def _device(kind: str):
    sd = _sounddevice()
    try:
        return sd, sd.query_devices(kind=kind)
    except Exception:  # sounddevice raises PortAudioError or ValueError for "no default device"
        raise NoAudioDevice(f"no {'microphone' if kind == 'input' else 'speaker'} found: connect one, "
                            f"or use the web UI / --headless --input FILE") from None


class _Device:
    """A started PortAudio stream while inside `with`."""
    _stream: object

    def __enter__(self):
        self._stream.start()
        return self

    def __exit__(self, *exc):
        self._stream.stop()
        self._stream.close()


class Microphone(_Device):
    """Blocks of mono float32 from the default input device, via a bounded queue.

    If the consumer falls behind by more than `max_blocks`, the oldest audio is
    dropped (a live conversation wants the newest audio, and memory stays bounded).
    """

    def __init__(self, sample_rate: int = 16000, block_s: float = 0.02, max_blocks: int = 250):
        sd, _ = _device("input")
        self.sample_rate = sample_rate
        self.dropped = 0
        self._q: queue.Queue[np.ndarray] = queue.Queue(maxsize=max_blocks)
        self._stream = sd.InputStream(samplerate=sample_rate, channels=1, dtype="float32",
                                      blocksize=int(sample_rate * block_s), callback=self._on_audio)

    def _on_audio(self, data, frames, time, status):
        try:
            self._q.put_nowait(data[:, 0].copy())
        except queue.Full:
            self.dropped += 1
            self._q.get_nowait()
            self._q.put_nowait(data[:, 0].copy())

    def read(self, timeout: float = 1.0) -> np.ndarray | None:
        """The next block, or None if none arrived within `timeout` seconds."""
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None


class Speaker(_Device):
    """Plays mono float32 blocks on the default output device."""

    def __init__(self, sample_rate: int = 16000):
        sd, _ = _device("output")
        self.sample_rate = sample_rate
        self._stream = sd.OutputStream(samplerate=sample_rate, channels=1, dtype="float32")

    def play(self, audio: np.ndarray) -> None:
        self._stream.write(np.ascontiguousarray(audio, np.float32).reshape(-1, 1))


class SoundCard(_Device):
    """Microphone and speaker as one duplex stream (booth mode): every block of mic
    audio comes with exactly what the speaker played during it, the echo reference the
    VAD needs. The card's clock drives both, so the echo's delay stays fixed even when
    the consumer falls behind (it then loses mic blocks, never the pairing).

    `play` queues agent voice (bounded: `max_play_s`); the speaker plays silence when
    none is queued. `read` returns (mic, played) or None after `timeout` seconds.
    """

    def __init__(self, sample_rate: int = 16000, block_s: float = 0.02, max_blocks: int = 25,
                 max_play_s: float = 2.0):
        sd, _ = _device("input")
        _device("output")
        self.sample_rate = sample_rate
        self.block = int(sample_rate * block_s)
        self.dropped = 0
        self._q: queue.Queue[tuple[np.ndarray, np.ndarray]] = queue.Queue(maxsize=max_blocks)
        self._voice = np.zeros(0, np.float32)
        self._max_voice = int(max_play_s * sample_rate)
        self._lock = threading.Lock()
        self._stream = sd.Stream(samplerate=sample_rate, channels=1, dtype="float32", blocksize=self.block,
                                 callback=self._on_audio)

    def _on_audio(self, indata, outdata, frames, time, status):
        with self._lock:
            out, self._voice = self._voice[:frames], self._voice[frames:]
        played = np.zeros(frames, np.float32)
        played[:len(out)] = out
        outdata[:, 0] = played
        if self._q.full():
            self.dropped += 1
            self._q.get_nowait()
        self._q.put_nowait((indata[:, 0].copy(), played))

    def play(self, audio: np.ndarray) -> None:
        with self._lock:
            self._voice = np.concatenate([self._voice, np.asarray(audio, np.float32)])[-self._max_voice:]

    def read(self, timeout: float = 1.0) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None
