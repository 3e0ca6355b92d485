"""The inside of the mouth, painted into the opening between the warped inner lips.

Stretching the photo's mouth opening would stretch its teeth. Instead the photo's
opening is split at its middle line into upper teeth, which move with the head (they
are fixed to the skull), and lower teeth, which move with the jaw. Wherever neither row
reaches, a dark cavity shows, with the tongue's lighter shading low in the
mouth. At rest every pixel maps onto itself, so the reference is reproduced exactly.
"""
from __future__ import annotations

import cv2
import numpy as np

CAVITY = np.array([34, 12, 14], np.float32)     # RGB deep in the mouth
TONGUE = np.array([150, 66, 72], np.float32)    # RGB of the tongue's top, lit
TUCK_PX = 6                                     # how far teeth reach under the lips


def _contours(loop: np.ndarray):
    """Upper (60 → 64) and lower (60 → 64) contours of a 16-point inner-lip loop."""
    return loop[0:9], np.concatenate([loop[8:], loop[:1]])[::-1]


def _profile(contour: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """y of a left-to-right polyline at each x."""
    order = np.argsort(contour[:, 0])
    return np.interp(xs, contour[order, 0], contour[order, 1])


class MouthInterior:
    def __init__(self, image: np.ndarray, rest_loop: np.ndarray, reach: float):
        """`rest_loop`: the 16 inner-lip points at rest; `reach`: how far (px) the lower
        lip can travel, to size the working box."""
        upper, lower = _contours(rest_loop)
        h, w = image.shape[:2]
        lo = np.floor(rest_loop.min(axis=0) - TUCK_PX - 2).astype(int)
        hi = np.ceil(rest_loop.max(axis=0) + [TUCK_PX + 2, reach + TUCK_PX + 2]).astype(int)
        x0, y0, x1, y1 = max(lo[0], 0), max(lo[1], 0), min(hi[0], w), min(hi[1], h)
        self._origin = np.array([x0, y0], np.float32)
        box = image[y0:y1, x0:x1]
        opening = _polygon_mask(rest_loop, (x0, y0), box.shape[:2])
        # The teeth go on under the lips: outside the opening, each pixel takes the
        # colour of the nearest opening pixel, TUCK_PX deep. A lip that moves a little
        # against the head then uncovers more teeth, not a dark seam.
        outside = (opening < 0.5).astype(np.uint8)
        dist, labels = cv2.distanceTransformWithLabels(outside, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
        inside_yx = np.argwhere(outside == 0)
        nearest = np.zeros((labels.max() + 1, 2), int)
        nearest[labels[outside == 0]] = inside_yx
        src = nearest[labels]
        self._teeth = np.where((opening > 0)[..., None], box, box[src[..., 0], src[..., 1]])
        # Anti-aliased rim counts as teeth: the reference is reproduced exactly at rest.
        reach_mask = np.clip(TUCK_PX + 1 - dist, 0, 1).astype(np.float32)
        middle = (_profile(upper, np.arange(x0, x1)) + _profile(lower, np.arange(x0, x1))) / 2
        above = np.arange(y0, y1)[:, None] < middle[None, :]
        self._upper_teeth = reach_mask * above
        self._lower_teeth = reach_mask * ~above

    def paint(self, out: np.ndarray, origin: tuple[int, int], loop: np.ndarray,
              to_skull: np.ndarray, jaw_shift: np.ndarray) -> None:
        """Paint the opening bounded by `loop` (16 warped inner-lip points) into `out`,
        an image whose pixel (0, 0) is at `origin` in frame coordinates. `to_skull`
        (2×3) takes frame points back to the reference under the head's motion;
        `jaw_shift` is how far the lower teeth have dropped."""
        ox, oy = origin
        lo = np.floor(loop.min(axis=0)).astype(int) - 1
        hi = np.ceil(loop.max(axis=0)).astype(int) + 2
        x0, y0 = max(lo[0], ox), max(lo[1], oy)
        x1, y1 = min(hi[0], ox + out.shape[1]), min(hi[1], oy + out.shape[0])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        alpha = _polygon_mask(loop, (x0, y0), (y1 - y0, x1 - x0))
        xs = np.arange(x0, x1, dtype=np.float32)
        upper, lower = _contours(loop)
        top, bottom = _profile(upper, xs), _profile(lower, xs)
        gap = bottom - top
        # Where the lips (nearly) touch nothing of the inside may show: no teeth sliver.
        alpha *= np.clip(gap - 0.5, 0, 1)[None, :]
        if not alpha.any():
            return
        ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        grid_x = np.broadcast_to(xs[None, :], alpha.shape)
        # reference position of each pixel for the upper teeth (back through the head
        # motion) and for the lower teeth (also back up the jaw's drop), in box pixels
        up_x = (to_skull[0, 0] * grid_x + to_skull[0, 1] * ys + to_skull[0, 2] - self._origin[0]).astype(np.float32)
        up_y = (to_skull[1, 0] * grid_x + to_skull[1, 1] * ys + to_skull[1, 2] - self._origin[1]).astype(np.float32)
        low_x, low_y = up_x - np.float32(jaw_shift[0]), up_y - np.float32(jaw_shift[1])
        up = cv2.remap(self._upper_teeth, up_x, up_y, cv2.INTER_LINEAR)[..., None]
        low = cv2.remap(self._lower_teeth, low_x, low_y, cv2.INTER_LINEAR)[..., None]
        # the jaw only drops, so the two rows never overlap: up + low ≤ 1
        teeth_rgb = (up * cv2.remap(self._teeth, up_x, up_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                     + low * cv2.remap(self._teeth, low_x, low_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
        teeth = np.minimum(up + low, 1)
        # cavity: dark, with the tongue rising towards the bottom middle of the opening
        depth = np.clip((ys - top[None, :]) / np.maximum(gap, 1)[None, :], 0, 1)
        half_w = max((loop[:, 0].max() - loop[:, 0].min()) / 2, 1)
        across = (xs - (loop[:, 0].max() + loop[:, 0].min()) / 2) / half_w
        tongue = np.clip((depth - 0.45) / 0.45, 0, 1) ** 1.5 * np.clip(1 - across ** 2, 0, 1)[None, :]
        cavity = CAVITY + tongue[..., None] * (TONGUE - CAVITY) * 0.8
        inside = teeth_rgb + (1 - teeth) * cavity
        target = out[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
        a = alpha[..., None]
        target[:] = (target * (1 - a) + inside * a + 0.5).astype(np.uint8)


def _polygon_mask(points: np.ndarray, origin, shape) -> np.ndarray:
    """Anti-aliased coverage (0 … 1 float32) of a polygon on a small canvas."""
    canvas = np.zeros(shape, np.uint8)
    pts = np.round((points - origin) * 16).astype(np.int32)
    cv2.fillPoly(canvas, [pts], 255, cv2.LINE_AA, 4)
    return canvas.astype(np.float32) / 255
