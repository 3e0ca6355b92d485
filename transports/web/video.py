"""The avatar's video on the wire, in the codec `server.video_codec` names.

vp8: aiortc encodes the frames itself (libvpx).
h264: libx264 at preset ultrafast + tune zerolatency, encoded here and handed to aiortc as
packets. aiortc's own H.264 encoder leaves libx264 at its default preset (medium) and
costs more CPU than VP8 (bench/video_cpu.py); a track may give aiortc pre-encoded
`av.Packet`s, which its sender only packetizes, so no aiortc internals are touched.
Zero-latency x264 has no lookahead and no B-frames: each frame comes out at once as one
packet carrying the frame's own timestamp, so picture and voice stay in step as with VP8.

The codec is fixed with `setCodecPreferences`, which aiortc applies when it reads the
browser's offer: `send_video` comes before `setRemoteDescription`.
"""
from __future__ import annotations

import asyncio
from collections import deque
from fractions import Fraction

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

MIME = {"vp8": "video/VP8", "h264": "video/H264"}
H264_BITRATE = 1_000_000   # aiortc's own H.264 target
# aiortc answers a browser's keyframe request (PLI) only for frames it encodes itself;
# a keyframe every 2 s bounds how long a lost packet spoils the picture.
KEYFRAME_EVERY_S = 2.0


class VideoCodecError(ValueError):
    """The browser cannot receive the configured codec; one line for the page."""


class H264Track(MediaStreamTrack):
    """`source`'s frames as H.264 packets, libx264 ultrafast + zerolatency."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack, fps: int):
        super().__init__()
        self._source, self._fps = source, fps
        self._codec: av.CodecContext | None = None
        self._packets: deque[av.Packet] = deque()

    def encode(self, frame: av.VideoFrame) -> list[av.Packet]:
        if self._codec is None:
            codec = av.CodecContext.create("libx264", "w")
            codec.width, codec.height = frame.width, frame.height
            codec.bit_rate, codec.pix_fmt = H264_BITRATE, "yuv420p"
            codec.framerate, codec.time_base = Fraction(self._fps, 1), frame.time_base
            codec.gop_size = round(KEYFRAME_EVERY_S * self._fps)
            # level 3.1 Baseline: the profile-level-ids aiortc offers (42001f, 42e01f)
            codec.options = {"preset": "ultrafast", "tune": "zerolatency", "level": "31"}
            codec.profile = "Baseline"
            self._codec = codec
        return list(self._codec.encode(frame.reformat(format="yuv420p")))

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        while not self._packets:
            frame = await self._source.recv()
            # off the event loop, as aiortc runs its own encoders
            self._packets.extend(await asyncio.get_running_loop().run_in_executor(None, self.encode, frame))
        return self._packets.popleft()

    def stop(self) -> None:
        super().stop()
        self._source.stop()


def send_video(pc: RTCPeerConnection, track: MediaStreamTrack, codec: str, fps: int, offer_sdp: str) -> None:
    """Send `track` on `pc` in `codec` (vp8 | h264); before the offer is set as the
    remote description. Raises VideoCodecError when the offer cannot receive it."""
    mime = MIME[codec]
    if f"{codec}/90000" not in offer_sdp.lower():
        raise VideoCodecError(f"this browser cannot receive {codec.upper()} video; "
                              f"set server.video_codec to {'vp8' if codec == 'h264' else 'h264'} in config.yaml")
    sent = H264Track(track, fps) if codec == "h264" else track
    transceiver = pc.addTransceiver(sent, direction="sendonly")
    transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                     if c.mimeType.lower() in (mime.lower(), "video/rtx")])
