"""``tfdeepfake.optim.MomentumSGD``: Keras' SGD arithmetic, done in place; saved and loaded by name."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tfdeepfake.optim import MomentumSGD


def _model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = keras.layers.Dense(1)(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("nesterov", [False, True])
def test_same_updates_as_keras_sgd(nesterov):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6)).astype("float32")
    y = rng.integers(0, 2, (16, 1)).astype("float32")
    weights = []
    for cls in (keras.optimizers.SGD, MomentumSGD):
        model = _model(3)
        model.compile(optimizer=cls(learning_rate=0.05, momentum=0.9, nesterov=nesterov),
                      loss=keras.losses.BinaryCrossentropy(from_logits=True))
        for _ in range(4):  # momentum carries over between steps
            model.train_on_batch(x, y)
        weights.append(model.get_weights())
    start = _model(3).get_weights()
    for ours, theirs, w0 in zip(weights[1], weights[0], start, strict=True):
        assert not np.allclose(ours, w0)  # it trained
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_without_momentum_and_round_trip(tmp_path):
    model = _model(1)
    model.compile(optimizer=MomentumSGD(learning_rate=0.1, momentum=0.0), loss="mse")
    before = model.get_weights()
    model.train_on_batch(np.ones((4, 6), "float32"), np.zeros((4, 1), "float32"))
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights(), strict=True))

    model.compile(optimizer=MomentumSGD(learning_rate=0.01, momentum=0.9), loss="mse")
    model.train_on_batch(np.ones((4, 6), "float32"), np.zeros((4, 1), "float32"))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)  # compiled, optimizer by its name
    assert isinstance(loaded.optimizer, MomentumSGD)
    assert loaded.optimizer.get_config()["momentum"] == pytest.approx(0.9)
