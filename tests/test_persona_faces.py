"""Every persona has its own face: its portrait loads, the rig finds a frontal face in
it, and no two personas look like the same person (dlib's face identity descriptors)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import assets
from agent.persona import load_persona, persona_ids
from agent.session import make_backend, reference_image
from avatar_engine.reference import find_face, frame_portrait

# dlib's own threshold: descriptors of one person lie closer than 0.6, of two people farther.
SAME_PERSON = 0.6


@pytest.fixture(scope="module")
def identity():
    """(framed RGB portrait, its landmarks) → 128-d face identity descriptor."""
    import dlib
    d = assets.package_dir("face_recognition_models", "face-recognition-models", "dlib face recognition") / "models"
    model = dlib.face_recognition_model_v1(str(d / "dlib_face_recognition_resnet_model_v1.dat"))
    predictor = dlib.shape_predictor(str(assets.landmarks_68()))

    def describe(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        (left, top), (right, bottom) = landmarks.min(axis=0), landmarks.max(axis=0)
        image = np.ascontiguousarray(image)
        shape = predictor(image, dlib.rectangle(int(left), int(top), int(right), int(bottom)))
        return np.array(model.compute_face_descriptor(image, shape))
    return describe


@pytest.fixture(scope="module")
def faces(cfg):
    """persona id → (framed portrait, landmarks), through the app's own image path."""
    out = {}
    for pid in persona_ids():
        image = reference_image(cfg, load_persona(pid))
        face = find_face(image)          # raises when there is no face: allow_no_face is off
        assert face.detected, pid
        make_backend(cfg).reset(image)   # the portrait rig accepts it
        framed, framed_face = frame_portrait(image, face, cfg.avatar.size)
        out[pid] = (framed, framed_face.landmarks)
    return out


def test_each_persona_has_its_own_portrait_file():
    images = [load_persona(pid).image for pid in persona_ids()]
    assert len(set(images)) == len(images), images


def test_personas_look_like_different_people(faces, identity):
    descriptors = {pid: identity(*face) for pid, face in faces.items()}
    for a, b in itertools.combinations(descriptors, 2):
        distance = np.linalg.norm(descriptors[a] - descriptors[b])
        assert distance > SAME_PERSON, f"{a} and {b} look like one person ({distance:.2f})"
        assert np.abs(faces[a][0].astype(int) - faces[b][0].astype(int)).mean() > 30, (a, b)


def test_the_identity_check_knows_one_face_mirrored(faces, identity):
    # The control: the same portrait flipped left-right is still the same person.
    framed, _ = faces["ada"]
    mirrored = np.ascontiguousarray(framed[:, ::-1])
    distance = np.linalg.norm(identity(*faces["ada"]) - identity(mirrored, find_face(mirrored).landmarks))
    assert distance < SAME_PERSON / 2, distance
