"""SGD with momentum updated in place, for less training memory (issue #14).

Keras 3's ``SGD.update_step`` computes ``m * momentum - g * lr`` as new tensors before assigning them, so
each variable's update briefly holds three more copies of it: for AlexNet's 6400x4096 layer that is
~300 MiB on top of the weights, gradients and momentum. :class:`MomentumSGD` does the same arithmetic
(Keras' convention: ``m = momentum * m - lr * g; w += m``; Nesterov: ``w += momentum * m - lr * g``)
with TensorFlow's fused in-place kernel ``ResourceApplyKerasMomentum``, the one ``tf.keras`` 2 used.
Measured on AlexNet training (batch 32, 224 px, float32): peak RSS 1,803 MiB instead of 1,870-1,946
(BENCHMARKS.md). Anything the kernel does not cover (no momentum, sparse gradients) goes to Keras' own
update.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


def _handle(variable: Any) -> Any:
    """The resource handle of a Keras (or plain TensorFlow) variable."""
    return getattr(variable, "_value", variable).handle


@keras.saving.register_keras_serializable(package="tfdeepfake")
class MomentumSGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` whose momentum update runs in place (same arguments, same results)."""

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        if self.momentum == 0 or isinstance(gradient, tf.IndexedSlices):
            super().update_step(gradient, variable, learning_rate)
            return
        m = self.momentums[self._get_variable_index(variable)]
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=_handle(variable), accum=_handle(m), lr=tf.cast(learning_rate, variable.dtype),
            grad=tf.cast(gradient, variable.dtype), momentum=tf.cast(self.momentum, variable.dtype),
            use_locking=False, use_nesterov=self.nesterov,
        )
