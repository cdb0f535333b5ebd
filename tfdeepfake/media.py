"""Input readers for prediction: images (exactly the training pipeline's pixels), video frames, folders.

Images are decoded by :func:`tfdeepfake.data.load_image` so a file scores the same here as in
``tfdeepfake.evaluate``. Videos are read with OpenCV and ``n`` frames are sampled evenly.
Every failure raises :class:`MediaError` whose message is the reason, meant for a report row.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".jfif", ".ppm", ".pgm"}
)
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
DEFAULT_FRAMES = 16


class MediaError(ValueError):
    """A file cannot be read as an image or a video; ``str(exc)`` is the reason."""


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
    from tfdeepfake.data import DataError, load_image

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
