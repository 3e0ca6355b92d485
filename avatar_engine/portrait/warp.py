"""Exact piecewise-affine inverse warp of a region of the reference.

For every output pixel: which destination triangle covers it (a triangle-index raster),
then that triangle's affine map back into the reference, then one `cv2.remap`. Exact
per triangle, so a triangle squeezed to a line (closed lids, pressed lips) shows
nothing of what it covered, unlike a first-order global inverse.
"""
from __future__ import annotations

import cv2
import numpy as np

_SUBPIXEL_BITS = 4          # triangle corners rasterised at 1/16 px
# The triangle index is 8-bit so that cv2.LUT turns it into per-pixel affine
# coefficients (a fancy-indexing gather of 6 floats per pixel costs ~4× more).
MAX_TRIANGLES = 255


class MeshWarp:
    """Warps `image` inside `region` from the rest mesh to any deformed mesh."""

    def __init__(self, image: np.ndarray, rest: np.ndarray, triangles: np.ndarray,
                 region: tuple[int, int, int, int]):
        if len(triangles) > MAX_TRIANGLES:
            raise ValueError(f"mesh has {len(triangles)} triangles; the warp takes at most {MAX_TRIANGLES}")
        self.image = image
        self.triangles = triangles
        self.region = region
        x0, y0, x1, y1 = region
        self._index = np.zeros((y1 - y0, x1 - x0), np.uint8)    # 0: no triangle
        self._y, self._x = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        self._src = rest[triangles].astype(np.float64)               # (T, 3, 2)
        # per index: the affine (output x, y, 1) → reference x, y as a 3×2 matrix;
        # index 0 and unused indices are the identity
        self._affine = np.zeros((256, 3, 2), np.float32)
        self._affine[:] = [[1, 0], [0, 1], [0, 0]]

    def maps(self, dest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(map_x, map_y) over the region for vertices at `dest` (V, 2)."""
        x0, y0, _, _ = self.region
        tri = dest[self.triangles]                                   # (T, 3, 2)
        dst = np.concatenate([tri, np.ones((len(tri), 3, 1))], axis=2)
        det = np.linalg.det(dst)
        ok = np.abs(det) > 1e-6                                      # squeezed to a line: no pixels
        # Solve dst @ A = src for each triangle: A maps [x y 1] (output) → [x y] (reference).
        a = self._affine[1:len(tri) + 1]
        a[ok] = np.linalg.solve(dst[ok].astype(np.float64), self._src[ok])
        a[~ok] = self._affine[0]
        self._index.fill(0)
        corners = np.round((tri - [x0, y0]) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
        for t in np.flatnonzero(ok):
            cv2.fillConvexPoly(self._index, corners[t], int(t) + 1, cv2.LINE_8, _SUBPIXEL_BITS)
        coef = [cv2.LUT(self._index, self._affine[:, k, c].copy()) for c in (0, 1) for k in range(3)]
        map_x = coef[0] * self._x + coef[1] * self._y + coef[2]
        map_y = coef[3] * self._x + coef[4] * self._y + coef[5]
        return map_x, map_y

    def render(self, dest: np.ndarray) -> np.ndarray:
        """The warped region, (h, w, 3) uint8."""
        map_x, map_y = self.maps(dest)
        return cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
