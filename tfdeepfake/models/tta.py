"""Test-time horizontal-flip averaging inside the model (``train --tta-flip``).

A model built with ``tta_flip=True`` starts with :class:`FlipBatch` and ends with :class:`FlipMean`. At
inference (``training`` false or unset) the first stacks each image's mirror image behind the batch,
``(b, ...) -> (2b, ...)``, and the last averages the two logits of each image, ``(2b, 1) -> (b, 1)``:
the model's logit is ``(f(x) + f(flip(x))) / 2``. In training both pass their input through, so the
network trains as usual (its random-flip augmentation already shows it both orientations).

Being part of the model, the averaging is done identically wherever the model runs: ``evaluate``, an
ensemble of such members, the exported SavedModel and ``predict``; the flag is read back from the saved
model (:func:`has_tta_flip`). Intermediate layers see ``2b`` images at inference (Grad-CAM reads the
first ``b``: the unflipped images). ``keras.ops`` only.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


class _AtInference(keras.layers.Layer):
    """Applies :meth:`infer` at inference (``training`` false or unset); passes ``x`` in training.
    Float32; the batch dimension of the output is unknown (it changes at inference)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def infer(self, x: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x = ops.cast(inputs, self.compute_dtype)
        return x if training else self.infer(x)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (None, *input_shape[1:])


@keras.saving.register_keras_serializable(package="tfdeepfake")
class FlipBatch(_AtInference):
    """Inference: ``concat([x, x flipped left-right], axis=0)``; training: ``x`` unchanged."""

    def infer(self, x: Any) -> Any:
        return ops.concatenate([x, ops.flip(x, axis=2)], axis=0)


@keras.saving.register_keras_serializable(package="tfdeepfake")
class FlipMean(_AtInference):
    """Inference: the mean of the two halves of the batch (:class:`FlipBatch`'s pairs); training:
    ``x`` unchanged."""

    def infer(self, x: Any) -> Any:
        first, second = ops.split(x, 2, axis=0)
        return (first + second) * 0.5


def has_tta_flip(model: Any) -> bool:
    """Whether a (single, non-ensemble) model averages over horizontal flips at inference."""
    return any(isinstance(layer, FlipMean) for layer in model.layers)


__all__ = ["FlipBatch", "FlipMean", "has_tta_flip"]
