"""A stand-in for the `sounddevice` package: a virtual sound card for booth-mode tests,
put first on PYTHONPATH of the app under test.

    PERSONA_FAKE_MIC       a WAV the microphone plays in real time (then silence)
    PERSONA_FAKE_SPEAKER   a file that gets everything played, as raw float32
    PERSONA_FAKE_ECHO      how much of the speaker leaks into the microphone (0.05, -26 dB: a booth microphone facing the user),
                           ECHO_BLOCKS blocks later, as in a room
    PERSONA_FAKE_DEVICES   "none": a machine without sound devices
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque

import numpy as np

ECHO_BLOCKS = 3
# Like a sound card's buffer, the speaker holds at most this much not yet played; a
# write waits for room (PortAudio's blocking write), so the echo's delay stays bounded.
MAX_QUEUED_S = 0.05
_room: deque[float] = deque()      # what the speaker played, on its way to the mic
_room_lock = threading.Lock()


class PortAudioError(Exception):
    pass


def query_devices(device=None, kind=None):
    if os.environ.get("PERSONA_FAKE_DEVICES") == "none":
        raise PortAudioError("Error querying device -1")
    return {"name": "virtual sound card", "max_input_channels": 1, "max_output_channels": 1,
            "default_samplerate": 16000.0}


def _mic_audio(rate: int) -> np.ndarray:
    import soundfile
    path = os.environ.get("PERSONA_FAKE_MIC")
    if not path:
        return np.zeros(0, np.float32)
    audio, file_rate = soundfile.read(path, dtype="float32")
    assert file_rate == rate, f"the fake microphone's WAV must be at {rate} Hz"
    return audio if audio.ndim == 1 else audio.mean(axis=1)


class InputStream:
    def __init__(self, samplerate, channels, dtype, blocksize, callback):
        self.rate, self.block, self.callback = int(samplerate), int(blocksize), callback
        self._audio = _mic_audio(self.rate)
        self._gain = float(os.environ.get("PERSONA_FAKE_ECHO", "0.05"))
        self._running = False
        with _room_lock:
            _room.clear()
            _room.extend([0.0] * ECHO_BLOCKS * self.block)

    def start(self):
        self._running = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        t0, i = time.monotonic(), 0
        while self._running:
            delay = t0 + i * self.block / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            block = np.zeros(self.block, np.float32)
            chunk = self._audio[i * self.block:(i + 1) * self.block]
            block[:len(chunk)] = chunk
            with _room_lock:
                n = min(self.block, len(_room))
                echo = np.array([_room.popleft() for _ in range(n)], np.float32)
            block[:n] += self._gain * echo
            self.callback(block.reshape(-1, 1), self.block, None, None)
            i += 1

    def stop(self):
        self._running = False

    def close(self):
        self._running = False


class OutputStream:
    def __init__(self, samplerate, channels, dtype):
        self.rate = int(samplerate)
        self._file = open(os.environ.get("PERSONA_FAKE_SPEAKER", os.devnull), "wb")

    def start(self):
        pass

    def write(self, data):
        x = np.asarray(data, np.float32).reshape(-1)
        self._file.write(x.tobytes())
        self._file.flush()
        while True:
            with _room_lock:
                if len(_room) <= MAX_QUEUED_S * self.rate:
                    _room.extend(x.tolist())
                    return
            time.sleep(0.002)

    def stop(self):
        pass

    def close(self):
        self._file.close()
