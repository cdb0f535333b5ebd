"""Model registry: build any detector by name.

>>> from tfdeepfake.models import build_model
>>> model = build_model("resnet18", image_size=224, l2=1e-4, dropout=0.5)

Every model takes raw RGB images (0-255, any size) and returns one float32 logit per image
(``sigmoid`` = probability of *fake*). See ``docs/DESIGN.md`` for the full contract.

Adding an architecture: a new module here whose builder is decorated with
``@register_model("name")``, and its module name in :data:`FAMILIES`. The builder's extra keyword-only
parameters are its options (``model_options``), reachable from ``train --model-option KEY=VALUE``.
Ensembles of trained models are built and taken apart in :mod:`tfdeepfake.models.fusion`.
"""

from __future__ import annotations

import importlib
from typing import Any

import keras

import tfdeepfake.optim  # noqa: F401  (registers MomentumSGD, so a compiled .keras of ours loads)
import tfdeepfake.recipe  # noqa: F401  (registers WarmupSchedule, the learning rate of a compiled run)
from tfdeepfake.models.common import input_options
from tfdeepfake.models.fusion import (
    FuseLogits,
    build_ensemble,
    model_image_size,
    split_ensemble,
)
from tfdeepfake.models.layers import ClassToken, ClassTokenSelect, PositionEmbedding
from tfdeepfake.models.registry import (
    check_model_options,
    get_builder,
    model_options,
    register_model,
    registered_names,
)
from tfdeepfake.models.representations import (
    REPRESENTATIONS,
    HaarSubbands,
    HaarWavelet,
    HighPassResidual,
    model_representation,
)
from tfdeepfake.models.tta import FlipBatch, FlipMean, has_tta_flip

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
    dropout: float | None = None,
    representation: str = "rgb",
    tta_flip: bool = False,
    **kwargs: Any,
) -> keras.Model:
    """Build architecture ``name`` (see :data:`MODEL_NAMES`) for ``image_size`` x ``image_size`` inputs.

    ``l2`` is the L2 factor on every conv/dense/attention/RNN kernel, ``dropout`` the classifier dropout
    (``None``: the architecture's own, e.g. the original's 0.5 for AlexNet and none for VGG13/Xception);
    ``kwargs`` are the builder's options (:func:`model_options`, e.g. ``size``/``patch_size`` for
    ``vit``, ``batch_norm`` for ``vgg13``). ``representation`` (one of :data:`REPRESENTATIONS`) is
    what the first layer sees after resizing and normalisation, ``tta_flip`` averages the logits of each
    image and its mirror image at inference; every builder honours both (through
    ``common.preprocess``/``logit_head``). Raises ``ValueError`` for an unknown name or invalid
    arguments.
    """
    with input_options(representation, tta_flip):
        model = get_builder(name)(image_size, l2=l2, dropout=dropout, **kwargs)
    if model_representation(model) != representation or has_tta_flip(model) != tta_flip:
        raise ValueError(f"builder of {name!r} ignores representation/tta_flip "
                         "(it must use common.preprocess and common.logit_head)")
    return model


__all__ = [
    "FAMILIES",
    "MODEL_NAMES",
    "REPRESENTATIONS",
    "ClassToken",
    "ClassTokenSelect",
    "FlipBatch",
    "FlipMean",
    "FuseLogits",
    "HaarSubbands",
    "HaarWavelet",
    "HighPassResidual",
    "PositionEmbedding",
    "build_ensemble",
    "build_model",
    "check_model_options",
    "get_builder",
    "has_tta_flip",
    "model_image_size",
    "model_options",
    "model_representation",
    "register_model",
    "registered_names",
    "split_ensemble",
]
