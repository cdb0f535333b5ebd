"""Run folders and saved models: find and load them.

A run folder (written by ``tfdeepfake.train``) holds ``model.keras``, ``config.json``, ``metrics.json``
(with the threshold chosen on the validation split), ``history.csv``, ``split.csv``, ``report.md`` and plots.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.json"


@dataclass
class ModelRef:
    """Where a model lives: its ``.keras`` file, its run folder (if any) and its tuned threshold."""

    model_path: Path
    run_dir: Path | None
    threshold: float | None

    @property
    def name(self) -> str:
        return self.run_dir.name if self.run_dir else self.model_path.stem


def resolve_model(path: str | Path) -> ModelRef:
    """Accept a run folder or a ``.keras`` file; raise ``FileNotFoundError`` naming the path otherwise."""
    path = Path(path)
    if path.is_dir():
        model_path = path / MODEL_FILE
        if not model_path.is_file():
            raise FileNotFoundError(f"{path} is a folder but holds no {MODEL_FILE} (not a run folder)")
        run_dir: Path | None = path
    elif path.is_file():
        if path.suffix != ".keras":
            raise ValueError(f"{path}: expected a run folder or a .keras file")
        model_path = path
        run_dir = path.parent if (path.parent / METRICS_FILE).is_file() else None
    else:
        raise FileNotFoundError(f"no such model: {path}")
    return ModelRef(model_path=model_path, run_dir=run_dir, threshold=read_threshold(run_dir))


def read_threshold(run_dir: Path | None) -> float | None:
    """The threshold chosen on validation during training, if the run recorded one."""
    if run_dir is None or not (run_dir / METRICS_FILE).is_file():
        return None
    try:
        value = json.loads((run_dir / METRICS_FILE).read_text()).get("threshold")
    except (OSError, json.JSONDecodeError):
        return None
    return None if value is None else float(value)


def partial_path(path: str | Path, unique: bool = True) -> Path:
    """Where ``path`` is written before it is moved into place: a hidden ``.keras`` file in the same
    folder, named per call (``unique``: two writers never share one) or fixed (a checkpoint that a
    resumed run must find)."""
    import uuid

    path = Path(path)
    tag = f".{uuid.uuid4().hex[:12]}" if unique else ""
    return path.with_name(f".{path.stem}{tag}.partial.keras")


def publish(partial: str | Path, path: str | Path) -> Path:
    """Move a finished ``partial`` file to ``path`` in one step (``os.replace``: a reader sees the old
    file or the new one, never half of one)."""
    import os

    os.replace(partial, path)
    return Path(path)


def write_atomic(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(partial)`` on a hidden file beside ``path`` (:func:`partial_path`), then move it into
    place (:func:`publish`): a crash or kill mid-write leaves the previous ``path`` intact and, where
    ``write`` raises, no partial file behind."""
    partial = partial_path(path)
    try:
        write(partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return publish(partial, path)


def save_model(model: Any, path: str | Path) -> Path:
    """Save ``model`` as ``path`` with :func:`write_atomic`."""
    return write_atomic(path, model.save)


def load_model(path: str | Path) -> Any:
    """Load a ``.keras`` file with ``safe_mode=True`` (our custom layers are registered).

    A file that is missing raises ``FileNotFoundError``; one that is not a Keras model (not a zip
    archive, truncated, or without the model's config/weights) raises ``ValueError`` saying so,
    where Keras would say "File not found" or raise a ``KeyError``.

    Keras is imported here, not at the top: finding runs and reading thresholds need no TensorFlow.
    """
    import zipfile

    import keras

    import tfdeepfake.models  # noqa: F401  (registers every custom layer, FuseLogits included)

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such model file: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a Keras model file (a .keras file is a zip archive; this one is "
                         f"not, or is truncated or corrupt)")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except (ValueError, KeyError, OSError, TypeError, zipfile.BadZipFile) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ValueError(f"{path}: corrupt or not a Keras model file ({type(exc).__name__}: "
                         f"{detail})") from None

