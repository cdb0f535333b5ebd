"""Training recipe pieces (#11): learning-rate schedules with warm-up and weight EMA for Keras.

``train --lr-schedule constant|cosine|onecycle --warmup-epochs N`` (:func:`learning_rate`):

* ``constant``: ``--lr`` throughout, after an optional linear warm-up from 0.
* ``cosine``: linear warm-up from 0 to ``--lr`` over ``--warmup-epochs``, then cosine decay to 0 at the
  last epoch (``--epochs``).
* ``onecycle`` (fast.ai's ``fit_one_cycle``): cosine warm-up from ``lr / 25`` to ``lr`` over
  ``--warmup-epochs`` (25 % of the run when 0), then cosine annealing to ``lr / 25e4``. The momentum is
  not cycled.

The schedule counts optimizer steps (``epochs x steps per epoch``); early stopping or a time limit ends
it sooner. ``train --ema M`` keeps an exponential moving average of the weights (Keras' ``use_ema``,
momentum ``M``): validation, the checkpoint (``model.keras``) and every later score use the averaged
weights (:func:`ema_callbacks`). BatchNorm statistics are not averaged (they follow the raw weights).
``train --mixup ALPHA`` blends training images and their labels in pairs (``data.mix_batch``); the
training accuracy and AUC then read each blend's dominant label (:func:`training_metrics`), as they do
for ``train --teacher``'s soft targets (``tfdeepfake.distill``).
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

LR_SCHEDULES = ("constant", "cosine", "onecycle")
"""``train --lr-schedule`` values."""
ONECYCLE_DIV = 25.0
"""One-cycle starts at ``lr / 25`` (fast.ai's ``div``) ..."""
ONECYCLE_DIV_FINAL = 1e4
"""... and ends at ``lr / 25 / 1e4`` (``div_final``)."""
ONECYCLE_WARMUP_FRACTION = 0.25
"""One-cycle's warm-up share of the run when ``--warmup-epochs`` is 0 (fast.ai's ``pct_start``)."""


@keras.saving.register_keras_serializable(package="tfdeepfake")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Warm-up from ``peak * start_factor`` to ``peak`` over ``warmup_steps`` (linear, or cosine for
    ``kind="onecycle"``), then constant (``"constant"``) or cosine annealing to ``peak * end_factor``
    at ``total_steps`` (held there afterwards)."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0, kind: str = "cosine",
                 start_factor: float = 0.0, end_factor: float = 0.0) -> None:
        if kind not in LR_SCHEDULES:
            raise ValueError(f"lr schedule must be one of {LR_SCHEDULES}; got {kind!r}")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"warm-up steps ({warmup_steps}) must be in [0, total steps {total_steps}]")
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(warmup_steps)
        self.kind, self.start_factor, self.end_factor = kind, float(start_factor), float(end_factor)

    def __call__(self, step: Any) -> Any:
        step = ops.cast(step, "float32")
        start, end = self.peak * self.start_factor, self.peak * self.end_factor
        t_warm = ops.minimum(step / max(self.warmup_steps, 1), 1.0)
        if self.kind == "onecycle":
            t_warm = (1.0 - ops.cos(math.pi * t_warm)) / 2.0
        warm = start + (self.peak - start) * t_warm
        if self.kind == "constant":
            after = ops.full_like(step, self.peak)
        else:
            span = max(self.total_steps - self.warmup_steps, 1)
            t = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
            after = end + (self.peak - end) * (1.0 + ops.cos(math.pi * t)) / 2.0
        return ops.where(step < self.warmup_steps, warm, after)

    def get_config(self) -> dict[str, Any]:
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "kind": self.kind, "start_factor": self.start_factor, "end_factor": self.end_factor}


def learning_rate(lr: float, schedule: str, warmup_epochs: float, epochs: int,
                  steps_per_epoch: int) -> float | WarmupSchedule:
    """The optimizer's learning rate for a run: ``lr`` itself for a constant rate without warm-up,
    else a :class:`WarmupSchedule` over ``epochs x steps_per_epoch`` steps."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr schedule must be one of {LR_SCHEDULES}; got {schedule!r}")
    if schedule == "constant" and warmup_epochs == 0:
        return lr
    total = max(int(epochs) * int(steps_per_epoch), 1)
    if schedule == "onecycle":
        fraction = warmup_epochs / epochs if warmup_epochs else ONECYCLE_WARMUP_FRACTION
        return WarmupSchedule(lr, total, min(round(fraction * total), total), "onecycle",
                              1 / ONECYCLE_DIV, 1 / (ONECYCLE_DIV * ONECYCLE_DIV_FINAL))
    return WarmupSchedule(lr, total, min(round(warmup_epochs * steps_per_epoch), total), schedule)


def ema_callbacks() -> list[keras.callbacks.Callback]:
    """Callbacks that put the EMA weights in the model for validation and at each epoch's end, so the
    callbacks after them (early stopping, the checkpoint) see and save the averaged weights.

    Place them after ``BackupAndRestore`` (its backup must hold the raw weights and the averages in
    their own places, so ``--resume`` continues correctly) and before ``EarlyStopping`` and
    ``ModelCheckpoint``.
    """
    return [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)]


def _dominant(y_true: Any) -> Any:
    return ops.round(ops.convert_to_tensor(y_true))


@keras.saving.register_keras_serializable(package="tfdeepfake")
class DominantLabelAccuracy(keras.metrics.BinaryAccuracy):
    """``BinaryAccuracy`` against each label rounded to 0 or 1. Under mixup (``train --mixup``) a
    training label blends two images' labels, which the plain metric counts as wrong whatever the
    prediction; this one scores the prediction against the image that dominates the blend. A hard label
    is its own rounding, so on validation it is the plain metric."""

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        return super().update_state(_dominant(y_true), y_pred, sample_weight)


@keras.saving.register_keras_serializable(package="tfdeepfake")
class DominantLabelAUC(keras.metrics.AUC):
    """``AUC`` against each label rounded to 0 or 1 (the plain metric counts any label above 0 as
    positive), for the same reason as :class:`DominantLabelAccuracy`."""

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        return super().update_state(_dominant(y_true), y_pred, sample_weight)


def training_metrics(soft_labels: bool) -> list[keras.metrics.Metric]:
    """``accuracy`` at P(fake) = 0.5 (threshold 0 on the logit) and ROC ``auc``; for targets that are not
    0/1 (``--mixup``, ``--teacher``), their dominant-label forms."""
    accuracy, auc = ((DominantLabelAccuracy, DominantLabelAUC) if soft_labels
                     else (keras.metrics.BinaryAccuracy, keras.metrics.AUC))
    return [accuracy(threshold=0.0, name="accuracy"), auc(from_logits=True, name="auc")]


__all__ = ["LR_SCHEDULES", "DominantLabelAUC", "DominantLabelAccuracy", "WarmupSchedule", "ema_callbacks",
           "learning_rate", "training_metrics"]
