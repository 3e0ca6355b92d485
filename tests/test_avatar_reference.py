"""Bad references: each problem is fixed and logged, or named in one line."""
from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

import assets
from avatar_engine.backend import Block
from avatar_engine.portrait.backend import PortraitBackend
from avatar_engine.reference import MAX_FILE_MB, ReferenceImageError, find_face, frame_portrait, load_reference

ASTRONAUT = assets.default_portrait()


def idle_block(n=2):
    return Block(index=0, t0=0.0, fps=25, sample_rate=16000, talk_audio=np.zeros(n * 640, np.float32),
                 listen_audio=np.zeros(n * 640, np.float32), mask=np.zeros(n, np.uint8))


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello, I am text")
    with pytest.raises(ReferenceImageError, match="not an image"):
        load_reference(path)
    with pytest.raises(ReferenceImageError, match="no such file"):
        load_reference(tmp_path / "missing.png")
    with pytest.raises(ReferenceImageError, match="shape"):
        load_reference(np.zeros((100, 100, 5), np.uint8))


def test_files_rgba_grey_and_16_bit_become_rgb(tmp_path):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), ASTRONAUT[:, :, ::-1])
    np.testing.assert_array_equal(load_reference(path), ASTRONAUT)
    rgba = np.dstack([ASTRONAUT, np.full(ASTRONAUT.shape[:2], 255, np.uint8)])
    rgba[:10, :10, 3] = 0
    img = load_reference(rgba)
    assert img.shape == ASTRONAUT.shape and (img[:10, :10] == 128).all()   # transparent → grey
    grey = load_reference(cv2.cvtColor(ASTRONAUT, cv2.COLOR_RGB2GRAY))
    assert grey.shape == ASTRONAUT.shape and (grey[..., 0] == grey[..., 2]).all()
    deep = load_reference(ASTRONAUT.astype(np.uint16) * 257)
    np.testing.assert_array_equal(deep, ASTRONAUT)


def test_too_large_is_downscaled(caplog):
    big = cv2.resize(ASTRONAUT, (4000, 3000))
    with caplog.at_level(logging.WARNING):
        img = load_reference(big)
    assert max(img.shape[:2]) == 2048
    assert "downscaled" in caplog.text


def test_no_face_is_a_clear_error_or_a_centred_region():
    flat = np.full((300, 400, 3), 90, np.uint8)
    with pytest.raises(ReferenceImageError, match="no face found.*allow_no_face"):
        find_face(flat)
    backend = PortraitBackend(size=256, allow_no_face=True)
    backend.reset(flat)
    frames = backend.render(idle_block())
    assert frames.shape == (2, 256, 256, 3)


def test_several_faces_take_the_largest(caplog):
    small = cv2.resize(ASTRONAUT, (256, 256))
    canvas = np.full((512, 800, 3), 200, np.uint8)
    canvas[:, :512] = ASTRONAUT
    canvas[128:384, 530:786] = small
    with caplog.at_level(logging.WARNING):
        face = find_face(canvas)
    assert "2 faces" in caplog.text and "largest" in caplog.text
    assert face.landmarks[:, 0].max() < 512                   # the big astronaut, on the left


def test_face_at_the_border_is_framed_by_padding():
    cut = np.ascontiguousarray(ASTRONAUT[:, 150:])             # the face now touches the left edge
    face = find_face(cut)
    framed, moved = frame_portrait(cut, face, 384)
    assert framed.shape == (384, 384, 3)
    assert moved.landmarks[:, 0].min() > 0
    assert (framed[:, :5] > 0).any(axis=-1).mean() > 0.9       # mirrored photo, not black bars
    backend = PortraitBackend(size=384)
    backend.reset(cut)
    assert backend.render(idle_block()).shape == (2, 384, 384, 3)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height, with one tiny (truncated) data chunk:
    what a decompression bomb looks like before it is decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


@pytest.mark.parametrize("data, says", [
    (b"", "empty file"),
    (b"GIF89a but not really", "not an image"),
    (b"\xff\xd8" + bytes(MAX_FILE_MB * 2**20), f"under {MAX_FILE_MB} MB"),
    (png_header_only(30000, 30000), "megapixels"),
])
def test_bad_files_are_one_sentence_naming_the_problem(tmp_path, data, says):
    for source in (data, tmp_path / "upload.png"):
        if isinstance(source, Path):
            source.write_bytes(data)
        with pytest.raises(ReferenceImageError) as e:
            load_reference(source, name="upload.png")
        message = str(e.value)
        assert says in message and "upload.png" in message and "\n" not in message
        assert "assert" not in message.lower() and "cv::" not in message


def test_a_photo_without_a_face_is_one_sentence(tmp_path):
    flat = cv2.imencode(".png", np.full((300, 400, 3), 90, np.uint8))[1].tobytes()
    with pytest.raises(ReferenceImageError, match="no face found") as e:
        find_face(load_reference(flat, name="wall.png"))
    assert "\n" not in str(e.value)
