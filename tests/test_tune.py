"""KerasTuner search on tiny data: validation only, the best config is a TrainConfig train accepts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tfdeepfake import data as data_mod
from tfdeepfake import tune
from tfdeepfake.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_random_search_writes_a_train_config(tiny_dataset, tmp_path, monkeypatch, capsys):
    data = tiny_dataset(6, size=32)
    splits: list[str] = []
    real_dataset_for = data_mod.dataset_for

    def recording(index, split, **kwargs):
        splits.append(split)
        return real_dataset_for(index, split, **kwargs)

    monkeypatch.setattr(data_mod, "dataset_for", recording)
    out = tmp_path / "tune"
    rc = tune.main(["--model", "alexnet", "--data", str(data), "--max-trials", "2", "--epochs", "1",
                    "--image-size", "32", "--batch-sizes", "4", "8", "--optimizer", "adam",
                    "--out", str(out)])
    assert rc == 0
    assert set(splits) == {"train", "val"}  # the test split is never read

    config = tune.load_train_config(out / tune.BEST_CONFIG_FILE)
    assert isinstance(config, TrainConfig)
    assert (config.model, config.data, config.image_size, config.epochs) == ("alexnet", str(data), 32, 1)
    assert config.optimizer == "adam" and config.out is None and not config.resume
    assert config.batch_size in (4, 8)
    assert tune.LR_RANGE[0] <= config.lr <= tune.LR_RANGE[1]
    assert tune.L2_RANGE[0] <= config.l2 <= tune.L2_RANGE[1]
    assert 0 <= config.dropout <= tune.DROPOUT_RANGE[1]

    trials = pd.read_csv(out / tune.TRIALS_FILE)
    assert len(trials) == 2 and {"lr", "l2", "dropout", "batch_size", "score"} <= set(trials.columns)
    best = trials.iloc[0]  # sorted by the objective (val_loss, lowest first)
    assert best["score"] == trials["score"].min()
    assert best["lr"] == pytest.approx(config.lr) and best["batch_size"] == config.batch_size
    assert "best of 2 trial(s) by val_loss" in capsys.readouterr().out


def test_search_runs_mirrored_over_two_logical_cpus(tiny_dataset, tmp_path):
    data = tiny_dataset(6, size=32)
    out = tmp_path / "tune"
    args = ["--model", "alexnet", "--data", str(data), "--max-trials", "1", "--epochs", "1",
            "--image-size", "32", "--batch-sizes", "4", "--optimizer", "adam", "--strategy", "mirrored",
            "--cache", "disk", "--out", str(out)]
    code = ("import sys; from tfdeepfake.distribute import split_cpu; split_cpu(2); "
            f"from tfdeepfake import tune; sys.exit(tune.main({args!r}))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
           "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "2"}  # as test_distribute's _env
    env.pop("TF_CONFIG", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "strategy MirroredStrategy: 2 replica(s) in sync" in done.stdout
    assert "cache train-b4: disk" in done.stdout and not (out / "cache").exists()  # removed after
    config = tune.load_train_config(out / tune.BEST_CONFIG_FILE)
    assert (config.strategy, config.cache) == ("mirrored", "disk")
    assert len(pd.read_csv(out / tune.TRIALS_FILE).dropna(subset=["score"])) == 1


def test_multiworker_search_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                                                "task": {"type": "worker", "index": 0}}))
    with pytest.raises(SystemExit) as exc:
        tune.main(["--model", "alexnet", "--strategy", "auto", "--out", str(tmp_path / "t")])
    assert exc.value.code == 2


def test_bad_arguments(tmp_path):
    base = TrainConfig(model="alexnet")
    for kwargs in ({"algorithm": "grid"}, {"objective": "loss"}, {"max_trials": 0}):
        with pytest.raises(ValueError):
            tune.make_tuner(base, None, out=tmp_path, **kwargs)
    with pytest.raises(SystemExit) as exc:
        tune.main(["--model", "alexnet", "--config", str(tmp_path / "missing.json")])
    assert exc.value.code == 2
