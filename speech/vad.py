"""Streaming voice activity detection → user turn events.

Silero VAD scores fixed 32 ms frames; `StreamingVAD.push` takes microphone audio in
chunks of any size, frames it, and turns the per-frame speech probability into two
events on the session clock (seconds since the first pushed sample):

    user_started(t = onset of speech)             after `start_s` of speech
    user_paused(t = end of speech, audio = turn)  after `pause_s` of silence: a reply may
                                                  be prepared, not yet spoken
    user_resumed(t = now)                         speech again after a pause
    user_stopped(t = end of speech, audio = turn) after `end_s` of silence, or when the
                                                  caller ends the turn (`end_turn`)

Times come from a `SessionClock`: the caller's (a conversation advances it before each
push) or, standalone, the VAD's own, advanced by `push`.

Echo guard: with open speakers the agent's own voice reaches the microphone. `push`
also takes the audio that was played during the same samples (the reference). In
`reference` mode a short adaptive FIR, fitted by least squares, predicts the echo from
the reference and the VAD scores what is left. In `threshold` mode (and in addition, in `reference` mode) the VAD asks for a
higher probability and longer speech while the agent plays.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from config import EchoGuardConfig, VADConfig
from speech.timeline import SessionClock

FRAME_SAMPLES = {16000: 512, 8000: 256}
# Speech ends when the probability falls this far below the start threshold (hysteresis,
# as in Silero's own iterator): a wobble around the threshold is not a pause.
HYSTERESIS = 0.15


@dataclass(frozen=True)
class VADEvent:
    kind: str                       # "user_started" | "user_paused" | "user_resumed" | "user_stopped"
    t: float                        # session seconds: speech onset, or end of speech
    audio: np.ndarray | None = field(default=None, repr=False)  # the turn, padded (user_stopped)
    truncated: bool = False         # the turn hit max_turn_s and was cut there


def load_vad_model():
    """The bundled Silero model (TorchScript, from the silero-vad wheel)."""
    from silero_vad import load_silero_vad
    return load_silero_vad()


class EchoCanceller:
    """Predicts the echo of the played reference in the mic with a least-squares FIR.

    Every `refit_s` it finds the speaker→mic delay by phase-transform cross-correlation
    and fits `taps` coefficients around that delay over the last `fit_window_s`.
    A user talking over the agent is uncorrelated with the reference, so it stays in
    the residual while the echo is removed.
    """

    def __init__(self, cfg: EchoGuardConfig, rate: int, refit_s: float = 0.1):
        self.taps = cfg.filter_taps
        self.max_delay = int(cfg.max_delay_s * rate)
        self.window = int(cfg.fit_window_s * rate)
        self.refit_every = int(refit_s * rate)
        keep = self.window + self.max_delay + self.taps
        self._mic = np.zeros(keep, np.float32)
        self._ref = np.zeros(keep, np.float32)
        self._since_fit = self.refit_every
        self._delay = 0
        self._h = np.zeros(self.taps, np.float32)

    def reset(self) -> None:
        self._mic[:] = 0
        self._ref[:] = 0
        self._h[:] = 0
        self._since_fit = self.refit_every

    def __call__(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """Residual of `mic` after removing the predicted echo of `ref` (same length)."""
        n = len(mic)
        self._mic = np.concatenate([self._mic[n:], mic])
        self._ref = np.concatenate([self._ref[n:], ref])
        self._since_fit += n
        if self._since_fit >= self.refit_every:
            self._fit()
            self._since_fit = 0
        return mic - self._predict(n)

    def _lagged(self, n: int) -> np.ndarray:
        """(n, taps) matrix: row i holds the reference at lags delay .. delay+taps-1 before
        the i-th of the last n mic samples."""
        end = len(self._ref) - self._delay
        idx = np.arange(end - n, end)[:, None] - np.arange(self.taps)[None, :]
        return self._ref[idx]

    def _predict(self, n: int) -> np.ndarray:
        return (self._lagged(n) @ self._h).astype(np.float32)

    def _fit(self) -> None:
        y = self._mic[-self.window:]
        x = self._ref[-self.window - self.max_delay:]
        if not np.any(x):
            self._h[:] = 0
            return
        # GCC-PHAT: peak of the whitened cross-spectrum = delay of ref in mic.
        size = 1 << int(np.ceil(np.log2(len(x) + len(y))))
        spec = np.fft.rfft(y, size) * np.conj(np.fft.rfft(x[-self.window:], size))
        cc = np.fft.irfft(spec / (np.abs(spec) + 1e-9), size)
        lags = np.arange(0, self.max_delay + 1)
        # keep a little room so the filter can also model the sound just before the peak
        self._delay = max(0, int(lags[np.argmax(cc[lags])]) - self.taps // 8)
        X = self._lagged(self.window)
        gram = X.T @ X
        ridge = 1e-3 * np.trace(gram) / self.taps + 1e-9
        self._h = np.linalg.solve(gram + ridge * np.eye(self.taps), X.T @ y).astype(np.float32)


class StreamingVAD:
    """Silero VAD over arbitrary chunks, with turn hysteresis, padding and echo guard."""

    def __init__(self, cfg: VADConfig, sample_rate: int = 16000, model=None, clock: SessionClock | None = None):
        if sample_rate not in FRAME_SAMPLES:
            raise ValueError(f"VAD runs at 8000 or 16000 Hz, got {sample_rate}; resample first")
        self.cfg, self.rate = cfg, sample_rate
        self.frame = FRAME_SAMPLES[sample_rate]
        self.model = model if model is not None else load_vad_model()
        self._owns_clock = clock is None
        self.clock = clock if clock is not None else SessionClock(sample_rate)
        guard = cfg.echo_guard
        self.echo = EchoCanceller(guard, sample_rate) if guard.mode == "reference" else None
        # Reference energy below this is silence: the agent is not playing.
        self._ref_floor = 1e-7
        self._mic_pending = np.zeros(0, np.float32)
        self._ref_pending = np.zeros(0, np.float32)
        self._pre = deque(maxlen=max(1, int(np.ceil((cfg.pad_s + guard.start_s_while_playing + cfg.start_s)
                                                     * sample_rate / self.frame)) + 1))
        self._turn: list[np.ndarray] = []
        self._max_turn_frames = int(cfg.max_turn_s * sample_rate / self.frame)
        self._playing_frames = 0           # frames since the reference was last active
        self._turn_start = 0               # session sample where the turn's audio begins
        self.reset()

    def warm_up(self, calls: int = 3) -> None:
        """Silero compiles TorchScript on its first calls (0.1-0.5 s): do it before the
        microphone starts, where it would hold up the first ticks."""
        with torch.no_grad():
            for _ in range(calls):
                self.model(torch.zeros(self.frame), self.rate)
        self.model.reset_states()

    def reset(self) -> None:
        self.model.reset_states()
        if self.echo:
            self.echo.reset()
        self._mic_pending = np.zeros(0, np.float32)
        self._ref_pending = np.zeros(0, np.float32)
        self._pre.clear()
        self._turn = []
        if self._owns_clock:
            self.clock.samples = 0
        self._next_sample = self.clock.samples  # session sample where the next frame starts
        self.in_turn = False
        self._paused = False               # a pause inside the turn was reported
        self._run = 0                      # consecutive speech frames before a turn starts
        self._silence = 0                  # consecutive silent frames inside a turn
        self._last_speech_end = 0          # session sample just after the last speech frame
        self.last_prob = 0.0

    @property
    def now(self) -> float:
        """Session time at the end of the last frame scored."""
        return self._next_sample / self.rate

    @property
    def last_speech_end(self) -> float:
        """Session time just after the last speech frame of the current/last turn."""
        return self._last_speech_end / self.rate

    def push(self, mic: np.ndarray, played: np.ndarray | None = None, agent_playing: bool = False) -> list[VADEvent]:
        """Feed mic samples (float32 at the VAD rate) and, optionally, the audio played on
        the speaker during those same samples. `agent_playing`: the agent's voice is being
        played (known to the caller even without a reference signal). Returns the events
        they completed."""
        if played is not None and len(played) != len(mic):
            raise ValueError(f"played audio ({len(played)} samples) must match mic audio ({len(mic)})")
        if self._owns_clock:
            self.clock.advance(len(mic))
        self._mic_pending = np.concatenate([self._mic_pending, np.asarray(mic, np.float32)])
        # the pending samples are the newest ones the clock has counted
        self._next_sample = self.clock.samples - len(self._mic_pending)
        ref = np.zeros(len(mic), np.float32) if played is None else np.asarray(played, np.float32)
        self._ref_pending = np.concatenate([self._ref_pending, ref])
        events = []
        while len(self._mic_pending) >= self.frame:
            m, self._mic_pending = self._mic_pending[:self.frame], self._mic_pending[self.frame:]
            r, self._ref_pending = self._ref_pending[:self.frame], self._ref_pending[self.frame:]
            event = self._step(m, r, agent_playing)
            if event:
                events.append(event)
        return events

    def _step(self, mic: np.ndarray, ref: np.ndarray, agent_playing: bool) -> VADEvent | None:
        cfg, guard = self.cfg, self.cfg.echo_guard
        playing = agent_playing or float(np.mean(ref * ref)) > self._ref_floor
        self._playing_frames = 0 if playing else self._playing_frames + 1
        # The echo outlives the voice by the speaker→mic delay.
        while_playing = self._playing_frames * self.frame < guard.max_delay_s * self.rate + self.frame
        echo_possible = guard.mode != "off" and while_playing
        scored = mic
        if self.echo is not None:
            residual = self.echo(mic, ref)  # keeps the canceller adapted even when idle
            if echo_possible:
                scored = residual
        with torch.no_grad():
            prob = float(self.model(torch.from_numpy(np.ascontiguousarray(scored)), self.rate))
        self.last_prob = prob
        threshold = guard.threshold_while_playing if echo_possible else cfg.threshold
        # Speech over the agent is a possible barge-in: decide sooner.
        start_s = guard.start_s_while_playing if while_playing else cfg.start_s
        self._pre.append(mic)
        self._next_sample += self.frame

        if not self.in_turn:
            self._run = self._run + 1 if prob >= threshold else 0
            if self._run * self.frame >= max(1, start_s * self.rate):
                onset = self._next_sample - self._run * self.frame
                self.in_turn = True
                self._silence = 0
                self._last_speech_end = self._next_sample
                pad = int(np.ceil(cfg.pad_s * self.rate / self.frame))
                self._turn = list(self._pre)[-(self._run + pad):]
                self._turn_start = self._next_sample - len(self._turn) * self.frame
                return VADEvent("user_started", onset / self.rate)
            return None

        self._turn.append(mic)
        if prob >= threshold - HYSTERESIS:
            self._silence = 0
            self._last_speech_end = self._next_sample
            if self._paused:
                self._paused = False
                return VADEvent("user_resumed", self.now)
        else:
            self._silence += 1
        if self._silence * self.frame >= cfg.end_s * self.rate:
            return self._close(truncated=False)
        if len(self._turn) >= self._max_turn_frames:
            self._last_speech_end = self._next_sample
            return self._close(truncated=True)
        if not self._paused and cfg.pause_s < cfg.end_s and self._silence * self.frame >= cfg.pause_s * self.rate:
            self._paused = True
            return VADEvent("user_paused", self.last_speech_end, self.turn_audio())
        return None

    def turn_audio(self, since: float | None = None) -> np.ndarray:
        """The turn so far (from session time `since`, if given, less pad_s), keeping
        pad_s of its trailing silence."""
        pad = int(np.ceil(self.cfg.pad_s * self.rate / self.frame))
        drop = max(0, (self._next_sample - self._last_speech_end) // self.frame - pad)
        frames = self._turn[:len(self._turn) - drop] if drop else self._turn
        if since is not None:
            skip = int((since * self.rate - self._turn_start) // self.frame) - pad
            frames = frames[max(0, skip):]
        return np.concatenate(frames) if frames else np.zeros(0, np.float32)

    def end_turn(self) -> VADEvent | None:
        """End the turn in progress now (the caller knows it is over, e.g. from what was
        said): its user_stopped event, or None outside a turn."""
        return self._close(truncated=False) if self.in_turn else None

    def _close(self, truncated: bool) -> VADEvent:
        audio = self.turn_audio()
        self.in_turn, self._run, self._turn, self._paused = False, 0, [], False
        return VADEvent("user_stopped", self.last_speech_end, audio, truncated)
