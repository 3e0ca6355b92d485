"""A stand-in for the `sounddevice` package: a virtual duplex sound card for booth-mode
tests, put first on PYTHONPATH of the app under test.

    PERSONA_FAKE_MIC       a WAV the microphone plays in real time (then silence)
    PERSONA_FAKE_SPEAKER   a file that gets everything played, as raw float32
    PERSONA_FAKE_ECHO      how much of the speaker leaks into the microphone (0.3, -10 dB),
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


class Stream:
    """Duplex: every block, the microphone (the WAV plus the room's echo of what the
    speaker played ECHO_BLOCKS blocks ago) goes in and the speaker's block comes out."""

    def __init__(self, samplerate, channels, dtype, blocksize, callback):
        self.rate, self.block, self.callback = int(samplerate), int(blocksize), callback
        self._audio = _mic_audio(self.rate)
        self._gain = float(os.environ.get("PERSONA_FAKE_ECHO", "0.3"))
        self._speaker = open(os.environ.get("PERSONA_FAKE_SPEAKER", os.devnull), "wb")
        self._room = deque([np.zeros(self.block, np.float32)] * ECHO_BLOCKS)
        self._running = False

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
            indata = np.zeros((self.block, 1), np.float32)
            chunk = self._audio[i * self.block:(i + 1) * self.block]
            indata[:len(chunk), 0] = chunk
            indata[:, 0] += self._gain * self._room.popleft()
            outdata = np.zeros((self.block, 1), np.float32)
            self.callback(indata, outdata, self.block, None, None)
            self._room.append(outdata[:, 0].copy())
            self._speaker.write(outdata[:, 0].tobytes())
            self._speaker.flush()
            i += 1

    def stop(self):
        self._running = False
        self._thread.join(timeout=1)

    def close(self):
        self._speaker.close()
