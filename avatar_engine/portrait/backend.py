"""The CPU real-time backend: one photo, a landmark rig, a mesh warp per frame."""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import replace

import numpy as np

from avatar_engine.backend import Block
from avatar_engine.features import block_features
from avatar_engine.portrait.motion import MotionState, Pose, start_blend, step_block
from avatar_engine.portrait.mouth import MouthInterior
from avatar_engine.portrait.rig import Rig, build_rig
from avatar_engine.portrait.warp import MeshWarp
from avatar_engine.reference import find_face, frame_portrait

# Block-start states kept for rewinds (the runtime drops at most its look-ahead).
MAX_SNAPSHOTS = 64


class PortraitBackend:
    """Implements `avatar_engine.backend.Backend`.

    render() may be handed a block that starts before the end of the previous one:
    the runtime dropped blocks it had rendered ahead (barge-in, or a reply that must
    start now). The backend then resumes from the state it had at that block's start,
    so the frames continue from the last frame the viewer actually saw.
    """

    def __init__(self, size: int = 512, seed: int = 0, allow_no_face: bool = False):
        self.size, self.seed, self.allow_no_face = size, seed, allow_no_face
        self.rig: Rig | None = None

    def reset(self, reference: np.ndarray) -> None:
        face = find_face(reference, self.allow_no_face)
        image, face = frame_portrait(reference, face, self.size)
        image.setflags(write=False)
        self.rig = rig = build_rig(image, face.landmarks)
        self._warp = MeshWarp(image, rig.rest, rig.triangles, rig.region)
        self._mouth = MouthInterior(image, rig.rest[rig.inner_loop], float(np.linalg.norm(rig.jaw_drop)))
        self._state = MotionState()
        self._snapshots: OrderedDict[int, MotionState] = OrderedDict()
        self._flush_pending = False

    @property
    def reference_frame(self) -> np.ndarray:
        """The framed reference: what a frame at rest looks like."""
        return self.rig.image

    def flush(self) -> None:
        self._flush_pending = True

    def render(self, block: Block) -> np.ndarray:
        if self.rig is None:
            raise RuntimeError("PortraitBackend.render before reset(reference)")
        first = round(block.t0 * block.fps)
        if first != self._state.frame and first in self._snapshots:
            self._state = self._snapshots[first]              # rewind to what was shown
        self._state = replace(self._state, frame=first)
        if self._flush_pending:
            self._state, self._flush_pending = start_blend(self._state), False
        self._remember(first, self._state)
        poses, self._state = step_block(self._state, block_features(block), block.fps, self.seed)
        frames = np.empty((len(poses), self.size, self.size, 3), np.uint8)
        frames[:] = self.rig.image
        for frame, pose in zip(frames, poses):
            self.draw(pose, frame)
        return frames

    def draw(self, pose: Pose, out: np.ndarray) -> None:
        """Render one pose into `out` (a copy of the reference frame)."""
        rig = self.rig
        local = rig.rest + np.tensordot(pose.expressions(), rig.basis, axes=1)
        dest = local + rig.head_weight[:, None] * (self._head(local, pose) - local)
        x0, y0, x1, y1 = rig.region
        region = self._warp.render(dest)
        self._mouth.paint(region, (x0, y0), dest[rig.inner_loop], self._to_skull(pose), pose.open * rig.jaw_drop)
        out[y0:y1, x0:x1] = region

    def _head(self, points: np.ndarray, pose: Pose) -> np.ndarray:
        """Where rigid 2-D head motion (roll about the neck, then shift) takes `points`."""
        rotation = _rotation(pose.roll)
        return (self.rig.pivot + (points - self.rig.pivot) @ rotation.T + [pose.dx, pose.dy]).astype(np.float32)

    def _to_skull(self, pose: Pose) -> np.ndarray:
        """The inverse of `_head` as a 2×3 affine: frame point → reference point."""
        back = _rotation(-pose.roll)
        offset = self.rig.pivot - back @ (self.rig.pivot + [pose.dx, pose.dy])
        return np.hstack([back, offset[:, None]])

    def _remember(self, frame: int, state: MotionState) -> None:
        self._snapshots[frame] = state
        self._snapshots.move_to_end(frame)
        while len(self._snapshots) > MAX_SNAPSHOTS:
            self._snapshots.popitem(last=False)


def _rotation(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
