"""VGG-13 (configuration B), as the original project's notebook 2 (``VGG13_B``)."""

from __future__ import annotations

import keras
from keras import layers

from tfdeepfake.models.common import batch_norm as bn_layer
from tfdeepfake.models.common import (
    conv_kwargs,
    image_input,
    mlp_head,
    preprocess,
    register_model,
    validate_common,
)
from tfdeepfake.models.layers import FastGradConv2D

_VGG13_STAGES: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 2), (512, 2), (512, 2))
"""(filters, convs) per stage; a 2x2 max-pool follows every stage."""


@register_model("vgg13")
def build_vgg13(
    image_size: int = 224,
    *,
    l2: float = 1e-4,
    dropout: float | None = None,
    batch_norm: bool = False,
) -> keras.Model:
    """The original's VGG-13: 128,954,945 parameters at 224 px.

    3x3 conv (with bias, padding 1) + ReLU stages (2x64, 2x128, 2x256, 2x512, 2x512), each followed by
    a 2x2/2 max-pool: 224 -> 112 -> 56 -> 28 -> 14 -> 7, a 7 x 7 x 512 = 25,088-wide flatten. Head:
    FC 4096 -> ReLU -> Dropout -> FC 4096 -> ReLU -> FC 1, the Dropout's rate ``dropout`` defaulting
    to the original's 0 (no layer). Smaller inputs (down to 32 px) keep every layer; pools floor as
    PyTorch's do, so the flatten is ``(image_size // 32)^2 * 512`` wide.

    ``batch_norm=True`` inserts BatchNorm after each (then bias-free) conv, as torchvision's
    ``vgg13_bn``. ``"features"`` is the last conv's ReLU (before the last pool).
    """
    image_size, l2, dropout = validate_common(image_size, l2, dropout, default_dropout=0.0)
    if not isinstance(batch_norm, bool):
        raise ValueError(f"`batch_norm` must be a bool; got {batch_norm!r}.")
    inputs = image_input()
    x = preprocess(inputs, image_size)
    for s, (filters, convs) in enumerate(_VGG13_STAGES, start=1):
        for c in range(1, convs + 1):
            name = f"block{s}_conv{c}"
            last = s == len(_VGG13_STAGES) and c == convs
            x = FastGradConv2D(
                filters, 3, padding="same", use_bias=not batch_norm, name=name, **conv_kwargs(l2)
            )(x)
            if batch_norm:
                x = bn_layer(x, f"{name}_bn")
            x = layers.ReLU(name="features" if last else f"{name}_relu")(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{s}_pool")(x)
    outputs = mlp_head(x, l2, dropout, dropout_before=(2,))
    return keras.Model(inputs, outputs, name="vgg13")
