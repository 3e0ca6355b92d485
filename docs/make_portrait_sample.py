"""Make docs/sample.mp4 and docs/portrait_strip.png: the portrait backend speaking,
listening, being interrupted (barge-in) and idle, through the streaming runtime.

The MP4's sound is the agent's voice (exactly the audio of each block) mixed with the
user's, so a viewer hears what the face reacts to.

    python docs/make_portrait_sample.py
"""
from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import assets  # noqa: E402
from avatar_engine.portrait.backend import PortraitBackend  # noqa: E402
from avatar_engine.runtime import AvatarRuntime  # noqa: E402
from config import load_config  # noqa: E402
from speech.audio import resample  # noqa: E402
from speech.timeline import LISTEN, TALK  # noqa: E402
from speech.tts import TTS  # noqa: E402

DOCS = Path(__file__).resolve().parent
AGENT = "Hello! I am Ada. Ask me anything, and I will do my best to help you."
USER = "Great. Could you help me plan a short trip to the mountains this weekend?"
CUT_OFF = "Of course! The mountains are lovely in autumn, and the first thing to pack is"
USER_BARGE_IN = "Wait, wait. What about the weather?"


def main() -> None:
    cfg = load_config()
    tts = TTS(cfg.tts)
    backend = PortraitBackend(cfg.avatar.size, cfg.avatar.seed)
    rt = AvatarRuntime.from_config(cfg.avatar, backend, assets.default_portrait(), cfg.audio.sample_rate)
    rate, per_block = rt.sample_rate, rt.block_samples
    blocks, mic = [], []

    def run(n_blocks: int, user: np.ndarray | None = None) -> None:
        for k in range(n_blocks):
            chunk = np.zeros(per_block, np.float32)
            if user is not None and k * per_block < len(user):
                part = user[k * per_block:(k + 1) * per_block]
                chunk[:len(part)] = part
                rt.push_listen(chunk, rate, speaking=True)
            blocks.append(rt.step())
            mic.append(chunk)

    def say(text: str):
        s = tts.synthesize(text)
        rt.push_talk(s.audio, s.sample_rate, s.phonemes)
        return s

    def hear(text: str) -> np.ndarray:
        s = tts.synthesize(text)
        return resample(s.audio, s.sample_rate, rate)

    run(1)                                              # idle
    reply = say(AGENT)
    run(int(np.ceil(reply.seconds * rate / per_block)) + 1)
    user = hear(USER)
    run(int(np.ceil(len(user) / per_block)) + 1, user)  # the user talks: the avatar listens
    say(CUT_OFF)
    run(3)                                              # the reply starts ...
    barge_in = hear(USER_BARGE_IN)
    rt.push_listen(barge_in[:per_block], rate, speaking=True)
    rt.flush()                                          # ... and the user cuts in
    run(int(np.ceil(len(barge_in) / per_block)), barge_in)
    run(3)                                              # idle again

    frames = np.concatenate([b.frames for b in blocks])
    voice = np.concatenate([b.audio for b in blocks])
    sound = np.clip(voice + np.concatenate(mic), -1, 1)
    write_mp4(DOCS / "sample.mp4", frames, sound, rt.fps, rate)
    mask = np.concatenate([b.mask for b in blocks])
    write_strip(DOCS / "portrait_strip.png", frames, mask, backend)
    print(f"wrote {DOCS / 'sample.mp4'} ({len(frames) / rt.fps:.1f} s) and {DOCS / 'portrait_strip.png'}")


def write_mp4(path: Path, frames: np.ndarray, sound: np.ndarray, fps: int, rate: int) -> None:
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "26", "preset": "slow"}
        audio = out.add_stream("aac", rate=rate)
        audio.layout = "mono"
        for f in frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(video.encode())
        pcm = (sound * 32767).astype(np.int16)
        step = 1024
        for i in range(0, len(pcm), step):
            frame = av.AudioFrame.from_ndarray(pcm[None, i:i + step], format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
            out.mux(audio.encode(frame))
        out.mux(audio.encode())


def write_strip(path: Path, frames: np.ndarray, mask: np.ndarray, backend) -> None:
    """Frames that show each behaviour, labelled, side by side."""
    rig = backend.rig
    loop = rig.rest[rig.inner_loop]
    (x0, y0), (x1, y1) = np.floor(loop.min(axis=0)).astype(int) - 4, np.ceil(loop.max(axis=0)).astype(int) + 30
    dark = (frames[:, y0:y1, x0:x1].mean(axis=-1) < 60).sum(axis=(1, 2))
    eyes = rig.rest[36:48]
    (ex0, ey0), (ex1, ey1) = eyes.min(axis=0).astype(int) - 3, eyes.max(axis=0).astype(int) + 3
    # closed lids cover the dark iris: the eye region gets lighter
    lids = frames[:, ey0:ey1, ex0:ex1].mean(axis=(1, 2, 3))
    eyes_open = lids < np.median(lids) + 2                # the other tiles show open eyes
    talk, listen = np.flatnonzero((mask == TALK) & eyes_open), np.flatnonzero((mask == LISTEN) & eyes_open)
    by_open = talk[np.argsort(dark[talk])]
    picks = [(int(by_open[-1]), "speaking: wide"), (int(by_open[len(by_open) * 2 // 3]), "speaking"),
             (int(by_open[0]), "speaking: m/b/p"), (int(listen[len(listen) // 3]), "listening"),
             (int(listen[len(listen) * 2 // 3]), "listening"), (int(np.argmax(lids)), "blink"),
             (len(frames) - 1, "idle = reference")]
    tiles = []
    for i, label in picks:
        tile = cv2.resize(frames[i, 90:460, 71:441], (280, 280), interpolation=cv2.INTER_AREA)
        bar = np.full((34, 280, 3), 255, np.uint8)
        cv2.putText(bar, f"{label}  (t={i / 25:.2f}s)", (6, 23), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1,
                    cv2.LINE_AA)
        tiles.append(np.vstack([tile, bar]))
    cv2.imwrite(str(path), np.hstack(tiles)[:, :, ::-1])


if __name__ == "__main__":
    main()
