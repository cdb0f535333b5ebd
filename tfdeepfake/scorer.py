"""Any MODEL kind as one callable: ``load_scorer(MODEL)(images) -> Scores``.

MODEL is a run folder, a ``.keras`` file, or an exported SavedModel (``saved_models/NAME``, whose newest
version is used, or ``saved_models/NAME/VERSION``). Used by ``tfdeepfake.predict`` (files, folders,
videos), ``tfdeepfake.explain`` (Grad-CAM figures), notebooks and the web page. It imports no
TensorFlow until a model is loaded, so ``predict`` can set its inference environment first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfdeepfake import DEFAULT_THRESHOLD
from tfdeepfake.runs import MODEL_FILE, load_model, resolve_model
from tfdeepfake.savedmodel import (
    SIGNATURES,
    ExportedModel,
    find_saved_model,
    keras_beside,
)

SIGNATURE = SIGNATURES[0]
"""The signature a SavedModel is scored with (uint8 pixels)."""


@dataclass
class Scores:
    """Scores of a list of images: P(fake), the 0/1 label and, for an ensemble, each member's P(fake)."""

    probability_fake: np.ndarray  # (n,) float64
    label: np.ndarray  # (n,) int, 1 = fake
    members: np.ndarray | None = None  # (n, n_members) float64


@dataclass
class Scorer:
    """Any MODEL kind as ``scorer(images_uint8_list) -> Scores``.

    ``threshold`` labels the scores (``None``: a SavedModel's own ``label`` output is used);
    ``verdict_threshold`` is the number used for aggregates (video verdicts).
    """

    kind: str  # "keras" or "savedmodel"
    name: str
    source: Path
    threshold: float | None
    verdict_threshold: float = DEFAULT_THRESHOLD
    member_names: tuple[str, ...] = ()
    batch_size: int = 32
    model: Any = None  # the Keras model ("keras") or the ExportedModel ("savedmodel")
    keras_path: Path | None = None  # a .keras file for Grad-CAM (beside a SavedModel, if any)
    _keras_model: Any = field(default=None, repr=False)

    def __call__(self, images: Sequence[np.ndarray]) -> Scores:
        """Score raw RGB images (any sizes); each one is fed at its own size (the model resizes)."""
        n = len(images)
        probs = np.zeros(n)
        labels = np.zeros(n, dtype=int)
        member_scores = np.zeros((n, len(self.member_names))) if self.member_names else None
        for idx in _batches_by_shape(images, self.batch_size):
            batch = np.stack([np.asarray(images[i]) for i in idx])
            p, lab, mem = self._score_batch(batch)
            probs[idx], labels[idx] = p, lab
            if member_scores is not None and mem is not None:
                member_scores[idx] = mem
        return Scores(probs, labels, member_scores)

    def _score_batch(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if self.kind == "savedmodel":
            return self._score_saved_model(batch)
        from tfdeepfake.models.fusion import (
            ensemble_members,  # Keras: imported once there is a model
        )
        from tfdeepfake.scoring import predict_scores, score_by_member

        batches = [(batch.astype(np.float32), np.zeros(len(batch), int))]
        # an ensemble: each member once, then its own fusion of their logits
        _, probs, by_member = score_by_member(self.model, lambda _size: batches)
        mem = None
        if by_member:
            mem = np.stack([by_member[name] for name in self.member_names], axis=1)
        elif self.member_names:  # sub-models nested without a tfdeepfake fuse layer
            mem = np.stack([predict_scores(m, batches)[1] for m in ensemble_members(self.model)], axis=1)
        return probs, (probs >= self.verdict_threshold).astype(int), mem

    def _score_saved_model(self, batch: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        out = self.model.run(SIGNATURE, batch)
        probs = np.asarray(out["probability_fake"], dtype=np.float64).reshape(-1)
        if self.threshold is None and "label" in out:
            labels = np.asarray(out["label"]).reshape(-1).astype(int)
        else:
            labels = (probs >= self.verdict_threshold).astype(int)
        mem = None
        if self.member_names and "members" in out:
            mem = np.asarray(out["members"], dtype=np.float64).reshape(len(batch), -1)
        return probs, labels, mem

    def keras_model(self) -> Any:
        """The Keras model for Grad-CAM; ``ValueError`` for a SavedModel with no ``.keras`` beside it."""
        if self.kind == "keras":
            return self.model
        if self._keras_model is None:
            if self.keras_path is None:
                raise ValueError(
                    f"{self.source} is a SavedModel without a .keras file beside it: Grad-CAM needs "
                    "the Keras model; pass its run folder or .keras file as MODEL to use --explain")
            self._keras_model = load_model(self.keras_path)
        return self._keras_model


def _batches_by_shape(images: Sequence[np.ndarray], batch_size: int) -> list[list[int]]:
    """Indices grouped by image shape (same-shape images share a batch), in first-seen order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(np.shape(image)), []).append(i)
    return [idx[k:k + batch_size] for idx in groups.values() for k in range(0, len(idx), batch_size)]


def load_scorer(model: str | Path, *, threshold: float | None = None,
                batch_size: int = 32) -> Scorer:
    """A run folder, ``.keras`` file or SavedModel (NAME or NAME/VERSION folder) -> :class:`Scorer`.

    ``threshold=None`` uses the run's validation threshold (Keras; else 0.5) or the SavedModel's own
    ``label`` output. Raises ``FileNotFoundError`` / ``ValueError`` naming the path.
    """
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"no such model: {path}")
    version_dir = find_saved_model(path) if path.is_dir() else None
    if version_dir is not None and not (path / MODEL_FILE).is_file():
        return _saved_model_scorer(version_dir, threshold, batch_size)
    from tfdeepfake.models.fusion import (
        ensemble_members,  # Keras: not needed for a SavedModel
    )

    ref = resolve_model(path)
    keras_model = load_model(ref.model_path)
    if threshold is None:
        threshold = ref.threshold if ref.threshold is not None else DEFAULT_THRESHOLD
    names = tuple(m.name for m in ensemble_members(keras_model))
    return Scorer(kind="keras", name=ref.name, source=ref.model_path, threshold=float(threshold),
                  verdict_threshold=float(threshold), member_names=names, batch_size=batch_size,
                  model=keras_model, keras_path=ref.model_path)


def _saved_model_scorer(version_dir: Path, threshold: float | None, batch_size: int) -> Scorer:
    exported = ExportedModel(version_dir, require=(SIGNATURE,))
    names = tuple(exported.members) if len(exported.members) > 1 else ()
    verdict = threshold if threshold is not None else exported.threshold
    return Scorer(kind="savedmodel", name=exported.name, source=version_dir, threshold=threshold,
                  verdict_threshold=float(verdict), member_names=names, batch_size=batch_size,
                  model=exported, keras_path=keras_beside(version_dir))
