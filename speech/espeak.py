"""A user who does not sound like our agent: Debian's espeak-ng in several voices and
speeds, optionally heard through a room (reverberation and background noise at a set SNR).

Tests and benchmarks of hearing must not use the agent's own Piper voice: Whisper hears
that one unusually well. `speak` returns float32 mono at 16 kHz and the true start and end
of the speech inside it, measured on the dry signal (espeak-ng pads its output with
silence of its own, and the room adds a tail that is not speech).

    u = speak("What do bees make from nectar?", VOICES[2], Room(snr_db=15))
    u.audio, u.start, u.end
"""
from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

from speech.audio import resample
from speech.synthetic import speech_bounds

RATE = 16000


class EspeakError(RuntimeError):
    """espeak-ng is missing or refused the request; the message says what to do."""


@dataclass(frozen=True)
class Voice:
    name: str         # an espeak-ng voice, optionally with a variant: "en-gb", "en-us+f3"
    wpm: int = 160    # speaking rate, words per minute (espeak-ng's own default is 175)
    pitch: int = 50   # 0-99


# A spread of accents, sexes and speeds, none of them the agent's voice. (The mbrola
# voices need extra Debian packages and are left out.)
VOICES: tuple[Voice, ...] = (
    Voice("en-us", 150),
    Voice("en-gb", 165),
    Voice("en-us+f3", 160, 60),
    Voice("en-gb-x-rp+f2", 140, 55),
    Voice("en-gb-scotland", 140),
    Voice("en-029", 170),
)


@dataclass(frozen=True)
class Room:
    rt60_s: float = 0.3    # reverberation time: the tail decays 60 dB in this long
    drr_db: float = 3.0    # direct sound to reverberation energy
    snr_db: float = 20.0   # speech (its active part, after the room) to background noise


@dataclass(frozen=True)
class Utterance:
    text: str
    audio: np.ndarray   # (samples,) float32 mono at `rate`
    rate: int
    start: float        # true start of speech in `audio`, seconds
    end: float          # true end of speech (the dry signal's, not the reverb tail's)


def speak(text: str, voice: Voice = VOICES[0], room: Room | None = None, *,
          level: float = 0.5, lead_s: float = 0.0, tail_s: float = 0.0, seed: int = 0) -> Utterance:
    """`text` spoken by espeak-ng in `voice`, peak at `level`, with `lead_s`/`tail_s` of
    extra silence (or room noise) around it, heard in `room` when one is given."""
    if not text.strip():
        raise EspeakError("nothing to speak: the text is empty")
    dry = _espeak(text, voice)
    dry = np.concatenate([np.zeros(int(lead_s * RATE), np.float32), dry,
                          np.zeros(int(tail_s * RATE), np.float32)])
    start, end = speech_bounds(dry, RATE)
    audio = dry if room is None else in_room(dry, room, (start, end), seed)
    peak = float(np.max(np.abs(audio))) or 1.0
    return Utterance(text, (audio * (level / peak)).astype(np.float32), RATE, start, end)


def in_room(dry: np.ndarray, room: Room, speech: tuple[float, float], seed: int = 0) -> np.ndarray:
    """`dry` (16 kHz) convolved with a synthetic room response, plus pink-ish background
    noise at `room.snr_db` below the speech power within `speech` (start, end seconds).
    Same length as `dry`; the reverb tail past the end is cut."""
    rng = np.random.default_rng(seed)
    wet = fftconvolve(dry, room_response(room, rng))[: len(dry)].astype(np.float32)
    a, b = int(speech[0] * RATE), int(speech[1] * RATE)
    speech_power = float(np.mean(wet[a:b] ** 2))
    noise = room_noise(len(wet), rng)
    noise *= np.sqrt(speech_power / 10 ** (room.snr_db / 10) / float(np.mean(noise ** 2)))
    return wet + noise


def room_response(room: Room, rng: np.random.Generator) -> np.ndarray:
    """(taps,) impulse response: the direct path, then exponentially decaying noise from
    5 ms on (diffuse reflections), scaled to `room.drr_db` below the direct sound."""
    n = int(room.rt60_s * RATE)
    t = np.arange(n) / RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / room.rt60_s)   # 6.9 = ln(10^3): 60 dB
    tail[: int(0.005 * RATE)] = 0.0
    tail *= np.sqrt(10 ** (-room.drr_db / 10) / float(np.sum(tail ** 2)))
    tail[0] = 1.0
    return tail.astype(np.float32)


def room_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) float32 noise with a 1/f spectrum from 50 Hz up, like ventilation and traffic."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spectrum *= np.where(f < 50, 0.0, 1 / np.sqrt(np.maximum(f, 50)))
    return np.fft.irfft(spectrum, n).astype(np.float32)


def _espeak(text: str, voice: Voice) -> np.ndarray:
    """espeak-ng's WAV from stdout → float32 at 16 kHz (its own padding left in)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise EspeakError("espeak-ng is not installed: apt-get install espeak-ng")
    # The text goes in on stdin, so a line starting with "-" is never read as an option.
    done = subprocess.run([exe, "-v", voice.name, "-s", str(voice.wpm), "-p", str(voice.pitch), "--stdout"],
                          input=text.encode(), capture_output=True, timeout=60)
    wav = done.stdout
    if done.returncode != 0 or wav[:4] != b"RIFF" or b"data" not in wav[:100]:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise EspeakError(f"espeak-ng could not speak with voice '{voice.name}': "
                          f"{why[-1] if why else 'no audio'}; list voices with espeak-ng --voices=en")
    # Streamed to a pipe, the header's sizes are placeholders: read the rate, take the rest.
    (rate,) = struct.unpack("<I", wav[24:28])
    pcm = wav[wav.index(b"data", 12) + 8:]
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(np.float32) / 32768.0
    return resample(samples, rate, RATE)
