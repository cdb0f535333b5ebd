"""Train a detector: ``python -m tfdeepfake.train --model xception [--data DIR] ...``.

Each run writes a folder (default ``runs/<model>-<timestamp>``) holding ``model.keras`` (the best epoch
by ``--monitor``, validation loss by default, or the last epoch with ``--keep-weights last``), ``config.json`` (every flag plus library versions), ``history.csv``, ``split.csv``,
``metrics.json`` (validation, test and any ``--test-data`` figures with their loss, and the threshold
chosen on validation),
``report.md`` and PNG plots. ``--resume`` continues a run that was stopped, even by SIGKILL, from its last
finished epoch, on the trajectory the uninterrupted run would have followed: an epoch's shuffle order,
augmentation and dropout masks depend only on ``(seed, epoch)`` (:class:`EpochSeeds`), the weights and
optimizer state come from ``backup/`` (kept after the run, so a finished run can be extended with a
larger ``--epochs``), and early stopping picks up its best value and patience count from
``history.csv``. ``--resume`` on a finished run refuses unless asked to extend it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from tfdeepfake import data as data_mod
from tfdeepfake import demo, models, plots
from tfdeepfake.cli import (
    UsageError,
    add_debug_flag,
    given_options,
    input_dir,
    output_dir,
    run_cli,
    usage_error,
)
from tfdeepfake.config import (
    ADAMW_WEIGHT_DECAY,
    KEEP_WEIGHTS,
    LR_SCHEDULES,
    MONITORS,
    OPTIMIZERS,
    PRECISIONS,
    REPRESENTATIONS,
    TrainConfig,
    declared_options,
)
from tfdeepfake.console import Log, print_line
from tfdeepfake.distill import distill_targets
from tfdeepfake.distribute import CACHE_MODES, STRATEGIES, Worker, cluster_tasks
from tfdeepfake.hardware import precision_policy
from tfdeepfake.metrics import binary_metrics, choose_threshold, evaluation_report, logit_loss
from tfdeepfake.models import build_model
from tfdeepfake.models.registry import parse_option
from tfdeepfake.models.vit import VIT_SIZES
from tfdeepfake.optim import MomentumSGD, use_sam  # in-place momentum: less memory; SAM steps
from tfdeepfake.recipe import ema_callbacks, learning_rate, training_metrics
from tfdeepfake.report import comparison_table, run_report
from tfdeepfake.runs import (
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    load_model,
    partial_path,
    publish,
    resolve_model,
    save_model,
    write_atomic,
)
from tfdeepfake.scoring import predict_logits, sigmoid

# The pipeline drops unreadable images (``ignore_errors``), so its length is unknown to Keras, which then
# warns once per run that the input "ran out of data" at the end of the first epoch. That is expected.
warnings.filterwarnings("ignore", message="Your input ran out of data")


def default_run_dir(model: str, root: str | Path = "runs") -> Path:
    return Path(root) / f"{model}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


NO_WEIGHT_DECAY = ("bias", "gamma", "beta")
"""Variables (by name) AdamW does not decay: biases and normalisation scales/offsets, as is usual."""


def build_optimizer(config: TrainConfig, steps_per_epoch: int = 1) -> Any:
    """The configured optimizer, with its learning-rate schedule (``--lr-schedule``, counted in
    ``steps_per_epoch``) and weight EMA (``--ema``); AdamW with ``--weight-decay`` (decoupled, every
    variable but :data:`NO_WEIGHT_DECAY`)."""
    lr = learning_rate(config.lr, config.lr_schedule, config.warmup_epochs, config.resolved_epochs,
                       steps_per_epoch)
    ema = {"use_ema": True, "ema_momentum": config.ema} if config.ema else {}
    if config.optimizer == "sgd":
        return MomentumSGD(learning_rate=lr, momentum=0.9, **ema)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr, **ema)
    optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.resolved_weight_decay, **ema)
    optimizer.exclude_from_weight_decay(var_names=list(NO_WEIGHT_DECAY))
    return optimizer


def augment_config(config: TrainConfig) -> data_mod.AugmentConfig:
    """The training pipeline's augmentation as ``config`` switches it."""
    return data_mod.AugmentConfig(flip=config.augment_flip, jpeg=config.augment_jpeg,
                                  blur=config.augment_blur, crop=config.augment_crop,
                                  shift=config.augment_shift, mixup=config.mixup,
                                  erase=config.augment_erase, subpixel=config.augment_subpixel)


def compile_model(model: Any, config: TrainConfig, steps_per_epoch: int = 1) -> Any:
    """BCE on the logit (as the original's BCEWithLogitsLoss; ``--label-smoothing``); accuracy at
    P(fake) = 0.5 and ROC AUC (read against each blend's dominant label under ``--mixup``);
    sharpness-aware steps under ``--sam``."""
    model.compile(
        optimizer=build_optimizer(config, steps_per_epoch),
        loss=keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=config.label_smoothing),
        metrics=training_metrics(config.mixup > 0 or bool(config.teacher)),
        jit_compile=config.jit_compile,
    )
    if config.sam:
        use_sam(model, config.sam)
    return model


class EpochLine(keras.callbacks.Callback):
    """One line per epoch when stdout is not a terminal (logs, CI, captured notebook output), with
    the training steps this process ran."""

    def __init__(self, log: Log) -> None:
        super().__init__()
        self._log = log
        self._start = time.perf_counter()
        self._steps = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()
        self._steps = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._steps += 1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        figures = " ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()))
        self._log(f"epoch {epoch + 1}: {figures} ({self._steps} steps, "
                  f"{time.perf_counter() - self._start:.1f}s)")


SEED_STATE = "seed_generator_state"  # the variable of each Keras SeedGenerator (dropout masks)
_SEED_STRIDE = 2**20  # a generator's counter at the start of epoch e is e * stride (steps < 2**20)


class EpochSeeds(keras.callbacks.Callback):
    """Make an epoch's randomness a function of ``(seed, epoch)`` alone, so a resumed run repeats it.

    At the start of epoch ``e`` it sets the training pipeline's epoch counter (shuffle order and
    augmentation, see ``data.make_dataset``) to ``e`` and every dropout seed generator's counter to
    ``e * 2**20``. Keras' ``BackupAndRestore`` restores weights and optimizer state but not these:
    without them a run resumed at epoch 3 replays epoch 1's order, augmentation and dropout masks,
    which the model has already fitted (train accuracy 1.0 instead of the uninterrupted run's 0.6).
    """

    def __init__(self, epoch: Any = None) -> None:
        super().__init__()
        self._epoch = epoch

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._epoch is not None:
            self._epoch.assign(epoch)
        for variable in self.model.variables:
            if variable.name == SEED_STATE:
                seed = int(np.asarray(variable.numpy())[0])
                variable.assign(np.array([seed, epoch * _SEED_STRIDE], dtype=variable.dtype))


def monitor_mode(monitor: str) -> str:
    """``"max"`` for an accuracy, ``"min"`` for a loss."""
    return "max" if monitor.endswith("accuracy") else "min"


def early_stopping_state(values: Sequence[float], mode: str = "min") -> tuple[int | None, int]:
    """Keras ``EarlyStopping`` (``mode`` min or max, ``min_delta`` 0) after these epochs' monitored
    values: ``(best epoch or None, epochs since it)``."""
    best, best_epoch, wait = float("nan"), None, 0
    for epoch, value in enumerate(values):
        wait += 1
        better = value > best if mode == "max" else value < best  # NaN never improves
        if best_epoch is None or better:  # the first epoch always counts
            best, best_epoch, wait = value, epoch, 0
    return best_epoch, wait


def best_epoch(history: dict[str, list[float]], monitor: str) -> int | None:
    """The 1-based epoch with the best ``monitor`` value (the first of ties), ``None`` without one."""
    epoch = early_stopping_state(history.get(monitor) or [], monitor_mode(monitor))[0]
    return None if epoch is None else epoch + 1


def stopped_early(values: Sequence[float], patience: int, mode: str = "min") -> bool:
    """Whether early stopping with ``patience`` ended training after the last of ``values``."""
    wait = early_stopping_state(values, mode)[1]  # 0: the last epoch improved, which never stops
    return len(values) > 1 and wait > 0 and wait >= patience


class ResumedEarlyStopping(keras.callbacks.EarlyStopping):
    """``EarlyStopping`` that continues from the epochs already run (``previous``: their monitored
    values), as the uninterrupted run's would: same best value, same patience count."""

    def __init__(self, previous: Sequence[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._previous = list(previous)

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        best, wait = early_stopping_state(self._previous, self.mode)
        if best is not None:
            self.best, self.best_epoch, self.wait = self._previous[best], best, wait


class EpochTimes(keras.callbacks.Callback):
    """Each epoch's wall-clock seconds, in ``path`` (:data:`TIMES_FILE`) after every epoch, following
    the epochs already run (``previous``), so a resumed run knows how long it has trained."""

    def __init__(self, path: Path | None, previous: Sequence[float] = ()) -> None:
        super().__init__()
        self.path = path
        self.seconds = list(previous)
        self.earlier = sum(self.seconds)
        self._epoch_start = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(round(time.monotonic() - self._epoch_start, 3))
        if self.path is not None:
            text = json.dumps({"epoch_seconds": self.seconds})
            write_atomic(self.path, lambda partial: partial.write_text(text))


def read_epoch_seconds(run_dir: Path, epochs: int) -> list[float]:
    """The seconds of a run's first ``epochs`` epochs from :data:`TIMES_FILE` (those the backup holds;
    later ones are trained again); ``[]`` without the file or with an unreadable one."""
    try:
        seconds = json.loads((run_dir / TIMES_FILE).read_text())["epoch_seconds"]
        return [float(s) for s in seconds][:epochs]
    except (OSError, ValueError, KeyError, TypeError):
        return []


class TimeLimit(keras.callbacks.Callback):
    """Stop before the epoch that would end past ``minutes`` of training, judged by the slowest epoch so
    far. It reads the epoch times of ``times`` (an :class:`EpochTimes` placed before it), which include
    a resumed run's earlier epochs: the budget is the run's."""

    def __init__(self, minutes: float, log: Log, times: EpochTimes) -> None:
        super().__init__()
        self._limit = 60.0 * minutes
        self._log = log
        self._times = times

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = self._times.seconds
        if sum(seconds) + max(seconds) > self._limit:
            self._log(f"time limit {self._limit / 60:.1f} min: stopping after epoch {epoch + 1}")
            self.model.stop_training = True


class SafeModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """``ModelCheckpoint`` whose file is never half-written: Keras saves to a hidden file beside
    ``path`` (:func:`tfdeepfake.runs.partial_path`), which is then moved over ``path`` in one step. A
    run killed mid-save keeps its previous ``model.keras``; on ``--resume`` a finished hidden file (a
    whole zip archive) is moved into place and a truncated one deleted."""

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        self.final_path = Path(path)
        super().__init__(str(partial_path(self.final_path, unique=False)), **kwargs)

    def _publish(self) -> None:
        partial = Path(self.filepath)
        if partial.is_file():
            if zipfile.is_zipfile(partial):
                publish(partial, self.final_path)
            else:
                partial.unlink()

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._publish()
        super().on_train_begin(logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        self._publish()


def read_history(path: Path) -> dict[str, list[float]]:
    """``history.csv`` as ``{metric: [value per epoch]}`` (empty when there is none yet)."""
    if not path.is_file() or path.stat().st_size == 0:
        return {}
    frame = pd.read_csv(path)
    return {c: frame[c].astype(float).tolist() for c in frame.columns if c != "epoch"}


def _best_so_far(history: dict[str, list[float]], monitor: str) -> float | None:
    epoch = best_epoch(history, monitor)
    return None if epoch is None else history[monitor][epoch - 1]


BACKUP_DIR = "backup"  # BackupAndRestore's folder: weights + optimizer state after the last epoch
HISTORY_FILE = "history.csv"
TIMES_FILE = "epoch_seconds.json"  # each epoch's wall-clock seconds: --time-limit-minutes over --resume


def backup_folder(run_dir: Path, worker: Worker | None = None) -> Path:
    """``RUN/backup``; with several workers each has its own ``RUN/backup/worker-N`` (a shared one
    fails on file locks)."""
    worker = worker or Worker()
    return Path(run_dir) / BACKUP_DIR / (f"worker-{worker.index}" if worker.count > 1 else "")


def backup_epoch(run_dir: Path, worker: Worker | None = None) -> int:
    """Epochs whose training state ``backup/`` (this worker's) holds (0 when there is none)."""
    folder = backup_folder(run_dir, worker)
    meta = folder / "training_metadata.json"
    if not (folder / "latest.weights.h5").is_file() or not meta.is_file():
        return 0
    try:
        return int(json.loads(meta.read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def truncate_history(path: Path, epochs: int) -> None:
    """Keep the first ``epochs`` rows of ``history.csv``: rows logged after the last backup belong to
    epochs a resumed run trains again."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    if len(lines) > epochs + 1:
        path.write_text("".join(lines[: epochs + 1]) if epochs else "")


def fit_callbacks(config: TrainConfig, out: Path, log: Log = print_line, interactive: bool = False,
                  epoch: Any = None, worker: Worker | None = None) -> list[keras.callbacks.Callback]:
    """The callbacks of a run, in an order that matters: :class:`EpochSeeds` (``epoch``: the training
    pipeline's epoch counter); the history row; the backup (kept after the run, so a finished run can
    be extended), before ``--ema``'s swap so it holds the raw weights and the averages in their own
    places; then the swap that puts the EMA weights in the model for validation and at each epoch's
    end, so early stopping and the checkpoint judge and save the averaged weights. On ``--resume``,
    early stopping and the checkpoint continue from ``history.csv``. With several workers only the
    chief writes the history, the model and TensorBoard logs; each has its own backup."""
    chief = worker is None or worker.chief

    history_path = out / HISTORY_FILE
    previous = read_history(history_path) if config.resume else {}
    keep_best, mode = config.keep_weights == "best", monitor_mode(config.monitor)
    callbacks = [
        EpochSeeds(epoch),
        *([keras.callbacks.CSVLogger(str(history_path), append=config.resume and history_path.exists())]
          if chief else []),
        keras.callbacks.BackupAndRestore(str(backup_folder(out, worker)), delete_checkpoint=False),
        *(ema_callbacks() if config.ema else []),
        # No restore_best_weights: the kept epoch's weights are model.keras, loaded after fit.
        ResumedEarlyStopping(
            previous.get(config.monitor, []), monitor=config.monitor, mode=mode,
            patience=config.patience, verbose=1,
        ),
    ]
    if chief:
        callbacks += [
            SafeModelCheckpoint(  # keep_weights="last": saved every epoch, so the last stays
                out / MODEL_FILE, monitor=config.monitor, mode=mode, save_best_only=keep_best,
                initial_value_threshold=_best_so_far(previous, config.monitor) if keep_best else None,
            ),
            keras.callbacks.TensorBoard(str(out / "logs"), histogram_freq=0, write_graph=False),
        ]
    times = EpochTimes(out / TIMES_FILE if chief else None,
                       read_epoch_seconds(out, backup_epoch(out, worker)) if config.resume else [])
    callbacks.append(times)
    if config.time_limit_minutes is not None:
        callbacks.append(TimeLimit(config.time_limit_minutes, log, times))
    if not interactive:
        callbacks.append(EpochLine(log))
    return callbacks


def train(config: TrainConfig, log: Log = print_line) -> Path:
    """Train one model as configured; return its run folder.

    Keras' global dtype policy is the run's precision during training and restored afterwards. The
    ``tf.distribute`` strategy (``config.strategy``, :mod:`tfdeepfake.distribute`) is created before
    any other TensorFlow runtime call.
    """
    from tfdeepfake import distribute

    config.validate()  # before anything is written: a bad config leaves no run folder behind
    check_paths(config)
    tf_config = os.environ.get("TF_CONFIG")
    name = distribute.choose_strategy(config.strategy, tf_config, distribute.visible_gpus())
    if name == "multiworker" and (config.out is None or config.time_limit_minutes is not None):
        raise usage_error("--strategy", name, "--out (every worker's run folder) and no "
                          "--time-limit-minutes (workers would stop at different epochs)")
    strategy = distribute.get_strategy(name)
    worker = distribute.worker_of(tf_config) if name == "multiworker" else Worker()
    if config.batch_size % strategy.num_replicas_in_sync:
        raise usage_error("--batch-size", config.batch_size, f"a multiple of the {strategy.num_replicas_in_sync} "
                          f"replicas of the {name} strategy (it is the global batch)")
    with precision_policy(config.precision):
        return _train(config, log, strategy, worker)


RUN_MARKERS = (CONFIG_FILE, HISTORY_FILE, MODEL_FILE, BACKUP_DIR)  # what makes a folder a run


def check_paths(config: TrainConfig) -> None:
    """Every folder a run reads or writes, checked before any work (``UsageError`` naming the flag):
    ``--out`` writable and, unless resuming, not holding a run already; ``--data`` and each
    ``--test-data`` existing folders; ``--init-from`` a run folder or ``.keras`` file."""
    out = output_dir("--out", config.out)
    # a restarted multi-worker job continues from its workers' backups without --resume
    if out is not None and not config.resume and cluster_tasks(os.environ.get("TF_CONFIG")) < 2:
        found = [name for name in RUN_MARKERS if (out / name).exists()]
        if found:
            raise usage_error("--out", config.out, f"a new run folder (it holds a run: {', '.join(found)}); "
                              "pass --resume to continue it, or choose another folder")
    input_dir("--data", config.data)
    for folder in config.test_data:
        input_dir("--test-data", folder, optional=False)
    for flag, value in (("--init-from", config.init_from), ("--teacher", config.teacher)):
        if value:
            try:
                resolve_model(value)
            except (FileNotFoundError, ValueError) as exc:
                raise usage_error(flag, value, f"a run folder or .keras file ({exc})") from None


def _train(config: TrainConfig, log: Log, strategy: Any, worker: Worker) -> Path:
    import tensorflow as tf

    from tfdeepfake.distribute import prepare_replicas

    where = f", worker {worker.index} of {worker.count}{' (chief)' if worker.chief else ''}"
    log(f"strategy {type(strategy).__name__}: {strategy.num_replicas_in_sync} replica(s) in sync"
        f"{where if worker.count > 1 else ''}, global batch {config.batch_size}")

    if config.data is None:
        root = demo.demo_dataset()
        log(f"no --data given: using the built-in SYNTHETIC demo dataset at {root} "
            "(results on it say nothing about real deepfakes; pass --data DIR for a real dataset)")
    else:
        root = Path(config.data)
    index = data_mod.index_folder(
        root, val_fraction=config.val_fraction, test_fraction=config.test_fraction,
        seed=config.resolved_split_seed, balance=config.balance, max_per_class=config.max_per_class,
    )
    if config.fold is not None:
        index = data_mod.hold_out_fold(index, config.fold, config.folds)
    log(index.summary())
    if "val" not in index.counts():
        raise ValueError(f"{root}: no validation images (early stopping needs a validation split)")

    out = Path(config.out) if config.out else default_run_dir(config.model)  # the data is usable
    out.mkdir(parents=True, exist_ok=True)
    config.out = str(out)
    if worker.count > 1 and backup_epoch(out, worker):
        config.resume = True  # a restarted multi-worker job
    if worker.chief:
        config.save(out / CONFIG_FILE)
        index.write_manifest(out / "split.csv")

    targets = None  # before the seed: a teacher changes the targets, not the initialisation
    if config.teacher:
        targets = distill_targets(config.teacher, config.distill, index, out if worker.chief else None,
                                  batch_size=config.batch_size, cross_fit=config.cross_fit, log=log)
    keras.utils.set_random_seed(config.seed)
    precision = keras.mixed_precision.global_policy().name
    image_size = config.resolved_image_size

    augment = augment_config(config)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)  # set by EpochSeeds
    caches = data_mod.CachePlan(config.cache, config.cache_budget_gb, config.cache_dir or out / "cache")

    common = {"image_size": image_size, "batch_size": config.batch_size, "seed": config.seed, "log": log}
    train_ds = split_dataset(index, "train", strategy, caches, training=True, augment=augment, epoch=epoch,
                             targets=targets, **common)
    val_ds = split_dataset(index, "val", strategy, caches, training=False, **common)

    with strategy.scope():
        model = build_model(
            config.model, image_size, l2=config.l2, dropout=config.dropout, **config.model_kwargs()
        )
        if config.init_from and not config.resume:  # a resumed run's backup holds its weights
            copied = warm_start(model, config.init_from)
            log(f"weights initialised from {config.init_from} ({copied} arrays)")
        if config.resolved_epochs:  # --epochs 0 scores the --init-from weights: nothing to optimise
            compile_model(model, config, data_mod.steps_per_epoch(len(index.rows("train")), config.batch_size))
    prepare_replicas(model, image_size)
    log(f"model {config.model}: {model.count_params():,} parameters, image size {image_size}, "
        f"input {config.input}, optimizer {config.optimizer_label} ({config.lr_schedule}), "
        f"l2 {config.l2}, precision {precision}")

    if config.resume and worker.chief:  # the backup is the truth: epochs logged after it are trained again
        truncate_history(out / HISTORY_FILE, backup_epoch(out, worker))
    previous = read_history(out / HISTORY_FILE) if config.resume else {}
    interactive = sys.stdout.isatty()
    callbacks = fit_callbacks(config, out, log, interactive, epoch, worker)
    class_weight = None
    if not config.balance:
        train_labels = index.frame.loc[index.frame["split"] == "train", "label"].to_numpy()
        class_weight = data_mod.class_weights(train_labels)
        log(f"class weights (no balancing): {class_weight}")

    earlier = next(c for c in callbacks if isinstance(c, EpochTimes)).earlier  # a resumed run's
    started = time.perf_counter()
    if stopped_early(previous.get(config.monitor, []), config.patience, monitor_mode(config.monitor)):
        log(f"early stopping had already ended this run after epoch {len(previous[config.monitor])}")
    elif not config.resolved_epochs:
        log(f"--epochs 0: scoring the weights of {config.init_from} as this run builds the model, untrained")
    else:
        model.fit(
            train_ds, validation_data=val_ds, epochs=config.resolved_epochs, callbacks=callbacks,
            class_weight=class_weight, verbose=1 if interactive else 0, shuffle=False,
        )
    train_seconds = earlier + time.perf_counter() - started
    caches.clean(keep=config.keep_cache, log=log)
    if worker.count > 1:  # the same on every worker: replicas stayed in sync
        log(f"final weights sha1 {weights_digest(model)} (worker {worker.index})")
    if not worker.chief:
        log(f"worker {worker.index}: training finished; the chief writes the run folder")
        return out

    if not (out / MODEL_FILE).is_file():  # the monitored value never improved on a finite one
        save_model(model, out / MODEL_FILE)
    best_model = load_model(out / MODEL_FILE)
    history = read_history(out / "history.csv")
    summary = finish_run(best_model, index, config, history, train_seconds, log)
    log(f"run folder: {out}")
    log(summary)
    return out


def split_dataset(index: Any, split: str, strategy: Any, caches: data_mod.CachePlan, *, image_size: int,
                  batch_size: int, seed: int, log: Log = print_line, cache_label: str | None = None,
                  **kwargs: Any) -> Any:
    """One split of ``index`` as ``train`` and ``tune`` read it: ``batch_size`` is the global batch,
    distributed over ``strategy``'s replicas with the file list sharded per worker before decoding
    (:func:`tfdeepfake.distribute.distributed_datasets`), cached where ``caches`` decides (logged as
    ``cache_label``, default the split); ``kwargs`` go to :func:`tfdeepfake.data.dataset_for`."""
    from tfdeepfake.distribute import distributed_datasets

    def make(per_replica_batch: Callable[[int], int], shard: tuple[int, int] | None, replicas: int) -> Any:
        cache = caches.choose(cache_label or split, index.rows(split)["path"].tolist(), image_size, shard, log,
                              kwargs.get("targets"))
        return data_mod.dataset_for(index, split, image_size=image_size, seed=seed, cache=cache,
                                    batch_size=per_replica_batch(batch_size), shard=shard,
                                    replicas=replicas, **kwargs)

    return distributed_datasets(strategy, make)


def warm_start(model: Any, source: str | Path) -> int:
    """Copy every weight of ``source`` (a run folder or ``.keras`` file) into ``model``; return the
    count of arrays copied. Both must be the same architecture and input representation; the image
    size may differ where no weight depends on it (resnet18, densenet121, xception, ...: progressive
    resizing, train small then finish large). A mismatch raises ``ValueError`` naming the weight."""
    ref = resolve_model(source)
    src = load_model(ref.model_path)
    if len(src.weights) != len(model.weights):
        raise ValueError(f"--init-from {source}: {len(src.weights)} weight arrays, this {model.name} has "
                         f"{len(model.weights)} (expected a run of the same model and --input)")
    for mine, theirs in zip(model.weights, src.weights, strict=True):
        if tuple(mine.shape) != tuple(theirs.shape):
            raise ValueError(f"--init-from {source}: weight {theirs.path} has shape {tuple(theirs.shape)}, "
                             f"this model's {mine.path} {tuple(mine.shape)} (a layer whose size follows "
                             "the image size, e.g. alexnet's or vgg13's flatten or vit's positions, "
                             "cannot change size)")
    for mine, theirs in zip(model.weights, src.weights, strict=True):
        mine.assign(theirs.numpy())
    return len(model.weights)


def weights_digest(model: Any) -> str:
    """SHA-1 of every weight's bytes: equal digests mean bit-identical models."""
    import hashlib

    import numpy as np

    digest = hashlib.sha1()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


def finish_run(
    model: Any, index: Any, config: TrainConfig, history: dict[str, list[float]],
    train_seconds: float, log: Log = print_line,
) -> str:
    """Score validation/test/--test-data, choose the threshold, write metrics, plots and report."""
    out = Path(config.out or ".")
    image_size = config.resolved_image_size
    common = {"image_size": image_size, "batch_size": config.batch_size, "cache": False}  # one pass

    def score(dataset: Any) -> tuple[Any, Any, float]:
        """Labels, P(fake) and the mean binary cross-entropy (``loss``) over one dataset."""
        y, z = predict_logits(model, dataset)
        return y, sigmoid(z), logit_loss(y, z)

    val_y, val_p, val_loss = score(data_mod.dataset_for(index, "val", **common))
    threshold = choose_threshold(val_y, val_p)
    epochs_run = len(history.get("loss", []))
    best = best_epoch(history, config.monitor)
    results: dict[str, Any] = {
        "model": config.model,
        "threshold": threshold,
        "params": int(model.count_params()),
        "epochs_run": epochs_run,
        "monitor": config.monitor,
        "best_epoch": best,
        "keep_weights": config.keep_weights,
        "kept_epoch": best if config.keep_weights == "best" else (epochs_run or None),
        "train_seconds": round(train_seconds, 1),
        "val": {**binary_metrics(val_y, val_p, threshold), "loss": val_loss},
    }
    curves = {"validation": (val_y, val_p)}
    if "test" in index.counts():
        y, p, loss = score(data_mod.dataset_for(index, "test", **common))
        results["test"] = {**evaluation_report(y, p, threshold), "loss": loss}
        curves["test"] = (y, p)
        plots.plot_confusion_matrix(results["test"]["confusion_matrix"], out / "confusion_matrix.png",
                                    "test split, threshold 0.5")
    results["test_data"] = {}
    for folder in config.test_data:
        other = data_mod.index_eval_folder(folder)
        if other.skipped:
            log(f"{folder}: skipped {len(other.skipped)} unreadable file(s)")
        y, p, loss = score(data_mod.dataset_for(other, "test", **common))
        results["test_data"][str(folder)] = {**evaluation_report(y, p, threshold), "loss": loss}
        curves[Path(folder).name or str(folder)] = (y, p)
        if "test" not in results:
            plots.plot_confusion_matrix(results["test_data"][str(folder)]["confusion_matrix"],
                                        out / "confusion_matrix.png", f"{folder}, threshold 0.5")
    (out / METRICS_FILE).write_text(json.dumps(results, indent=2, default=float) + "\n")
    if history:
        test = results.get("test")
        marks = None if test is None else {"loss": test["loss"], "accuracy": test["accuracy"]}
        plots.plot_history(history, out / "curves.png", test=marks, test_epoch=results["kept_epoch"])
    plots.plot_roc(curves, out / "roc.png")
    report = run_report(config, index, results)
    (out / "report.md").write_text(report)
    return report


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m tfdeepfake.train",
        description="Train a deepfake image detector from scratch (real = 0, fake = 1).",
    )
    p.add_argument("--model", default=d.model, choices=[*models.registered_names(), "all"],
                   help="architecture, or 'all' to train each in turn and compare (default: %(default)s)")
    p.add_argument("--data", default=None,
                   help="folder with real/ and fake/ (split 80/10/10 with --seed) or with train/val/test "
                        "splits; default: a small built-in SYNTHETIC demo dataset")
    p.add_argument("--test-data", action="append", default=[], metavar="DIR",
                   help="another folder to evaluate on after training (repeatable)")
    p.add_argument("--image-size", type=int, default=None,
                   help="square input size (default 224; 64 on the demo data)")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="global batch, split over the replicas of --strategy; with N replicas scale "
                        "--lr by N too when the per-device batch stays fixed (linear scaling rule)")
    p.add_argument("--epochs", type=int, default=None,
                   help="maximum epochs (default 30; 12 on the demo data); early stopping may end sooner")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer,
                   help="sgd uses momentum 0.9 as the original (default: %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--l2", type=float, default=d.l2, help="L2 factor on every kernel")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help=f"with --optimizer adamw: decoupled weight decay (Keras's default {ADAMW_WEIGHT_DECAY} "
                        "when not given; biases and normalisation parameters are not decayed), e.g. 0.05 "
                        "with --l2 0")
    p.add_argument("--dropout", type=float, default=d.dropout,
                   help="classifier dropout (default: each model's own, the original's where it has one: "
                        "0.5 for alexnet, none for vgg13, xception, alexnet_rnn)")
    p.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience (epochs)")
    p.add_argument("--monitor", choices=MONITORS, default=d.monitor,
                   help="what early stopping follows (the original: val_accuracy; default: %(default)s)")
    p.add_argument("--keep-weights", choices=KEEP_WEIGHTS, default=d.keep_weights,
                   help="keep the best epoch by --monitor, or the last epoch trained as the original "
                        "did (default: %(default)s)")
    p.add_argument("--max-per-class", type=int, default=d.max_per_class, metavar="N",
                   help="use at most N images per class, a seeded sample drawn before the split "
                        "(the original: 25000)")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="seeds the weights, augmentation and dropout, and the split unless --split-seed "
                        "(default: %(default)s)")
    p.add_argument("--split-seed", type=int, default=d.split_seed, metavar="SEED",
                   help="seed of the train/val/test split alone (default: --seed); runs with other --seed "
                        "values and one --split-seed share a validation split, so an ensemble of them "
                        "is chosen and thresholded on it")
    p.add_argument("--fold", type=int, default=d.fold, metavar="K",
                   help="train without fold K (1..--folds) of the training split's seeded, stratified folds; "
                        "the runs --fold 1 .. --fold N of one split are cross-fitted teachers (--cross-fit)")
    p.add_argument("--folds", type=int, default=d.folds, metavar="N",
                   help="how many folds --fold cuts the training split into (default %(default)s)")
    p.add_argument("--out", default=None, help="run folder (default runs/<model>-<timestamp>)")
    p.add_argument("--precision", choices=(*PRECISIONS, "auto"), default=d.precision,
                   help="'auto' (default) picks mixed_bfloat16 on CPUs with native bf16 (AVX-512 BF16 / "
                        "AMX; faster at the same accuracy, see BENCHMARKS.md), float32 elsewhere")
    p.add_argument("--jit-compile", action="store_true", help="compile train steps with XLA")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (or the newest runs/<model>-*) from its last epoch")
    p.add_argument("--no-balance", dest="balance", action="store_false",
                   help="keep every training image and use class weights instead of undersampling")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction)
    p.add_argument("--test-fraction", type=float, default=d.test_fraction)
    p.add_argument("--no-flip", dest="augment_flip", action="store_false")
    p.add_argument("--no-jpeg", dest="augment_jpeg", action="store_false",
                   help="no random JPEG re-compression")
    p.add_argument("--no-blur", dest="augment_blur", action="store_false")
    p.add_argument("--random-crop", dest="augment_crop", action="store_true",
                   help="random square crop of 80-100 %% of the image's side, resized back (off by default; "
                        "on rvf10k at 64 px it lowered validation AUC from 0.899 to 0.815, see STUDY.md)")
    for flag, dest, metavar, text in (
        ("--random-shift", "augment_shift", "FRACTION",
         "random translation by up to this fraction of the image's side, in whole pixels with reflected "
         "edges, nothing resampled (default 0: off), e.g. 0.0625 = 4 px at 64 px; on rvf10k it makes a model "
         "robust to misaligned faces but cost resnet18 at 64 px validation AUC 0.930 -> 0.887 over 10 epochs"),
        ("--random-erase", "augment_erase", "P",
         "with probability P replace a random rectangle (2-25 %% of the image) by noise, nothing else moved "
         "or resampled (random erasing; default 0: off); on rvf10k at 0.5 it cost resnet18 at 64 px "
         "validation AUC 0.952 -> 0.942 over 10 epochs"),
        ("--random-subpixel", "augment_subpixel", "PIXELS",
         "random translation by up to PIXELS (below 1) of the input along each axis, resampled bilinearly: "
         "the face stays within a pixel of where the aligned data puts it (default 0: off); on rvf10k at 0.5 "
         "it cost resnet18 at 64 px validation AUC 0.952 -> 0.942 over 10 epochs"),
    ):  # augmentation amounts, each off at 0 (see STUDY.md for the figures)
        p.add_argument(flag, dest=dest, type=float, default=getattr(d, dest), metavar=metavar,
                       help=f"{text}, see STUDY.md")
    p.add_argument("--no-augment", action="store_true", help="switch all augmentation off")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option the model's builder declares (repeatable; VALUE read as JSON, else "
                        "text), e.g. size=small or patch_size=8 for vit, batch_norm=true for vgg13")
    p.add_argument("--vit-size", choices=tuple(VIT_SIZES), default=None,
                   help="same as --model-option size=SIZE for --model vit (default: tiny)")
    p.add_argument("--init-from", default=None, metavar="RUN",
                   help="start from the weights of this run folder or .keras file (same model and "
                        "--input; a fully convolutional model may change --image-size: progressive "
                        "resizing, e.g. 4 epochs at 64 px, then 2 at 128 px from that run); with "
                        "--epochs 0 the run only scores those weights, e.g. --tta-flip added to a "
                        "trained run")
    p.add_argument("--time-limit-minutes", type=float, default=None,
                   help="stop before an epoch that would end past this wall-clock budget for "
                        "training; a --resume'd run counts the epochs it trained before")
    g = p.add_argument_group("input representation and recipe")
    g.add_argument("--input", choices=REPRESENTATIONS, default=d.input,
                   help="what the first layer sees: RGB, or RGB stacked with a high-pass residual or "
                        "a one-level Haar decomposition, or (wavelet) the Haar sub-bands alone at half "
                        "the side: the whole --image-size face at the cost of half that size; computed "
                        "inside the model (default: %(default)s)")
    g.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=d.lr_schedule,
                   help="constant, cosine decay to 0, or fast.ai's one-cycle (default: %(default)s)")
    g.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs,
                   help="learning-rate warm-up (default 0; one-cycle: 25%% of the epochs when 0)")
    g.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    g.add_argument("--mixup", type=float, default=d.mixup, metavar="ALPHA",
                   help="blend training images and their labels in pairs with weights from Beta(ALPHA, "
                        "ALPHA), e.g. 0.2 (default 0: off; --no-augment switches it off too); on rvf10k "
                        "it cost resnet18 at 64 px validation AUC 0.945 -> 0.940 over 10 epochs; over 22 epochs it gained "
                        "on two seeds (0.952 -> 0.959, 0.941 -> 0.958) at 2.2 times the training, see STUDY.md")
    g.add_argument("--sam", type=float, nargs="?", const=0.05, default=d.sam, metavar="RHO",
                   help="sharpness-aware minimisation: each step's gradient is taken at the weights moved "
                        "by RHO along the normalised gradient (0.05 when given alone; default 0: off); "
                        "a second forward and backward pass per step; on rvf10k at 0.05 it tied resnet18 at 64 px "
                        "(validation AUC 0.952 -> 0.950 over 10 epochs) at about 1.6 times the cost, see STUDY.md")
    g.add_argument("--teacher", default=None, metavar="MODEL",
                   help="knowledge distillation: train on (1 - W) x label + W x this model's P(fake) "
                        "(a run folder, .keras file or ensemble folder, trained without this run's "
                        "validation images; W is --distill), e.g. one model taught by an ensemble")
    g.add_argument("--distill", type=float, default=d.distill, metavar="W",
                   help="the teacher's weight W in the targets (default %(default)s)")
    g.add_argument("--cross-fit", action="store_true",
                   help="with --teacher ENSEMBLE of runs trained with --fold 1..N: each training image's "
                        "teacher P(fake) is the mean of the members that left it out, so the targets carry "
                        "the teacher's judgment of images it never saw rather than its memory of them")
    g.add_argument("--ema", type=float, nargs="?", const=0.99, default=d.ema, metavar="MOMENTUM",
                   help="keep an exponential moving average of the weights (momentum 0.99 when given "
                        "alone) and validate, save and score with it")
    g.add_argument("--tta-flip", action="store_true",
                   help="score each image as the mean logit of it and its mirror image (inside the "
                        "model, so evaluate, ensembles, the export and predict all do it)")
    add_scale_out_flags(p)
    p.add_argument("--config", metavar="FILE",
                   help="a config JSON (a run's config.json, or tfdeepfake.tune's best config) whose "
                        "values become the defaults; flags given on the command line still win")
    return add_debug_flag(p)


SCALE_OUT_FIELDS = ("strategy", "cache", "cache_dir", "cache_budget_gb", "keep_cache")


def add_scale_out_flags(p: argparse.ArgumentParser, inherit: bool = False) -> None:
    """The scale-out flags (``SCALE_OUT_FIELDS``) of ``train``, ``tune`` and ``experiment``.

    ``inherit``: every default is None, meaning the ``--config`` file's value (or ``TrainConfig``'s);
    :func:`scale_out_overrides` returns the flags given.
    """
    d = TrainConfig()

    def default(value: Any) -> Any:
        return None if inherit else value

    g = p.add_argument_group("scale out (README, 'Scale out')")
    g.add_argument("--strategy", choices=STRATEGIES, default=default(d.strategy),
                   help="auto: multiworker when TF_CONFIG names several tasks, mirrored with several "
                        f"GPUs, else default (one device) (default: {d.strategy})")
    g.add_argument("--cache", choices=CACHE_MODES, default=default(d.cache),
                   help="decoded train/val images: auto = in memory when they fit --cache-budget-gb, "
                        f"else a file cache on disk (default: {d.cache})")
    g.add_argument("--cache-dir", default=None, help="folder for disk caches (default RUN/cache)")
    g.add_argument("--cache-budget-gb", type=float, default=None,
                   help="memory for in-memory caches (default: half the memory available at start)")
    g.add_argument("--keep-cache", action="store_true", default=default(False),
                   help="keep the disk cache after the run (a later run on the same files reuses it)")


def scale_out_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The scale-out flags given on a command line built with ``add_scale_out_flags(inherit=True)``."""
    return {k: getattr(args, k) for k in SCALE_OUT_FIELDS if getattr(args, k) is not None}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {k: v for k, v in vars(args).items()
              if k not in ("no_augment", "config", "model_option", "vit_size", "debug")}
    if args.no_augment:  # every augment_* switch off and every amount 0, mixup too
        values.update({k: False if isinstance(v, bool) else 0.0 for k, v in values.items()
                       if k.startswith("augment_")}, mixup=0.0)
    file_options = values.get("model_options") or {}  # from --config FILE: those the model declares
    options = {k: v for k, v in file_options.items() if k in declared_options(args.model)}
    options.update(parse_option(text) for text in args.model_option)
    if args.vit_size is not None and args.model in ("vit", "all"):
        options["size"] = args.vit_size
    values["model_options"] = options
    return TrainConfig(**values).validate()


# Flags that --resume applies; every other flag would be ignored (the run's saved config wins).
RESUME_FLAGS = frozenset({"resume", "out", "model", "epochs", "patience", "time_limit_minutes", "debug"})


def finished_epochs(run_dir: Path) -> int | None:
    """Epochs a finished run's ``metrics.json`` covers (None while the run is unfinished): a run is
    finished when its metrics were written after its last backed-up epoch."""
    metrics = run_dir / METRICS_FILE
    if not metrics.is_file():
        return None
    try:
        ran = int(json.loads(metrics.read_text()).get("epochs_run") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return ran if ran >= backup_epoch(run_dir) else None


def _resume_config(args: argparse.Namespace, given: dict[str, str]) -> TrainConfig:
    """The saved config of the run to continue, with the flags --resume applies; refuses flags it
    would ignore and a finished run unless asked to extend it (more ``--epochs``)."""
    ignored = [flag for dest, flag in given.items() if dest not in RESUME_FLAGS]
    if ignored:
        raise UsageError(f"--resume continues a run with its saved settings, so {', '.join(ignored)} "
                         "would be ignored: drop them (or start a new run with another --out)")
    out = args.out
    if out is None:
        candidates = sorted(Path("runs").glob(f"{args.model}-*"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise UsageError(f"--resume: no run folder runs/{args.model}-* to continue; pass --out RUN")
        out = str(candidates[-1])
    run_dir = input_dir("--out", out)
    saved = run_dir / CONFIG_FILE
    if not saved.is_file():
        raise usage_error("--out", out, f"a run folder to resume ({CONFIG_FILE} not found)")
    resumed = TrainConfig.load(saved)
    if "model" in given and args.model != resumed.model:
        raise usage_error("--model", args.model, f"{resumed.model!r}, the model of the run {out}")
    if resumed.epochs == 0:
        raise UsageError(f"--resume: {out} scored {resumed.init_from}'s weights without training "
                         "(--epochs 0); there is no training state to continue. Train a new run with "
                         f"--init-from {resumed.init_from} instead")
    resumed.resume, resumed.out = True, str(out)
    for dest in ("epochs", "patience", "time_limit_minutes"):
        if dest in given:
            setattr(resumed, dest, getattr(args, dest))
    resumed.validate()
    done = backup_epoch(run_dir)
    ran = finished_epochs(run_dir)
    if ran is not None:  # finished: only a longer run makes sense
        if "epochs" not in given or args.epochs <= ran:
            raise UsageError(f"--resume: {out} is a finished run ({ran} epochs, metrics written); "
                             f"nothing to resume. To train it further pass --epochs N with N > {ran}, "
                             "or start a new run with another --out")
        if done != ran:
            raise UsageError(f"--resume --epochs {args.epochs}: {out} kept no training state after its "
                             f"last epoch ({BACKUP_DIR}/ missing), so it cannot be extended; start a new run")
        mode = monitor_mode(resumed.monitor)
        values = read_history(run_dir / HISTORY_FILE).get(resumed.monitor, [])[:done]
        if stopped_early(values, resumed.patience, mode):
            wait = early_stopping_state(values, mode)[1]
            raise UsageError(f"--resume --epochs {args.epochs}: early stopping ended {out} after epoch "
                             f"{done} (no {resumed.monitor} improvement for {wait} epochs, patience "
                             f"{resumed.patience}); pass --patience above {wait} to train it further")
    elif "epochs" in given and args.epochs < done:
        raise usage_error("--epochs", args.epochs, f"at least the {done} epochs {out} has already run")
    return resumed


def parse_config(argv: Sequence[str] | None, parser: argparse.ArgumentParser | None = None) -> TrainConfig:
    """Flags -> ``TrainConfig``: ``--config FILE`` values become defaults, ``--resume`` reloads the run's."""
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    if args.resume:
        return _resume_config(args, given_options(parser, argv))
    if args.config:
        saved = TrainConfig.load(args.config).to_dict()
        saved.update(out=None, resume=False)
        parser.set_defaults(**saved)
        args = parser.parse_args(argv)
    return config_from_args(args)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    config = parse_config(argv, parser)
    if config.model != "all":
        train(config)
        return 0
    parent = Path(config.out) if config.out else default_run_dir("all")
    runs = []
    for name in config.model_names():
        one = config.for_model(name, out=str(parent / name))
        runs.append(train(one))
    table = comparison_table(runs)
    (parent / "comparison.md").write_text(table)
    print_line(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
