"""The portrait backend through the runtime, measured from rendered pixels.

Mouth openness = dark pixels (the cavity) in a box around the mouth; head motion =
phase correlation of the eyes-and-nose patch against the reference.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

import assets
from avatar_engine.portrait.backend import PortraitBackend
from avatar_engine.portrait.motion import Pose
from avatar_engine.backend import Block
from avatar_engine.runtime import AvatarRuntime
from speech.audio import resample
from speech.timeline import LISTEN, TALK

RATE, FPS, PER_BLOCK = 16000, 25, 12
SENTENCE = "Well, that is a great question, and honestly I think the answer depends on you."
USER = "Could you tell me more about what you would like to do this weekend? Maybe. Or not."


@pytest.fixture(scope="module")
def sentence(tts):
    return tts.synthesize(SENTENCE)


@pytest.fixture(scope="module")
def user_speech(tts):
    return tts.synthesize(USER)


def runtime(seed: int = 0) -> tuple[AvatarRuntime, PortraitBackend]:
    backend = PortraitBackend(size=512, seed=seed)
    return AvatarRuntime(backend, assets.default_portrait(), fps=FPS, frames_per_block=PER_BLOCK,
                         sample_rate=RATE), backend


def mouth_box(backend) -> tuple[slice, slice]:
    rig = backend.rig
    loop = rig.rest[rig.inner_loop]
    (x0, y0), (x1, y1) = np.floor(loop.min(axis=0)).astype(int) - 4, np.ceil(loop.max(axis=0)).astype(int) + 4
    return slice(y0, y1 + int(np.linalg.norm(rig.jaw_drop))), slice(x0, x1)


def openness(frames: np.ndarray, backend) -> np.ndarray:
    """Dark pixels (the mouth cavity) per frame."""
    ys, xs = mouth_box(backend)
    return (frames[:, ys, xs].mean(axis=-1) < 60).sum(axis=(1, 2))


def head_shift(frames: np.ndarray, backend) -> np.ndarray:
    """(n, 2) shift of the eyes-and-nose patch against the reference, px."""
    lm = backend.rig.rest[:68]
    (x0, y0), (x1, y1) = lm[17:36].min(axis=0).astype(int) - 10, lm[17:36].max(axis=0).astype(int) + 10
    ref = cv2.cvtColor(backend.reference_frame[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float64)
    window = cv2.createHanningWindow(ref.shape[::-1], cv2.CV_64F)
    return np.array([cv2.phaseCorrelate(ref, cv2.cvtColor(f[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float64),
                                        window)[0] for f in frames])


def play(rt: AvatarRuntime, n_blocks: int):
    blocks = [rt.step() for _ in range(n_blocks)]
    return blocks, np.concatenate([b.frames for b in blocks])


@pytest.mark.parametrize("with_phonemes", [True, False], ids=["piper-phonemes", "audio-only"])
def test_mouth_follows_the_speech_envelope(sentence, with_phonemes):
    # audio-only: an omni model's voice comes without phoneme timings
    rt, backend = runtime()
    rt.push_talk(sentence.audio, sentence.sample_rate, sentence.phonemes if with_phonemes else ())
    blocks, frames = play(rt, int(np.ceil(sentence.seconds * FPS / PER_BLOCK)))
    mask = np.concatenate([b.mask for b in blocks])
    audio = np.concatenate([b.audio for b in blocks])
    per_frame = audio.reshape(len(frames), -1)
    envelope = np.sqrt((per_frame ** 2).mean(axis=1))          # RMS of the audio each frame shows
    talking = mask == TALK
    r = np.corrcoef(openness(frames, backend)[talking], envelope[talking])[0, 1]
    assert r >= 0.6, f"mouth openness vs talk envelope r = {r:.2f}"


def test_listening_keeps_the_mouth_closed_while_the_head_moves(user_speech):
    rt, backend = runtime()
    rest_open = openness(backend.reference_frame[None], backend)[0]
    mic = np.resize(user_speech.audio, int(8 * user_speech.sample_rate))
    chunk = PER_BLOCK * user_speech.sample_rate // FPS
    blocks = []
    for k in range(len(mic) // chunk):
        rt.push_listen(mic[k * chunk:(k + 1) * chunk], user_speech.sample_rate, speaking=True)
        blocks.append(rt.step())
    frames = np.concatenate([b.frames for b in blocks])
    assert all((b.mask == LISTEN).all() for b in blocks)
    # closed: never more than a sliver of the cavity a half-open mouth shows (~500 px)
    assert openness(frames, backend).max() <= rest_open + 40
    shift = head_shift(frames, backend)
    assert np.ptp(shift[:, 1]) > 1.0                            # nods / breathing: it moves
    # within the 2-D motion bounds: nod/shift ≤ 3 px, roll ≤ 2° about the neck
    eyes_above_neck = backend.rig.pivot[1] - backend.rig.rest[36:48, 1].mean()
    assert np.abs(shift[:, 1]).max() <= 3.5
    assert np.abs(shift[:, 0]).max() <= 3.5 + eyes_above_neck * np.tan(np.radians(2))


def test_frames_return_to_the_reference_after_speech(sentence):
    rt, backend = runtime()
    rt.push_talk(sentence.audio, sentence.sample_rate, sentence.phonemes)
    n_talk = int(np.ceil(sentence.seconds * FPS / PER_BLOCK))
    _, frames = play(rt, n_talk + 6)                            # then ~3 s of silence
    ref = backend.reference_frame.astype(np.float32)
    error = np.abs(frames.astype(np.float32) - ref).mean(axis=(1, 2, 3))
    ys, xs = mouth_box(backend)
    mouth_error = np.abs(frames[:, ys, xs].astype(np.float32) - ref[ys, xs]).mean(axis=(1, 2, 3))
    tail = slice(-2 * PER_BLOCK, None)                          # the last ~1 s
    assert np.median(error[tail]) < 1.5, f"frame error {np.median(error[tail]):.2f} grey levels"
    assert np.median(mouth_error[tail]) < 3.0
    assert error[:n_talk * PER_BLOCK].max() > 3 * np.median(error[tail])   # it did move while talking


def test_flush_listens_within_one_block_without_a_jump(sentence, user_speech):
    rt, backend = runtime()
    rt.push_talk(sentence.audio, sentence.sample_rate, sentence.phonemes)
    blocks, frames = play(rt, 3)
    rt.push_listen(user_speech.audio[:PER_BLOCK * user_speech.sample_rate // FPS], user_speech.sample_rate)
    rt.flush()
    after = rt.step()
    assert (after.mask == LISTEN).all() and not after.audio.any()
    rest_open = openness(backend.reference_frame[None], backend)[0]
    shown = openness(after.frames, backend)
    assert shown[-1] <= rest_open + 40                          # closed by the block's end
    diff = lambda a, b: np.abs(a.astype(np.float32) - b.astype(np.float32)).mean()
    steps = [diff(frames[i], frames[i + 1]) for i in range(len(frames) - 1)]
    assert diff(frames[-1], after.frames[0]) <= max(steps)     # no bigger than a talking step


def test_same_seed_same_face_and_it_blinks():
    frames = {}
    for seed in (3, 3, 4):
        rt, backend = runtime(seed)
        frames.setdefault(seed, []).append(play(rt, 16)[1])    # ~7.7 s idle
    np.testing.assert_array_equal(frames[3][0], frames[3][1])
    assert not np.array_equal(frames[3][0], frames[4][0])
    lm = backend.rig.rest[:68]
    (x0, y0), (x1, y1) = lm[36:48].min(axis=0).astype(int) - 3, lm[36:48].max(axis=0).astype(int) + 3
    eyes = frames[3][0][:, y0:y1, x0:x1].astype(np.float32)
    change = np.abs(eyes - backend.reference_frame[y0:y1, x0:x1]).mean(axis=(1, 2, 3))
    assert (change > 8).sum() >= 2                              # lids came down at least once
    assert np.median(change) < 4                                # and the eyes are open otherwise


def test_closed_lips_show_no_teeth():
    _, backend = runtime()
    frame = backend.reference_frame.copy()
    backend.draw(Pose(closure=1.0), frame)
    # the line where the closed lips meet, 3 px wide
    rig = backend.rig
    closed = (rig.rest + rig.basis[3])[rig.inner_loop]            # basis 3: closure
    seam = np.zeros(frame.shape[:2], np.uint8)
    cv2.polylines(seam, [np.round(closed * 4).astype(np.int32)], True, 1, 3, cv2.LINE_8, 2)
    teeth = lambda img: ((img.min(axis=-1) > 170) & (np.ptp(img, axis=-1) < 40) & (seam > 0)).sum()
    assert teeth(backend.reference_frame) > 50                  # the astronaut smiles with teeth
    assert teeth(frame) == 0


def test_open_mouth_shows_a_dark_cavity_and_teeth():
    _, backend = runtime()
    frame = backend.reference_frame.copy()
    backend.draw(Pose(open=1.0), frame)
    assert openness(frame[None], backend)[0] > openness(backend.reference_frame[None], backend)[0] + 500


def test_a_rewound_block_renders_what_the_viewer_would_have_seen(sentence):
    # The runtime drops rendered-ahead blocks on barge-in and asks for the same time
    # again; the backend resumes from the state it had there.
    _, backend = runtime()
    audio = resample(sentence.audio, sentence.sample_rate, RATE)
    per = PER_BLOCK * RATE // FPS

    def block(k):
        return Block(index=k, t0=k * PER_BLOCK / FPS, fps=FPS, sample_rate=RATE,
                     talk_audio=audio[k * per:(k + 1) * per], listen_audio=np.zeros(per, np.float32),
                     mask=np.full(PER_BLOCK, TALK, np.uint8), phonemes=sentence.phonemes)

    first = [backend.render(block(k)) for k in range(3)]
    np.testing.assert_array_equal(backend.render(block(1)), first[1])
    np.testing.assert_array_equal(backend.render(block(2)), first[2])


def test_listener_nods_in_the_users_pauses():
    # The user talks in 1.2 s phrases with 1 s pauses; the listener nods in the pauses.
    t = np.arange(int(1.2 * RATE)) / RATE
    phrase = sum(0.2 / k * np.sin(2 * np.pi * 150 * k * t) for k in (1, 2, 3)).astype(np.float32)
    mic = np.concatenate([np.concatenate([phrase, np.zeros(RATE, np.float32)]) for _ in range(3)])
    rt, backend = runtime()
    per = PER_BLOCK * RATE // FPS
    blocks = []
    for k in range(len(mic) // per):
        rt.push_listen(mic[k * per:(k + 1) * per], RATE, speaking=True)
        blocks.append(rt.step())
    dy = head_shift(np.concatenate([b.frames for b in blocks]), backend)[:, 1]
    baseline = np.median(dy)
    nods = 0
    for pause in (1.2, 3.4, 5.6):
        window = dy[int((pause + 0.25) * FPS):int((pause + 0.9) * FPS)]
        nods += window.max() - baseline > 1.0
    assert nods >= 2, f"nods in {nods} of 3 pauses"
