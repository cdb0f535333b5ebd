"""The training and evaluation CLIs end to end and a small real training run (kill-and-resume: test_resume)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfdeepfake import evaluate, train
from tfdeepfake.runs import load_model

RUN_FILES = ("model.keras", "config.json", "history.csv", "split.csv", "metrics.json", "report.md",
             "curves.png", "roc.png", "confusion_matrix.png")
METRIC_KEYS = ("accuracy", "precision", "recall", "f1", "roc_auc", "average_precision", "eer",
               "confusion_matrix", "threshold", "n_images")


def test_cli_end_to_end(tiny_dataset, tmp_path):
    data = tiny_dataset(12, size=32)
    other = tiny_dataset(5, size=40, class_names=("Real", "Fake"), seed=7)
    out = tmp_path / "run"
    code = train.main(["--model", "resnet18", "--data", str(data), "--test-data", str(other),
                       "--image-size", "32", "--epochs", "2", "--batch-size", "8", "--optimizer", "adam",
                       "--lr", "0.001", "--out", str(out), "--seed", "3"])
    assert code == 0
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "resnet18" and config["image_size"] == 32 and config["seed"] == 3
    assert config["versions"]["tensorflow"]
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [0, 1] and {"loss", "val_loss", "accuracy"} <= set(history.columns)
    split = pd.read_csv(out / "split.csv")
    assert set(split["split"]) >= {"train", "val", "test"} and len(split) == 24
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["threshold"] <= 1.0
    for key in METRIC_KEYS:
        assert key in metrics["test"] and key in metrics["test"]["tuned"]
    assert metrics["test_data"][str(other)]["n_images"] == 10
    assert "resnet18" in (out / "report.md").read_text()

    result_file = tmp_path / "eval.json"
    assert evaluate.main([str(out), "--data", str(other), "--out", str(result_file)]) == 0
    result = json.loads(result_file.read_text())
    for key in METRIC_KEYS:
        assert key in result
    assert result["n_images"] == 10 and result["image_size"] == 32
    assert result["tuned"]["threshold"] == pytest.approx(metrics["threshold"])
    # The same model file scores the same folder identically through both paths.
    assert result["roc_auc"] == pytest.approx(metrics["test_data"][str(other)]["roc_auc"], abs=1e-6)
    # --data repeated: each folder scored in turn, one result each, in order (not only the last folder)
    both = tmp_path / "both.json"
    assert evaluate.main([str(out), "--data", str(data), "--data", str(other), "--out", str(both)]) == 0
    results = json.loads(both.read_text())
    assert [r["data"] for r in results] == [str(data), str(other)]
    assert results[1]["roc_auc"] == result["roc_auc"] and results[0]["n_images"] == 24  # every image of data/

    # progressive resizing: the same weights at 40 px (--epochs 0 scores them; training on from them is
    # an ordinary fit, and test_warm_start covers the copy)
    larger = tmp_path / "run40"
    assert train.main(["--model", "resnet18", "--data", str(data), "--image-size", "40", "--epochs", "0",
                       "--batch-size", "8", "--out", str(larger), "--seed", "3", "--init-from", str(out)]) == 0
    config = json.loads((larger / "config.json").read_text())
    assert (config["init_from"], config["image_size"]) == (str(out), 40)
    for mine, theirs in zip(load_model(larger / "model.keras").weights, load_model(out / "model.keras").weights,
                            strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_warm_start_copies_every_weight_across_image_sizes(tmp_path, capsys):
    import keras

    from tfdeepfake.models import build_model

    keras.utils.set_random_seed(1)
    small = build_model("resnet18", 32)
    small.save(tmp_path / "small.keras")
    keras.utils.set_random_seed(2)
    large = build_model("resnet18", 48)
    assert not np.array_equal(large.weights[0].numpy(), small.weights[0].numpy())
    assert train.warm_start(large, tmp_path / "small.keras") == len(small.weights)
    for mine, theirs in zip(large.weights, small.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    # a layer whose size follows the image size (vgg13 flattens 1x1 or 2x2 maps) or another --input
    build_model("vgg13", 32).save(tmp_path / "vgg13.keras")
    with pytest.raises(ValueError, match="has shape"):
        train.warm_start(build_model("vgg13", 64), tmp_path / "vgg13.keras")
    with pytest.raises(ValueError, match="has shape"):
        train.warm_start(build_model("resnet18", 32, representation="rgb+highpass"), tmp_path / "small.keras")
    with pytest.raises(SystemExit) as exc:  # a missing source is a usage error before any work
        train.main(["--model", "resnet18", "--init-from", str(tmp_path / "missing"),
                    "--out", str(tmp_path / "r")])
    assert exc.value.code == 2 and "--init-from" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_bad_data_is_an_error_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        train.main(["--model", "alexnet", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")])
    assert exc.value.code == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err
    assert not (tmp_path / "r" / "history.csv").exists()


def test_bad_flag_value_names_the_field(capsys):
    with pytest.raises(SystemExit) as exc:
        train.main(["--model", "alexnet", "--dropout", "1.5"])
    assert exc.value.code == 2
    assert "dropout" in capsys.readouterr().err


def test_invalid_config_is_rejected_before_the_run_folder_exists(tiny_dataset, tmp_path, capsys):
    data = tiny_dataset(6, size=32)
    for flags, field in ((["--image-size", "16"], "image_size"),
                         (["--model-option", "size=small"], "size"),
                         (["--model-option", "nonsense"], "KEY=VALUE")):
        out = tmp_path / field
        with pytest.raises(SystemExit) as exc:
            train.main(["--model", "alexnet", "--data", str(data), "--out", str(out), *flags])
        assert exc.value.code == 2 and field in capsys.readouterr().err
        assert not out.exists()


def test_model_option_flags_reach_the_config():
    config = train.parse_config(["--model", "vit", "--model-option", "patch_size=4",
                                 "--model-option", "encoder_dropout=0.2", "--vit-size", "small"])
    assert config.model_options == {"patch_size": 4, "encoder_dropout": 0.2, "size": "small"}
    assert train.parse_config(["--model", "alexnet", "--vit-size", "small"]).model_options == {}


def test_a_newly_registered_model_and_its_option_train_without_other_edits(
        tiny_dataset, tmp_path, monkeypatch):
    # One new builder plus its registration: its keyword-only option is a --model-option at once.
    import keras

    from tfdeepfake.models import common, registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @registry.register_model("tinynet")
    def build_tinynet(image_size: int = 224, *, l2: float = 1e-4, dropout: float = 0.5,
                      width: int = 4) -> keras.Model:
        image_size, l2, dropout = common.validate_common(image_size, l2, dropout)
        inputs = common.image_input()
        x = keras.layers.Conv2D(width, 3, strides=4, name="features")(common.preprocess(inputs, image_size))
        return keras.Model(inputs, common.pooled_head(x, l2, dropout), name="tinynet")

    out = tmp_path / "run"
    assert train.main(["--model", "tinynet", "--model-option", "width=3", "--data", str(tiny_dataset(6)),
                       "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--no-augment",
                       "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["model_options"] == {"width": 3}
    model = keras.saving.load_model(out / "model.keras", compile=False)
    assert model.get_layer("features").filters == 3


def test_no_balance_uses_class_weights(tiny_dataset, tmp_path, capsys):
    data = tiny_dataset(6, n_fake=18, size=32)
    out = tmp_path / "run"
    assert train.main(["--model", "alexnet", "--data", str(data), "--image-size", "32", "--epochs", "1",
                       "--batch-size", "8", "--no-balance", "--no-augment", "--out", str(out)]) == 0
    assert "class weights" in capsys.readouterr().out
    split = pd.read_csv(out / "split.csv")
    train_rows = split[split["split"] == "train"]
    assert (train_rows["label"] == 1).sum() > (train_rows["label"] == 0).sum()


def _history_epochs(path: Path) -> list[int]:
    if not path.is_file() or path.stat().st_size == 0:
        return []
    return pd.read_csv(path)["epoch"].astype(int).tolist()


def _link_subset(src: Path, dst: Path, n: int, seed: int, shuffle_labels: bool = False) -> Path:
    """Symlink ``n`` images of each class of ``src`` into ``dst``.

    With ``shuffle_labels`` the labels carry no information at all: half of each true class, drawn at
    random, is filed as real and half as fake (a plain permutation leaves a chance correlation).
    """
    rng = np.random.default_rng(seed)
    files = []
    for label, name in enumerate(("real", "fake")):
        names = sorted((src / name).iterdir())
        files += [(p, label) for p in rng.choice(names, n, replace=False)]
    labels = np.array([label for _, label in files])
    if shuffle_labels:
        labels = np.concatenate([rng.permutation(np.arange(n) % 2) for _ in range(2)])
    for (path, _), label in zip(files, labels, strict=True):
        folder = dst / ("real", "fake")[label]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / path.name).symlink_to(path)
    return dst


REAL_RUN = ["--model", "resnet18", "--image-size", "48", "--epochs", "4", "--batch-size", "32",
            "--optimizer", "adam", "--lr", "0.001", "--patience", "3", "--no-blur", "--no-jpeg"]


@pytest.mark.parametrize("shuffled", [False, True], ids=["true-labels", "shuffled-labels"])
def test_small_real_run_learns_only_from_true_labels(shared_data, tmp_path, shuffled):
    train_dir = _link_subset(shared_data / "rvf10k" / "train", tmp_path / "train", 300, seed=0,
                             shuffle_labels=shuffled)
    held_out = _link_subset(shared_data / "rvf10k" / "test", tmp_path / "held_out", 200, seed=1)
    out = tmp_path / "run"
    assert train.main([*REAL_RUN, "--data", str(train_dir), "--test-data", str(held_out),
                       "--out", str(out)]) == 0
    result = json.loads((out / "metrics.json").read_text())["test_data"][str(held_out)]
    print(f"held-out ROC AUC {result['roc_auc']:.3f}, accuracy {result['accuracy']:.3f}")
    if shuffled:
        assert 0.4 < result["roc_auc"] < 0.6, result["roc_auc"]
    else:
        # 400 held-out images: chance gives AUC 0.5 +- 0.029, so 0.62 is four standard deviations above.
        # Accuracy at the threshold chosen on validation: after 4 epochs the logits are not yet calibrated
        # (2026-11-26, 2 cores: AUC 0.693, accuracy 0.650 at the validation threshold 0.07, 0.578 at 0.5).
        assert result["roc_auc"] > 0.62, result["roc_auc"]
        assert result["tuned"]["accuracy"] > 0.58, result["tuned"]


def test_config_file_sets_defaults_and_flags_win(tmp_path):
    from tfdeepfake.config import TrainConfig

    path = TrainConfig(model="vit", lr=0.003, l2=0.002, dropout=0.2, batch_size=16, out="old").save(
        tmp_path / "best.json")
    config = train.parse_config(["--config", str(path), "--lr", "0.5"])
    assert (config.model, config.lr, config.l2, config.dropout, config.batch_size) == (
        "vit", 0.5, 0.002, 0.2, 16)
    assert config.out is None  # a config file never points a new run at an old run folder
    with pytest.raises(ValueError, match="cannot read config"):
        train.parse_config(["--config", str(tmp_path / "missing.json")])


def test_split_seed_keeps_the_split_while_seed_changes_the_weights(tiny_dataset, tmp_path):
    from tfdeepfake.ensemble import shared_validation_split
    from tfdeepfake.runs import resolve_model

    data = tiny_dataset(10, size=32)
    common = ["--model", "alexnet", "--data", str(data), "--image-size", "32", "--epochs", "1",
              "--batch-size", "8", "--no-augment"]
    runs = {name: tmp_path / name for name in ("s3", "s4split3", "s4")}
    for name, seeds in (("s3", ["--seed", "3"]), ("s4split3", ["--seed", "4", "--split-seed", "3"]),
                        ("s4", ["--seed", "4"])):
        assert train.main([*common, *seeds, "--out", str(runs[name])]) == 0
    splits = {name: pd.read_csv(out / "split.csv") for name, out in runs.items()}
    pd.testing.assert_frame_equal(splits["s3"], splits["s4split3"])
    assert not splits["s3"]["split"].equals(splits["s4"]["split"])  # --seed alone moves the split
    config = json.loads((runs["s4split3"] / "config.json").read_text())
    assert (config["seed"], config["split_seed"]) == (4, 3)
    assert "seed 4, split seed 3" in (runs["s4split3"] / "report.md").read_text()
    weights = [load_model(runs[n] / "model.keras").weights[0].numpy() for n in ("s3", "s4split3")]
    assert not np.array_equal(*weights)  # other initial weights
    refs = [resolve_model(runs[n]) for n in runs]
    assert shared_validation_split(refs[:2]) is not None and shared_validation_split(refs) is None


def test_time_limit_stops_before_overrunning(tiny_dataset, tmp_path, capsys):
    data = tiny_dataset(8, size=32)
    out = tmp_path / "run"
    # A limit far below one epoch's time: the run stops after its first epoch instead of running 20.
    assert train.main(["--model", "alexnet", "--data", str(data), "--image-size", "32", "--epochs", "20",
                       "--patience", "50", "--batch-size", "8", "--time-limit-minutes", "0.0001",
                       "--out", str(out)]) == 0
    assert "time limit" in capsys.readouterr().out
    assert _history_epochs(out / "history.csv") == [0]


def test_model_all_trains_each_architecture_and_compares(tiny_dataset, tmp_path, monkeypatch):
    # Every architecture trains in test_models; here the loop and the comparison, over two cheap ones.
    import tfdeepfake.models

    monkeypatch.setattr(tfdeepfake.models, "MODEL_NAMES", ("alexnet", "resnet18"))
    data = tiny_dataset(6, size=32)
    out = tmp_path / "all"
    assert train.main(["--model", "all", "--data", str(data), "--image-size", "32", "--epochs", "1",
                       "--batch-size", "8", "--no-augment", "--out", str(out)]) == 0
    table = (out / "comparison.md").read_text()
    for name in ("alexnet", "resnet18"):
        assert (out / name / "model.keras").is_file()
        assert f"| {name} |" in table


def test_precision_auto_resolves_for_this_cpu(tiny_dataset, tmp_path, capsys):
    import keras

    from tfdeepfake.hardware import resolve_precision

    data = tiny_dataset(6, size=32)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert train.main(["--model", "alexnet", "--data", str(data), "--image-size", "32", "--epochs", "1",
                       "--batch-size", "8", "--out", str(tmp_path / "r")]) == 0  # auto is the default
    assert f"precision {resolve_precision('auto')}" in capsys.readouterr().out
    # the run's policy does not leak into what the process builds next (a notebook, MTCNN)
    assert keras.mixed_precision.global_policy().name == "float32"
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["precision"] == "auto" and saved["precision_resolved"] == resolve_precision("auto")


# ------------------------------------------------------------------- the original protocol (#14)
def test_original_recipe_config_replays_notebook_1():
    config = train.parse_config(["--config", str(Path(__file__).resolve().parents[1] / "configs" / "original.json"),
                                 "--model", "alexnet", "--data", "DIR"])
    assert (config.model, config.data, config.optimizer, config.lr, config.batch_size, config.epochs,
            config.image_size) == ("alexnet", "DIR", "sgd", 0.01, 32, 10, 224)
    assert (config.l2, config.dropout) == (0.0, None)  # no effective L2; AlexNet's own dropout 0.5
    assert (config.monitor, config.patience, config.keep_weights) == ("val_accuracy", 4, "last")
    assert (config.max_per_class, config.val_fraction, config.test_fraction) == (25000, 0.1, 0.1)
    assert not (config.augment_flip or config.augment_jpeg or config.augment_blur)
    assert train.build_optimizer(config).momentum == 0.9


def test_monitor_and_keep_weights_configure_the_callbacks(tmp_path):
    """Early stopping and the checkpoint follow --monitor; model.keras is the best epoch or the last."""
    import keras

    from tfdeepfake.config import TrainConfig

    def pick(callbacks, kind):
        return next(c for c in callbacks if isinstance(c, kind))

    last = train.fit_callbacks(TrainConfig(monitor="val_accuracy", keep_weights="last", patience=4),
                               tmp_path, print, interactive=True)
    stop = pick(last, keras.callbacks.EarlyStopping)
    save = pick(last, keras.callbacks.ModelCheckpoint)
    assert (stop.monitor, stop.mode, stop.patience) == ("val_accuracy", "max", 4)
    assert (save.monitor, save.save_best_only) == ("val_accuracy", False)  # every epoch: the last stays
    best = train.fit_callbacks(TrainConfig(), tmp_path, print, interactive=True)
    stop = pick(best, keras.callbacks.EarlyStopping)
    assert (stop.monitor, stop.mode) == ("val_loss", "min")
    save = pick(best, keras.callbacks.ModelCheckpoint)
    assert (save.monitor, save.mode, save.save_best_only) == ("val_loss", "min", True)


def test_keep_last_weights_cap_and_test_loss_end_to_end(tiny_dataset, tmp_path, monkeypatch):
    from tfdeepfake import plots

    plotted = {}
    plot_history = plots.plot_history

    def spy(history, path, **kwargs):
        plotted.update(kwargs)
        return plot_history(history, path, **kwargs)

    monkeypatch.setattr(plots, "plot_history", spy)
    data = tiny_dataset(14, size=32)
    out = tmp_path / "run"
    assert train.main(["--model", "alexnet", "--data", str(data), "--image-size", "32", "--epochs", "3",
                       "--batch-size", "8", "--no-augment", "--l2", "0", "--precision", "float32",
                       "--monitor", "val_accuracy", "--patience", "5", "--keep-weights", "last",
                       "--max-per-class", "10", "--out", str(out)]) == 0
    split = pd.read_csv(out / "split.csv")
    used = split[split["split"].isin(["train", "val", "test"])]
    assert used.groupby("label").size().tolist() == [10, 10]  # capped before the split ...
    assert (split["split"] == "unused").sum() == 8
    assert set(used["split"]) == {"train", "val", "test"}  # ... which still happens
    metrics = json.loads((out / "metrics.json").read_text())
    history = pd.read_csv(out / "history.csv")
    assert (metrics["monitor"], metrics["keep_weights"]) == ("val_accuracy", "last")
    assert metrics["epochs_run"] == len(history) == 3 and metrics["kept_epoch"] == 3
    # The saved model is the last epoch's: its validation loss is that epoch's (no L2 in the loss).
    assert metrics["val"]["loss"] == pytest.approx(history["val_loss"].iloc[-1], rel=1e-3, abs=1e-4)
    assert np.isfinite(metrics["test"]["loss"]) and metrics["test"]["loss"] > 0
    assert plotted["test"] == {"loss": metrics["test"]["loss"], "accuracy": metrics["test"]["accuracy"]}
    assert plotted["test_epoch"] == 3 and (out / "curves.png").is_file()


def test_bad_recipe_flags_name_the_field(capsys):
    with pytest.raises(SystemExit):
        train.main(["--model", "alexnet", "--max-per-class", "0"])
    assert "max_per_class" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["--model", "alexnet", "--split-seed", "-1"])
    assert "split_seed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["--model", "alexnet", "--monitor", "val_auc"])
    assert "--monitor" in capsys.readouterr().err


def test_random_crop_flag_reaches_the_pipeline_config():
    config = train.parse_config(["--model", "alexnet", "--random-crop"])
    assert config.augment_crop and train.augment_config(config).crop
    assert not train.parse_config(["--model", "alexnet"]).augment_crop  # off by default
    off = train.parse_config(["--model", "alexnet", "--random-crop", "--no-augment"])
    assert not train.augment_config(off).active


@pytest.mark.parametrize("flag, field, pipeline, value, bad", [
    ("--random-shift", "augment_shift", "shift", 0.0625, "0.5"),
    ("--random-erase", "augment_erase", "erase", 0.5, "1.5"),
    ("--random-subpixel", "augment_subpixel", "subpixel", 0.5, "1"),
])
def test_augment_flag_reaches_the_pipeline_config_and_is_checked(capsys, flag, field, pipeline, value, bad):
    config = train.parse_config(["--model", "alexnet", flag, str(value)])
    assert getattr(config, field) == value and getattr(train.augment_config(config), pipeline) == value
    assert getattr(train.parse_config(["--model", "alexnet"]), field) == 0  # off by default
    off = train.parse_config(["--model", "alexnet", flag, str(value), "--no-augment"])
    assert not train.augment_config(off).active
    with pytest.raises(SystemExit):
        train.main(["--model", "alexnet", flag, bad])
    assert field in capsys.readouterr().err
