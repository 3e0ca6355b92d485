"""The audio front end: per-video-frame features for the talk and the listen stream.

Pure functions of numbers, shared by every backend:

- talk (the agent's own voice) → mouth targets. With phoneme timings (Piper) each
  phoneme maps to a viseme; visemes blend by dominance coarticulation (each phoneme's
  influence decays exponentially, τ ≈ 40 ms, outside its own span), every lip closure
  (/m b p/, /f v/) is forced onto at least one frame, and the picture leads the sound by
  ≈ 30 ms, as faces do. Without phonemes (omni models) the audio envelope and spectral
  tilt stand in.
- listen (the user's voice) → prosody: loudness, voicing, pitch, from which a backend
  times nods and brow raises to the user's pauses and intonation.

Features are extracted from the audio as it is, and only then multiplied by the
talk/listen mask, so a frame the mask gives to nobody has all-zero features whatever
leaked into the audio.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speech.timeline import talk_listen

# Picture leads audio: the lips start moving before the sound they make is heard.
LEAD_S = 0.03
# Dominance decay outside a phoneme's span (coarticulation reach).
TAU_S = 0.04
# Phonemes this far outside a block still shape its first/last frames.
CONTEXT_S = 0.3

# Frame loudness mapped onto 0..1 (RMS dBFS): speech sits between these.
FLOOR_DB, FULL_DB = -50.0, -16.0


@dataclass(frozen=True)
class Viseme:
    """A mouth shape target. open: 0 rest … 1 widest; spread: −1 rounded … +1 spread;
    closure: 1 lips pressed together. dominance: how strongly it resists neighbours."""
    name: str
    open: float
    spread: float
    closure: float
    dominance: float


REST = Viseme("rest", 0.0, 0.0, 0.0, 0.5)
VISEMES = {v.name: v for v in (
    REST,
    Viseme("PP", 0.0, 0.0, 1.0, 3.0),     # m b p: lips pressed
    Viseme("FF", 0.05, 0.1, 0.85, 2.5),   # f v: lower lip to upper teeth
    Viseme("TH", 0.25, 0.1, 0.0, 0.7),    # θ ð
    Viseme("DD", 0.3, 0.15, 0.0, 0.6),    # t d n l ɾ
    Viseme("SS", 0.15, 0.45, 0.0, 0.9),   # s z
    Viseme("SH", 0.25, -0.6, 0.0, 1.0),   # ʃ ʒ (protruded)
    Viseme("RR", 0.3, -0.45, 0.0, 0.8),   # ɹ r ɚ
    Viseme("KK", 0.35, 0.0, 0.0, 0.4),    # k g ŋ h (take their neighbours' shape)
    Viseme("AA", 1.0, 0.1, 0.0, 1.0),     # a ɑ æ ʌ
    Viseme("EE", 0.6, 0.35, 0.0, 1.0),    # ɛ e ɜ
    Viseme("AH", 0.45, 0.1, 0.0, 0.8),    # ə ɐ ᵻ (weak vowels)
    Viseme("IH", 0.3, 0.7, 0.0, 1.0),     # i ɪ j
    Viseme("OO", 0.7, -0.7, 0.0, 1.0),    # o ɔ ɒ
    Viseme("UU", 0.25, -0.9, 0.0, 1.0),   # u ʊ w
)}

# eSpeak IPA (what Piper emits) → viseme name. Unknown symbols are ignored.
_SYMBOLS = {
    "PP": "pbmɱ", "FF": "fv", "TH": "θð", "DD": "tdnlɾɫ", "SS": "sz", "SH": "ʃʒ",
    "RR": "ɹrɚɝɻ", "KK": "kgŋhxɡʔ", "AA": "aɑæʌ", "EE": "ɛeɜ", "AH": "əɐᵻ",
    "IH": "iɪjy", "OO": "oɔɒ", "UU": "uʊw",
}
PHONEME_VISEME = {s: name for name, chars in _SYMBOLS.items() for s in chars}
# Pauses: punctuation, word gaps and Piper's sentence markers pull the mouth to rest.
PAUSE_SYMBOLS = set(",.;:!?…—^$ ")
STRESS, SECONDARY, LENGTH = "ˈ", "ˌ", "ː"


def viseme_of(symbol: str) -> Viseme | None:
    """The viseme a phoneme shows; REST for pauses; None for marks that take no time
    of their own (stress, length, word gaps, Piper's padding)."""
    if symbol in PAUSE_SYMBOLS:
        return REST
    name = PHONEME_VISEME.get(symbol[:1]) if symbol else None
    return VISEMES[name] if name else None


def frame_times(t0: float, n_frames: int, fps: float) -> np.ndarray:
    """Centre time of each frame, seconds."""
    return t0 + (np.arange(n_frames) + 0.5) / fps


@dataclass(frozen=True)
class TalkFeatures:
    open: np.ndarray      # (n,) 0 … 1 jaw/lip opening beyond rest
    spread: np.ndarray    # (n,) −1 rounded … +1 spread
    closure: np.ndarray   # (n,) 0 … 1 lips pressed together
    emphasis: np.ndarray  # (n,) 0 … 1 stressed-syllable onsets (impulses)
    energy: np.ndarray    # (n,) 0 … 1 loudness of the frame's audio


@dataclass(frozen=True)
class ListenFeatures:
    energy: np.ndarray    # (n,) 0 … 1 loudness
    voiced: np.ndarray    # (n,) 1 where the frame has a clear pitch
    pitch: np.ndarray     # (n,) semitones re 100 Hz where voiced, else 0


# ── talk: phonemes → visemes ──────────────────────────────────────────────────────────


def _viseme_spans(phonemes) -> list[tuple[Viseme, float, float]]:
    """(viseme, start, end) per phoneme. Marks that Piper gives time but no sound of
    their own lend it to a neighbour: a length mark 'ː' lengthens the phoneme before
    it, a stress mark the vowel after it."""
    spans: list[list] = []
    carry = None                                   # time of a stress mark, for the next phoneme
    for symbol, start, end in phonemes:
        start, end = float(start), float(end)
        if LENGTH in symbol and spans:
            spans[-1][2] = max(spans[-1][2], end)
            continue
        if STRESS in symbol or SECONDARY in symbol:
            carry = start if carry is None else carry
            continue
        v = viseme_of(symbol)
        if v is None:
            carry = None
            continue
        spans.append([v, start if carry is None else carry, end])
        carry = None
    return [(v, s, e) for v, s, e in spans if e > s]


def viseme_tracks(phonemes, times: np.ndarray, *, lead_s: float = LEAD_S, tau_s: float = TAU_S,
                  fps: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(open, spread, closure) at `times` from (symbol, start, end) phonemes.

    Each frame shows the mouth of `lead_s` later. Dominance coarticulation: a phoneme
    weighs its `dominance` inside its span and decays as exp(−distance/τ) outside; the
    track is the dominance-weighted mean of the targets (rest where nothing is near).
    With `fps` given, every closure viseme is also forced onto the frame nearest its
    centre, so a 20 ms /p/ between two frame centres still shuts the lips once.
    """
    times = np.asarray(times, np.float64)
    spans = _viseme_spans(phonemes)
    n = len(times)
    if not spans:
        return np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32)
    vis = [v for v, _, _ in spans]
    start = np.array([s for _, s, _ in spans])[:, None]
    end = np.array([e for _, _, e in spans])[:, None]
    t = (times + lead_s)[None, :]
    distance = np.maximum(start - t, 0) + np.maximum(t - end, 0)
    weight = np.array([v.dominance for v in vis])[:, None] * np.exp(-distance / tau_s)
    # A faint rest target everywhere: far from any phoneme the mouth returns to rest.
    total = weight.sum(axis=0) + REST.dominance * 1e-3
    targets = np.array([[v.open, v.spread, v.closure] for v in vis])
    open_, spread, closure = (targets.T @ weight) / total
    if fps:
        for v, s, e in spans:
            if v.closure > 0:
                i = int(np.argmin(np.abs(t[0] - (s + e) / 2)))
                if abs(t[0, i] - (s + e) / 2) <= 0.5 / fps:
                    open_[i], spread[i], closure[i] = v.open, v.spread, v.closure
    return open_.astype(np.float32), spread.astype(np.float32), closure.astype(np.float32)


def stress_onsets(phonemes, times: np.ndarray, fps: float, *, lead_s: float = LEAD_S) -> np.ndarray:
    """1 at the frame nearest the start of each stressed vowel (after 'ˈ'), else 0."""
    times = np.asarray(times, np.float64)
    out = np.zeros(len(times), np.float32)
    if len(times) < 1:
        return out
    stressed = False
    for symbol, start, _ in phonemes:
        if STRESS in symbol:
            stressed = True
            continue
        v = viseme_of(symbol)
        if stressed and v is not None and v.name in ("AA", "EE", "AH", "IH", "OO", "UU"):
            i = int(np.argmin(np.abs(times + lead_s - start)))
            if abs(times[i] + lead_s - start) <= 0.5 / fps:
                out[i] = 1.0
            stressed = False
    return out


# ── talk without phonemes, and loudness ───────────────────────────────────────────────


def frame_slices(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """The audio as (n_frames, samples per frame); a fractional tail is dropped."""
    per = len(audio) // max(n_frames, 1)
    return np.asarray(audio[: per * n_frames], np.float32).reshape(n_frames, per)


def loudness(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """Per-frame RMS mapped from [FLOOR_DB, FULL_DB] dBFS onto 0 … 1."""
    if n_frames == 0:
        return np.zeros(0, np.float32)
    frames = frame_slices(audio, n_frames)
    if frames.shape[1] == 0:
        return np.zeros(n_frames, np.float32)
    db = 10 * np.log10(np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-12)
    return np.clip((db - FLOOR_DB) / (FULL_DB - FLOOR_DB), 0, 1).astype(np.float32)


def envelope_mouth(audio: np.ndarray, sample_rate: int, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(open, spread) from the audio alone: loudness opens the jaw; a bright spectrum
    (high centroid: /s i e/) spreads the lips, a dark one (/u o/) rounds them."""
    level = loudness(audio, n_frames)
    open_ = np.clip(level * 1.2 - 0.1, 0, 1) ** 1.3
    frames = frame_slices(audio, n_frames)
    if frames.shape[1] < 16:
        return open_.astype(np.float32), np.zeros(n_frames, np.float32)
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(frames.shape[1]), axis=1))
    freqs = np.fft.rfftfreq(frames.shape[1], 1 / sample_rate)
    centroid = (spectrum @ freqs) / (spectrum.sum(axis=1) + 1e-9)
    # ~600 Hz (rounded vowels) … ~2500 Hz (spread vowels, sibilants)
    spread = np.clip((centroid - 1200.0) / 1300.0, -1, 1) * np.minimum(level * 2, 1)
    return open_.astype(np.float32), spread.astype(np.float32)


def envelope_onsets(level: np.ndarray) -> np.ndarray:
    """1 where loudness jumps up into a loud frame (a stand-in for stressed syllables)."""
    before = np.concatenate([[0.0], level[:-1]])
    return ((level - before > 0.25) & (level > 0.55)).astype(np.float32)


def talk_features(audio: np.ndarray, sample_rate: int, t0: float, n_frames: int, fps: float,
                  phonemes=()) -> TalkFeatures:
    """Mouth targets for `n_frames` frames from t0; phonemes as (symbol, start, end) on
    the same clock as t0 (empty: derive from the audio)."""
    times = frame_times(t0, n_frames, fps)
    level = loudness(audio, n_frames)
    if len(phonemes):
        open_, spread, closure = viseme_tracks(phonemes, times, fps=fps)
        # Louder speech opens the jaw wider (vocal effort): the visemes give shape and
        # timing, the sound how far. Closures stay shut (0 × anything).
        open_ = open_ * (0.2 + 0.8 * level)
        emphasis = stress_onsets(phonemes, times, fps)
    else:
        open_, spread = envelope_mouth(audio, sample_rate, n_frames)
        closure = np.zeros(n_frames, np.float32)
        emphasis = envelope_onsets(level)
    return TalkFeatures(open_, spread, closure, emphasis, level)


# ── listen: prosody ───────────────────────────────────────────────────────────────────


def pitch_track(audio: np.ndarray, sample_rate: int, n_frames: int,
                fmin: float = 70.0, fmax: float = 400.0) -> tuple[np.ndarray, np.ndarray]:
    """(voiced 0/1, pitch in semitones re 100 Hz) per frame, by normalised autocorrelation."""
    frames = frame_slices(audio, n_frames).astype(np.float64)
    n = frames.shape[1]
    lo, hi = int(sample_rate / fmax), int(sample_rate / fmin)
    if n <= hi + 1:
        return np.zeros(n_frames, np.float32), np.zeros(n_frames, np.float32)
    frames = frames - frames.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(frames, 2 * n, axis=1)
    ac = np.fft.irfft(spec * np.conj(spec), axis=1)[:, :n]
    # Unbiased normalisation: lag k has n - k overlapping samples.
    nacf = ac[:, lo:hi] / (ac[:, :1] + 1e-12) * (n / (n - np.arange(lo, hi)))
    # The shortest lag whose peak is nearly as high as the highest: a period's
    # multiples correlate as well, and picking them halves the pitch (octave errors).
    local_max = np.zeros_like(nacf, bool)
    local_max[:, 1:-1] = (nacf[:, 1:-1] >= nacf[:, :-2]) & (nacf[:, 1:-1] >= nacf[:, 2:])
    best = np.argmax(local_max & (nacf >= 0.85 * nacf.max(axis=1, keepdims=True)), axis=1)
    peak = nacf[np.arange(n_frames), best]
    voiced = (peak > 0.5) & (loudness(audio, n_frames) > 0.2)
    f0 = sample_rate / (best + lo)
    pitch = np.where(voiced, 12 * np.log2(f0 / 100.0), 0.0)
    return voiced.astype(np.float32), pitch.astype(np.float32)


def listen_features(audio: np.ndarray, sample_rate: int, n_frames: int) -> ListenFeatures:
    voiced, pitch = pitch_track(audio, sample_rate, n_frames)
    return ListenFeatures(loudness(audio, n_frames), voiced, pitch)


# ── one block ─────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class BlockFeatures:
    talk: TalkFeatures
    listen: ListenFeatures
    talk_weight: np.ndarray    # (n,) 1 where the agent speaks (mask)
    listen_weight: np.ndarray  # (n,) 1 where the user speaks (mask)


def _masked(features, weight: np.ndarray):
    return type(features)(**{k: v * weight for k, v in vars(features).items()})


def block_features(block) -> BlockFeatures:
    """Features of an `avatar_engine.backend.Block`, masked after extraction."""
    n = block.n_frames
    talk_w, listen_w = talk_listen(block.mask)
    near = [(p.symbol, p.start, p.end) for p in block.phonemes
            if p.end > block.t0 - CONTEXT_S and p.start < block.t0 + n / block.fps + CONTEXT_S]
    talk = talk_features(block.talk_audio, block.sample_rate, block.t0, n, block.fps,
                         near if block.phonemes else ())
    listen = listen_features(block.listen_audio, block.sample_rate, n)
    return BlockFeatures(_masked(talk, talk_w), _masked(listen, listen_w), talk_w, listen_w)
