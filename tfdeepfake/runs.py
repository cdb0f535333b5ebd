"""Run folders and saved models: find, load and score them.

A run folder (written by ``tfdeepfake.train``) holds ``model.keras``, ``config.json``, ``metrics.json``
(with the threshold chosen on the validation split), ``history.csv``, ``split.csv``, ``report.md`` and plots.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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


def load_model(path: str | Path) -> Any:
    """Load a ``.keras`` file with ``safe_mode=True`` (our custom layers are registered).

    A file that is missing raises ``FileNotFoundError``; one that is not a Keras model (not a zip
    archive, truncated, or without the model's config/weights) raises ``ValueError`` saying so,
    where Keras would say "File not found" or raise a ``KeyError``.
    """
    import zipfile

    import keras

    import tfdeepfake.ensemble  # noqa: F401  (registers the ensemble's FuseLogits layer)
    import tfdeepfake.models  # noqa: F401  (registers the models' custom layers)

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


def model_image_size(model: Any, default: int = 224) -> int:
    """The size a model resizes its input to (largest over ensemble members)."""
    sizes: list[int] = []

    def visit(m: Any) -> None:
        for layer in getattr(m, "layers", []):
            if layer.name == "resize" or layer.name.endswith("/resize"):
                sizes.append(int(layer.get_config()["height"]))
            elif hasattr(layer, "layers"):
                visit(layer)

    visit(model)
    return max(sizes) if sizes else default


def predict_logits(model: Any, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` over a dataset of ``(images, labels)``; return labels and the logit per image."""
    labels, (logits,) = predict_logits_many([model], dataset)
    return labels, logits


def predict_logits_many(models: Sequence[Any], dataset: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    """One pass over ``(images, labels)`` batches, every model on each batch: labels and each model's
    logits."""
    labels: list[np.ndarray] = []
    logits: list[list[np.ndarray]] = [[] for _ in models]
    for images, y in dataset:
        for out, model in zip(logits, models, strict=True):
            out.append(np.asarray(model.predict_on_batch(images), dtype=np.float64).reshape(-1))
        labels.append(np.asarray(y).reshape(-1).astype(int))
    if not labels:
        return np.zeros(0, int), [np.zeros(0) for _ in models]
    return np.concatenate(labels), [np.concatenate(out) for out in logits]


def predict_scores(model: Any, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` over a dataset of ``(images, labels)``; return labels and P(fake) per image."""
    labels, logits = predict_logits(model, dataset)
    return labels, sigmoid(logits)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """P(fake) from logits, in float64."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
