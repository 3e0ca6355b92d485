"""The rig: a triangle mesh on the framed reference and how each expression moves it.

Vertices are dlib's 68 landmarks (inner lips refined to the real lip edge), extra points
that make curves smooth (lip contour midpoints, eyelid folds, cheeks), a head ring that
follows the head, and an outer ring that stays put, placed in hair, background and
clothing so the stretch between the two is invisible. Every expression is a linear
displacement field on the vertices (a blendshape) in units of the face's own size, so
the same numbers animate any face; head motion is a rigid 2-D motion applied on top.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates
from scipy.spatial import Delaunay

log = logging.getLogger(__name__)

# dlib 68-point index ranges
JAW = np.arange(0, 17)
OUTER_LIP = np.arange(48, 60)
INNER_LIP = np.arange(60, 68)
LEFT_EYE, RIGHT_EYE = np.arange(36, 42), np.arange(42, 48)

# Cheek vertices sit halfway between these jaw landmarks and the nearest outer-lip one.
CHEEK_JAW = np.array([3, 5, 7, 8, 9, 11, 13])

EXPRESSIONS = ("open", "spread", "round", "closure", "smile", "brow", "blink")

# Jaw-drop share of each jaw-contour landmark (0 at the ears, most at the chin).
_JAW_SHARE = np.array([0, 0, .02, .08, .2, .4, .65, .85, .95, .85, .65, .4, .2, .08, .02, 0, 0])


@dataclass(frozen=True)
class Rig:
    image: np.ndarray          # (S, S, 3) uint8 framed reference
    rest: np.ndarray           # (V, 2) float32 vertex positions at rest
    triangles: np.ndarray      # (T, 3) int32 vertex indices, counter-clockwise
    basis: np.ndarray          # (len(EXPRESSIONS), V, 2) displacement per unit expression
    head_weight: np.ndarray    # (V,) 1 follows the head, 0 stays put
    pivot: np.ndarray          # (2,) head rotation centre (base of the neck)
    jaw_drop: np.ndarray       # (2,) displacement of the lower teeth at open = 1
    inner_loop: np.ndarray     # (16,) vertex indices of the mouth opening, 60 → 64 → 60
    region: tuple[int, int, int, int]  # x0, y0, x1, y1 of the part that is re-rendered


def subdivide_loop(points: np.ndarray) -> np.ndarray:
    """Closed polyline → twice as many points, new ones on a smooth (4-point) curve."""
    p0, p1, p2, p3 = (np.roll(points, -k, axis=0) for k in (-1, 0, 1, 2))
    mids = (-p0 + 9 * p1 + 9 * p2 - p3) / 16
    out = np.empty((2 * len(points), 2), np.float32)
    out[0::2], out[1::2] = points, mids
    return out


def refine_lip_edge(image: np.ndarray, point: np.ndarray, down: np.ndarray, reach: float = 5.0) -> np.ndarray:
    """Move an inner-lip point along `down` (into the opening) to where the lip ends.

    dlib's inner-lip points sit 1–3 px off the opening's edge; one that sits inside the
    opening puts teeth into the lip triangles, and closed lips then show a sliver of
    them. Redness (R − G: lips are red, teeth and cavity are not) is sampled along the
    line; the point goes where it starts to fall from the lip's level towards the
    opening's, and one pixel further into the lip: the photo's edge pixels blend lip
    and teeth, and closed lips would show them as a light seam.
    """
    steps = np.arange(-reach, reach + 0.01, 0.25)
    xy = point[None, :] + steps[:, None] * down[None, :]
    rgb = image.astype(np.float32)
    redness = map_coordinates(rgb[:, :, 0] - rgb[:, :, 1], [xy[:, 1], xy[:, 0]], order=1, mode="nearest")
    lip, opening = redness[:len(steps) // 2].max(), redness[len(steps) // 2:].min()
    if lip - opening < 10:                       # no clear edge: trust dlib
        return point
    first_lip = int(np.argmax(redness))
    below = np.flatnonzero(redness[first_lip:] < lip - 0.05 * (lip - opening))
    return point + (steps[first_lip + below[0]] - 1.0) * down if len(below) else point


def build_rig(image: np.ndarray, landmarks: np.ndarray) -> Rig:
    lm = landmarks.astype(np.float32)
    size = image.shape[0]
    eyes_l, eyes_r = lm[LEFT_EYE].mean(axis=0), lm[RIGHT_EYE].mean(axis=0)
    iod = float(np.linalg.norm(eyes_r - eyes_l))
    u = (eyes_r - eyes_l) / iod                     # along the eye line
    v = np.array([-u[1], u[0]], np.float32)         # down the face

    # ── the mouth opening: subdivided, refined, closed when nearly closed ──
    inner = subdivide_loop(lm[INNER_LIP])           # 0 = corner 60, 8 = corner 64
    for k in range(1, 16):
        if k == 8:
            continue
        gap = float((inner[16 - k] - inner[k]) @ v) if k < 8 else float((inner[k] - inner[16 - k]) @ v)
        if gap > 2.5:                               # an opening exists: find its edge
            inner[k] = refine_lip_edge(image, inner[k], v if k < 8 else -v)
    for k in range(1, 8):                           # a hair-thin opening is closed lips
        if float((inner[16 - k] - inner[k]) @ v) < 1.0:
            middle = (inner[k] + inner[16 - k]) / 2   # (0.2 px apart: distinct vertices)
            inner[k], inner[16 - k] = middle - 0.1 * v, middle + 0.1 * v
    # Outer-lip midpoints, except next to the corners: there they would make sliver
    # triangles with the cheek that fold over when the corners move.
    outer_mids = subdivide_loop(lm[OUTER_LIP])[[3, 5, 7, 9, 15, 17, 19, 21]]

    # ── extra vertices ──
    brow_fold = np.array([(lm[b] + lm[e]) / 2 for b, e in ((19, 37), (20, 38), (23, 43), (24, 44))])
    near_lip = lm[OUTER_LIP][np.argmin(np.linalg.norm(lm[CHEEK_JAW, None] - lm[OUTER_LIP][None], axis=2), axis=1)]
    cheeks = (lm[CHEEK_JAW] + near_lip) / 2
    chin = lm[8]
    centre = (eyes_l + eyes_r) / 2 + 0.35 * iod * v
    below_chin = float((chin - centre) @ v)
    face_half_w = float(np.ptp(lm[JAW] @ u)) / 2
    head_ring = _egg(centre, u, v, 1.2 * face_half_w, 1.6 * iod, below_chin + 0.7 * iod, 16)
    outer_ring = _egg(centre, u, v, 1.45 * face_half_w, 2.0 * iod, below_chin + 1.2 * iod, 16)
    outer_ring = np.clip(outer_ring, 0, size - 1)

    # vertex table: [68 landmarks][inner-lip mids 8][outer-lip mids 8][lid folds 4][cheeks][head ring][outer ring]
    lm = lm.copy()
    lm[INNER_LIP] = inner[0::2]                     # landmarks take their refined places
    verts = [lm, inner[1::2], outer_mids, brow_fold, cheeks, head_ring, outer_ring]
    starts = np.cumsum([0] + [len(x) for x in verts])
    rest = np.concatenate(verts).astype(np.float32)
    inner_loop = np.empty(16, int)
    inner_loop[0::2], inner_loop[1::2] = INNER_LIP, np.arange(starts[1], starts[2])
    m = np.arange(starts[2], starts[3])
    outer_loop = np.array([48, 49, m[0], 50, m[1], 51, m[2], 52, m[3], 53,
                           54, 55, m[4], 56, m[5], 57, m[6], 58, m[7], 59])   # 0 = 48, 10 = 54
    fold_idx = np.arange(starts[3], starts[4])
    cheek_idx = np.arange(starts[4], starts[5])
    outer_idx = np.arange(starts[6], starts[7])

    basis = _expressions(rest, lm, u, v, iod, inner_loop, outer_loop, fold_idx, cheek_idx)
    head_weight = np.ones(len(rest), np.float32)
    head_weight[outer_idx] = 0

    triangles = _triangulate(rest, edges=[inner_loop, outer_loop, LEFT_EYE, RIGHT_EYE],
                             holes=[inner_loop, LEFT_EYE, RIGHT_EYE])
    _check_folds(rest, triangles, basis)
    x0, y0 = np.floor(rest[outer_idx].min(axis=0)).astype(int)
    x1, y1 = np.ceil(rest[outer_idx].max(axis=0)).astype(int) + 1
    region = (max(x0, 0), max(y0, 0), min(x1, size), min(y1, size))
    jaw_drop = basis[EXPRESSIONS.index("open")][INNER_LIP[6]]   # lower-lip centre
    return Rig(image=image, rest=rest, triangles=triangles, basis=basis, head_weight=head_weight,
               pivot=(chin + 0.6 * iod * v).astype(np.float32), jaw_drop=jaw_drop.astype(np.float32),
               inner_loop=inner_loop, region=region)


def _follow(rest, targets, sources, field, reach) -> np.ndarray:
    """Displacement of `targets` that drags along with `sources`: the nearest source's
    share, weighted by exp(−(distance/reach)²), in the weighted-mean direction."""
    dist = np.linalg.norm(rest[targets, None] - rest[sources][None], axis=2)
    w = np.exp(-(dist / reach) ** 2)
    mean = (w @ field[sources]) / (w.sum(axis=1, keepdims=True) + 1e-9)
    return mean * w.max(axis=1, keepdims=True)


def _egg(centre, u, v, half_w, up, down, n):
    """A closed ring: half-ellipses of height `up` above and `down` below the centre."""
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    along, across = np.cos(a) * half_w, np.sin(a)
    across = np.where(across > 0, across * down, across * up)
    return (centre[None, :] + along[:, None] * u[None, :] + across[:, None] * v[None, :]).astype(np.float32)


def _expressions(rest, lm, u, v, iod, inner_loop, outer_loop, fold_idx, cheek_idx) -> np.ndarray:
    """Displacement fields, (len(EXPRESSIONS), V, 2), each at full strength."""
    V = len(rest)
    b = {name: np.zeros((V, 2), np.float32) for name in EXPRESSIONS}
    mouth_c = lm[INNER_LIP].mean(axis=0)
    half_w = float((lm[54] - lm[48]) @ u) / 2
    lips = np.concatenate([inner_loop, outer_loop])
    x = np.clip(((rest[lips] - mouth_c) @ u) / half_w, -1, 1)   # −1 left corner … +1 right
    arch = np.sqrt(1 - x ** 2)
    k_in, k_out = np.arange(16), np.arange(20)
    lower = np.concatenate([k_in > 8, k_out > 10])
    upper = np.concatenate([(k_in > 0) & (k_in < 8), (k_out > 0) & (k_out < 10)])

    # open: the jaw drops; the lower lip rides on it, the corners a third, the middle
    # of the upper lip lifts a touch
    jaw = 0.25 * iod
    share = np.where(lower, 0.3 + 0.7 * arch, np.where(upper, 0.3 * (1 - arch) ** 2 - 0.06 * arch, 0.3))
    b["open"][lips] = (jaw * share)[:, None] * v
    b["open"][lips] -= (0.04 * iod * x)[:, None] * u            # corners draw in as the jaw drops
    b["open"][JAW] = (jaw * _JAW_SHARE)[:, None] * v
    nearest_lip = outer_loop[np.argmin(np.linalg.norm(rest[cheek_idx, None] - rest[outer_loop][None], axis=2), axis=1)]
    b["open"][cheek_idx] = 0.5 * (b["open"][CHEEK_JAW] + b["open"][nearest_lip])

    # spread / round: corners out / in; rounding also opens the lips vertically a little
    b["spread"][lips] = (0.07 * iod * x)[:, None] * u
    b["round"][lips] = (-0.11 * iod * x)[:, None] * u
    b["round"][lips] += (0.03 * iod * arch * np.where(lower, 1, np.where(upper, -1, 0)))[:, None] * v

    # closure: each inner-lip pair meets halfway; the outer lips follow partway
    for k in range(1, 8):
        gap = rest[inner_loop[16 - k]] - rest[inner_loop[k]]
        b["closure"][inner_loop[k]] = gap / 2
        b["closure"][inner_loop[16 - k]] = -gap / 2
    for half_out, half_in in ((outer_loop[1:10], inner_loop[1:8]), (outer_loop[11:], inner_loop[9:])):
        along = lambda idx: (rest[idx] - mouth_c) @ u
        nearest = half_in[np.argmin(np.abs(along(half_out)[:, None] - along(half_in)[None]), axis=1)]
        b["closure"][half_out] = 0.5 * b["closure"][nearest]

    # smile: corners up and out, cheeks and lower lids rise
    corner = np.clip(np.abs(x) * 1.3 - 0.3, 0, 1)
    b["smile"][lips] = (0.04 * iod * corner)[:, None] * (-v) + (0.04 * iod * x * corner)[:, None] * u
    b["smile"][[40, 41, 46, 47]] = 0.012 * iod * (-v)

    # the skin around the mouth follows the lips' sideways motions, fading with distance
    skin = np.concatenate([cheek_idx, JAW[3:14], np.arange(31, 36)])
    for name in ("spread", "round", "smile"):
        b[name][skin] += _follow(rest, skin, lips, b[name], 0.35 * iod)

    # brow: brows up, inner more than outer; the lid folds and upper lids follow a little
    b["brow"][17:27] = (0.07 * iod * np.array([.7, .9, 1, 1, 1, 1, 1, 1, .9, .7]))[:, None] * (-v)
    b["brow"][fold_idx] = 0.035 * iod * (-v)
    b["brow"][[37, 38, 43, 44]] = 0.01 * iod * (-v)

    # blink: upper lids come down 80 % of the way, lower lids up 20 %: they meet
    for top, bottom, fold in ((37, 41, 0), (38, 40, 1), (43, 47, 2), (44, 46, 3)):
        gap = rest[bottom] - rest[top]
        b["blink"][top], b["blink"][bottom] = 0.8 * gap, -0.2 * gap
        b["blink"][fold_idx[fold]] = 0.3 * gap
    return np.stack([b[name] for name in EXPRESSIONS])


# ── triangulation ─────────────────────────────────────────────────────────────────────


def _triangulate(points: np.ndarray, edges: list[np.ndarray], holes: list[np.ndarray]) -> np.ndarray:
    """Delaunay triangles whose edges follow every loop in `edges` (lips, eyes); the
    triangles inside `holes` (mouth opening, eyes) come first.

    Plain Delaunay cuts across a nearly closed mouth (an edge from the upper outer lip
    to the lower inner lip), and such a triangle smears lip into the opening. Missing
    loop edges are recovered by flipping the edges that cross them.
    """
    tris = [tuple(int(i) for i in t) for t in Delaunay(points).simplices]
    for loop in edges:
        for a, b in zip(loop, np.roll(loop, -1)):
            tris = _force_edge(points, tris, int(a), int(b))
    # Triangles inside the mouth opening and the eyes go first: the warp rasterises in
    # order, so when a blink or closed lips squeeze them to a line, the lid and lip
    # triangles drawn after them cover that line (no sliver of eye or teeth).
    hole_sets = [set(int(i) for i in loop) for loop in holes]
    inside = [any(set(t) <= h for h in hole_sets) for t in tris]
    tris = np.array([t for t, i in zip(tris, inside) if i] + [t for t, i in zip(tris, inside) if not i], np.int32)
    # counter-clockwise in image coordinates (y down): positive cross product
    p = points[tris]
    cross = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    tris[cross < 0] = tris[cross < 0][:, [0, 2, 1]]
    return tris


def _crosses(p, a, b, c, d) -> bool:
    """Do open segments ab and cd cross properly?"""
    def side(o, q, r):
        return np.sign((q[0] - o[0]) * (r[1] - o[1]) - (q[1] - o[1]) * (r[0] - o[0]))
    return (side(p[a], p[b], p[c]) * side(p[a], p[b], p[d]) < 0 and
            side(p[c], p[d], p[a]) * side(p[c], p[d], p[b]) < 0)


def _force_edge(p, tris, a, b, max_flips=64):
    for _ in range(max_flips):
        if any(a in t and b in t for t in tris):
            return tris
        flipped = False
        for i, t in enumerate(tris):
            for c, d in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
                if a in (c, d) or b in (c, d) or not _crosses(p, a, b, c, d):
                    continue
                j = next((j for j, s in enumerate(tris) if j != i and c in s and d in s), None)
                if j is None:
                    continue
                e = next(k for k in t if k not in (c, d))
                f = next(k for k in tris[j] if k not in (c, d))
                if not _crosses(p, e, f, c, d):   # quad not convex: flip another first
                    continue
                tris[i], tris[j] = (e, f, c), (e, f, d)
                flipped = True
                break
            if flipped:
                break
        if not flipped:
            break
    if not any(a in t and b in t for t in tris):
        log.warning("mesh: could not make edge %d–%d follow the face contour", a, b)
    return tris


def _check_folds(rest, triangles, basis) -> None:
    """Warn when a strong expression would turn a triangle inside out (a visible fold)."""
    strong = rest + basis[[0, 2]].sum(axis=0)       # wide open and rounded at once
    p = strong[triangles]
    cross = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    if (cross < -1.0).any():
        log.warning("mesh: %d triangles fold over at full mouth opening", int((cross < -1.0).sum()))
