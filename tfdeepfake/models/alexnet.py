"""AlexNet (the original PyTorch project's layout, with BatchNorm after every conv)."""

from __future__ import annotations

import keras
from keras import layers

from tfdeepfake.models.common import (
    conv_bn,
    image_input,
    mlp_head,
    preprocess,
    register_model,
    validate_common,
)

# (filters, kernel, stride, max-pool after the block)
_BLOCKS: tuple[tuple[int, int, int, bool], ...] = (
    (64, 11, 4, True),
    (192, 5, 1, True),
    (384, 3, 1, False),
    (256, 3, 1, False),
    (256, 3, 1, True),
)


@register_model("alexnet")
def build_alexnet(image_size: int = 224, *, l2: float = 1e-4, dropout: float = 0.5) -> keras.Model:
    """AlexNet: five conv-BN-ReLU blocks (pools after 1, 2, 5) and a 4096-4096 classifier.

    Pools use ``padding="same"`` so inputs down to 32 px still work. ``"features"`` is the ReLU
    after the fifth block (before its pool).
    """
    image_size, l2, dropout = validate_common(image_size, l2, dropout)
    inputs = image_input()
    x = preprocess(inputs, image_size)
    for i, (filters, kernel, stride, pool) in enumerate(_BLOCKS, start=1):
        last = i == len(_BLOCKS)
        x = conv_bn(
            x,
            filters,
            kernel,
            l2,
            f"block{i}",
            strides=stride,
            relu_name="features" if last else None,
        )
        if pool:
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{i}_pool")(x)
    outputs = mlp_head(x, l2, dropout)
    return keras.Model(inputs, outputs, name="alexnet")
