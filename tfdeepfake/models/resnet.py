"""ResNet-18 (basic blocks, projection shortcuts)."""

from __future__ import annotations

import keras
from keras import layers

from tfdeepfake.models.common import (
    conv_bn,
    image_input,
    pooled_head,
    preprocess,
    register_model,
    stem,
    validate_common,
)

_RESNET18_STAGES: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 2), (512, 2))
"""(filters, basic blocks) per stage; stages 2-4 start with stride 2."""


def basic_block(
    x: keras.KerasTensor,
    filters: int,
    l2: float,
    name: str,
    *,
    strides: int = 1,
    out_name: str | None = None,
) -> keras.KerasTensor:
    """Two 3x3 conv-BN layers plus a shortcut (1x1 conv-BN projection when the shape changes)."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = conv_bn(x, filters, 1, l2, f"{name}_proj", strides=strides, relu=False)
    y = conv_bn(x, filters, 3, l2, f"{name}_1", strides=strides)
    y = conv_bn(y, filters, 3, l2, f"{name}_2", relu=False)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=out_name or f"{name}_out")(y)


@register_model("resnet18")
def build_resnet18(image_size: int = 224, *, l2: float = 1e-4, dropout: float = 0.5, stem_stride: int = 2,
                   stem_pool: bool = True) -> keras.Model:
    """ResNet-18: 7x7 stem, basic blocks [2, 2, 2, 2] (64-512 filters), global pool, logit.

    The stem is torchvision's (7x7/2 conv, 3x3/2 max-pool) unless ``stem_stride=1`` or
    ``stem_pool=False`` (:func:`~tfdeepfake.models.common.stem`). ``"features"`` is the output of the
    last block.
    """
    image_size, l2, dropout = validate_common(image_size, l2, dropout)
    inputs = image_input()
    x = stem(preprocess(inputs, image_size), 64, l2, strides=stem_stride, pool=stem_pool)
    for s, (filters, blocks) in enumerate(_RESNET18_STAGES, start=1):
        for b in range(1, blocks + 1):
            last = s == len(_RESNET18_STAGES) and b == blocks
            x = basic_block(
                x,
                filters,
                l2,
                f"stage{s}_block{b}",
                strides=2 if (s > 1 and b == 1) else 1,
                out_name="features" if last else None,
            )
    outputs = pooled_head(x, l2, dropout)
    return keras.Model(inputs, outputs, name="resnet18")
