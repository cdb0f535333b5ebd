"""Scoring Keras models over batches: logits, P(fake) and an ensemble's members one by one.

:func:`score_by_member` is how every Keras-side consumer scores a model (``evaluate``, the experiment,
the robustness sweep, the ensemble threshold, ``predict``): each ensemble member runs on batches made at
its own input size (members of one size share one pass), and the ensemble's score is its own fuse layer
over the member logits, as the exported model computes it. :func:`at_size` turns a dataset maker into
the ``size -> batches`` callable it takes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from tfdeepfake.models.fusion import model_image_size, split_ensemble

BatchesAt = Callable[[int], Iterable[Any]]
"""``size -> (images, labels) batches`` with the images at ``size`` x ``size``."""


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """P(fake) from logits, in float64."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


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


def predict_logits(model: Any, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` over a dataset of ``(images, labels)``; return labels and the logit per image."""
    labels, (logits,) = predict_logits_many([model], dataset)
    return labels, logits


def predict_scores(model: Any, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` over a dataset of ``(images, labels)``; return labels and P(fake) per image."""
    labels, logits = predict_logits(model, dataset)
    return labels, sigmoid(logits)


def at_size(make: Callable[..., Any], *args: Any, **kwargs: Any) -> BatchesAt:
    """``size -> make(*args, image_size=size, **kwargs)``, e.g.
    ``at_size(data.dataset_for, index, "test", batch_size=32)``."""

    def batches_at(size: int) -> Any:
        return make(*args, image_size=size, **kwargs)

    return batches_at


def score_by_member(
    model: Any, dataset_at: BatchesAt, *, image_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``(labels, P(fake), {member name: P(fake)})`` of ``model`` over ``dataset_at(size)``'s batches.

    Each ensemble member runs on the batches made at its own input size (``image_size``: every member at
    that size instead), so no image is resized twice; members of one size share one pass. The ensemble's
    score is its own fuse layer applied to the member logits, as the exported model computes it. A single
    model gives an empty member dict. ``dataset_at`` is called once per size and must yield
    ``(images, labels)`` in the same order for each.
    """
    members, fuse = split_ensemble(model)
    by_size: dict[int, list[Any]] = {}
    for member in members:
        by_size.setdefault(image_size or model_image_size(member), []).append(member)
    labels = None
    logits: dict[str, np.ndarray] = {}
    for size, group in by_size.items():
        y, group_logits = predict_logits_many(group, dataset_at(size))
        if labels is not None and not np.array_equal(y, labels):
            raise RuntimeError(f"the batches at {size} px came in another order than the others")
        labels = y
        logits.update((m.name, z) for m, z in zip(group, group_logits, strict=True))
    if fuse is None:
        return labels, sigmoid(logits[model.name]), {}
    ordered = [logits[m.name] for m in members]  # fusion order
    fused = fuse([np.asarray(z, np.float32).reshape(-1, 1) for z in ordered])
    scores = sigmoid(np.asarray(fused).reshape(-1))
    return labels, scores, {m.name: sigmoid(logits[m.name]) for m in members}
