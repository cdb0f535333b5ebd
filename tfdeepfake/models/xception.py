"""Xception (entry flow, 8 middle-flow blocks, exit flow) with separable convolutions."""

from __future__ import annotations

import keras
from keras import layers

from tfdeepfake.models.common import (
    batch_norm,
    conv_bn,
    image_input,
    pooled_head,
    preprocess,
    register_model,
    sepconv_kwargs,
    validate_common,
)

_ENTRY_FILTERS: tuple[int, ...] = (128, 256, 728)
_MIDDLE_BLOCKS = 8
_MIDDLE_FILTERS = 728


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


@register_model("xception")
def build_xception(image_size: int = 224, *, l2: float = 1e-4, dropout: float = 0.5) -> keras.Model:
    """Xception: 2 stem convs, entry blocks (128, 256, 728), 8 middle blocks, exit flow, pool, logit.

    ``"features"`` is the ReLU after the last separable conv (2048 channels).
    """
    image_size, l2, dropout = validate_common(image_size, l2, dropout)
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
    return keras.Model(inputs, outputs, name="xception")
