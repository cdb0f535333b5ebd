"""The training recipe flags of #11: learning-rate schedules, label smoothing, weight EMA (the saved
model holds the averaged weights) and test-time flip averaging, which evaluate, an ensemble, the export
and predict all apply identically."""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest

from tfdeepfake import train
from tfdeepfake.config import TrainConfig
from tfdeepfake.recipe import (
    ONECYCLE_DIV,
    ONECYCLE_DIV_FINAL,
    DominantLabelAccuracy,
    DominantLabelAUC,
    WarmupSchedule,
    learning_rate,
    training_metrics,
)


def _lr(schedule, step: int) -> float:
    return float(keras.ops.convert_to_numpy(schedule(step)))


# ---------------------------------------------------------------------------------------- schedules
def test_cosine_with_warmup():
    s = learning_rate(0.1, "cosine", warmup_epochs=2, epochs=10, steps_per_epoch=5)  # 50 steps, 10 warm
    assert isinstance(s, WarmupSchedule) and (s.total_steps, s.warmup_steps) == (50, 10)
    assert _lr(s, 0) == 0.0
    assert _lr(s, 5) == pytest.approx(0.05)  # linear warm-up
    assert _lr(s, 10) == pytest.approx(0.1)  # peak
    assert _lr(s, 30) == pytest.approx(0.05, rel=1e-5)  # half-way through the cosine
    assert _lr(s, 50) == pytest.approx(0.0, abs=1e-7) and _lr(s, 80) == pytest.approx(0.0, abs=1e-7)
    assert learning_rate(0.1, "constant", 0, 10, 5) == 0.1  # no schedule object at all
    const = learning_rate(0.1, "constant", 1, 10, 5)
    assert [_lr(const, k) for k in (0, 1, 5, 49)] == pytest.approx([0.0, 0.02, 0.1, 0.1])


def test_onecycle_shape_and_serialization():
    s = learning_rate(0.01, "onecycle", warmup_epochs=0, epochs=4, steps_per_epoch=25)  # 25 % warm-up
    assert (s.total_steps, s.warmup_steps) == (100, 25)
    start = 0.01 / ONECYCLE_DIV
    assert _lr(s, 0) == pytest.approx(start)
    assert _lr(s, 12.5) == pytest.approx((start + 0.01) / 2, rel=1e-5)  # cosine warm-up midpoint
    assert _lr(s, 25) == pytest.approx(0.01)
    assert _lr(s, 100) == pytest.approx(start / ONECYCLE_DIV_FINAL, rel=1e-4)
    lrs = [_lr(s, k) for k in range(101)]
    assert np.argmax(lrs) == 25 and all(a >= b for a, b in zip(lrs[25:], lrs[26:], strict=False))
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
    assert [_lr(again, k) for k in (0, 40, 100)] == [_lr(s, k) for k in (0, 40, 100)]
    with pytest.raises(ValueError, match="lr schedule"):
        learning_rate(0.1, "step", 0, 10, 5)


def test_optimizer_and_loss_follow_the_config():
    config = TrainConfig(optimizer="adam", lr=0.002, lr_schedule="cosine", warmup_epochs=1, epochs=3,
                         label_smoothing=0.1, ema=0.9).validate()
    model = train.compile_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), config, 7)
    opt = model.optimizer
    assert opt.use_ema and opt.ema_momentum == pytest.approx(0.9)
    assert isinstance(opt.learning_rate, float) is False and opt._learning_rate.total_steps == 21
    assert model.loss.label_smoothing == pytest.approx(0.1)
    for bad, field in ((dict(input="hsv"), "input"), (dict(lr_schedule="step"), "lr_schedule"),
                       (dict(warmup_epochs=5, epochs=5), "warmup_epochs"),
                       (dict(label_smoothing=1.0), "label_smoothing"), (dict(ema=1.0), "ema"),
                       (dict(mixup=-0.2), "mixup")):
        with pytest.raises(ValueError, match=f"'{field}'"):
            TrainConfig(**bad).validate()


def test_adamw_decays_kernels_not_biases_or_norms_by_its_weight_decay():
    config = TrainConfig(optimizer="adamw", lr=0.1, weight_decay=0.05, epochs=1).validate()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.BatchNormalization()])
    opt = train.build_optimizer(config)
    assert opt.weight_decay == pytest.approx(0.05)
    model.layers[1].gamma.assign([2.0, 3.0])
    model.layers[0].bias.assign([1.0, -1.0])
    before = [v.numpy().copy() for v in model.trainable_variables]
    # zero gradients: Adam's own step is 0, so only the decoupled decay moves a variable
    opt.apply_gradients([(keras.ops.zeros_like(v), v) for v in model.trainable_variables])
    for v, old in zip(model.trainable_variables, before, strict=True):
        shrink = 1 - 0.1 * 0.05 if v.name == "kernel" else 1.0  # bias, gamma, beta: not decayed
        np.testing.assert_allclose(v.numpy(), old * shrink, rtol=1e-6, err_msg=v.path)
    assert "weight decay 0.05" in config.optimizer_label
    default = TrainConfig(optimizer="adamw").validate()
    assert "weight decay 0.004" in default.optimizer_label
    assert train.build_optimizer(default).weight_decay == pytest.approx(0.004)
    with pytest.raises(ValueError, match="'weight_decay'.*adamw"):
        TrainConfig(optimizer="adam", weight_decay=0.05).validate()
    with pytest.raises(ValueError, match="'weight_decay'"):
        TrainConfig(optimizer="adamw", weight_decay=-1).validate()
    args = train.build_parser().parse_args(["--optimizer", "adamw", "--weight-decay", "0.05", "--l2", "0"])
    assert train.config_from_args(args).weight_decay == 0.05


# --------------------------------------------------------------------------------------------- EMA
def test_saved_model_holds_the_ema_weights(tmp_path):
    """The checkpoint of the best epoch holds the optimizer's moving averages, not the raw weights."""

    class Record(keras.callbacks.Callback):  # first in the list: sees the raw weights and the EMA
        def __init__(self) -> None:
            super().__init__()
            self.raw, self.ema = [], []

        def on_epoch_end(self, epoch, logs=None):
            opt = self.model.optimizer
            self.raw.append([v.numpy().copy() for v in self.model.trainable_variables])
            self.ema.append([v.numpy().copy() for v in opt._model_variables_moving_average])

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("f4")
    y = (x[:, :1] + 0.3 * rng.normal(size=(64, 1)) > 0).astype("f4")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"),
                              keras.layers.Dense(1)])
    config = TrainConfig(optimizer="sgd", lr=0.2, ema=0.8, epochs=4, patience=10, out=str(tmp_path))
    train.compile_model(model, config, steps_per_epoch=8)
    record = Record()
    history = model.fit(x, y, batch_size=8, epochs=4, validation_data=(x[:32], y[:32]), verbose=0,
                        callbacks=[record, *train.fit_callbacks(config, tmp_path, log=lambda _: None)])
    best = int(np.argmin(history.history["val_loss"]))
    saved = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True).trainable_variables
    for got, ema, raw in zip(saved, record.ema[best], record.raw[best], strict=True):
        np.testing.assert_allclose(got.numpy(), ema, rtol=1e-6)
        assert not np.allclose(ema, raw)  # so the check above tells EMA from raw weights


# ------------------------------------------------------------------- CLI + flip averaging everywhere
def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


def test_recipe_flags_recorded_and_tta_scored_identically_everywhere(tiny_dataset, tmp_path):
    import tensorflow as tf

    from tfdeepfake.data import index_eval_folder, load_image
    from tfdeepfake.ensemble import create_ensemble, score_by_member
    from tfdeepfake.evaluate import evaluate
    from tfdeepfake.export import export_model
    from tfdeepfake.metrics import evaluation_report
    from tfdeepfake.models import build_model, has_tta_flip, model_representation
    from tfdeepfake.predict import predict
    from tfdeepfake.runs import load_model

    data = tiny_dataset(8, size=32)
    run = tmp_path / "run"
    flags = ["--input", "rgb+highpass", "--tta-flip", "--ema", "--lr-schedule", "onecycle",
             "--warmup-epochs", "1", "--label-smoothing", "0.1"]
    assert train.main(["--model", "alexnet", "--data", str(data), "--image-size", "32", "--epochs", "2",
                       "--batch-size", "8", "--optimizer", "adam", "--lr", "0.001", "--no-augment",
                       "--precision", "float32",  # the definition check below needs float32, not bf16
                       "--out", str(run), *flags]) == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["input"], config["tta_flip"], config["ema"], config["lr_schedule"],
            config["warmup_epochs"], config["label_smoothing"]) == ("rgb+highpass", True, 0.99,
                                                                   "onecycle", 1.0, 0.1)
    model = load_model(run / "model.keras")
    assert model_representation(model) == "rgb+highpass" and has_tta_flip(model)

    # the definition: mean logit of the image and its mirror image, by the same weights without TTA
    plain = build_model("alexnet", 32, representation="rgb+highpass")
    plain.set_weights(model.get_weights())
    folder = tiny_dataset(2, size=32, seed=5)  # images at the model's size: no resize anywhere
    index = index_eval_folder(folder)
    paths, labels = index.frame["path"].tolist(), index.frame["label"].to_numpy()
    x = np.stack([load_image(p) for p in paths]).astype("f4")
    expected = _sigmoid((plain.predict_on_batch(x) + plain.predict_on_batch(x[:, :, ::-1]))[:, 0] / 2)
    # float32 sums in another order (oneDNN picks kernels by batch size; AVX-512 CPUs differ by ~2e-5
    # here) bound how close two paths can agree; the flip's own effect must be far larger than that
    tol = 5e-5
    assert np.abs(expected - _sigmoid(plain.predict_on_batch(x)[:, 0])).max() > 5 * tol

    by_predict = [r.probability_fake for r in predict(run, paths, progress=False).rows]
    np.testing.assert_allclose(by_predict, expected, atol=tol)
    result = evaluate(run, folder, batch_size=3)
    report = evaluation_report(labels, expected, result["tuned"]["threshold"])
    for key in ("roc_auc", "accuracy", "eer", "average_precision"):
        assert result[key] == pytest.approx(report[key]), key

    version = export_model(run, "tta", root=tmp_path / "saved")
    served = tf.saved_model.load(str(version)).signatures["serving_default"](
        images=tf.constant(x.astype("uint8")))
    np.testing.assert_allclose(served["probability_fake"].numpy(), expected, atol=tol)

    ensemble = create_ensemble([run, run], "pair", root=tmp_path)  # mean of two TTA members
    _, by_keras, _ = score_by_member(load_model(ensemble / "model.keras"),
                                     lambda _size: [(x, labels)])
    np.testing.assert_allclose(by_keras, expected, atol=tol)
    by_predict = [r.probability_fake for r in predict(ensemble, paths, progress=False).rows]
    np.testing.assert_allclose(by_predict, expected, atol=tol)
    version = export_model(ensemble, "pair", root=tmp_path / "saved")
    served = tf.saved_model.load(str(version)).signatures["predict_bytes"](
        image_bytes=tf.constant([Path(p).read_bytes() for p in paths]))
    np.testing.assert_allclose(served["probability_fake"].numpy(), expected, atol=tol)
    assert math.isfinite(json.loads((run / "metrics.json").read_text())["val"]["accuracy"])


def test_epochs_0_adds_tta_flip_to_a_trained_run_without_training(tiny_dataset, tmp_path, capsys):
    from tfdeepfake.data import index_eval_folder, load_image
    from tfdeepfake.evaluate import evaluate
    from tfdeepfake.metrics import evaluation_report
    from tfdeepfake.models import has_tta_flip
    from tfdeepfake.runs import load_model

    data = tiny_dataset(8, size=32)
    run, flipped = tmp_path / "run", tmp_path / "flipped"
    args = ["--model", "alexnet_rnn", "--data", str(data), "--image-size", "32", "--epochs", "1",
            "--batch-size", "8", "--lr-schedule", "onecycle", "--warmup-epochs", "0.5"]
    assert train.main([*args, "--out", str(run)]) == 0
    # The flip layers pass their input through in training: trained with --tta-flip, the same weights.
    assert train.main([*args, "--tta-flip", "--out", str(tmp_path / "trained_flipped")]) == 0
    # The run's own settings (onecycle with warm-up included: no schedule is built without training).
    assert train.main(["--config", str(run / "config.json"), "--init-from", str(run), "--epochs", "0",
                       "--tta-flip", "--out", str(flipped)]) == 0
    assert "--epochs 0: scoring the weights" in capsys.readouterr().out
    plain, model = load_model(run / "model.keras"), load_model(flipped / "model.keras")
    assert has_tta_flip(model) and not has_tta_flip(plain)
    trained = load_model(tmp_path / "trained_flipped" / "model.keras")
    for mine, theirs, same in zip(model.get_weights(), plain.get_weights(), trained.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
        np.testing.assert_array_equal(same, theirs)
    metrics = json.loads((flipped / "metrics.json").read_text())
    config = json.loads((flipped / "config.json").read_text())
    assert metrics["epochs_run"] == 0 and (config["tta_flip"], config["epochs"]) == (True, 0)
    assert (flipped / "split.csv").read_text() == (run / "split.csv").read_text()

    folder = tiny_dataset(2, size=32, seed=5)
    paths = index_eval_folder(folder).frame["path"].tolist()
    labels = index_eval_folder(folder).frame["label"].to_numpy()
    x = np.stack([load_image(p) for p in paths]).astype("f4")
    expected = _sigmoid((plain.predict_on_batch(x) + plain.predict_on_batch(x[:, :, ::-1]))[:, 0] / 2)
    result = evaluate(flipped, folder)
    assert result["roc_auc"] == pytest.approx(evaluation_report(labels, expected, 0.5)["roc_auc"])

    for argv, expected_error in (
        (["--model", "alexnet", "--data", str(data), "--epochs", "0", "--out", str(tmp_path / "x")],
         "needs 'init_from'"),
        (["--resume", "--out", str(flipped), "--epochs", "3"], "without training"),
    ):
        with pytest.raises(SystemExit) as exc:
            train.main(argv)
        assert exc.value.code == 2 and expected_error in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_compiled_run_with_a_schedule_loads_with_plain_keras(tmp_path):
    """A run's ``model.keras`` keeps its compiled optimizer, whose learning rate is our WarmupSchedule,
    and (with mixup) our dominant-label metrics: ``import tfdeepfake.models`` alone must register them, so
    ``keras.saving.load_model`` (compile=True, safe_mode) works in a fresh process, as in a user's
    notebook."""
    import subprocess
    import sys

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    config = TrainConfig(optimizer="adam", lr=1e-3, lr_schedule="cosine", warmup_epochs=1, epochs=3,
                         mixup=0.2, out=str(tmp_path))
    train.compile_model(model, config, steps_per_epoch=5)
    assert isinstance(model.optimizer._learning_rate, WarmupSchedule)
    assert [type(m).__name__ for m in model._compile_metrics._user_metrics] == ["DominantLabelAccuracy",
                                                                               "DominantLabelAUC"]
    path = tmp_path / "m.keras"
    model.save(path)
    code = ("import keras, tfdeepfake.models\n"
            f"m = keras.saving.load_model({str(path)!r}, safe_mode=True)\n"
            "print(type(m.optimizer._learning_rate).__name__)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "WarmupSchedule"


# -------------------------------------------------------------------------------------------- mixup
def test_mixup_metrics_read_the_dominant_label():
    y = np.array([[0.7], [0.2], [1.0], [0.0]], "f4")  # two blends, two plain images
    logits = np.array([[2.0], [1.0], [-0.5], [-3.0]], "f4")  # right, wrong, wrong, right
    accuracy, auc = training_metrics(True)
    assert isinstance(accuracy, DominantLabelAccuracy) and isinstance(auc, DominantLabelAUC)
    accuracy.update_state(y, logits)
    assert float(accuracy.result()) == pytest.approx(0.5)
    plain_accuracy, plain_auc = training_metrics(False)
    assert type(plain_accuracy) is keras.metrics.BinaryAccuracy and type(plain_auc) is keras.metrics.AUC
    plain_accuracy.update_state(y, logits)
    assert float(plain_accuracy.result()) == pytest.approx(0.25)  # the blends count as wrong too
    auc.update_state(y, logits)  # dominant labels 1, 0, 1, 0: positives 2.0 and -0.5, negatives 1.0 and -3.0
    assert float(auc.result()) == pytest.approx(0.75, abs=0.01)
    plain_auc.update_state(y, logits)  # counts the 0.2 blend as a positive: 1.0
    assert float(plain_auc.result()) > 0.9
    hard = np.array([[1.0], [0.0], [1.0], [0.0]], "f4")  # on hard labels: the plain metrics' figures
    for ours, theirs in zip(training_metrics(True), training_metrics(False), strict=True):
        ours.update_state(hard, logits)
        theirs.update_state(hard, logits)
        assert float(ours.result()) == pytest.approx(float(theirs.result()))
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(accuracy))
    assert type(again) is DominantLabelAccuracy and again.threshold == 0.0


def test_mixup_flag_trains_is_recorded_and_switched_off_by_no_augment(tiny_dataset, tmp_path):
    assert train.parse_config(["--model", "alexnet"]).mixup == 0  # off by default
    config = train.parse_config(["--model", "alexnet", "--mixup", "0.3"])
    assert config.mixup == 0.3 and train.augment_config(config).mixup == 0.3
    off = train.parse_config(["--model", "alexnet", "--mixup", "0.3", "--no-augment"])
    assert off.mixup == 0 and not train.augment_config(off).active
    run = tmp_path / "run"
    data = tiny_dataset(8, size=32)
    assert train.main(["--model", "alexnet", "--data", str(data), "--image-size", "32", "--epochs", "2",
                       "--batch-size", "8", "--optimizer", "adam", "--no-flip", "--no-jpeg", "--no-blur",
                       "--mixup", "0.3", "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["mixup"] == 0.3
    history = train.read_history(run / train.HISTORY_FILE)
    assert len(history["accuracy"]) == 2 and all(0 <= a <= 1 for a in history["accuracy"])
