"""Hyper-parameter search: ``python -m tfdeepfake.tune --model NAME --data DIR --max-trials N``.

KerasTuner (random search or Hyperband) over the learning rate, L2 factor, dropout and batch size, with
the training pipeline of ``tfdeepfake.train``: the same seeded split and class balancing, augmentation,
loss, metrics, optimiser and early stopping on validation loss. Trials are scored on the validation split
only (``--objective``, default ``val_loss``); the test split is never read. The best configuration is
written as a ``TrainConfig`` JSON (``best_config.json``) that ``python -m tfdeepfake.train --config FILE``
and ``python -m tfdeepfake.experiment --config FILE`` accept, with every trial in ``trials.csv``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import pandas as pd

from tfdeepfake import cli, demo
from tfdeepfake import data as data_mod
from tfdeepfake.cli import usage_error
from tfdeepfake.config import OPTIMIZERS, TrainConfig
from tfdeepfake.console import print_line
from tfdeepfake.distribute import (
    choose_strategy,
    get_strategy,
    prepare_replicas,
    visible_gpus,
)
from tfdeepfake.hardware import precision_policy
from tfdeepfake.models import MODEL_NAMES, build_model
from tfdeepfake.recipe import ema_callbacks
from tfdeepfake.train import (
    add_scale_out_flags,
    augment_config,
    compile_model,
    scale_out_overrides,
    split_dataset,
)

ALGORITHMS = ("random", "hyperband")
OBJECTIVES = {"val_loss": "min", "val_auc": "max", "val_accuracy": "max"}
BEST_CONFIG_FILE = "best_config.json"
TRIALS_FILE = "trials.csv"
# Search space: (low, high) on a log scale for lr and l2, a step grid for dropout, choices of batch size.
LR_RANGE = (1e-4, 1e-1)
L2_RANGE = (1e-6, 1e-2)
DROPOUT_RANGE = (0.0, 0.7, 0.1)
BATCH_SIZES = (16, 32, 64)


def load_train_config(path: str | Path) -> TrainConfig:
    """A ``TrainConfig`` JSON (as written by ``tune`` or a training run's ``config.json``)."""
    return TrainConfig.load(path)


def _hypermodel_class() -> Any:
    import keras_tuner as kt

    class DetectorHyperModel(kt.HyperModel):
        """Builds ``base.model`` with sampled lr/L2/dropout; fits it with the sampled batch size."""

        def __init__(self, base: TrainConfig, index: Any, batch_sizes: Sequence[int],
                     strategy: Any = None, caches: Any = None) -> None:
            super().__init__(name=base.model)
            self.base, self.index, self.batch_sizes = base, index, tuple(batch_sizes)
            self.strategy = strategy or get_strategy("default")
            self.caches = caches or data_mod.CachePlan("memory", None, ".")  # memory: writes no file
            self._datasets: dict[int, tuple[Any, Any]] = {}

        def config_for(self, hp: Any) -> TrainConfig:
            return dataclasses.replace(
                self.base, lr=hp.get("lr"), l2=hp.get("l2"), dropout=hp.get("dropout"),
                batch_size=hp.get("batch_size"))

        def build(self, hp: Any) -> Any:
            hp.Float("lr", *LR_RANGE, sampling="log")
            hp.Float("l2", *L2_RANGE, sampling="log")
            lo, hi, step = DROPOUT_RANGE
            hp.Float("dropout", lo, hi, step=step)
            hp.Choice("batch_size", list(self.batch_sizes))
            config = self.config_for(hp)
            model = build_model(config.model, config.resolved_image_size, l2=config.l2,
                                dropout=config.dropout, **config.model_kwargs())
            steps = data_mod.steps_per_epoch(len(self.index.rows("train")), config.batch_size)
            compile_model(model, config, steps)  # KerasTuner calls build inside the strategy's scope
            prepare_replicas(model, config.resolved_image_size)
            return model

        def datasets(self, batch_size: int) -> tuple[Any, Any]:
            """Train and val datasets of one global batch size (shared by the trials that sample it),
            read as ``train`` reads them (distributed over the strategy, cached as ``base.cache`` says)."""
            if batch_size not in self._datasets:
                b = self.base
                augment = augment_config(b)
                common = {"image_size": b.resolved_image_size, "batch_size": batch_size, "seed": b.seed}
                self._datasets[batch_size] = tuple(
                    split_dataset(self.index, split, self.strategy, self.caches,
                                  cache_label=f"{split}-b{batch_size}", **common, **kwargs)
                    for split, kwargs in (("train", {"training": True, "augment": augment}),
                                          ("val", {"training": False})))
            return self._datasets[batch_size]

        def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
            train_ds, val_ds = self.datasets(hp.get("batch_size"))
            callbacks = [*(ema_callbacks() if self.base.ema else []), *kwargs.pop("callbacks", []),
                         keras.callbacks.EarlyStopping(monitor="val_loss", patience=self.base.patience,
                                                       restore_best_weights=True)]
            class_weight = None
            if not self.base.balance:
                rows = self.index.rows("train")
                class_weight = data_mod.class_weights(rows["label"].to_numpy())
            kwargs.setdefault("epochs", self.base.resolved_epochs)
            kwargs.setdefault("verbose", 0)
            return model.fit(train_ds, validation_data=val_ds, callbacks=callbacks,
                             class_weight=class_weight, shuffle=False, **kwargs)

    return DetectorHyperModel


def make_tuner(base: TrainConfig, index: Any, *, algorithm: str = "random", max_trials: int = 10,
               objective: str = "val_loss", out: str | Path = "runs/tune",
               batch_sizes: Sequence[int] = BATCH_SIZES, strategy: Any = None, caches: Any = None) -> Any:
    """A KerasTuner tuner over ``base`` (its lr/l2/dropout/batch size are searched) on ``index``;
    every trial is built and trained under ``strategy`` (default: one device)."""
    import keras_tuner as kt

    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}")
    if max_trials < 1:
        raise ValueError(f"max_trials must be >= 1, got {max_trials}")
    hypermodel = _hypermodel_class()(base, index, batch_sizes, strategy, caches)
    common = {"objective": kt.Objective(objective, OBJECTIVES[objective]), "seed": base.seed,
              "directory": str(out), "project_name": "tuner", "overwrite": True,
              "distribution_strategy": hypermodel.strategy}
    if algorithm == "hyperband":
        return kt.Hyperband(hypermodel, max_epochs=base.resolved_epochs, factor=3, **common)
    return kt.RandomSearch(hypermodel, max_trials=max_trials, **common)


def trials_frame(tuner: Any) -> Any:
    """Every finished trial: id, sampled values, score (the objective), status."""
    rows = []
    for trial in tuner.oracle.trials.values():
        rows.append({"trial": trial.trial_id, **trial.hyperparameters.values, "score": trial.score,
                     "status": trial.status})
    frame = pd.DataFrame(rows)
    if len(frame):
        ascending = OBJECTIVES[tuner.oracle.objective.name] == "min"
        frame = frame.sort_values("score", ascending=ascending, na_position="last")
    return frame


def tune(base: TrainConfig, *, algorithm: str = "random", max_trials: int = 10,
         objective: str = "val_loss", out: str | Path | None = None,
         batch_sizes: Sequence[int] = BATCH_SIZES) -> Path:
    """Search, then write ``OUT/best_config.json`` and ``OUT/trials.csv``; return the config's path.

    Keras' global dtype policy is the config's precision during the search and restored afterwards.
    Trials run under ``base.strategy`` (``default``, or ``mirrored`` over the local devices; created
    before any other TensorFlow call) and cache their datasets as ``base.cache`` says.
    """
    base.validate()
    name = choose_strategy(base.strategy, os.environ.get("TF_CONFIG"), visible_gpus())
    if name == "multiworker":
        raise usage_error("--strategy", name, "default or mirrored: a search runs on one machine (train "
                          "the best config with `train --strategy multiworker`)")
    strategy = get_strategy(name)
    bad = [b for b in batch_sizes if b % strategy.num_replicas_in_sync]
    if bad:
        raise usage_error("--batch-sizes", bad, f"multiples of the {strategy.num_replicas_in_sync} "
                          f"replicas of the {name} strategy (each is a global batch)")
    with precision_policy(base.precision):
        return _tune(base, algorithm=algorithm, max_trials=max_trials, objective=objective, out=out,
                     batch_sizes=batch_sizes, strategy=strategy)


def _tune(base: TrainConfig, *, algorithm: str, max_trials: int, objective: str,
          out: str | Path | None, batch_sizes: Sequence[int], strategy: Any) -> Path:
    out = Path(out or Path("runs") / f"tune-{base.model}")
    out.mkdir(parents=True, exist_ok=True)
    print_line(f"strategy {type(strategy).__name__}: {strategy.num_replicas_in_sync} replica(s) in sync")
    keras.utils.set_random_seed(base.seed)
    index = data_mod.index_folder(
        base.data or demo.demo_dataset(), val_fraction=base.val_fraction,
        test_fraction=base.test_fraction, seed=base.resolved_split_seed, balance=base.balance)
    print_line(index.summary())
    if index.rows("val").empty:
        raise ValueError(f"{index.root}: no validation images (tuning is scored on validation)")
    caches = data_mod.CachePlan(base.cache, base.cache_budget_gb, base.cache_dir or out / "cache")
    tuner = make_tuner(base, index, algorithm=algorithm, max_trials=max_trials, objective=objective,
                       out=out, batch_sizes=batch_sizes, strategy=strategy, caches=caches)
    try:
        tuner.search(epochs=base.resolved_epochs, verbose=0)
    finally:
        caches.clean(keep=base.keep_cache, log=print_line)
    best_hp = tuner.get_best_hyperparameters(1)[0]
    best = dataclasses.replace(base, lr=float(best_hp.get("lr")), l2=float(best_hp.get("l2")),
                               dropout=float(best_hp.get("dropout")),
                               batch_size=int(best_hp.get("batch_size")), out=None, resume=False)
    path = best.validate().save(out / BEST_CONFIG_FILE)
    frame = trials_frame(tuner)
    frame.to_csv(out / TRIALS_FILE, index=False)
    print_line(frame.to_string(index=False))
    print_line(f"best of {len(frame)} trial(s) by {objective}: lr {best.lr:.3g}, l2 {best.l2:.3g}, "
               f"dropout {best.dropout:.2f}, batch {best.batch_size} -> {path}")
    return path


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m tfdeepfake.tune",
        description="Search lr, L2, dropout and batch size with KerasTuner on the validation split; "
                    "write the best as a TrainConfig JSON for `train --config FILE`.")
    p.add_argument("--model", required=True, choices=MODEL_NAMES)
    p.add_argument("--data", default=None, help="training folder (default: the SYNTHETIC demo data)")
    p.add_argument("--max-trials", type=cli.positive_int, default=10, help="trials of the random search")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="random",
                   help="random search (--max-trials) or Hyperband (trials set by --epochs; "
                        "default: %(default)s)")
    p.add_argument("--objective", choices=sorted(OBJECTIVES), default="val_loss")
    p.add_argument("--epochs", type=cli.positive_int, default=None, help="maximum epochs per trial")
    p.add_argument("--image-size", type=cli.positive_int, default=None)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    p.add_argument("--patience", type=cli.non_negative_int, default=d.patience)
    p.add_argument("--batch-sizes", type=cli.positive_int, nargs="+", default=list(BATCH_SIZES))
    p.add_argument("--seed", type=cli.non_negative_int, default=d.seed)
    p.add_argument("--config", default=None, metavar="FILE",
                   help="start from this TrainConfig JSON (its other settings are kept)")
    p.add_argument("--out", default=None, help="folder for best_config.json (default runs/tune-MODEL)")
    add_scale_out_flags(p, inherit=True)
    return cli.add_debug_flag(p)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    cli.input_dir("--data", args.data)  # every path checked before the search starts
    cli.output_dir("--out", args.out)
    if args.config:
        cli.input_path("--config", args.config)
    base = load_train_config(args.config).to_dict() if args.config else {}
    base.update(model=args.model, optimizer=args.optimizer, patience=args.patience, seed=args.seed)
    for key in ("data", "epochs", "image_size"):
        if getattr(args, key) is not None:
            base[key] = getattr(args, key)
    base.update(scale_out_overrides(args))
    path = tune(TrainConfig.from_dict(base), algorithm=args.algorithm, max_trials=args.max_trials,
                objective=args.objective, out=args.out, batch_sizes=args.batch_sizes)
    print(json.dumps(json.loads(path.read_text()), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
