"""Face detection and cropping with MTCNN (the ``mtcnn`` package ships its weights; runs on TF).

Detectors find the tight face; like FaceForensics++ (``get_boundingbox``, scale 1.3) the box is
enlarged to a square 1.3x its longer side around its centre and clipped to the image, so the crop
resembles the loosely framed faces of the training data.

>>> from tfdeepfake.faces import detect_faces
>>> for face in detect_faces(image_uint8):
...     print(face.crop_box, face.confidence)
...     crop = face.crop(image_uint8)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Box = tuple[int, int, int, int]
"""``(x, y, width, height)`` in pixels, origin at the top-left corner."""

DEFAULT_SCALE = 1.3
DEFAULT_MIN_CONFIDENCE = 0.9
DEFAULT_MIN_FACE_SIZE = 20


@dataclass(frozen=True)
class Face:
    """One detected face: the detector's box, the enlarged square crop box and the confidence."""

    box: Box
    crop_box: Box
    confidence: float

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The ``crop_box`` region of ``image`` (a view, not a copy)."""
        return crop(image, self.crop_box)


def enlarge_box(box: Box, image_shape: tuple[int, ...], scale: float = DEFAULT_SCALE) -> Box:
    """Square box ``scale`` x the longer side of ``box``, same centre, clipped to the image.

    As FaceForensics++'s ``get_boundingbox``: the top-left corner is clipped to 0 and the side is cut
    where it would leave the image (so near a border the box stays square but shrinks).
    """
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    height, width = int(image_shape[0]), int(image_shape[1])
    x, y, w, h = box
    size = int(max(w, h) * scale)
    cx, cy = x + w / 2, y + h / 2
    x1 = max(int(cx - size // 2), 0)
    y1 = max(int(cy - size // 2), 0)
    size = max(1, min(size, width - x1, height - y1))
    return (x1, y1, size, size)


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    """``image[y:y+h, x:x+w]`` with the box clipped to the image."""
    x, y, w, h = box
    x0, y0 = max(0, x), max(0, y)
    return image[y0:max(y0, y + h), x0:max(x0, x + w)]


class FaceDetector:
    """MTCNN face detector returning :class:`Face` objects, largest face first.

    ``min_confidence`` filters MTCNN's final score; ``min_face_size`` is its pyramid's smallest face (px).
    """

    def __init__(self, *, scale: float = DEFAULT_SCALE, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                 min_face_size: int = DEFAULT_MIN_FACE_SIZE) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = scale
        self.min_confidence = min_confidence
        self.min_face_size = min_face_size
        self._mtcnn: Any = None

    @property
    def mtcnn(self) -> Any:
        if self._mtcnn is None:
            import keras
            from mtcnn import MTCNN

            # built in float32 whatever the global policy (a bf16 training earlier in the same process
            # would otherwise give MTCNN bf16 layers, whose outputs its numpy post-processing rejects)
            previous = keras.mixed_precision.global_policy()
            keras.mixed_precision.set_global_policy("float32")
            try:
                self._mtcnn = MTCNN(stages="face_and_landmarks_detection")
            finally:
                keras.mixed_precision.set_global_policy(previous)
        return self._mtcnn

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in a uint8 RGB ``(h, w, 3)`` image (empty list when there is none)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"expected an RGB image (h, w, 3), got shape {image.shape}")
        if min(image.shape[:2]) < 12:  # smaller than MTCNN's first-stage window: no face possible
            return []
        found = self.mtcnn.detect_faces(image.astype(np.uint8, copy=False), box_format="xywh",
                                        min_face_size=self.min_face_size)
        faces = []
        for det in found:
            confidence = float(det["confidence"])
            x, y, w, h = (int(v) for v in det["box"])
            if confidence < self.min_confidence or w <= 0 or h <= 0:
                continue
            box = (x, y, w, h)
            faces.append(Face(box=box, crop_box=enlarge_box(box, image.shape, self.scale),
                              confidence=confidence))
        return sorted(faces, key=lambda f: f.box[2] * f.box[3], reverse=True)


_DEFAULT: dict[tuple[float, float, int], FaceDetector] = {}


def get_detector(scale: float = DEFAULT_SCALE, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                 min_face_size: int = DEFAULT_MIN_FACE_SIZE) -> FaceDetector:
    """A cached :class:`FaceDetector` (MTCNN's networks are built once per process)."""
    key = (scale, min_confidence, min_face_size)
    if key not in _DEFAULT:
        _DEFAULT[key] = FaceDetector(scale=scale, min_confidence=min_confidence,
                                     min_face_size=min_face_size)
    return _DEFAULT[key]


def detect_faces(image: np.ndarray, *, scale: float = DEFAULT_SCALE,
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> list[Face]:
    """Faces in ``image`` (uint8 RGB), largest first, with a cached detector."""
    return get_detector(scale, min_confidence).detect(image)
