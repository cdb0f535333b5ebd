"""MTCNN face detection and FaceForensics++-style crops."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tfdeepfake.faces import Face, crop, detect_faces, enlarge_box, get_detector
from tfdeepfake.media import read_image


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    w = max(0, min(ax2, bx2) - max(a[0], b[0]))
    h = max(0, min(ay2, by2) - max(a[1], b[1]))
    inter = w * h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope="module")
def face_images(shared_data: Path) -> list[np.ndarray]:
    paths = [sorted((shared_data / "rvf10k" / "test" / "real").glob("*.jpg"))[0],
             sorted((shared_data / "rvf10k" / "test" / "fake").glob("*.jpg"))[0],
             sorted((shared_data / "hardfake" / "real").glob("*.jpg"))[0]]
    return [read_image(p) for p in paths]


def test_enlarge_box_is_a_centred_square_clipped_to_the_image() -> None:
    assert enlarge_box((100, 100, 40, 60), (400, 400)) == (120 - 39, 130 - 39, 78, 78)
    x, y, w, h = enlarge_box((0, 0, 50, 50), (60, 80), scale=1.3)  # at the top-left corner
    assert (x, y) == (0, 0) and w == h and w <= 60
    x, y, w, h = enlarge_box((70, 40, 30, 30), (80, 100))  # near the bottom-right corner
    assert w == h and x + w <= 100 and y + h <= 80
    with pytest.raises(ValueError):
        enlarge_box((0, 0, 10, 10), (20, 20), scale=0)


def test_crop_clips_to_the_image() -> None:
    image = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    assert crop(image, (2, 3, 4, 5)).shape == (5, 4, 3)
    assert crop(image, (-2, -2, 5, 5)).shape == (3, 3, 3)
    assert crop(image, (10, 8, 5, 5)).shape == (2, 2, 3)


def test_mtcnn_finds_the_face_in_dataset_images(face_images: list[np.ndarray]) -> None:
    for image in face_images:
        faces = detect_faces(image)
        assert faces, "no face found in a dataset face image"
        face = faces[0]
        assert isinstance(face, Face) and face.confidence >= 0.9
        x, y, w, h = face.box
        height, width = image.shape[:2]
        # a dataset face is large and roughly centred
        assert w * h > 0.1 * width * height
        assert 0.25 * width < x + w / 2 < 0.75 * width and 0.2 * height < y + h / 2 < 0.8 * height
        cx, cy, cw, ch = face.crop_box
        assert cw == ch and cw >= max(w, h) and face.crop(image).shape[:2] == (ch, cw)


def test_face_on_a_larger_canvas_maps_back_to_where_it_was_placed(
        face_images: list[np.ndarray]) -> None:
    image = face_images[0]
    original = detect_faces(image)[0].box
    scale, (ox, oy) = 0.5, (410, 170)
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    small = cv2.copyMakeBorder(small, 12, 12, 12, 12, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    canvas = np.full((480, 640, 3), 170, np.uint8)
    canvas[oy:oy + small.shape[0], ox:ox + small.shape[1]] = small
    faces = detect_faces(canvas)
    assert len(faces) == 1
    expected = tuple(int(round(v)) for v in (ox + 12 + original[0] * scale,
                                             oy + 12 + original[1] * scale,
                                             original[2] * scale, original[3] * scale))
    assert iou(faces[0].box, expected) > 0.6, (faces[0].box, expected)
    x, y, w, h = faces[0].crop_box
    assert ox <= x + w / 2 <= ox + small.shape[1] and oy <= y + h / 2 <= oy + small.shape[0]


def test_no_face_in_blank_or_tiny_images() -> None:
    assert detect_faces(np.full((200, 300, 3), 128, np.uint8)) == []
    assert detect_faces(np.zeros((8, 8, 3), np.uint8)) == []
    with pytest.raises(ValueError):
        get_detector().detect(np.zeros((20, 20), np.uint8))


def test_detector_built_under_a_bf16_global_policy_still_works(face_images: list[np.ndarray]) -> None:
    import keras

    from tfdeepfake.faces import FaceDetector
    from tfdeepfake.hardware import precision_policy

    with precision_policy("mixed_bfloat16"):  # as after a bf16 training in the same notebook
        detector = FaceDetector()
        faces = detector.detect(face_images[0])
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # left as it was
    assert faces and faces[0].confidence >= 0.9
    reference = FaceDetector().detect(face_images[0])
    assert faces[0].box == reference[0].box
