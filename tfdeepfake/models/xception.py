"""Xception: the original project's layout (notebook 3) as ``xception``, and the canonical Keras
Xception (entry flow, 8 middle-flow blocks, exit flow) as ``xception_keras``.

The original at 224 px: stem 224 -> 112 (3x3/2, padding 1) -> 112, entry blocks -> 56 -> 28 -> 14, one
middle-flow module applied nine times at 14 x 14 x 728, exit block -> 7, then 1536 and 2048 channels.
"""

from __future__ import annotations

import keras
from keras import layers

from tfdeepfake.models.common import (
    BN_EPSILON,
    BN_MOMENTUM,
    batch_norm,
    conv_bn,
    conv_kwargs,
    image_input,
    pooled_head,
    preprocess,
    register_model,
    regularizer,
    sepconv_kwargs,
    validate_common,
)
from tfdeepfake.models.layers import PaddedMaxPooling2D

_ENTRY_FILTERS: tuple[int, ...] = (128, 256, 728)
_MIDDLE_BLOCKS = 8
_MIDDLE_FILTERS = 728
MIDDLE_REPEATS = 9
"""How many times the original applies its one middle-flow module."""


def sep_bn(
    x: keras.KerasTensor, filters: int, l2: float, name: str, *, pre_relu: bool
) -> keras.KerasTensor:
    """[ReLU] -> 3x3 SeparableConv2D (no bias) -> BatchNorm."""
    if pre_relu:
        x = layers.ReLU(name=f"{name}_relu")(x)
    x = layers.SeparableConv2D(
        filters, 3, padding="same", use_bias=False, name=f"{name}_sepconv", **sepconv_kwargs(l2)
    )(x)
    return batch_norm(x, f"{name}_bn")


def downsample_block(
    x: keras.KerasTensor, filters: tuple[int, int], l2: float, name: str, *, pre_relu: bool
) -> keras.KerasTensor:
    """Two separable convs + 3x3/2 max-pool, added to a strided 1x1 conv-BN projection."""
    shortcut = conv_bn(x, filters[1], 1, l2, f"{name}_proj", strides=2, relu=False)
    x = sep_bn(x, filters[0], l2, f"{name}_1", pre_relu=pre_relu)
    x = sep_bn(x, filters[1], l2, f"{name}_2", pre_relu=True)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool")(x)
    return layers.Add(name=f"{name}_add")([x, shortcut])


# ------------------------------------------------------------------------------------- the original
def separable(filters: int, l2: float, name: str) -> tuple[keras.layers.Layer, keras.layers.Layer]:
    """The original's ``DepthWiseSeparable``: a 3x3 depthwise conv and a 1x1 conv, both with bias
    (Keras' ``SeparableConv2D`` has only the second bias), layers ``{name}_dw`` / ``{name}_pw``."""
    depthwise = layers.DepthwiseConv2D(
        3, padding="same", depthwise_regularizer=regularizer(l2), name=f"{name}_dw"
    )
    pointwise = layers.Conv2D(filters, 1, name=f"{name}_pw", **conv_kwargs(l2))
    return depthwise, pointwise


def apply(x: keras.KerasTensor, chain: tuple[keras.layers.Layer, ...]) -> keras.KerasTensor:
    for layer in chain:
        x = layer(x)
    return x


def middle_module(l2: float) -> tuple[keras.layers.Layer, ...]:
    """The original's middle-flow module, created once: [ReLU -> separable 728 -> BN] x 2 -> ReLU ->
    separable 728 (no BN after the last). Layers ``middle_*``; apply with :func:`apply`."""
    chain: list[keras.layers.Layer] = []
    for j in (1, 2, 3):
        chain.append(layers.ReLU(name=f"middle_relu{j}"))
        chain.extend(separable(_MIDDLE_FILTERS, l2, f"middle_sep{j}"))
        if j < 3:
            chain.append(
                layers.BatchNormalization(
                    momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"middle_bn{j}"
                )
            )
    return tuple(chain)


def original_block(
    x: keras.KerasTensor, filters: tuple[int, int], l2: float, name: str, *, pre_relu: bool
) -> keras.KerasTensor:
    """[ReLU ->] separable -> BN -> ReLU -> separable -> BN -> max-pool 3/2 (PyTorch padding 1), added
    to a 1x1 stride-2 conv of the block input (with bias, no BN)."""
    project = layers.Conv2D(filters[1], 1, strides=2, name=f"{name}_shortcut", **conv_kwargs(l2))
    shortcut = project(x)
    if pre_relu:
        x = layers.ReLU(name=f"{name}_relu0")(x)
    x = apply(x, separable(filters[0], l2, f"{name}_sep1"))
    x = batch_norm(x, f"{name}_bn1")
    x = layers.ReLU(name=f"{name}_relu1")(x)
    x = apply(x, separable(filters[1], l2, f"{name}_sep2"))
    x = batch_norm(x, f"{name}_bn2")
    x = PaddedMaxPooling2D(3, 2, 1, name=f"{name}_pool")(x)
    return layers.Add(name=f"{name}_add")([x, shortcut])


@register_model("xception")
def build_xception(
    image_size: int = 224, *, l2: float = 1e-4, dropout: float | None = None
) -> keras.Model:
    """The original project's Xception (notebook 3): 10,047,617 parameters at 224 px.

    Stem: Conv 32 3x3/2 with padding 1 (``ZeroPadding2D`` + ``"valid"``, as PyTorch pads both sides)
    and Conv 64 3x3 padding 1, each with bias + BN + ReLU. Entry blocks 64 -> 128, 128 -> 256,
    256 -> 728 (:func:`original_block`). Middle flow: ONE module (:func:`middle_module`) applied
    nine times with shared weights, each time added to its input. Exit block 728 -> 1024 -> 1024,
    then separable 1536 -> BN -> ReLU -> separable 2048 -> BN -> ReLU (``"features"``), global
    average pool and one FC; ``dropout`` (default 0, as the original) adds a Dropout before it.
    Every conv, separable half included, keeps PyTorch's bias.

    Smaller inputs (down to 32 px) keep every layer: each stride-2 step maps ``n -> ceil(n / 2)``,
    so 32 px gives a 1 x 1 final map.
    """
    image_size, l2, dropout = validate_common(image_size, l2, dropout, default_dropout=0.0)
    inputs = image_input()
    x = preprocess(inputs, image_size)
    x = layers.ZeroPadding2D(1, name="stem1_pad")(x)
    x = conv_bn(x, 32, 3, l2, "stem1", strides=2, padding="valid", use_bias=True)
    x = conv_bn(x, 64, 3, l2, "stem2", use_bias=True)
    for i, filters in enumerate(_ENTRY_FILTERS, start=1):
        x = original_block(x, (filters, filters), l2, f"entry_block{i}", pre_relu=i > 1)
    middle = middle_module(l2)
    for k in range(1, MIDDLE_REPEATS + 1):
        x = layers.Add(name=f"middle_add{k}")([x, apply(x, middle)])
    x = original_block(x, (1024, 1024), l2, "exit_block1", pre_relu=True)
    x = apply(x, separable(1536, l2, "exit_sep2"))
    x = batch_norm(x, "exit_bn2")
    x = layers.ReLU(name="exit_relu2")(x)
    x = apply(x, separable(2048, l2, "exit_sep3"))
    x = batch_norm(x, "exit_bn3")
    x = layers.ReLU(name="features")(x)
    outputs = pooled_head(x, l2, dropout)
    return keras.Model(inputs, outputs, name="xception")


@register_model("xception_keras")
def build_xception_keras(
    image_size: int = 224, *, l2: float = 1e-4, dropout: float | None = None
) -> keras.Model:
    """The canonical Keras Xception (this port's layout before issue 14; 20.8 M parameters at 224 px):
    2 unpadded stem convs, entry blocks (128, 256, 728) with conv-BN shortcuts, 8 separate middle
    blocks, exit flow 728 -> 728 -> 1024, 1536, 2048, pool, Dropout (``dropout``, default 0.5), logit.

    ``"features"`` is the ReLU after the last separable conv (2048 channels).
    """
    image_size, l2, dropout = validate_common(image_size, l2, dropout, default_dropout=0.5)
    inputs = image_input()
    x = preprocess(inputs, image_size)
    # Entry flow.
    x = conv_bn(x, 32, 3, l2, "entry_stem1", strides=2, padding="valid")
    x = conv_bn(x, 64, 3, l2, "entry_stem2", padding="valid")
    for i, filters in enumerate(_ENTRY_FILTERS, start=1):
        x = downsample_block(x, (filters, filters), l2, f"entry_block{i}", pre_relu=i > 1)
    # Middle flow.
    for i in range(1, _MIDDLE_BLOCKS + 1):
        y = x
        for j in range(1, 4):
            y = sep_bn(y, _MIDDLE_FILTERS, l2, f"middle_block{i}_{j}", pre_relu=True)
        x = layers.Add(name=f"middle_block{i}_add")([x, y])
    # Exit flow.
    x = downsample_block(x, (728, 1024), l2, "exit_block1", pre_relu=True)
    x = sep_bn(x, 1536, l2, "exit_block2_1", pre_relu=False)
    x = layers.ReLU(name="exit_block2_1_out")(x)
    x = sep_bn(x, 2048, l2, "exit_block2_2", pre_relu=False)
    x = layers.ReLU(name="features")(x)
    outputs = pooled_head(x, l2, dropout)
    return keras.Model(inputs, outputs, name="xception_keras")
