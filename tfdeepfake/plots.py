"""PNG plots for run folders and reports: training curves, confusion matrix, ROC curve."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from tfdeepfake import CLASS_NAMES  # noqa: E402


def plot_history(history: Mapping[str, Sequence[float]], path: str | Path,
                 test: Mapping[str, float] | None = None, test_epoch: int | None = None) -> Path:
    """Loss and accuracy per epoch, train beside validation; ``test`` (``{"loss": .., "accuracy": ..}``
    of the kept weights) adds a star at ``test_epoch`` (the kept epoch; the last one if ``None``)."""
    path = Path(path)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key)
            if values is not None and len(values):
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, style, marker="o", label=(prefix or "train_") + key)
        if test and key in test:
            epoch = test_epoch or len(history.get(key) or [1])
            ax.plot([epoch], [test[key]], "*", markersize=14, label=f"test_{key} (epoch {epoch} weights)")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion_matrix(cm: Sequence[Sequence[int]], path: str | Path, title: str = "") -> Path:
    """Confusion matrix: rows are the true class, columns the predicted one."""
    path = Path(path)
    cm_arr = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(cm_arr, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm_arr):
        color = "white" if v > cm_arr.max() / 2 else "black"
        ax.text(j, i, str(v), ha="center", va="center", color=color)
    ax.set_xticks([0, 1], [f"pred {c}" for c in CLASS_NAMES])
    ax.set_yticks([0, 1], [f"true {c}" for c in CLASS_NAMES])
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_roc(curves: Mapping[str, tuple[Any, Any]], path: str | Path) -> Path:
    """ROC curves, one per name -> (labels, scores), with AUC in the legend."""
    from sklearn.metrics import auc

    path = Path(path)
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (labels, scores) in curves.items():
        y = np.asarray(labels).reshape(-1)
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, np.asarray(scores).reshape(-1))
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate (real called fake)")
    ax.set_ylabel("true positive rate (fake caught)")
    ax.set_title("ROC")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
