"""Ensembles as one Keras model, and the facts a consumer reads off any model.

:func:`build_ensemble` nests trained detectors (each keeping its own resize and normalisation, so members
may use different image sizes) behind one raw-image input; a registered :class:`FuseLogits` layer fuses
their logits and records the members' names in fusion order in its config, so :func:`split_ensemble` finds
them again after a save and load without reading Keras internals. :func:`model_image_size` reads the size
a model resizes to from its :class:`~tfdeepfake.models.common.Resize` layer's config.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from tfdeepfake.models.common import Resize, image_input

MODES = ("prob", "logit")
"""``prob``: average the members' probabilities; ``logit``: average their logits."""


@keras.saving.register_keras_serializable(package="tfdeepfake")
class FuseLogits(keras.layers.Layer):
    """Fuse ``n`` member logits ``(b, 1)`` into one logit ``(b, 1)``.

    ``mode="prob"``: the logit of the weighted mean of the members' probabilities (clipped to
    ``[epsilon, 1 - epsilon]``); ``mode="logit"``: the weighted mean of the logits. Weights default to
    equal and are normalised to sum to 1. ``members``: the member models' names in fusion order (set by
    :func:`build_ensemble`; ``None`` in files written before it was recorded).
    """

    def __init__(
        self, member_weights: Sequence[float] | None = None, mode: str = "prob",
        epsilon: float = 1e-7, members: Sequence[str] | None = None, **kwargs: Any,
    ) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}; got {mode!r}.")
        if member_weights is not None:
            member_weights = [float(w) for w in member_weights]
            if not all(math.isfinite(w) and w >= 0 for w in member_weights) or sum(member_weights) <= 0:
                raise ValueError(
                    f"member weights must be finite, >= 0 and not all 0; got {member_weights}."
                )
        if not 0.0 < epsilon < 0.5:
            raise ValueError(f"`epsilon` must be in (0, 0.5); got {epsilon}.")
        self.member_weights = member_weights
        self.mode = mode
        self.epsilon = float(epsilon)
        self.members = None if members is None else [str(m) for m in members]

    def build(self, input_shape: Any) -> None:
        n = len(input_shape)
        for what, given in (("member weights", self.member_weights), ("member names", self.members)):
            if given is not None and len(given) != n:
                raise ValueError(f"{len(given)} {what} for {n} members.")
        super().build(input_shape)

    def normalised_weights(self, n: int) -> list[float]:
        """The weights used for ``n`` members (summing to 1)."""
        weights = self.member_weights or [1.0] * n
        total = sum(weights)
        return [w / total for w in weights]

    def call(self, logits: Sequence[Any]) -> Any:
        x = ops.concatenate([ops.cast(t, "float32") for t in logits], axis=-1)
        weights = ops.convert_to_tensor(self.normalised_weights(len(logits)), dtype="float32")
        if self.mode == "logit":
            return ops.sum(x * weights, axis=-1, keepdims=True)
        prob = ops.sum(ops.sigmoid(x) * weights, axis=-1, keepdims=True)
        prob = ops.clip(prob, self.epsilon, 1.0 - self.epsilon)
        return ops.log(prob) - ops.log1p(-prob)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, int]:
        return (input_shape[0][0], 1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(member_weights=self.member_weights, mode=self.mode, epsilon=self.epsilon,
                      members=self.members)
        return config


def build_ensemble(
    members: Sequence[Any], *, weights: Sequence[float] | None = None, mode: str = "prob",
    name: str = "ensemble",
) -> keras.Model:
    """Nest ``members`` (models with distinct names) behind one raw-image input and fuse their logits."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ValueError(f"member names must be distinct; got {names}")
    image = image_input()
    logits = [member(image) for member in members]
    fused = FuseLogits(weights, mode, members=names, name="fuse")(logits)
    return keras.Model(image, fused, name=name)


def nested_models(model: Any) -> list[Any]:
    """The Keras models nested directly in ``model``, in its layer order."""
    return [layer for layer in getattr(model, "layers", []) if isinstance(layer, keras.Model)]


def split_ensemble(model: Any) -> tuple[list[Any], FuseLogits | None]:
    """``(members, fuse layer)`` of an ensemble in fusion order; ``([model], None)`` for a single model.

    The order is the one :class:`FuseLogits` recorded; an ensemble saved before it recorded one has its
    members in the model's layer order (the order :func:`build_ensemble` called them in).
    """
    fuse = next((layer for layer in model.layers if isinstance(layer, FuseLogits)), None)
    if fuse is None:
        return [model], None
    if fuse.members is not None:
        return [model.get_layer(name) for name in fuse.members], fuse
    return nested_models(model), fuse


def ensemble_members(model: Any) -> list[Any]:
    """The members of an ensemble in fusion order, else the sub-models nested directly in ``model``;
    empty for a single model."""
    found, fuse = split_ensemble(model)
    return list(found) if fuse is not None else nested_models(model)


def resize_layer(model: Any) -> Any | None:
    """The layer a single model resizes its input with: its :class:`Resize` (or, in files older than that
    class, the ``Resizing`` layer named ``resize``); ``None`` when it has none."""
    for layer in getattr(model, "layers", []):
        if isinstance(layer, Resize) or (isinstance(layer, keras.layers.Resizing)
                                         and layer.name == "resize"):
            return layer
    return None


def model_image_size(model: Any, default: int = 224) -> int:
    """The size a model resizes its input to (the largest over an ensemble's members)."""
    sizes = [int(layer.get_config()["height"])
             for layer in map(resize_layer, ensemble_members(model) or [model]) if layer is not None]
    return max(sizes) if sizes else default
