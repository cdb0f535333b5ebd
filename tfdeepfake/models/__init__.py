"""Model registry: build any detector by name.

>>> from tfdeepfake.models import build_model
>>> model = build_model("resnet18", image_size=224, l2=1e-4, dropout=0.5)

Every model takes raw RGB images (0-255, any size) and returns one float32 logit per image
(``sigmoid`` = probability of *fake*). See ``docs/DESIGN.md`` for the full contract.

Adding an architecture: a new module here whose builder is decorated with
``@register_model("name")``, and its module name in :data:`FAMILIES`. The builder's extra keyword-only
parameters are its options (``model_options``), reachable from ``train --model-option KEY=VALUE``.
"""

from __future__ import annotations

import importlib
from typing import Any

import keras

from tfdeepfake.models.layers import ClassToken, ClassTokenSelect, PositionEmbedding
from tfdeepfake.models.registry import (
    check_model_options,
    get_builder,
    model_options,
    register_model,
    registered_names,
)

FAMILIES: tuple[str, ...] = ("alexnet", "vgg", "resnet", "densenet", "xception", "vit")
"""Modules of ``tfdeepfake.models`` whose import registers their builders, in the order of the original
project (the order of :data:`MODEL_NAMES`)."""

for _family in FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")

MODEL_NAMES: tuple[str, ...] = registered_names()
"""Registered architectures, in registration order (see :data:`FAMILIES`)."""


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
    ``kwargs`` are the builder's options (:func:`model_options`, e.g. ``size``/``patch_size`` for
    ``vit``, ``batch_norm`` for ``vgg13``). Raises ``ValueError`` for an unknown name or invalid
    arguments.
    """
    return get_builder(name)(image_size, l2=l2, dropout=dropout, **kwargs)


__all__ = [
    "FAMILIES",
    "MODEL_NAMES",
    "ClassToken",
    "ClassTokenSelect",
    "PositionEmbedding",
    "build_model",
    "check_model_options",
    "get_builder",
    "model_options",
    "register_model",
    "registered_names",
]
