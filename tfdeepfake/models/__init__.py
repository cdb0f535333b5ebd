"""Model registry: build any detector by name.

>>> from tfdeepfake.models import build_model
>>> model = build_model("resnet18", image_size=224, l2=1e-4, dropout=0.5)

Every model takes raw RGB images (0-255, any size) and returns one float32 logit per image
(``sigmoid`` = probability of *fake*). See ``docs/DESIGN.md`` for the full contract.
"""

from __future__ import annotations

from typing import Any

import keras

# Importing the family modules registers their builders.
from tfdeepfake.models import alexnet, densenet, resnet, vgg, vit, xception  # noqa: F401
from tfdeepfake.models.common import get_builder, register_model, registered_names
from tfdeepfake.models.layers import ClassToken, ClassTokenSelect, PositionEmbedding

MODEL_NAMES: tuple[str, ...] = ("alexnet", "vgg13", "resnet18", "densenet121", "xception", "vit")
"""Registered architectures, in the order of the original project."""

if set(MODEL_NAMES) != set(registered_names()):  # pragma: no cover - guards against drift
    raise RuntimeError(f"MODEL_NAMES {MODEL_NAMES} != registered {registered_names()}")


def build_model(
    name: str,
    image_size: int = 224,
    *,
    l2: float = 1e-4,
    dropout: float = 0.5,
    **kwargs: Any,
) -> keras.Model:
    """Build architecture ``name`` (see :data:`MODEL_NAMES`) for ``image_size`` x ``image_size`` inputs.

    ``l2`` is the L2 factor on every conv/dense/attention kernel, ``dropout`` the classifier dropout;
    ``kwargs`` go to the family builder (e.g. ``size``/``patch_size`` for ``vit``, ``batch_norm`` for
    ``vgg13``). Raises ``ValueError`` for an unknown name or invalid arguments.
    """
    return get_builder(name)(image_size, l2=l2, dropout=dropout, **kwargs)


__all__ = [
    "MODEL_NAMES",
    "ClassToken",
    "ClassTokenSelect",
    "PositionEmbedding",
    "build_model",
    "get_builder",
    "register_model",
]
