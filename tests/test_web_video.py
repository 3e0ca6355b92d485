"""The avatar's video codec on the wire (transports/web/video.py): the answer to a
browser's offer carries only the configured codec, H.264 comes out of libx264 one packet
per frame at the frame's own timestamp (no delay between picture and voice), and an
offer that cannot take the codec is refused in one line."""
from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from transports.web.tracks import AvatarVideoTrack
from transports.web.video import H264Track, VideoCodecError, send_video

FPS = 25


def avatar(frames: int = 0) -> AvatarVideoTrack:
    track = AvatarVideoTrack(np.zeros((64, 64, 3), np.uint8), FPS, max_frames=max(frames, 1))
    rng = np.random.default_rng(0)
    if frames:
        track.push(rng.integers(0, 255, (frames, 64, 64, 3), dtype=np.uint8))
    return track


async def browser_offer() -> str:
    """An offer like the page's (video to receive), from aiortc's own offerer."""
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def answer_video_codecs(codec: str, offer: str) -> set[str]:
    pc = RTCPeerConnection()
    try:
        send_video(pc, avatar(), codec, FPS, offer)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        video = pc.localDescription.sdp.split("m=video", 1)[1]
        return set(re.findall(r"a=rtpmap:\d+ ([\w]+)/90000", video))
    finally:
        await pc.close()


@pytest.mark.parametrize("codec, names", [("vp8", {"VP8", "rtx"}), ("h264", {"H264", "rtx"})])
def test_the_answer_offers_only_the_configured_codec(codec, names):
    async def main():
        return await answer_video_codecs(codec, await browser_offer())
    assert asyncio.run(main()) == names


def test_an_offer_without_the_codec_is_refused_in_one_line():
    async def main():
        offer = await browser_offer()
        no_h264 = "\n".join(line for line in offer.split("\n") if "H264" not in line)
        with pytest.raises(VideoCodecError) as e:
            await answer_video_codecs("h264", no_h264)
        return str(e.value)
    message = asyncio.run(main())
    assert message == "this browser cannot receive H264 video; set server.video_codec to vp8 in config.yaml"


def test_h264_gives_one_packet_per_frame_at_its_own_timestamp_and_starts_on_a_keyframe():
    async def main():
        source = avatar(10)
        track = H264Track(source, FPS)
        packets = []
        for _ in range(10):
            packets.append(await track.recv())
        track.stop()
        assert source.readyState == "ended"
        return packets
    packets = asyncio.run(main())
    assert [p.pts for p in packets] == [round(i * 90000 / FPS) for i in range(10)]
    assert packets[0].is_keyframe and not any(p.is_keyframe for p in packets[1:])
    assert all(p.time_base == packets[0].time_base for p in packets) and packets[0].time_base.denominator == 90000
