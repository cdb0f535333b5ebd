"""DenseNet-121 (growth 32, bottleneck 4x, compression 0.5)."""

from __future__ import annotations

import keras
from keras import layers

from tfdeepfake.models.common import (
    bn_relu,
    conv_kwargs,
    image_input,
    pooled_head,
    preprocess,
    register_model,
    stem,
    validate_common,
)
from tfdeepfake.models.layers import FastGradConv2D

_DENSENET121_BLOCKS: tuple[int, ...] = (6, 12, 24, 16)
_GROWTH = 32
_BOTTLENECK = 4
_COMPRESSION = 0.5


def _conv(
    x: keras.KerasTensor, filters: int, kernel: int, l2: float, name: str
) -> keras.KerasTensor:
    return FastGradConv2D(
        filters, kernel, padding="same", use_bias=False, name=name, **conv_kwargs(l2)
    )(x)


def dense_layer(x: keras.KerasTensor, l2: float, name: str) -> keras.KerasTensor:
    """BN-ReLU-Conv1x1(4k) -> BN-ReLU-Conv3x3(k), concatenated to the input."""
    y = bn_relu(x, f"{name}_1")
    y = _conv(y, _BOTTLENECK * _GROWTH, 1, l2, f"{name}_1_conv")
    y = bn_relu(y, f"{name}_2")
    y = _conv(y, _GROWTH, 3, l2, f"{name}_2_conv")
    return layers.Concatenate(name=f"{name}_concat")([x, y])


def transition(x: keras.KerasTensor, l2: float, name: str) -> keras.KerasTensor:
    """BN-ReLU-Conv1x1 (channels x compression) -> 2x2 average pool."""
    x = bn_relu(x, name)
    x = _conv(x, int(x.shape[-1] * _COMPRESSION), 1, l2, f"{name}_conv")
    return layers.AveragePooling2D(2, strides=2, padding="same", name=f"{name}_pool")(x)


@register_model("densenet121")
def build_densenet121(
    image_size: int = 224, *, l2: float = 1e-4, dropout: float = 0.5, stem_stride: int = 2,
    stem_pool: bool = True,
) -> keras.Model:
    """DenseNet-121: 7x7 stem, dense blocks [6, 12, 24, 16] with transitions, BN-ReLU, pool, logit.

    The stem is torchvision's (7x7/2 conv, 3x3/2 max-pool) unless ``stem_stride=1`` or
    ``stem_pool=False`` (:func:`~tfdeepfake.models.common.stem`). ``"features"`` is the final BN-ReLU
    output.
    """
    image_size, l2, dropout = validate_common(image_size, l2, dropout)
    inputs = image_input()
    x = stem(preprocess(inputs, image_size), 2 * _GROWTH, l2, strides=stem_stride, pool=stem_pool)
    for b, n_layers in enumerate(_DENSENET121_BLOCKS, start=1):
        for i in range(1, n_layers + 1):
            x = dense_layer(x, l2, f"block{b}_layer{i}")
        if b < len(_DENSENET121_BLOCKS):
            x = transition(x, l2, f"transition{b}")
    x = bn_relu(x, "final", relu_name="features")
    outputs = pooled_head(x, l2, dropout)
    return keras.Model(inputs, outputs, name="densenet121")
