"""The web call's video path: CPU per call for each way of sending the avatar.

For each option the portrait backend renders `--seconds` of speaking video at the
stream size (Piper speech with phonemes, as in a reply) and aiortc's own encoder for
the codec encodes every frame at 25 fps, as `transports/web/tracks.py` hands them over. Printed:
the CPU time per second of video, as % of one core (render, encode, total), and the
total's ratio to today's path (VP8 at 512×512). Encoders run in this process's threads;
CPU time (not wall time) is counted, so other load on a shared machine does not
inflate it.

    python bench/video_cpu.py [--seconds 10]
"""
from __future__ import annotations

import argparse
import sys
import time
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
from speech.tts import TTS  # noqa: E402

TEXT = "Good evening and welcome. Tonight we look at the moon, and ask why it always shows us the same face."
VIDEO_CLOCK = 90000
# (label, encoder, stream size): today's default first, the reference. "x264 ultrafast":
# libx264 through PyAV with preset ultrafast + tune zerolatency at aiortc's 1 Mbit/s
# (aiortc's own H.264 encoder uses the default preset, medium, with zerolatency).
OPTIONS = [("VP8 512", "video/VP8", 512), ("H.264 512", "video/H264", 512), ("x264uf 512", "ultrafast", 512),
           ("VP8 384", "video/VP8", 384), ("x264uf 384", "ultrafast", 384),
           ("VP8 256", "video/VP8", 256), ("x264uf 256", "ultrafast", 256)]
H264_BITRATE = 1_000_000


class UltrafastX264:
    """libx264 at the lightest settings, with aiortc's encoder interface."""

    def __init__(self):
        self.codec = None

    def encode(self, frame: av.VideoFrame):
        if self.codec is None:
            self.codec = av.CodecContext.create("libx264", "w")
            self.codec.width, self.codec.height = frame.width, frame.height
            self.codec.bit_rate, self.codec.pix_fmt = H264_BITRATE, "yuv420p"
            self.codec.framerate, self.codec.time_base = Fraction(25, 1), Fraction(1, 25)
            self.codec.options = {"preset": "ultrafast", "tune": "zerolatency", "level": "31"}
            self.codec.profile = "Baseline"
        frame.pict_type = av.video.frame.PictureType.NONE
        return [bytes(p) for p in self.codec.encode(frame.reformat(format="yuv420p"))], frame.pts


def encoder(mime: str):
    """aiortc's encoder for a codec, at the settings it uses in a call."""
    if mime == "ultrafast":
        return UltrafastX264()
    from aiortc.codecs import get_encoder
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters
    params = {"packetization-mode": "1", "level-asymmetry-allowed": "1",
              "profile-level-id": "42e01f"} if mime == "video/H264" else {}
    return get_encoder(RTCRtpCodecParameters(mimeType=mime, clockRate=VIDEO_CLOCK, parameters=params))


def render(size: int, seconds: float, speech) -> tuple[list[np.ndarray], float]:
    """Speaking frames at `size` and the CPU seconds the render took."""
    cfg = load_config(overrides={"avatar": {"size": size}})
    rt = AvatarRuntime.from_config(cfg.avatar, PortraitBackend(size, cfg.avatar.seed), assets.default_portrait(),
                                   cfg.audio.sample_rate)
    rt.step()  # warm-up
    for _ in range(int(seconds / speech.seconds) + 1):
        rt.push_talk(speech.audio, speech.sample_rate, speech.phonemes)
    frames, cpu = [], 0.0
    while len(frames) < seconds * rt.fps:
        c = time.process_time()
        frames += list(rt.step().frames)
        cpu += time.process_time() - c
    return frames, cpu


def encode(mime: str, frames: list[np.ndarray], fps: int) -> tuple[float, int]:
    """(CPU seconds, bytes) to encode `frames` as a call does."""
    enc = encoder(mime)
    cpu, size = 0.0, 0
    for i, f in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(f, format="rgb24")
        vf.pts, vf.time_base = round(i * VIDEO_CLOCK / fps), Fraction(1, VIDEO_CLOCK)
        c = time.process_time()
        packets, _ = enc.encode(vf)
        cpu += time.process_time() - c
        size += sum(len(p) for p in packets)
    return cpu, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="video seconds per option")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    cfg = load_config()
    speech = TTS(cfg.tts).synthesize(TEXT)
    fps = cfg.avatar.fps
    rendered = {}
    print(f"{'option':<11} {'render %':>9} {'encode %':>9} {'total %':>8} {'kbit/s':>7} {'vs VP8 512':>10}")
    reference = None
    for label, mime, size in OPTIONS:
        if size not in rendered:
            rendered[size] = render(size, args.seconds, speech)
        frames, render_cpu = rendered[size]
        encode_cpu, n_bytes = encode(mime, frames, fps)
        seconds = len(frames) / fps
        r, e = 100 * render_cpu / seconds, 100 * encode_cpu / seconds
        reference = reference or r + e
        print(f"{label:<11} {r:9.1f} {e:9.1f} {r + e:8.1f} {8 * n_bytes / seconds / 1000:7.0f} "
              f"{(r + e) / reference:10.2f}")
    print("% = CPU seconds per second of video, of one core; the rest of a call (VAD, ASR, LLM, TTS) is not included")


if __name__ == "__main__":
    main()
