"""Custom Keras layers: class token, learned position embedding, class-token selection (ViT); max pooling
with PyTorch's symmetric padding (the original Xception).

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
