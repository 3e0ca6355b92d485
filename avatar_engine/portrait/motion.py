"""Motion: per-frame expression and head pose from a block's features.

Stochastic behaviour (blinks, sway, smiles, which pauses get a nod) comes from pure
functions of (seed, time), so the same seed gives the same face, and a rewound block
renders the same frames again. What depends on the past (how long the user has been
speaking, nods in progress, the mouth after a barge-in) lives in a small immutable
`MotionState`, which the backend snapshots at block starts.

Bounds: head roll ≤ 2°, head shift ≤ 3 px (2-D head motion looks wrong beyond), and
every term decays or oscillates around zero, so an idle face returns to the reference
pose and never drifts, however long it runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from avatar_engine.features import BlockFeatures

MAX_ROLL_DEG = 2.0
MAX_SHIFT_PX = 3.0
NOD_S, BROW_S = 0.45, 0.9          # duration of one nod / brow raise
NOD_GAP_S = 0.6                    # at least this between two nods
FLUSH_BLEND_S = 0.16               # mouth back to rest after barge-in
USER_SPEECH = 0.25                 # listen loudness above which the user is talking
PAUSE_S, PHRASE_S = 0.3, 0.8       # a pause this long after a phrase this long: nod


@dataclass(frozen=True)
class Pose:
    """What one frame shows. Expressions are 0 … 1; head in px and degrees."""
    open: float = 0.0
    spread: float = 0.0
    round: float = 0.0
    closure: float = 0.0
    smile: float = 0.0
    brow: float = 0.0
    blink: float = 0.0
    dx: float = 0.0
    dy: float = 0.0
    roll: float = 0.0

    def expressions(self) -> np.ndarray:
        return np.array([self.open, self.spread, self.round, self.closure, self.smile, self.brow, self.blink],
                        np.float32)


@dataclass(frozen=True)
class MotionState:
    frame: int = 0                         # session frame index of the next frame
    talk_level: float = 0.0                # smoothed share of talking / listening
    listen_level: float = 0.0
    mouth: tuple = (0.0, 0.0, 0.0, 0.0)    # open, spread, round, closure last shown
    blend_from: tuple | None = None        # mouth at barge-in, blended away
    blend_start: int = 0
    nods: tuple = ()                       # (start frame, amplitude px), recent only
    brows: tuple = ()                      # (start frame, amplitude 0 … 1)
    speech_frames: int = 0                 # user: frames of the current phrase
    silence_frames: int = 0
    phrase_pitch: tuple = ()               # user: recent (frame, semitones) of voiced frames


# ── pure functions of (seed, time) ────────────────────────────────────────────────────


def _hash01(*keys: int) -> float:
    """Deterministic uniform [0, 1) from integers (splitmix64)."""
    x = 0x9E3779B97F4A7C15
    for k in keys:
        x = (x ^ (k & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return (x >> 11) / float(1 << 53)


def blink(seed: int, t: float, slot_s: float = 4.0) -> float:
    """Eyelid closure 0 … 1: one blink at a random moment in each 4 s slot (so 1–7 s
    apart), sometimes a double blink; 80 ms down, 150 ms up."""
    value = 0.0
    slot = math.floor(t / slot_s)
    for k in (slot - 1, slot):
        start = (k + 0.1 + 0.8 * _hash01(seed, k, 1)) * slot_s
        starts = [start, start + 0.35] if _hash01(seed, k, 2) < 0.12 else [start]
        for s in starts:
            d = t - s
            if 0 <= d < 0.08:
                value = max(value, d / 0.08)
            elif 0.08 <= d < 0.23:
                value = max(value, 1 - (d - 0.08) / 0.15)
    return value


def sway(seed: int, t: float) -> tuple[float, float]:
    """Slow head drift, zero-mean: (roll in degrees, dx in px) at amplitude 1."""
    roll = dx = 0.0
    for i, f in enumerate((0.071, 0.113, 0.187)):
        phase = 2 * math.pi * _hash01(seed, i, 3)
        roll += math.sin(2 * math.pi * f * t + phase) / 3
        dx += math.sin(2 * math.pi * f * 0.9 * t + phase + 1.3) / 3
    return roll, 1.5 * dx


def breath(t: float) -> float:
    """Breathing rise and fall of the head, px."""
    return 0.35 * math.sin(2 * math.pi * t / 4.4)


def smile_episode(seed: int, t: float, slot_s: float = 9.0) -> float:
    """Occasional listening smile 0 … 1: about every other 9 s slot, 2.5 s long."""
    slot = math.floor(t / slot_s)
    value = 0.0
    for k in (slot - 1, slot):
        if _hash01(seed, k, 4) < 0.5:
            start = (k + 0.7 * _hash01(seed, k, 5)) * slot_s
            d = (t - start) / 2.5
            if 0 <= d < 1:
                value = max(value, math.sin(math.pi * d) ** 2)
    return value


def bump(elapsed: float, duration: float) -> float:
    """One smooth rise and fall over `duration`."""
    return math.sin(math.pi * elapsed / duration) if 0 <= elapsed < duration else 0.0


# ── the controller ────────────────────────────────────────────────────────────────────


def start_blend(state: MotionState) -> MotionState:
    """Barge-in: from the next frame the mouth blends from where it is to the new target."""
    return replace(state, blend_from=state.mouth, blend_start=state.frame)


def step_block(state: MotionState, feats: BlockFeatures, fps: float, seed: int) -> tuple[list[Pose], MotionState]:
    """Poses for one block of frames and the state after it."""
    poses = []
    smooth = 1 - math.exp(-1 / (0.4 * fps))
    talk, listen = feats.talk, feats.listen
    for i in range(len(feats.talk_weight)):
        f = state.frame
        t = f / fps
        talk_level = state.talk_level + (float(feats.talk_weight[i]) - state.talk_level) * smooth
        listen_level = state.listen_level + (float(feats.listen_weight[i]) - state.listen_level) * smooth

        # mouth: the visemes as they are (coarticulation already smoothed them)
        spread = float(talk.spread[i])
        mouth = (float(talk.open[i]), max(spread, 0.0), max(-spread, 0.0), float(talk.closure[i]))
        blend_from, blend_start = state.blend_from, state.blend_start
        if blend_from is not None:
            k = (f - blend_start + 1) / max(FLUSH_BLEND_S * fps, 1)
            if k >= 1:
                blend_from = None
            else:
                w = k * k * (3 - 2 * k)
                mouth = tuple(a + (b - a) * w for a, b in zip(blend_from, mouth))

        # nods: on stressed syllables while talking, at the user's pauses while listening
        nods, brows = state.nods, state.brows
        last_nod = nods[-1][0] if nods else -10 ** 9
        can_nod = f - last_nod >= NOD_GAP_S * fps
        if talk.emphasis[i] > 0 and can_nod:
            nods += ((f, 1.0 + 1.5 * float(talk.energy[i])),)
            can_nod = False
        user_talking = listen.energy[i] > USER_SPEECH
        speech, silence, pitch = state.speech_frames, state.silence_frames, state.phrase_pitch
        if user_talking:
            speech, silence = speech + 1, 0
            if listen.voiced[i]:
                pitch = (pitch + ((f, float(listen.pitch[i])),))[-round(1.5 * fps):]
        else:
            silence += 1
            if silence == round(PAUSE_S * fps) and speech >= PHRASE_S * fps:
                if can_nod and _hash01(seed, f, 6) < 0.85:
                    nods += ((f, 1.5 + _hash01(seed, f, 7)),)
                if _rising(pitch, f, fps):          # a question-like rise: brows go up
                    brows += ((f, 0.8),)
                speech, pitch = 0, ()
            elif silence > round(PAUSE_S * fps):
                speech = 0
        nods = tuple(n for n in nods if f - n[0] < NOD_S * fps)
        brows = tuple(b for b in brows if f - b[0] < BROW_S * fps)

        # head: sway grows when talking, an attentive tilt when listening, breathing always
        amount = 0.3 + 0.7 * talk_level + 0.3 * listen_level
        roll_sway, dx_sway = sway(seed, t)
        nod = sum(a * bump(f - s, NOD_S * fps) for s, a in nods)
        roll = float(np.clip(amount * roll_sway + 0.8 * listen_level, -MAX_ROLL_DEG, MAX_ROLL_DEG))
        dx = float(np.clip(amount * dx_sway, -MAX_SHIFT_PX, MAX_SHIFT_PX))
        dy = float(np.clip(breath(t) + nod, -MAX_SHIFT_PX, MAX_SHIFT_PX))
        brow = min(1.0, sum(a * bump(f - s, BROW_S * fps) for s, a in brows) + 0.15 * listen_level)
        smile = 0.5 * listen_level * smile_episode(seed, t)

        poses.append(Pose(*mouth, smile=smile, brow=brow, blink=blink(seed, t), dx=dx, dy=dy, roll=roll))
        state = MotionState(frame=f + 1, talk_level=talk_level, listen_level=listen_level, mouth=mouth,
                            blend_from=blend_from, blend_start=blend_start, nods=nods, brows=brows,
                            speech_frames=speech, silence_frames=silence, phrase_pitch=pitch)
    return poses, state


def _rising(pitch: tuple, now: int, fps: float) -> bool:
    """Did the phrase end on a rise (last 0.4 s ≥ 1.5 semitones above the 0.8 s before)?"""
    end = [p for f, p in pitch if now - f <= (PAUSE_S + 0.4) * fps]
    before = [p for f, p in pitch if (PAUSE_S + 0.4) * fps < now - f <= (PAUSE_S + 1.2) * fps]
    return len(end) >= 3 and len(before) >= 3 and np.median(end) - np.median(before) >= 1.5
