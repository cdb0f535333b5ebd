"""Binary detection metrics with *fake* (label 1) as the positive class.

The original project averaged precision/recall/F1 over both classes with ``average="micro"``, which for a
single-label problem is just accuracy. Here every figure is the binary one for the fake class, and the
threshold-free figures (ROC AUC, average precision, EER) come beside them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm

from tfdeepfake import CLASS_NAMES, DEFAULT_THRESHOLD


def _as_arrays(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).reshape(-1).astype(int)
    p = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"labels ({y.shape[0]}) and scores ({p.shape[0]}) differ in length")
    if y.size == 0:
        raise ValueError("no images to score")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    return y, p


def equal_error_rate(labels: Any, scores: Any) -> float:
    """Return the EER: the error rate where false-positive and false-negative rates meet."""
    y, p = _as_arrays(labels, scores)
    if len(np.unique(y)) < 2:
        return float("nan")
    fpr, tpr, _ = skm.roc_curve(y, p)
    fnr = 1.0 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2.0)


def logit_loss(labels: Any, logits: Any) -> float:
    """Mean binary cross-entropy of logits (the training loss without label smoothing or L2 penalty),
    computed stably: ``max(z, 0) - z * y + log(1 + exp(-|z|))``."""
    y, z = _as_arrays(labels, logits)
    return float(np.mean(np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def choose_threshold(labels: Any, scores: Any) -> float:
    """Pick the threshold that maximises balanced accuracy (Youden's J) on validation scores.

    Falls back to :data:`~tfdeepfake.DEFAULT_THRESHOLD` when only one class is present.
    """
    y, p = _as_arrays(labels, scores)
    if len(np.unique(y)) < 2:
        return DEFAULT_THRESHOLD
    fpr, tpr, thresholds = skm.roc_curve(y, p)
    j = tpr - fpr
    best = int(np.argmax(j))
    t = float(thresholds[best])
    # roc_curve's first threshold is +inf; keep the value a usable probability.
    return float(np.clip(t, 0.0, 1.0))


def binary_metrics(labels: Any, scores: Any, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """All figures for scores (probability of fake) against labels at ``threshold``.

    Keys: accuracy, precision, recall, f1, roc_auc, average_precision, eer, confusion_matrix
    (rows true real/fake, columns predicted real/fake), threshold, n_images, n_real, n_fake,
    classification_report.
    """
    y, p = _as_arrays(labels, scores)
    pred = (p >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    cm = skm.confusion_matrix(y, pred, labels=[0, 1])
    return {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, pos_label=1, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, pos_label=1, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, pos_label=1, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y, p)) if both else float("nan"),
        "average_precision": float(skm.average_precision_score(y, p)) if both else float("nan"),
        "eer": equal_error_rate(y, p),
        "confusion_matrix": cm.tolist(),
        "threshold": float(threshold),
        "n_images": int(y.size),
        "n_real": int((y == 0).sum()),
        "n_fake": int((y == 1).sum()),
        "classification_report": skm.classification_report(
            y, pred, labels=[0, 1], target_names=list(CLASS_NAMES), digits=4, zero_division=0
        ),
    }


def evaluation_report(labels: Any, scores: Any, tuned_threshold: float | None) -> dict[str, Any]:
    """Metrics at :data:`~tfdeepfake.DEFAULT_THRESHOLD` (top level) plus, under ``"tuned"``, at the
    threshold chosen on validation."""
    result = binary_metrics(labels, scores, DEFAULT_THRESHOLD)
    if tuned_threshold is not None:
        result["tuned"] = binary_metrics(labels, scores, tuned_threshold)
    return result
