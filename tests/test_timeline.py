"""Speaker-turn timeline → per-frame talk/listen mask."""
import numpy as np

from speech.timeline import AGENT, BOTH, IDLE, LISTEN, TALK, USER, SpeakerTimeline, talk_listen


def test_mask_marks_the_right_frames():
    tl = SpeakerTimeline()
    tl.start(USER, 0.0)
    tl.stop(USER, 1.0)          # user speaks 0–1 s
    tl.add(AGENT, 0.9, 2.0)     # agent plays 0.9–2 s (overlap 0.9–1.0)
    m = tl.mask(0.0, 60, fps=25)
    # frame i = [i/25, (i+1)/25); coverage ≥ half a frame counts
    assert (m[:22] & LISTEN).all() and not (m[25:] & LISTEN).any()
    assert (m[23:50] & TALK).all() and not (m[:22] & TALK).any() and not (m[50:] & TALK).any()
    assert set(m[22:25]) == {BOTH}
    assert (m[50:] == IDLE).all()
    talk, listen = talk_listen(m)
    assert talk.dtype == np.float32 and talk.sum() == 50 - 22 and listen.sum() == 25


def test_half_frame_rule_and_open_intervals():
    tl = SpeakerTimeline()
    tl.start(USER, 0.02)        # covers 0.02–0.04 of frame 0 = exactly half
    m = tl.mask(0.0, 3, fps=25, now=0.1)
    assert list(m) == [LISTEN, LISTEN, LISTEN]
    assert list(tl.mask(0.0, 4, fps=25, now=0.1))[3] == IDLE


def test_contiguous_played_chunks_form_one_interval_and_memory_is_bounded():
    tl = SpeakerTimeline(max_intervals=8)
    for i in range(100):
        tl.add(AGENT, i * 0.2, i * 0.2 + 0.2)
    assert tl.intervals(AGENT) == [(0.0, 20.0)]
    for i in range(1000):
        tl.start(USER, 100 + i)
        tl.stop(USER, 100.5 + i)
    assert len(tl.intervals(USER)) == 8
    assert tl.is_speaking(USER, 1099.2) and not tl.is_speaking(USER, 1099.7)
