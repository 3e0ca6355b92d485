"""The reference portrait: load any image a user hands us, find the face, frame it.

Every problem becomes one line that names it (`ReferenceImageError`):
an empty file, not an image, a file over MAX_FILE_MB, more than MAX_PIXELS (checked in
the header, before anything is decoded), too small; no face found (unless `allow_no_face`, which animates a face
layout placed in the centre). Fixable problems are fixed and logged: too large
(downscaled), RGBA (composited on grey), greyscale or 16-bit (converted), several faces
(the largest wins), a face near the border (the framing pads by mirroring).
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

import assets

log = logging.getLogger(__name__)

MAX_SIDE = 2048        # larger references are downscaled to this long side
MIN_SIDE = 64
MAX_FILE_MB = 20       # a portrait photo is a few MB; anything bigger is a mistake
MAX_PIXELS = 50_000_000  # decoding more would take GBs of memory (a "decompression bomb")
DETECT_SIDE = 640      # faces are searched on a copy this large (speed)

# Where the 68 dlib landmarks sit in a unit face box: the astronaut's, levelled,
# made symmetric and with closed lips. Animates a centred region when a reference has
# no detectable face (allow_no_face).
_CANONICAL_68 = np.array([
    [0.000, 0.183], [0.016, 0.312], [0.032, 0.430], [0.054, 0.559], [0.097, 0.678],
    [0.167, 0.780], [0.268, 0.866], [0.376, 0.942], [0.500, 0.958], [0.624, 0.942],
    [0.732, 0.866], [0.833, 0.780], [0.903, 0.678], [0.946, 0.559], [0.968, 0.430],
    [0.984, 0.312], [1.000, 0.183], [0.075, 0.081], [0.134, 0.011], [0.220, 0.000],
    [0.306, 0.011], [0.392, 0.038], [0.608, 0.038], [0.694, 0.011], [0.780, 0.000],
    [0.866, 0.011], [0.925, 0.081], [0.500, 0.139], [0.500, 0.237], [0.500, 0.322],
    [0.500, 0.408], [0.392, 0.457], [0.446, 0.473], [0.500, 0.484], [0.554, 0.473],
    [0.608, 0.457], [0.177, 0.151], [0.231, 0.108], [0.306, 0.108], [0.365, 0.173],
    [0.295, 0.178], [0.226, 0.178], [0.635, 0.173], [0.694, 0.108], [0.769, 0.108],
    [0.823, 0.151], [0.774, 0.178], [0.705, 0.178], [0.258, 0.549], [0.344, 0.543],
    [0.435, 0.543], [0.500, 0.559], [0.565, 0.543], [0.656, 0.543], [0.742, 0.549],
    [0.661, 0.662], [0.570, 0.710], [0.500, 0.721], [0.430, 0.710], [0.339, 0.662],
    [0.291, 0.565], [0.436, 0.618], [0.500, 0.629], [0.564, 0.618], [0.709, 0.565],
    [0.564, 0.618], [0.500, 0.629], [0.436, 0.618],
], np.float32)


class ReferenceImageError(ValueError):
    """A reference image that cannot be animated, phrased as one line for the user."""


@dataclass(frozen=True)
class Face:
    landmarks: np.ndarray   # (68, 2) float32, x y pixels in the image it was found in
    detected: bool          # False: a centred stand-in layout (allow_no_face)


def load_reference(source, name: str | None = None) -> np.ndarray:
    """A path, encoded bytes or an array → (H, W, 3) uint8 RGB, downscaled to MAX_SIDE.
    `name`: how errors call it (an uploaded file's name); default the path or type."""
    name = f"'{name}'" if name else _describe(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ReferenceImageError(f"reference image {name}: no such file")
        _check_file_size(path.stat().st_size, name)
        source = path.read_bytes()
    if isinstance(source, (bytes, bytearray)):
        image = _bgr_to_rgb(_decode(bytes(source), name))
    else:
        image = np.asarray(source)
    return _normalize(image, name)


def _decode(data: bytes, name: str) -> np.ndarray:
    """Encoded bytes → the decoded array (BGR/BGRA/grey as OpenCV gives it), with the
    size limits checked first: OpenCV would assert on empty input and allocate
    whatever a header claims."""
    if not data:
        raise ReferenceImageError(f"reference {name} is an empty file; choose a PNG or JPEG photo")
    _check_file_size(len(data), name)
    pixels = _header_pixels(data)
    if pixels is not None and pixels > MAX_PIXELS:
        raise ReferenceImageError(f"reference {name} is over {MAX_PIXELS // 1_000_000} megapixels; "
                                  "use a smaller photo")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ReferenceImageError(f"reference {name} is not an image OpenCV can read (use PNG or JPEG)")
    return image


def _check_file_size(n_bytes: int, name: str) -> None:
    if n_bytes > MAX_FILE_MB * 2**20:
        raise ReferenceImageError(f"reference {name} is {n_bytes / 2**20:.0f} MB; use a photo under {MAX_FILE_MB} MB")


def _header_pixels(data: bytes) -> int | None:
    """Width × height from the file's header, without decoding it; None if Pillow does
    not know the format (OpenCV may still read it)."""
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size[0] * im.size[1]
    except Image.DecompressionBombError:  # Pillow's own bound (far above ours)
        return MAX_PIXELS + 1
    except Exception:  # Pillow raises many kinds for files it does not know
        return None


def _describe(source) -> str:
    return f"'{source}'" if isinstance(source, (str, Path)) else f"({type(source).__name__})"


def _bgr_to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 3:
        return image[:, :, ::-1]
    if image.ndim == 3 and image.shape[2] == 4:
        return image[:, :, [2, 1, 0, 3]]
    return image


def _normalize(image: np.ndarray, name: str) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ReferenceImageError(f"reference {name} has shape {image.shape}; expected an H×W, H×W×3 or H×W×4 image")
    if min(image.shape[:2]) < MIN_SIDE:
        raise ReferenceImageError(f"reference {name} is {image.shape[1]}×{image.shape[0]} px; need at least {MIN_SIDE} px")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype.kind == "f":
        image = (np.clip(np.nan_to_num(image), 0, 1) * 255 + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ReferenceImageError(f"reference {name} has pixel type {image.dtype}; use 8-bit, 16-bit or float images")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.shape[2] == 4:
        # Transparent parts become neutral grey: a flat backdrop warps without a halo.
        alpha = image[:, :, 3:].astype(np.float32) / 255
        image = (image[:, :, :3] * alpha + 128 * (1 - alpha) + 0.5).astype(np.uint8)
    h, w = image.shape[:2]
    if max(h, w) > MAX_SIDE:
        scale = MAX_SIDE / max(h, w)
        image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        log.warning("reference %s is %d×%d px; downscaled to %d×%d", name, w, h, image.shape[1], image.shape[0])
    return np.ascontiguousarray(image)


# ── the face ──────────────────────────────────────────────────────────────────────────


@lru_cache(maxsize=1)
def _dlib_models():
    import dlib
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(assets.landmarks_68()))


def predict_landmarks(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """dlib's 68 landmarks inside face box (left, top, right, bottom) of an RGB image."""
    import dlib
    _, predictor = _dlib_models()
    rect = dlib.rectangle(*(int(round(v)) for v in box))
    shape = predictor(np.ascontiguousarray(image), rect)
    return np.array([(p.x, p.y) for p in shape.parts()], np.float32)


def find_face(image: np.ndarray, allow_no_face: bool = False) -> Face:
    """The largest face's landmarks. Several faces: the largest, logged. None: an error,
    or with `allow_no_face` the canonical layout centred on the image."""
    detector, _ = _dlib_models()
    h, w = image.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(h, w))
    small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    rects = list(detector(gray, 1))
    if not rects:
        if not allow_no_face:
            raise ReferenceImageError(
                f"no face found in the {w}×{h} reference; use a frontal portrait or set avatar.allow_no_face: true")
        log.warning("no face found in the %d×%d reference; animating a centred region (avatar.allow_no_face)", w, h)
        side = 0.4 * min(h, w)
        origin = np.array([(w - side) / 2, (h - side) / 2], np.float32)
        return Face(origin + _CANONICAL_68 * side, detected=False)
    rects.sort(key=lambda r: r.width() * r.height(), reverse=True)
    r = rects[0]
    box = (r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale)
    if len(rects) > 1:
        log.warning("reference has %d faces; animating the largest (at x=%d y=%d, %d px wide)",
                    len(rects), box[0], box[1], box[2] - box[0])
    return Face(predict_landmarks(image, box), detected=True)


def frame_portrait(image: np.ndarray, face: Face, size: int) -> tuple[np.ndarray, Face]:
    """Head-and-shoulders crop around `face`, `size`×`size`, face landmarks moved along.

    The face spans ~44 % of the width, eyes ~40 % from the top: tight enough that the
    mouth is big enough to read. Where the crop leaves the photo, the photo is mirrored
    (faces near the border).
    """
    lm = face.landmarks
    face_w = float(np.ptp(lm[:17, 0]))
    face_h = float(lm[8, 1] - min(lm[19, 1], lm[24, 1]))
    side = max(face_w / 0.44, face_h / 0.5)
    eyes = lm[36:48].mean(axis=0)
    left, top = eyes[0] - side / 2, eyes[1] - 0.40 * side
    scale = size / side
    if scale < 1:  # shrink first with area averaging: no aliasing on big photos
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        lm, left, top, scale = lm * scale, left * scale, top * scale, 1.0
    m = np.array([[scale, 0, -left * scale], [0, scale, -top * scale]], np.float32)
    framed = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    moved = lm * scale + m[:, 2]
    if face.detected:  # re-fit on the framed pixels: sub-pixel landmarks at output size
        lo, hi = moved.min(axis=0), moved.max(axis=0)
        pad = 0.1 * (hi - lo)
        moved = predict_landmarks(framed, (*(lo - pad), *(hi + pad)))
    return framed, Face(moved.astype(np.float32), face.detected)
