"""Scale out (#12): cache modes within a memory budget, strategy selection, mirrored and multi-worker
training (2 logical CPU devices; 2 worker processes on 127.0.0.1), and a killed worker resuming."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tfdeepfake import data as data_mod
from tfdeepfake import train
from tfdeepfake.distribute import loopback_cluster, needs_keras_20585_workaround

ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = ["--model", "alexnet", "--image-size", "32", "--batch-size", "8", "--optimizer", "adam",
            "--lr", "0.001", "--seed", "5", "--no-blur", "--no-jpeg"]


def test_resolve_cache_follows_the_budget(tmp_path):
    n_bytes = data_mod.cache_bytes(100, 32)
    assert n_bytes == 100 * 32 * 32 * 3
    assert data_mod.resolve_cache("auto", n_bytes, n_bytes, tmp_path, "c") is True
    disk = data_mod.resolve_cache("auto", n_bytes, n_bytes - 1, tmp_path, "c")
    assert disk == str(tmp_path / "c")
    assert data_mod.resolve_cache("memory", n_bytes, 0, tmp_path, "c") is True
    assert data_mod.resolve_cache("none", n_bytes, 0, tmp_path, "c") is False
    assert data_mod.resolve_cache("disk", 1, 10 ** 12, tmp_path, "c") == str(tmp_path / "c")
    with pytest.raises(ValueError, match="cache mode"):
        data_mod.resolve_cache("ram", 1, 1, tmp_path, "c")
    # a cache a killed run left half-written (lock file, no index) is removed before reuse
    (tmp_path / "c_0.lockfile").write_text("")
    data_mod.resolve_cache("disk", 1, 1, tmp_path, "c")
    assert not (tmp_path / "c_0.lockfile").exists()


def test_cache_auto_goes_to_disk_past_the_budget_and_matches_memory(tiny_dataset, tmp_path, capsys):
    data = tiny_dataset(12, size=32)
    runs = {}
    for mode, extra in (("memory", ["--cache", "memory"]),
                        ("auto", ["--cache", "auto", "--cache-budget-gb", "0"])):
        out = tmp_path / mode
        assert train.main([*TINY_RUN, "--data", str(data), "--epochs", "2", "--out", str(out), *extra]) == 0
        runs[mode] = out
    log = capsys.readouterr().out
    assert "cache train: memory" in log and "cache val: memory" in log
    cache_dir = runs["auto"] / "cache"
    # the budget (0) is below the decoded size, so both splits went to files in the run, removed at the end
    assert f"cache train: disk {cache_dir}" in log and f"cache val: disk {cache_dir}" in log
    assert not cache_dir.exists()
    memory, disk = (pd.read_csv(runs[m] / "history.csv") for m in ("memory", "auto"))
    pd.testing.assert_frame_equal(memory, disk, rtol=1e-5)
    m_metrics, d_metrics = (json.loads((runs[m] / "metrics.json").read_text()) for m in ("memory", "auto"))
    assert d_metrics["val"]["roc_auc"] == pytest.approx(m_metrics["val"]["roc_auc"], abs=1e-6)


def test_cache_plan_books_memory_and_keeps_disk_caches_on_request(tmp_path):
    plan = data_mod.CachePlan("auto", 1.5 * data_mod.cache_bytes(10, 32) / 1024 ** 3, tmp_path / "c")
    assert plan.choose("train", [f"{i}.png" for i in range(10)], 32, log=lambda _: None) is True
    val = plan.choose("val", [f"{i}.png" for i in range(10)], 32, log=lambda _: None)  # half the budget left
    assert isinstance(val, str) and Path(val).parent == tmp_path / "c"
    for suffix in (".index", ".data-00000-of-00001"):
        Path(val + suffix).write_text("x")
    plan.clean(keep=True, log=lambda _: None)
    assert Path(val + ".index").is_file()
    plan.clean(log=lambda _: None)
    assert not (tmp_path / "c").exists()


CONFIG_2 = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                       "task": {"type": "worker", "index": 1}})


def test_strategy_chosen_from_environment_without_tensorflow():
    code = f"""
import sys
from tfdeepfake.distribute import choose_strategy as c, worker_of
cfg = {CONFIG_2!r}
chief = '{{"cluster": {{"chief": ["a:1"], "worker": ["b:1"]}}, "task": {{"type": "worker", "index": 0}}}}'
assert c("auto", None, 0) == "default" and c("auto", "", 1) == "default"
assert c("auto", None, 2) == "mirrored" and c("auto", cfg, 4) == "multiworker"
assert c("default", cfg, 4) == "default" and c("mirrored", None, 0) == "mirrored"
one = '{{"cluster": {{"worker": ["a:1"]}}, "task": {{"type": "worker", "index": 0}}}}'
assert c("auto", one, 0) == "default"
for bad in ((lambda: c("multiworker", None, 8)), (lambda: c("multiworker", one, 0)),
            (lambda: c("auto", "{{not json", 0)), (lambda: c("tpu", None, 0))):
    try:
        bad()
        raise SystemExit("no error")
    except ValueError:
        pass
w = worker_of(cfg)
assert (w.index, w.count, w.chief) == (1, 2, False), w
w = worker_of(chief)
assert (w.index, w.count, w.chief) == (1, 2, False), w
assert "tensorflow" not in sys.modules and "keras" not in sys.modules
"""
    done = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.pop("TF_CONFIG", None)
    # replicas that share 2 cores (2 logical devices, or 2 worker processes) each get one op thread:
    # with TensorFlow's default (one per core each) they contend, and a loaded machine took 3x longer
    env.update(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="2")
    return env


def _steps(log: str) -> list[int]:
    return [int(m) for m in re.findall(r"^epoch \d+: .*\((\d+) steps", log, flags=re.M)]


def _epochs(log: str) -> list[int]:
    return [int(m) for m in re.findall(r"^epoch (\d+): ", log, flags=re.M)]


def test_mirrored_on_two_logical_cpus_trains_with_two_replicas(tiny_dataset, tmp_path):
    data = tiny_dataset(10, size=32)  # 8 train images per class
    out = tmp_path / "run"
    args = [*TINY_RUN, "--data", str(data), "--epochs", "1", "--out", str(out), "--strategy", "mirrored"]
    code = ("import sys; from tfdeepfake.distribute import split_cpu; split_cpu(2); "
            f"from tfdeepfake import train; sys.exit(train.main({args!r}))")
    done = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "strategy MirroredStrategy: 2 replica(s) in sync, global batch 8" in done.stdout
    assert _steps(done.stdout) == [16 // 8]  # the global batch of 8 = 2 replicas x 4
    assert (out / "model.keras").is_file() and (out / "metrics.json").is_file()


def _history_rows(out: Path) -> int:
    path = out / "history.csv"
    return max(0, len(path.read_text().splitlines()) - 1) if path.is_file() else 0


def _start_workers(cmd: list[str], outs: list[Path], logs: list[Path]) -> list[subprocess.Popen]:
    procs = []
    for tf_config, out, log in zip(loopback_cluster(len(outs)), outs, logs, strict=True):
        env = {**_env(), "TF_CONFIG": tf_config}
        with open(log, "a") as f:
            procs.append(subprocess.Popen([*cmd, "--out", str(out)], env=env, stdout=f,
                                          stderr=subprocess.STDOUT, text=True))
    return procs


def test_two_workers_on_loopback_shard_sync_and_survive_a_killed_worker(tiny_dataset, tmp_path):
    """2 MultiWorkerMirroredStrategy processes: each reads only its half, the chief alone writes the
    run, a SIGKILLed worker's job restarts from the last backup and ends with identical weights."""
    data = tiny_dataset(10, size=32)  # 16 train images: 8 per worker, per-replica batch 4 -> 2 steps
    outs = [tmp_path / "w0", tmp_path / "w1"]
    logs = [tmp_path / "w0.log", tmp_path / "w1.log"]
    cmd = [sys.executable, "-m", "tfdeepfake.train", *TINY_RUN, "--data", str(data), "--epochs", "2",
           "--patience", "50", "--strategy", "multiworker"]
    procs = _start_workers(cmd, outs, logs)
    backups = [outs[i] / "backup" / f"worker-{i}" / "training_metadata.json" for i in (0, 1)]
    deadline = time.monotonic() + 300
    try:  # kill once epoch 1 is backed up on both workers, in the chief's history and model.keras
        while not (all(b.is_file() for b in backups) and _history_rows(outs[0]) == 1
                   and zipfile.is_zipfile(outs[0] / "model.keras")):
            assert all(p.poll() is None for p in procs), "a worker ended early:\n" + logs[0].read_text()
            assert time.monotonic() < deadline, "no epoch finished in time:\n" + logs[0].read_text()
            time.sleep(0.2)
    finally:
        procs[1].send_signal(signal.SIGKILL)  # the lost worker; the job is then restarted as a whole
        procs[0].send_signal(signal.SIGKILL)
        for p in procs:
            p.wait()
    first = [log.read_text() for log in logs]

    procs = _start_workers(cmd, outs, logs)
    try:
        for p in procs:
            p.wait(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    texts = [log.read_text()[len(before):] for log, before in zip(logs, first, strict=True)]
    assert [p.returncode for p in procs] == [0, 0], texts[0][-3000:] + texts[1][-3000:]
    for text in texts:
        assert _epochs(text) == [2], text[-3000:]  # resumed after the backed-up epoch 1
        assert _steps(text) == [16 // 2 // 4]  # files / workers / per-replica batch
    digests = [re.findall(r"final weights sha1 (\w+)", text) for text in texts]
    assert len(digests[0]) == 1 and digests[0] == digests[1]
    for name in ("model.keras", "config.json", "history.csv", "split.csv", "metrics.json", "report.md"):
        assert (outs[0] / name).is_file(), name
    # the non-chief wrote nothing but its own backup (kept after the run, as on one device)
    assert sorted(p.relative_to(outs[1]).as_posix() for p in outs[1].rglob("*") if p.is_file()) == [
        "backup/worker-1/latest.weights.h5", "backup/worker-1/training_metadata.json"]
    assert (outs[0] / "backup" / "worker-0" / "latest.weights.h5").is_file()
    assert list(pd.read_csv(outs[0] / "history.csv")["epoch"]) == [0, 1]


UPSTREAM = """
import json, os, sys
import tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()
import keras
with strategy.scope():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
def dataset(ctx):
    x = tf.data.Dataset.range(16).map(lambda i: (tf.fill([4], tf.cast(i, tf.float32)), tf.ones([1])))
    return x.shard(ctx.num_input_pipelines, ctx.input_pipeline_id).batch(4)
model.fit(strategy.distribute_datasets_from_function(dataset), epochs=1, verbose=0)
print("fit ok")
"""


@pytest.mark.xfail(needs_keras_20585_workaround(), strict=True,
                   reason="keras-team/keras#20585: model.fit under MultiWorkerMirroredStrategy fails; "
                          "when this passes, drop distribute.patch_keras_20585")
def test_upstream_multiworker_fit_without_workaround(tmp_path):
    logs = [tmp_path / "u0.log", tmp_path / "u1.log"]
    procs = _start_workers([sys.executable, "-c", UPSTREAM, "--"], [tmp_path, tmp_path], logs)
    try:
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0], logs[0].read_text()[-2000:]
