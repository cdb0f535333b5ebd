"""Pieces shared by every model family: argument checks, input/preprocessing, blocks, head.

Every builder follows the contract in ``docs/DESIGN.md``: raw RGB images (0-255, any size, any numeric
dtype) go in, a ``Resizing`` + ImageNet ``Normalization`` prefix brings them to ``image_size``, and the model
ends in one float32 logit named ``"logit"``. The last spatial feature map is a layer named ``"features"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import keras
from keras import layers, ops

from tfdeepfake.models.layers import FastGradConv2D

# The registry lives in its own module; re-exported here for the family modules.
from tfdeepfake.models.registry import (  # noqa: F401
    ModelBuilder,
    get_builder,
    register_model,
    registered_names,
)
from tfdeepfake.models.representations import check_representation, representation_layer
from tfdeepfake.models.tta import FlipBatch, FlipMean

MIN_IMAGE_SIZE = 32
"""Smallest ``image_size`` any family accepts (every family still has a >= 1x1 map at its last stage)."""

IMAGENET_MEAN: tuple[float, float, float] = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD: tuple[float, float, float] = (0.229 * 255, 0.224 * 255, 0.225 * 255)

BN_MOMENTUM = 0.9
"""Keras momentum equal to PyTorch's BatchNorm ``momentum=0.1`` (faster-moving statistics than Keras' 0.99)."""
BN_EPSILON = 1e-5
"""PyTorch's BatchNorm epsilon."""


# ------------------------------------------------------------------------------------------- validation
def validate_image_size(image_size: Any, min_size: int = MIN_IMAGE_SIZE) -> int:
    """``image_size`` as an int, checked to be an integer ``>= min_size``."""
    if isinstance(image_size, bool) or not isinstance(image_size, int):
        raise ValueError(
            f"`image_size` must be an int (height = width in pixels); got {image_size!r} "
            f"of type {type(image_size).__name__}."
        )
    if image_size < min_size:
        raise ValueError(
            f"`image_size` must be >= {min_size} for this architecture; got {image_size}."
        )
    return image_size


def validate_rate(value: Any, name: str) -> float:
    """A rate in ``[0, 1)`` (dropout-like), as float."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"`{name}` must be a number in [0, 1); got {value!r}.")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1); got {value}.")
    return float(value)


def validate_common(
    image_size: Any,
    l2: Any,
    dropout: Any,
    min_size: int = MIN_IMAGE_SIZE,
    *,
    default_dropout: float = 0.5,
) -> tuple[int, float, float]:
    """Check the arguments every builder shares; returns ``(image_size, l2, dropout)``.

    ``dropout=None`` means the architecture's own rate, ``default_dropout``.
    """
    image_size = validate_image_size(image_size, min_size)
    if dropout is None:
        dropout = default_dropout
    if isinstance(l2, bool) or not isinstance(l2, int | float) or not math.isfinite(l2) or l2 < 0:
        raise ValueError(f"`l2` (weight decay factor) must be a finite number >= 0; got {l2!r}.")
    dropout = validate_rate(dropout, "dropout")
    return image_size, float(l2), dropout


# ------------------------------------------------------------------------------------ input/preprocess
def image_input() -> keras.KerasTensor:
    """The model input: raw RGB images of any height/width, ``(batch, None, None, 3)``."""
    return keras.Input(shape=(None, None, 3), name="image")


@keras.saving.register_keras_serializable(package="tfdeepfake")
class Resize(layers.Resizing):
    """Bilinear ``Resizing`` that passes images through unchanged when their size is already the target.

    Known static sizes are decided when the step is traced (a training step on 224 px batches has
    no resize op at all); unknown ones (the exported signature over ``(None, None, None, 3)``) by a
    ``cond`` on the runtime shape. Bilinear resizing to the same size is the identity, so outputs
    are equal either way.
    """

    def call(self, inputs: Any) -> Any:
        shape = tuple(getattr(inputs, "shape", ()))
        if len(shape) != 4 or shape[3] is None:
            return super().call(inputs)
        target = (self.height, self.width)
        if shape[1] is not None and shape[2] is not None:
            return self._same(inputs) if shape[1:3] == target else super().call(inputs)
        dynamic = ops.shape(inputs)
        same = ops.logical_and(ops.equal(dynamic[1], target[0]), ops.equal(dynamic[2], target[1]))
        return ops.cond(
            same,
            lambda: ops.reshape(self._same(inputs), (-1, *target, shape[3])),
            lambda: super(Resize, self).call(inputs),
        )

    def _same(self, inputs: Any) -> Any:
        return ops.cast(inputs, self.compute_dtype)


def normalize_layer(name: str = "normalize") -> layers.Rescaling:
    """ImageNet mean/std normalisation as one multiply-add per value: ``x * (1/std) - mean/std``.

    Runs in float32 (0-255 values and the means are not exact in bfloat16).
    """
    return layers.Rescaling(
        scale=[1.0 / s for s in IMAGENET_STD],
        offset=[-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)],
        name=name,
        dtype="float32",
    )


@dataclass(frozen=True)
class InputOptions:
    """Options every builder honours through :func:`preprocess` and :func:`logit_head` (set by
    ``build_model`` with :func:`input_options`): the input representation
    (:mod:`tfdeepfake.models.representations`) and test-time flip averaging (:mod:`~.tta`)."""

    representation: str = "rgb"
    tta_flip: bool = False


_INPUT_OPTIONS: ContextVar[InputOptions] = ContextVar(
    "tfdeepfake_input_options", default=InputOptions()  # noqa: B039 - frozen dataclass
)


@contextmanager
def input_options(representation: str = "rgb", tta_flip: bool = False) -> Iterator[InputOptions]:
    """Models built inside this context use ``representation`` and ``tta_flip``."""
    if not isinstance(tta_flip, bool):
        raise ValueError(f"`tta_flip` must be True or False; got {tta_flip!r}.")
    options = InputOptions(check_representation(representation), tta_flip)
    token = _INPUT_OPTIONS.set(options)
    try:
        yield options
    finally:
        _INPUT_OPTIONS.reset(token)


def preprocess(inputs: keras.KerasTensor, image_size: int) -> keras.KerasTensor:
    """Resize (bilinear, skipped when the size already matches) to ``image_size``, then normalise
    with ImageNet mean/std (:func:`normalize_layer`), then the input representation's layer (named
    ``"representation"``; none for RGB). With flip averaging, a ``FlipBatch`` layer (``"tta_flip"``)
    comes first.

    These layers run in float32 even under a mixed-precision policy; the next layer casts to the
    compute dtype.
    """
    options = _INPUT_OPTIONS.get()
    x = FlipBatch(name="tta_flip")(inputs) if options.tta_flip else inputs
    x = Resize(image_size, image_size, interpolation="bilinear", name="resize", dtype="float32")(x)
    x = normalize_layer()(x)
    extra = representation_layer(options.representation)
    return x if extra is None else extra(x)


# ------------------------------------------------------------------------------------- layer kwargs
def regularizer(l2: float) -> keras.regularizers.Regularizer:
    """A fresh ``L2(l2)`` regularizer (one instance per layer)."""
    return keras.regularizers.L2(l2)


def conv_kwargs(l2: float) -> dict[str, Any]:
    """Keyword arguments for ``Conv2D``: He-normal init (ReLU networks) and L2 on the kernel."""
    return {"kernel_initializer": "he_normal", "kernel_regularizer": regularizer(l2)}


def sepconv_kwargs(l2: float) -> dict[str, Any]:
    """Keyword arguments for ``SeparableConv2D``: L2 on both depthwise and pointwise kernels."""
    return {
        "depthwise_regularizer": regularizer(l2),
        "pointwise_regularizer": regularizer(l2),
        "pointwise_initializer": "he_normal",
    }


def dense_kwargs(l2: float) -> dict[str, Any]:
    """Keyword arguments for ``Dense`` (and attention projections): L2 on the kernel."""
    return {"kernel_regularizer": regularizer(l2)}


# -------------------------------------------------------------------------------------------- blocks
def batch_norm(x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    """``BatchNormalization`` with PyTorch-like momentum/epsilon."""
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)(x)


def bn_relu(x: keras.KerasTensor, name: str, relu_name: str | None = None) -> keras.KerasTensor:
    """BatchNorm then ReLU (pre-activation style); layers named ``{name}_bn`` / ``{name}_relu``."""
    x = batch_norm(x, f"{name}_bn")
    return layers.ReLU(name=relu_name or f"{name}_relu")(x)


def conv_bn(
    x: keras.KerasTensor,
    filters: int,
    kernel_size: int,
    l2: float,
    name: str,
    *,
    strides: int = 1,
    padding: str = "same",
    relu: bool = True,
    relu_name: str | None = None,
    use_bias: bool = False,
) -> keras.KerasTensor:
    """Conv2D -> BatchNorm [-> ReLU]; layers named ``{name}_conv`` / ``_bn`` / ``_relu``.

    ``use_bias=True`` keeps the conv bias PyTorch's ``Conv2d`` has by default (redundant before BN,
    but part of the original layouts' parameter counts).
    """
    x = FastGradConv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=use_bias,
        name=f"{name}_conv",
        **conv_kwargs(l2),
    )(x)
    x = batch_norm(x, f"{name}_bn")
    if relu:
        x = layers.ReLU(name=relu_name or f"{name}_relu")(x)
    return x


def stem(x: keras.KerasTensor, filters: int, l2: float, *, strides: int = 2,
         pool: bool = True) -> keras.KerasTensor:
    """ResNet/DenseNet stem: 7x7/2 conv -> BN -> ReLU -> 3x3/2 max-pool (the input / 4).

    ``strides=1`` and ``pool=False`` keep more of the input's resolution (/2 each less), for small inputs
    and for the fine detail a detector may need (Gragnaniello et al., 2021: no down-sampling in the first
    layer); the weights are the same either way, so ``--init-from`` works across them."""
    if isinstance(strides, bool) or strides not in (1, 2):
        raise ValueError(f"`stem_stride` must be 1 or 2; got {strides!r}.")
    if not isinstance(pool, bool):
        raise ValueError(f"`stem_pool` must be a bool; got {pool!r}.")
    x = conv_bn(x, filters, 7, l2, "stem", strides=strides)
    return layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x) if pool else x


def logit_head(x: keras.KerasTensor, l2: float, dropout: float) -> keras.KerasTensor:
    """``[Dropout] -> Dense(1)`` in float32 named ``"logit"`` (the fake-vs-real logit), followed with
    flip averaging by the ``FlipMean`` layer ``"tta_mean"``."""
    if dropout > 0:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(1, dtype="float32", name="logit", **dense_kwargs(l2))(x)
    return FlipMean(name="tta_mean")(x) if _INPUT_OPTIONS.get().tta_flip else x


def pooled_head(x: keras.KerasTensor, l2: float, dropout: float) -> keras.KerasTensor:
    """Global average pooling then :func:`logit_head` (ResNet, DenseNet, Xception)."""
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return logit_head(x, l2, dropout)


def mlp_head(
    x: keras.KerasTensor,
    l2: float,
    dropout: float,
    units: int = 4096,
    *,
    dropout_before: tuple[int, ...] = (1, 2),
) -> keras.KerasTensor:
    """AlexNet/VGG classifier: Flatten -> ([Dropout] -> Dense -> ReLU) x 2 -> logit.

    ``dropout_before`` lists the hidden layers (1, 2) preceded by ``Dropout(dropout)``: both in
    AlexNet, only the second (after the first FC's ReLU) in the original VGG13.
    """
    x = layers.Flatten(name="flatten")(x)
    for i in (1, 2):
        if dropout > 0 and i in dropout_before:
            x = layers.Dropout(dropout, name=f"fc{i}_dropout")(x)
        x = layers.Dense(units, name=f"fc{i}", **dense_kwargs(l2))(x)
        x = layers.ReLU(name=f"fc{i}_relu")(x)
    return logit_head(x, l2, 0.0)
