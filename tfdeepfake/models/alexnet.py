"""AlexNet: the original project's layout (notebook 1), its CNN-RNN hybrid (notebook 4), and the
torchvision-width variant this port used before (``alexnet_tv``).

At 224 px the original conv stack maps 224 -> 54 (conv1) -> 26 (pool1) -> 26 -> 12 (pool2) -> 12 -> 5
(pool3), a 5 x 5 x 256 = 6,400-wide flatten.
"""

from __future__ import annotations

import keras
from keras import layers

from tfdeepfake.models.common import (
    conv_bn,
    dense_kwargs,
    image_input,
    logit_head,
    mlp_head,
    preprocess,
    register_model,
    regularizer,
    validate_common,
)

# (filters, kernel, stride, conv padding, max-pool after the block)
Block = tuple[int, int, int, str, bool]
ORIGINAL_BLOCKS: tuple[Block, ...] = (
    (96, 11, 4, "valid", True),  # PyTorch Conv2d(3, 96, 11, stride=4): no padding
    (256, 5, 1, "same", True),  # padding=2: "same" at stride 1
    (384, 3, 1, "same", False),  # padding=1
    (384, 3, 1, "same", False),
    (256, 3, 1, "same", True),
)
TV_BLOCKS: tuple[Block, ...] = (
    (64, 11, 4, "same", True),
    (192, 5, 1, "same", True),
    (384, 3, 1, "same", False),
    (256, 3, 1, "same", False),
    (256, 3, 1, "same", True),
)
RNN_UNITS: tuple[tuple[str, int], ...] = (
    ("rnn1", 256),  # RNN 6400 -> 256
    ("rnn2", 256),  # RNN 256 -> 256
    ("rnn3", 128),  # RNN 256 -> 128
    ("rnn4_1", 64),  # the 2-layer RNN 128 -> 64 ...
    ("rnn4_2", 64),  # ... its second layer 64 -> 64
)
"""The hybrid's recurrent layers (notebook 4), in order."""


def conv_stack(
    x: keras.KerasTensor, blocks: tuple[Block, ...], l2: float, *, original: bool
) -> keras.KerasTensor:
    """Five conv-BN-ReLU blocks with 3x3/2 max-pools after blocks 1, 2 and 5.

    ``original=True``: convs keep their bias (PyTorch's default) and pools are PyTorch's
    ``MaxPool2d(3, 2)`` (``"valid"``), except a pool whose input is smaller than 3 x 3 (inputs under
    67 px), which pads (``"same"``) to keep a 1 x 1 map instead of none. Otherwise pools are
    ``"same"`` and convs have no bias. ``"features"`` is the fifth block's ReLU (before its pool).
    """
    for i, (filters, kernel, stride, padding, pool) in enumerate(blocks, start=1):
        x = conv_bn(
            x,
            filters,
            kernel,
            l2,
            f"block{i}",
            strides=stride,
            padding=padding,
            use_bias=original,
            relu_name="features" if i == len(blocks) else None,
        )
        if pool:
            keep = original and min(x.shape[1], x.shape[2]) >= 3
            pad = "valid" if keep else "same"
            x = layers.MaxPooling2D(3, strides=2, padding=pad, name=f"block{i}_pool")(x)
    return x


@register_model("alexnet")
def build_alexnet(
    image_size: int = 224, *, l2: float = 1e-4, dropout: float | None = None
) -> keras.Model:
    """The original project's AlexNet (notebook 1): 46,753,857 parameters at 224 px.

    Conv 96 k11/4 (no padding) -> pool -> Conv 256 k5 -> pool -> Conv 384, 384, 256 k3 -> pool, every
    conv with bias and followed by BatchNorm + ReLU; pools are 3x3/2 without padding. Flatten (6,400
    at 224 px) -> Dropout -> FC 4096 -> ReLU -> Dropout -> FC 4096 -> ReLU -> FC 1; ``dropout``
    defaults to the original's 0.5.

    Smaller inputs (down to 32 px) build with the same layers: the flatten width follows the last map
    (5 x 5 at 224 px, 1 x 1 below ~99 px), and a pool whose input is under 3 x 3 pads instead of
    vanishing, so FC1 shrinks (256 inputs at 32-98 px).
    """
    image_size, l2, dropout = validate_common(image_size, l2, dropout, default_dropout=0.5)
    inputs = image_input()
    x = conv_stack(preprocess(inputs, image_size), ORIGINAL_BLOCKS, l2, original=True)
    outputs = mlp_head(x, l2, dropout)
    return keras.Model(inputs, outputs, name="alexnet")


@register_model("alexnet_rnn")
def build_alexnet_rnn(
    image_size: int = 224, *, l2: float = 1e-4, dropout: float | None = None
) -> keras.Model:
    """The original's CNN-RNN hybrid (notebook 4): 5,672,257 parameters at 224 px.

    :func:`build_alexnet`'s conv stack and 6,400-wide flatten, read as a sequence of length one by
    ``SimpleRNN`` 6400 -> 256 -> 256 -> 128, a two-layer ``SimpleRNN`` 128 -> 64 -> 64 (all tanh),
    then FC 64 -> 256 -> ReLU -> FC 256 -> 1, no dropout. With one time step and a zero initial state
    each RNN computes ``tanh(x W + b)``. PyTorch's ``nn.RNN`` keeps two bias vectors per layer
    (5,673,025 parameters there); Keras' ``SimpleRNN`` keeps one (768 fewer), the same function.
    Kernels and recurrent kernels carry the L2 penalty. ``dropout`` (default 0, as the original)
    adds a Dropout before the logit. Smaller inputs change only the flatten width (as AlexNet).
    """
    image_size, l2, dropout = validate_common(image_size, l2, dropout, default_dropout=0.0)
    inputs = image_input()
    x = conv_stack(preprocess(inputs, image_size), ORIGINAL_BLOCKS, l2, original=True)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Reshape((1, x.shape[-1]), name="sequence")(x)
    for i, (name, units) in enumerate(RNN_UNITS, start=1):
        x = layers.SimpleRNN(
            units,
            return_sequences=i < len(RNN_UNITS),
            unroll=True,  # one time step: no while loop
            kernel_regularizer=regularizer(l2),
            recurrent_regularizer=regularizer(l2),
            name=name,
        )(x)
    x = layers.Dense(256, name="fc1", **dense_kwargs(l2))(x)
    x = layers.ReLU(name="fc1_relu")(x)
    outputs = logit_head(x, l2, dropout)
    return keras.Model(inputs, outputs, name="alexnet_rnn")


@register_model("alexnet_tv")
def build_alexnet_tv(
    image_size: int = 224, *, l2: float = 1e-4, dropout: float | None = None
) -> keras.Model:
    """AlexNet with torchvision's widths (64, 192, 384, 256, 256), ``"same"`` padding everywhere and
    BatchNorm after bias-free convs (this port's layout before issue 14): 12,544-wide flatten and
    70.6 M parameters at 224 px. Same head as :func:`build_alexnet` (``dropout`` default 0.5).
    """
    image_size, l2, dropout = validate_common(image_size, l2, dropout, default_dropout=0.5)
    inputs = image_input()
    x = conv_stack(preprocess(inputs, image_size), TV_BLOCKS, l2, original=False)
    outputs = mlp_head(x, l2, dropout)
    return keras.Model(inputs, outputs, name="alexnet_tv")
