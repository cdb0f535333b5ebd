"""Resume (#15): a run killed with SIGKILL and resumed follows the uninterrupted run's trajectory;
``--resume`` never loses a finished run; early stopping continues where it was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfdeepfake import train

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 4
TRAIN = [sys.executable, "-m", "tfdeepfake.train", "--model", "alexnet", "--image-size", "32",
         "--batch-size", "8", "--epochs", str(EPOCHS), "--patience", "50", "--seed", "5"]
TIMEOUT = 420  # seconds per subprocess: a 2-core machine shared by other jobs can be that slow


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _history(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "history.csv")


def _wait(proc: subprocess.Popen, what: str) -> None:
    try:
        proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"{what} did not finish within {TIMEOUT} s")
    assert proc.returncode == 0, f"{what} failed:\n{proc.stdout.read() if proc.stdout else ''}"


def test_killed_and_resumed_run_follows_the_uninterrupted_trajectory(tiny_dataset, tmp_path, capsys):
    data = tiny_dataset(16, size=32)
    runs = {name: tmp_path / name for name in ("a", "b", "killed")}
    procs = {name: subprocess.Popen([*TRAIN, "--data", str(data), "--out", str(out)], env=_env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, out in runs.items()}
    killed = procs["killed"]
    deadline = time.monotonic() + TIMEOUT
    try:  # SIGKILL once epoch 2 is backed up (it may already be inside epoch 3: any point must do)
        while train.backup_epoch(runs["killed"]) < 2:
            assert killed.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, "epoch 2 did not finish in time"
            time.sleep(0.05)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    done = train.backup_epoch(runs["killed"])
    assert 2 <= done < EPOCHS and not (runs["killed"] / "metrics.json").exists()
    _wait(procs["a"], "uninterrupted run a")
    _wait(procs["b"], "uninterrupted run b")

    resumed = subprocess.run([*TRAIN[:3], "--resume", "--out", str(runs["killed"])], env=_env(),
                             capture_output=True, text=True, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    ran = [int(line.split()[1].rstrip(":")) for line in resumed.stdout.splitlines()
           if line.startswith("epoch ")]
    assert ran == list(range(done + 1, EPOCHS + 1)), resumed.stdout  # 1-based, right after the backup

    a, b, r = (_history(runs[name]) for name in ("a", "b", "killed"))
    assert list(r["epoch"]) == list(range(EPOCHS)) and list(r.columns) == list(a.columns)
    # The nondeterminism two uninterrupted runs show (on CPU: none) bounds the resumed run's difference.
    noise = float(np.abs(a.to_numpy() - b.to_numpy()).max())
    diff = np.abs(r.to_numpy() - a.to_numpy())
    print(f"uninterrupted runs differ by {noise:.3g}; resumed run differs by {diff.max():.3g}")
    assert diff.max() <= noise + 1e-5, f"resumed history differs from the uninterrupted one:\n{r}\n{a}"

    # A finished run is never retrained by a bare --resume, nor silently resumed with ignored flags.
    before = (runs["killed"] / "history.csv").read_text(), (runs["killed"] / "model.keras").read_bytes()
    capsys.readouterr()
    for extra, expected in (([], "finished run"), (["--data", str(data)], "--data"),
                            (["--epochs", str(EPOCHS)], f"N > {EPOCHS}")):
        with pytest.raises(SystemExit) as exc:
            train.main(["--resume", "--out", str(runs["killed"]), *extra])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert ((runs["killed"] / "history.csv").read_text(), (runs["killed"] / "model.keras").read_bytes()
            ) == before

    # Asked to extend it, it trains only the new epoch, from the kept training state.
    assert train.main(["--resume", "--out", str(runs["killed"]), "--epochs", str(EPOCHS + 1)]) == 0
    extended = _history(runs["killed"])
    assert list(extended["epoch"]) == list(range(EPOCHS + 1))
    assert np.array_equal(extended.iloc[:EPOCHS].to_numpy(), r.to_numpy())
    assert json.loads((runs["killed"] / "metrics.json").read_text())["epochs_run"] == EPOCHS + 1


def test_new_run_refuses_an_existing_run_folder(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as exc:
        train.main(["--model", "alexnet", "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    assert "--resume" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json"]


@pytest.fixture(scope="module")
def tiny_model():
    import keras

    return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])


def _keras_stop_epoch(model, values, patience, previous=None) -> int | None:
    """Epoch at which Keras' EarlyStopping (or ours resumed after ``previous`` epochs) stops."""
    import keras

    callback = (keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, mode="min")
                if previous is None else
                train.ResumedEarlyStopping(values[:previous], monitor="val_loss", patience=patience,
                                           mode="min"))
    callback.set_model(model)
    model.stop_training = False
    callback.on_train_begin()
    for epoch in range(previous or 0, len(values)):
        callback.on_epoch_end(epoch, {"val_loss": values[epoch]})
        if model.stop_training:
            return epoch
    return None


# Losses as Keras logs them: float32 (its comparison runs in float32, where TensorFlow flushes
# subnormals to zero), with NaN for a diverged epoch.
losses = st.lists(st.one_of(st.floats(0, 10, width=32, allow_subnormal=False), st.just(float("nan"))),
                  min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(values=losses, patience=st.integers(0, 5), data=st.data())
def test_early_stopping_state_matches_keras(tiny_model, values, patience, data):
    stop = _keras_stop_epoch(tiny_model, values, patience)
    ours = next((n - 1 for n in range(1, len(values) + 1) if train.stopped_early(values[:n], patience)),
                None)
    assert ours == stop
    # Resumed after any number of epochs (before Keras stopped), it stops where Keras stops.
    previous = data.draw(st.integers(0, len(values) if stop is None else stop))
    assert _keras_stop_epoch(tiny_model, values, patience, previous) == stop


def _small_model():
    import keras

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_a_save_killed_midway_leaves_the_previous_model(tmp_path, monkeypatch):
    """The checkpoint writes a hidden file and moves it into place: a save that dies half-way (a
    SIGKILL, a full disk) leaves the previous model.keras whole; the next run start deletes the
    truncated file, or moves a finished one into place."""
    import keras

    from tfdeepfake.runs import MODEL_FILE, load_model, partial_path

    final = tmp_path / MODEL_FILE
    model = _small_model()
    check = train.SafeModelCheckpoint(final, monitor="loss", save_best_only=False)
    check.set_model(model)
    check.on_epoch_end(0, {"loss": 1.0})
    before = final.read_bytes()
    partial = partial_path(final, unique=False)
    assert not partial.exists()

    def dies_midway(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(before[: len(before) // 2])
        raise KeyboardInterrupt("killed during the save")

    with monkeypatch.context() as m:
        m.setattr(keras.Model, "save", dies_midway)
        model.layers[-1].kernel.assign(np.ones((3, 1), np.float32))
        with pytest.raises(KeyboardInterrupt):
            check.on_epoch_end(1, {"loss": 0.5})
    assert final.read_bytes() == before and partial.is_file()
    assert not np.allclose(load_model(final).layers[-1].kernel.numpy(), 1.0)  # the epoch-0 weights

    resumed = train.SafeModelCheckpoint(final, monitor="loss", save_best_only=False)
    resumed.set_model(model)
    resumed.on_train_begin()  # the truncated file is no model: deleted, the old one kept
    assert not partial.exists() and final.read_bytes() == before

    model.save(partial)  # a save that finished but was not moved into place yet
    resumed.on_train_begin()
    assert not partial.exists()
    np.testing.assert_allclose(load_model(final).layers[-1].kernel.numpy(), np.ones((3, 1)))


def test_save_model_is_atomic(tmp_path, monkeypatch):
    import keras

    from tfdeepfake.runs import save_model

    path = tmp_path / "m.keras"
    model = _small_model()
    save_model(model, path)
    before = path.read_bytes()

    def fails(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"PK\x03\x04 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", fails)
    with pytest.raises(OSError, match="No space"):
        save_model(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no partial file left behind


def test_time_limit_counts_the_epochs_before_a_resume(tiny_dataset, tmp_path, capsys):
    data = tiny_dataset(8, size=32)
    run = tmp_path / "run"
    args = ["--model", "alexnet", "--data", str(data), "--image-size", "32", "--batch-size", "8",
            "--patience", "50", "--no-augment", "--out", str(run)]
    assert train.main([*args, "--epochs", "2"]) == 0
    seconds = train.read_epoch_seconds(run, 2)
    assert len(seconds) == 2 and all(s > 0 for s in seconds)
    assert train.read_epoch_seconds(run, 1) == seconds[:1]  # epochs after the backup are trained again

    # Pretend the two epochs took 1,000 s each: a 30-minute budget leaves room for one more epoch.
    (run / train.TIMES_FILE).write_text(json.dumps({"epoch_seconds": [1000.0, 1000.0]}))
    capsys.readouterr()
    assert train.main(["--resume", "--out", str(run), "--epochs", "6", "--time-limit-minutes", "30"]) == 0
    assert "time limit 30.0 min: stopping after epoch 3" in capsys.readouterr().out
    assert list(_history(run)["epoch"]) == [0, 1, 2]
    assert train.read_epoch_seconds(run, 9)[:2] == [1000.0, 1000.0] and len(train.read_epoch_seconds(run, 9)) == 3
    assert json.loads((run / "metrics.json").read_text())["train_seconds"] >= 2000
