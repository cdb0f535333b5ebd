"""Input readers for prediction: images (exactly the training pipeline's pixels), video frames, folders.

Images are decoded by :func:`tfdeepfake.data.load_image` so a file scores the same here as in
``tfdeepfake.evaluate``. Videos are read with OpenCV and ``n`` frames are sampled evenly.
Every failure raises :class:`MediaError` whose message is the reason, meant for a report row.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from tfdeepfake.data import DataError, decode_tf, load_image

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".jfif", ".ppm", ".pgm"}
)
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
DEFAULT_FRAMES = 16


class MediaError(ValueError):
    """A file cannot be read as an image or a video; ``str(exc)`` is the reason."""


TF_FORMATS = "JPEG, PNG, GIF, BMP or WebP"
_TF_NOISE = re.compile(r"\{\{[^}]*\}\}\s*|\s*\[Op:\w+\].*$|\s*\[\[\{\{node [^]]*\]\]|\s*name:\s*$")
_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"))


def image_format(data: bytes) -> str | None:
    """The format named by an encoded image's first bytes (JPEG, PNG, GIF, BMP, WEBP, or what Pillow
    recognises); ``None`` when nothing does."""
    from PIL import Image

    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format
    except Exception:  # noqa: BLE001 - unknown to Pillow too
        return None


def tf_error_text(message: str) -> str:
    """A TensorFlow op error's own words: no ``{{function_node ...}}``, ``[Op:...]`` or graph trace."""
    lines = [ln.strip() for ln in (message or "").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("Graph execution error", "Detected at node",
                                                            "File \"", "@"))]
    return _TF_NOISE.sub("", lines[-1] if lines else "").strip()


def undecodable_reason(data: bytes) -> str | None:
    """Why encoded image bytes do not decode with the package's TensorFlow decoder
    (:func:`tfdeepfake.data.decode_tf`), naming the format found in the header: ``"PNG image is
    truncated (...)"``, ``"TIFF image: format not supported (...)"``; ``None`` when they decode."""
    import tensorflow as tf
    from PIL import Image

    try:
        decode_tf(tf.constant(data, tf.string))
        return None
    except tf.errors.OpError as exc:
        tf_message = tf_error_text(exc.message)
    fmt, pil_error = image_format(data), ""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a reason to report
        pil_error = str(exc)
    kind = f"{fmt} image" if fmt else "image of unknown format"
    if "Unknown image file format" in tf_message:
        return f"{kind}: format not supported (the model decodes {TF_FORMATS})"
    if "truncated" in pil_error or "truncated" in tf_message.lower() or "premature end" in (
            pil_error + tf_message).lower():
        return f"{kind} is truncated (the file ends before its pixel data does: {pil_error or tf_message})"
    return f"{kind} is corrupt or uses an unsupported variant of the format ({tf_message or pil_error})"


def is_video(path: str | Path) -> bool:
    """Whether ``path`` is treated as a video (by its extension)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files named in ``paths``, folders walked recursively (sorted, hidden entries skipped).

    A path that does not exist is kept as is, so the caller reports it on its own row.
    """
    out: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            out.append(path)
            continue
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            out += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    return out


def read_image(path: str | Path) -> np.ndarray:
    """One image file -> uint8 RGB ``(h, w, 3)``, with the pixels the training pipeline sees."""
    path = Path(path)
    if not path.exists():
        raise MediaError("file not found")
    if path.is_dir():
        raise MediaError("is a folder")
    try:
        return load_image(path)
    except DataError as exc:
        reason = str(exc).removeprefix(f"cannot read image {path}: ")
        if path.suffix.lower() not in IMAGE_EXTENSIONS and reason.startswith("not an image"):
            suffix = path.suffix or "(no extension)"
            reason = f"unsupported file type {suffix}: not an image or a video"
        else:  # say which format the header names, then why it failed (truncated, corrupt, ...)
            with path.open("rb") as f:
                fmt = image_format(f.read(4096))
            reason = f"{fmt + ' image' if fmt else 'image of unknown format'}: {reason}"
        raise MediaError(reason) from None
    except Exception as exc:  # noqa: BLE001 - a decoder failure on one file must not stop a run
        raise MediaError(f"cannot decode image ({type(exc).__name__}: {exc})") from None


def frame_indices(n_total: int, n: int) -> list[int]:
    """``n`` frame indices spread evenly over ``n_total`` frames (all of them when fewer)."""
    if n_total <= 0 or n <= 0:
        return []
    if n >= n_total:
        return list(range(n_total))
    return sorted({int(round(i)) for i in np.linspace(0, n_total - 1, n)})


def read_video_frames(path: str | Path, n: int = DEFAULT_FRAMES) -> list[tuple[int, np.ndarray]]:
    """``n`` frames sampled evenly from a video: ``[(frame_index, uint8 RGB (h, w, 3)), ...]``.

    Seeks to each wanted frame; when the container does not report a frame count or seeking fails,
    reads the whole video once and samples from it.
    """
    import cv2

    path = Path(path)
    if not path.exists():
        raise MediaError("file not found")
    if path.stat().st_size == 0:
        raise MediaError("empty file (0 bytes)")
    if n < 1:
        raise ValueError(f"frames must be >= 1, got {n}")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise MediaError("cannot open video (unsupported codec or corrupt file)")
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        wanted = frame_indices(total, n)
        frames: list[tuple[int, np.ndarray]] = []
        for index in wanted:
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = cap.read()
            if ok and frame is not None:
                frames.append((index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
    finally:
        cap.release()
    if not frames or len(frames) < len(wanted):
        frames = _sequential_sample(path, n)
    if not frames:
        raise MediaError("no frame could be decoded")
    return frames


def _sequential_sample(path: Path, n: int) -> list[tuple[int, np.ndarray]]:
    """Count the frames in one pass, keep the wanted ones in a second (length/seeking unreliable)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    total = 0
    while cap.grab():
        total += 1
    cap.release()
    wanted = set(frame_indices(total, n))
    frames: list[tuple[int, np.ndarray]] = []
    cap = cv2.VideoCapture(str(path))
    try:
        for index in range(total):
            if not cap.grab():
                break
            if index in wanted:
                ok, frame = cap.retrieve()
                if ok and frame is not None:
                    frames.append((index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
    finally:
        cap.release()
    return frames
