"""Optimisation on TensorFlow: SGD with momentum updated in place (issue #14) and sharpness-aware
steps (issue #11).

Keras 3's ``SGD.update_step`` computes ``m * momentum - g * lr`` as new tensors before assigning them, so
each variable's update briefly holds three more copies of it: for AlexNet's 6400x4096 layer that is
~300 MiB on top of the weights, gradients and momentum. :class:`MomentumSGD` does the same arithmetic
(Keras' convention: ``m = momentum * m - lr * g; w += m``; Nesterov: ``w += momentum * m - lr * g``)
with TensorFlow's fused in-place kernel ``ResourceApplyKerasMomentum``, the one ``tf.keras`` 2 used.
Measured on AlexNet training (batch 32, 224 px, float32): peak RSS 1,803 MiB instead of 1,870-1,946
(BENCHMARKS.md). Anything the kernel does not cover (no momentum, sparse gradients) goes to Keras' own
update.

``train --sam RHO`` (:func:`use_sam`) makes every training step sharpness-aware (SAM; Foret et al., 2021):
the gradient is taken at the weights moved by ``RHO`` along the normalised gradient (the worst point of
a ball of radius ``RHO`` to first order), and the optimizer applies it to the unmoved weights. It costs
a second forward and backward pass per step. The moved pass leaves no other trace: BatchNorm statistics
(and any other non-trainable state) are put back, and the loss and metrics are those of the unmoved
weights.
"""

from __future__ import annotations

import functools
import types
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


SAM_EPSILON = 1e-12
"""Added to the gradient norm before dividing by it (a zero gradient moves nothing)."""


def use_sam(model: Any, rho: float) -> Any:
    """Make ``model.fit`` take sharpness-aware steps of radius ``rho`` (call after ``compile``; one
    replica only: the ascent moves the variables in place)."""
    if rho <= 0:
        raise ValueError(f"SAM radius rho must be > 0; got {rho!r}")
    strategy = tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync > 1:
        raise ValueError(f"--sam needs a single replica; the strategy {type(strategy).__name__} has "
                         f"{strategy.num_replicas_in_sync} (use --strategy default)")
    model.train_step = types.MethodType(functools.partial(sam_train_step, rho=float(rho)), model)
    model.train_function = None  # a compiled step of the plain kind would otherwise be reused
    return model


def sam_train_step(model: Any, data: Any, rho: float) -> dict[str, Any]:
    """One SAM step of ``model`` (a compiled Keras model on the TensorFlow backend) on ``data``; Keras'
    own ``train_step`` with the ascent and the second pass added."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    variables = model.trainable_variables

    def gradient() -> tuple[Any, Any, list[Any]]:  # Keras' private loss, as its own train_step uses it
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            scaled = model.optimizer.scale_loss(loss)
        return y_pred, loss, tape.gradient(scaled, variables)

    y_pred, loss, gradients = gradient()
    model._loss_tracker.update_state(loss, sample_weight=tf.shape(tf.nest.flatten(x)[0])[0])
    scale = rho / (tf.linalg.global_norm([g for g in gradients if g is not None]) + SAM_EPSILON)
    moves = [None if g is None else tf.cast(g * scale, v.dtype) for g, v in zip(gradients, variables, strict=True)]
    state = [(v, tf.identity(v)) for v in model.non_trainable_variables]
    for variable, move in zip(variables, moves, strict=True):
        if move is not None:
            variable.assign_add(move)
    _, _, gradients = gradient()  # at the moved weights
    for variable, move in zip(variables, moves, strict=True):
        if move is not None:
            variable.assign_sub(move)
    for variable, value in state:
        variable.assign(value)
    model.optimizer.apply_gradients(zip(gradients, variables, strict=True))
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
