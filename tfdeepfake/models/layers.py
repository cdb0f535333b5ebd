"""Custom Keras layers: class token, learned position embedding, class-token selection (ViT); max pooling
with PyTorch's symmetric padding (the original Xception); a ``Conv2D`` whose input gradient avoids a slow
TensorFlow CPU kernel (every CNN).

All are registered under the ``tfdeepfake`` package with a ``get_config`` so ``.keras`` files load
with ``safe_mode=True``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def _truncated_normal(stddev: float) -> keras.initializers.Initializer:
    return keras.initializers.TruncatedNormal(stddev=stddev)


@keras.saving.register_keras_serializable(package="tfdeepfake")
class ClassToken(keras.layers.Layer):
    """Prepends a learned ``[CLS]`` token: ``(b, n, d) -> (b, n + 1, d)``."""

    def __init__(self, initializer_range: float = 0.02, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.initializer_range = initializer_range

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.token = self.add_weight(
            shape=(1, 1, input_shape[-1]),
            initializer=_truncated_normal(self.initializer_range),
            name="token",
        )

    def call(self, inputs: Any) -> Any:
        token = ops.cast(self.token, inputs.dtype)
        token = ops.broadcast_to(token, (ops.shape(inputs)[0], 1, ops.shape(inputs)[-1]))
        return ops.concatenate([token, inputs], axis=1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        n = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], n, input_shape[2])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "initializer_range": self.initializer_range}


@keras.saving.register_keras_serializable(package="tfdeepfake")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned position embedding of shape ``(1, tokens, dim)`` (fixed token count)."""

    def __init__(self, initializer_range: float = 0.02, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.initializer_range = initializer_range

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if input_shape[1] is None:
            raise ValueError("PositionEmbedding needs a static number of tokens.")
        self.embedding = self.add_weight(
            shape=(1, input_shape[1], input_shape[2]),
            initializer=_truncated_normal(self.initializer_range),
            name="embedding",
        )

    def call(self, inputs: Any) -> Any:
        return inputs + ops.cast(self.embedding, inputs.dtype)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "initializer_range": self.initializer_range}


@keras.saving.register_keras_serializable(package="tfdeepfake")
class ClassTokenSelect(keras.layers.Layer):
    """Selects the ``[CLS]`` token (index 0): ``(b, n, d) -> (b, d)``."""

    def call(self, inputs: Any) -> Any:
        return inputs[:, 0, :]

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="tfdeepfake")
class PaddedMaxPooling2D(keras.layers.Layer):
    """PyTorch's ``nn.MaxPool2d(pool_size, strides, padding)``: ``padding`` pixels of -inf on every
    side, then a ``"valid"`` max pool, so ``n -> (n + 2 * padding - pool_size) // strides + 1``.

    Keras' ``padding="same"`` differs on even sizes (it pads only after, shifting every window by one
    pixel), and ``ZeroPadding2D`` would let the padding win over negative values.
    """

    def __init__(
        self, pool_size: int = 3, strides: int = 2, padding: int = 1, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.pool_size, self.strides, self.padding = int(pool_size), int(strides), int(padding)

    def call(self, inputs: Any) -> Any:
        p = self.padding
        if p:
            inputs = ops.pad(
                inputs, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=float("-inf")
            )
        return ops.max_pool(inputs, self.pool_size, self.strides, padding="valid")

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        def size(n: int | None) -> int | None:
            return (
                None if n is None else (n + 2 * self.padding - self.pool_size) // self.strides + 1
            )

        return (input_shape[0], size(input_shape[1]), size(input_shape[2]), input_shape[3])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": self.padding,
        }


# TensorFlow's CPU kernel for a convolution's input gradient (Conv2DBackpropInput) is far slower than
# the forward convolution on small maps: 218 ms vs 5.4 ms for a 3x3, 512 -> 512 conv on a 32 x 2 x 2
# batch (resnet18's last stage at 64 px), 107 vs 15 ms at 4 x 4, 158 vs 60 ms at 8 x 8 (2 Zen 3 cores,
# TF 2.21; benchmarks/step_cost.py). For stride 1 the input gradient *is* a forward convolution of the
# output gradient with the spatially flipped, in/out-transposed kernel, so FastGradConv2D computes it so.
FAST_CONV_GRAD = True  # module switch, read when a step is traced (benchmarks compare both)


def _conv_fast_input_grad(inputs: Any, kernel: Any, padding: str) -> Any:
    """``tf.nn.conv2d(inputs, kernel, 1, padding)`` with the input gradient as a forward conv."""
    import tensorflow as tf

    @tf.custom_gradient
    def conv(x: Any, k: Any) -> Any:
        def grad(dy: Any) -> tuple[Any, Any]:
            flipped = tf.transpose(tf.reverse(k, [0, 1]), [0, 1, 3, 2])
            if padding == "VALID":  # "full" correlation: pad by kernel - 1 on every side
                kh, kw = int(k.shape[0]), int(k.shape[1])
                dy_in = tf.pad(dy, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]])
            else:  # SAME with an odd kernel: the flipped kernel's SAME padding is the mirror of the forward's
                dy_in = dy
            dx = tf.nn.conv2d(dy_in, flipped, 1, "VALID" if padding == "VALID" else "SAME")
            dk = tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(k), out_backprop=dy,
                                                 strides=[1, 1, 1, 1], padding=padding)
            return dx, dk

        return tf.nn.conv2d(x, k, 1, padding), grad

    # the variable is read here, outside the custom gradient, so its gradient flows through the read
    return conv(tf.convert_to_tensor(inputs), tf.convert_to_tensor(kernel))


@keras.saving.register_keras_serializable(package="tfdeepfake")
class FastGradConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` (same arguments, weights and outputs) whose input gradient, on the
    TensorFlow backend for stride-1, undilated, ungrouped, channels-last convolutions with ``valid``
    padding or an odd kernel, is computed as a forward convolution (see ``FAST_CONV_GRAD``); everything
    else, and every other backend, is Keras' own convolution."""

    def _fast_path(self) -> bool:
        return (FAST_CONV_GRAD and keras.backend.backend() == "tensorflow"
                and tuple(self.strides) == (1, 1) and tuple(self.dilation_rate) == (1, 1)
                and self.groups == 1 and self.data_format == "channels_last"
                and (self.padding == "valid" or all(k % 2 == 1 for k in self.kernel_size)))

    def convolution_op(self, inputs: Any, kernel: Any) -> Any:
        if self._fast_path():
            return _conv_fast_input_grad(inputs, kernel, self.padding.upper())
        return super().convolution_op(inputs, kernel)

