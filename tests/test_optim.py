"""``tfdeepfake.optim.MomentumSGD``: Keras' SGD arithmetic, done in place; saved and loaded by name."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from tfdeepfake.optim import MomentumSGD, use_sam


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


# ------------------------------------------------------------------------------------- SAM (train --sam)
def _batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(16, 6)).astype("float32"), rng.integers(0, 2, (16, 1)).astype("float32")


def _bce(model: keras.Model, x: np.ndarray, y: np.ndarray):
    return keras.losses.BinaryCrossentropy(from_logits=True)(y, model(x, training=True))


def test_sam_step_applies_the_gradient_at_the_moved_weights():
    import tensorflow as tf

    x, y, rho, lr = *_batch(), 0.5, 0.1
    reference = _model(3)  # by hand: g at w; e = rho g / |g|; w <- w - lr * (gradient at w + e)
    with tf.GradientTape() as tape:
        loss = _bce(reference, x, y)
    grads = tape.gradient(loss, reference.trainable_variables)
    moves = [g * rho / tf.linalg.global_norm(grads) for g in grads]
    for v, e in zip(reference.trainable_variables, moves, strict=True):
        v.assign_add(e)
    with tf.GradientTape() as tape:
        moved_loss = _bce(reference, x, y)
    moved_grads = tape.gradient(moved_loss, reference.trainable_variables)
    start = _model(3).get_weights()
    expected = [w - lr * g.numpy() for w, g in zip(start, moved_grads, strict=True)]
    plain = [w - lr * g.numpy() for w, g in zip(start, grads, strict=True)]

    model = _model(3)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))
    use_sam(model, rho)
    logs = model.train_on_batch(x, y, return_dict=True)
    for ours, want in zip(model.get_weights(), expected, strict=True):
        np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-6)
    assert not all(np.allclose(a, b, atol=1e-4) for a, b in zip(expected, plain, strict=True))  # SAM mattered
    assert logs["loss"] == pytest.approx(float(loss), rel=1e-5)  # the loss of the unmoved weights


def test_sam_leaves_batchnorm_statistics_as_one_plain_pass_would():
    x, y = _batch(1)

    def bn_model() -> keras.Model:
        keras.utils.set_random_seed(5)
        inputs = keras.Input((6,))
        h = keras.layers.BatchNormalization(momentum=0.5)(keras.layers.Dense(4)(inputs))
        return keras.Model(inputs, keras.layers.Dense(1)(h))

    stats = []
    for sam in (False, True):
        model = bn_model()
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                      loss=keras.losses.BinaryCrossentropy(from_logits=True))
        if sam:
            use_sam(model, 1.0)  # a large move: a second pass's statistics would differ clearly
        model.train_on_batch(x, y)
        stats.append([v.numpy() for v in model.non_trainable_variables])
    assert len(stats[0]) == 2 and not np.allclose(stats[0][0], 0)  # moving mean and variance, updated
    for plain, sam in zip(*stats, strict=True):
        np.testing.assert_allclose(sam, plain, rtol=1e-6, atol=1e-7)


def test_sam_refuses_a_radius_that_is_not_positive():
    model = _model(0)
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="rho"):
        use_sam(model, 0.0)


def test_sam_flag_is_validated_recorded_and_trains(tiny_dataset, tmp_path):
    from tfdeepfake import train
    from tfdeepfake.config import TrainConfig

    assert train.parse_config(["--model", "alexnet"]).sam == 0  # off by default
    assert train.parse_config(["--model", "alexnet", "--sam"]).sam == pytest.approx(0.05)
    with pytest.raises(ValueError, match="'sam'"):
        TrainConfig(sam=-0.1).validate()
    run = tmp_path / "run"
    data = tiny_dataset(8, size=32)
    assert train.main(["--model", "alexnet", "--data", str(data), "--image-size", "32", "--epochs", "2",
                       "--batch-size", "8", "--optimizer", "adam", "--no-augment", "--sam", "0.1",
                       "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["sam"] == pytest.approx(0.1)
    history = train.read_history(run / train.HISTORY_FILE)
    assert len(history["loss"]) == 2 and all(np.isfinite(history["loss"]))
