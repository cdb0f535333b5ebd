"""A reproducible experiment: ``python -m tfdeepfake.experiment --data DIR --test-data DIR --out DIR``.

Trains the chosen architectures (default: every registered one) with ``tfdeepfake.train``, builds the
averaging ensemble of the best members (ranked by validation ROC AUC), evaluates every model and the
ensemble on the test folder and on each ``--cross-data`` folder, runs the robustness sweep (JPEG quality,
Gaussian blur, downscaling, a shift of a few pixels) and writes ``REPORT.md`` with PNG plots into ``--out``.

Nothing is chosen on test data: the members' epochs (early stopping), thresholds and the ensemble's members
and threshold all come from the validation split of ``--data``. When ``--test-data`` is given the training
folder is split train/val only (no test images are carved from it). ``--budget-minutes`` bounds the
training time: each model gets an equal share of what is left as its ``time_limit_minutes``, and
training stops before an epoch that would end past it (judged by the slowest epoch so far).

The steps are public functions so the notebooks call them one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tfdeepfake import cli, demo, plots
from tfdeepfake import data as data_mod
from tfdeepfake.config import TrainConfig
from tfdeepfake.console import Log, print_line
from tfdeepfake.distribute import Worker, choose_strategy, visible_gpus, worker_of
from tfdeepfake.ensemble import create_ensemble
from tfdeepfake.evaluate import evaluate_index
from tfdeepfake.models import MODEL_NAMES
from tfdeepfake.models.registry import parse_option
from tfdeepfake.models.representations import check_representation
from tfdeepfake.report import ENSEMBLE, experiment_report
from tfdeepfake.robustness import plot_robustness, robustness_sweep
from tfdeepfake.runs import (
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    load_model,
    resolve_model,
)
from tfdeepfake.train import (
    add_scale_out_flags,
    backup_epoch,
    check_paths,
    finished_epochs,
    read_epoch_seconds,
    read_history,
    scale_out_overrides,
    train,
)

REPORT_FILE = "REPORT.md"
RESULTS_FILE = "results.json"
EXPERIMENT_FILE = "experiment.json"  # the ExperimentConfig and the command that started it


@dataclass
class ExperimentConfig:
    """Everything an experiment depends on (saved as ``experiment.json`` in ``out``).

    ``data=None`` is the built-in synthetic demo data; ``test_data=None`` evaluates on the test split
    carved from ``data``. ``train_config`` is a ``TrainConfig`` JSON (e.g. from ``tfdeepfake.tune``) whose
    optimiser and regularisation settings every model starts from, unless ``model_config`` gives that model
    a file of its own; ``train_options`` (e.g. ``strategy``, ``cache``) are then set on every member's config.
    """

    data: str | None = None
    test_data: str | None = None
    cross_data: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # empty: all of MODEL_NAMES
    image_size: int = 64
    epochs: int | None = None  # maximum epochs per model (None: TrainConfig's default)
    model_epochs: dict[str, int] = field(default_factory=dict)  # per-model maximum, over ``epochs``
    model_image_size: dict[str, int] = field(default_factory=dict)  # per-model size, over ``image_size``
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-model builder options
    model_input: dict[str, str] = field(default_factory=dict)  # per-model input representation
    model_config: dict[str, str] = field(default_factory=dict)  # per-model TrainConfig JSON, over train_config
    budget_minutes: float | None = None
    batch_size: int = 32
    ensemble_size: int = 3
    robustness_images: int | None = 300
    seed: int = 1337
    train_config: str | None = None
    train_options: dict[str, Any] = field(default_factory=dict)  # set on every member (scale-out flags)
    out: str = "runs/experiment"

    def resolved_models(self) -> list[str]:
        names = list(self.models) or list(MODEL_NAMES)
        unknown = [m for m in names if m not in MODEL_NAMES]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; expected some of {list(MODEL_NAMES)}")
        for what, per_model in (("model_epochs", self.model_epochs), ("model_image_size", self.model_image_size),
                                ("model_options", self.model_options), ("model_input", self.model_input),
                                ("model_config", self.model_config)):
            unplanned = sorted(set(per_model) - set(names))
            if unplanned:
                raise ValueError(f"{what} names {unplanned}, which this experiment does not train ({names})")
        return names

    def image_size_of(self, model: str) -> int:
        """The input size ``model`` is trained at: its ``model_image_size`` entry, else ``image_size``."""
        return self.model_image_size.get(model, self.image_size)

    @classmethod
    def load(cls, path: str | Path) -> tuple[ExperimentConfig, str | None]:
        """``(config, command)`` from an experiment's :data:`EXPERIMENT_FILE`."""
        values = json.loads(Path(path).read_text())
        command = values.pop("command", None)
        return cls(**values), command


# ------------------------------------------------------------------------------------------ training
def base_train_config(cfg: ExperimentConfig, model: str) -> Any:
    """The ``TrainConfig`` of one member: its ``cfg.model_config`` file, else ``cfg.train_config``, as the
    base (if either is given), then the experiment's own and per-model settings over it."""
    source = cfg.model_config.get(model, cfg.train_config)
    base = TrainConfig.load(source).for_model(model).to_dict() if source else {}
    base.update(
        model=model, data=cfg.data, test_data=[], image_size=cfg.image_size_of(model), batch_size=cfg.batch_size,
        seed=cfg.seed, out=str(Path(cfg.out) / "runs" / model), resume=False,
        test_fraction=0.0 if cfg.test_data else base.get("test_fraction", 0.1),
    )
    epochs = cfg.model_epochs.get(model, cfg.epochs)
    if epochs is not None:
        base["epochs"] = epochs
    if cfg.model_options.get(model):  # over the options --config gives this model
        base["model_options"] = {**base.get("model_options", {}), **cfg.model_options[model]}
    if model in cfg.model_input:  # over the input --config gives every member
        base["input"] = cfg.model_input[model]
    base.update(cfg.train_options)
    return TrainConfig.from_dict(base)


def member_state(run_dir: Path) -> tuple[str, float]:
    """``(state, seconds trained)`` of a member's run folder: ``"finished"`` (metrics written after its
    last epoch), ``"partial"`` (a run was started there: ``train --resume`` continues it) or ``"new"``."""
    if (run_dir / MODEL_FILE).is_file() and finished_epochs(run_dir) is not None:
        return "finished", float(_read_metrics(run_dir).get("train_seconds") or 0.0)
    if (run_dir / CONFIG_FILE).is_file():
        return "partial", sum(read_epoch_seconds(run_dir, backup_epoch(run_dir)))
    return "new", 0.0


def train_models(cfg: ExperimentConfig, log: Log = print_line, *, resume: bool = False) -> dict[str, Path]:
    """Train every model of ``cfg``; return ``{model: run folder}`` (``OUT/runs/<model>``).

    With ``resume`` a finished member's run is kept as it is and a partial one continued from its last
    epoch (``train --resume``); the time they took counts against ``budget_minutes``."""
    names = cfg.resolved_models()
    folders = {name: Path(cfg.out) / "runs" / name for name in names}
    states = {name: member_state(folders[name]) if resume else ("new", 0.0) for name in names}
    todo = [name for name in names if states[name][0] != "finished"]
    spent = sum(seconds for _, seconds in states.values())
    deadline = None if cfg.budget_minutes is None else time.monotonic() + 60 * cfg.budget_minutes - spent
    runs: dict[str, Path] = {}
    for name in names:
        state, earlier = states[name]
        if state == "finished":
            log(f"{name}: finished run kept ({folders[name]}, {earlier / 60:.1f} min of training)")
            runs[name] = folders[name]
            continue
        if state == "partial":
            config = TrainConfig.load(folders[name] / CONFIG_FILE)
            config.resume, config.out = True, str(folders[name])
            log(f"{name}: continuing its run from epoch {backup_epoch(folders[name]) + 1}")
        else:
            config = base_train_config(cfg, name)
        if deadline is not None:
            share = max(1.0, deadline - time.monotonic()) / (len(todo) - todo.index(name))
            config.time_limit_minutes = (share + earlier) / 60  # the limit counts the earlier epochs
            log(f"{name}: budget share {share / 60:.1f} min (training stops before overrunning it)")
        runs[name] = train(config, log=log)
    return runs


def training_worker(cfg: ExperimentConfig) -> Worker:
    """This process's place in a multi-worker experiment (``strategy`` multiworker from ``TF_CONFIG``;
    a lone worker otherwise): every worker trains each member, the chief alone does the rest."""
    tf_config = os.environ.get("TF_CONFIG")
    strategy = base_train_config(cfg, cfg.resolved_models()[0]).strategy
    if choose_strategy(strategy, tf_config, visible_gpus()) != "multiworker":
        return Worker()
    return worker_of(tf_config)


def find_runs(root: str | Path) -> dict[str, Path]:
    """``{name: run folder}`` for every finished run (``model.keras`` + ``metrics.json``) under ``root``."""
    root = Path(root)
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir())
            if (p / MODEL_FILE).is_file() and (p / METRICS_FILE).is_file()
            and not p.name.startswith("ensemble-")}


def _read_metrics(run: Path) -> dict[str, Any]:
    return json.loads((Path(run) / METRICS_FILE).read_text())


# ------------------------------------------------------------------------------------------ ensemble
def select_members(runs: Mapping[str, Path], k: int = 3) -> list[str]:
    """The ``k`` best runs by validation ROC AUC (then validation accuracy); never looks at test data."""
    def key(name: str) -> tuple[float, float]:
        val = _read_metrics(runs[name]).get("val", {})
        auc = val.get("roc_auc", float("nan"))
        return (auc if auc == auc else 0.0, val.get("accuracy", 0.0))

    return sorted(runs, key=key, reverse=True)[:max(1, k)]


def ensemble_runs(runs: Mapping[str, Path], members: Sequence[str], root: str | Path,
                  name: str = "experiment") -> Path:
    """The averaging ensemble of ``members`` as ``ROOT/ensemble-NAME`` (threshold chosen on the members'
    shared validation split, see :func:`tfdeepfake.ensemble.create_ensemble`)."""
    return create_ensemble([runs[m] for m in members], name, root=root)


# ---------------------------------------------------------------------------------------- evaluation
def eval_sets(cfg: ExperimentConfig) -> dict[str, Any]:
    """``{label: DataIndex with a "test" split}``: ``test`` first, then each cross-dataset folder."""
    if cfg.test_data:
        sets = {"test": data_mod.index_eval_folder(cfg.test_data)}
    else:  # the test split carved from --data, as train made it
        t = base_train_config(cfg, cfg.resolved_models()[0])
        sets = {"test": data_mod.index_folder(cfg.data or demo.demo_dataset(), val_fraction=t.val_fraction,
                                              test_fraction=t.test_fraction, seed=t.resolved_split_seed)}
    for folder in cfg.cross_data:  # the label names plot files: the folder's name, made unique
        label = base = Path(folder).resolve().name or "cross"
        copy = 1
        while label in sets:
            copy += 1
            label = f"{base}-{copy}"
        sets[label] = data_mod.index_eval_folder(folder)
    return sets


def evaluate_models(models: Mapping[str, Path], sets: Mapping[str, Any], *, batch_size: int = 32,
                    log: Log = print_line) -> dict[str, dict[str, Any]]:
    """Score every model (run folder) on every set; ``{model: {set: figures + labels/scores}}``.

    Figures as ``tfdeepfake.evaluate``: at 0.5 and, under ``tuned``, at the run's validation threshold.
    """
    results: dict[str, dict[str, Any]] = {}
    for name, path in models.items():
        ref = resolve_model(path)
        model = load_model(ref.model_path)
        results[name] = {}
        for label, index in sets.items():
            res, y, p = evaluate_index(model, index, threshold=ref.threshold, batch_size=batch_size,
                                       cache=False, per_member=False)
            res["labels"], res["scores"] = np.asarray(y).tolist(), np.round(p, 6).tolist()
            results[name][label] = res
            log(f"{name} on {label}: accuracy {res['accuracy']:.4f}, ROC AUC {res['roc_auc']:.4f}")
    return results


def robustness_sweeps(models: Mapping[str, Path], index: Any, *, max_images: int | None = 300,
                      levels: Mapping[str, Sequence[float]] | None = None, batch_size: int = 32,
                      seed: int = 0, log: Log = print_line) -> Any:
    """The robustness sweep of every model on ``index``'s test split, as one DataFrame (``levels``:
    default :data:`tfdeepfake.robustness.DEFAULT_LEVELS`)."""
    frames = []
    for name, path in models.items():
        started = time.perf_counter()
        frames.append(robustness_sweep(path, index, levels=levels, max_images=max_images, batch_size=batch_size,
                                       seed=seed, name=name))
        log(f"robustness sweep of {name}: {time.perf_counter() - started:.0f} s")
    return pd.concat(frames, ignore_index=True)


def model_info(runs: Mapping[str, Path], ensemble_dir: Path | None, members: Sequence[str]
               ) -> dict[str, dict[str, Any]]:
    """Parameters, epochs and training time per run (the ensemble: its members' totals)."""
    info = {}
    for name, run in runs.items():
        m = _read_metrics(run)
        info[name] = {"params": m["params"], "train_seconds": m["train_seconds"],
                      "epochs": f"{m['epochs_run']} ({m.get('best_epoch')})", "val": m.get("val", {})}
    if ensemble_dir is not None:
        m = _read_metrics(ensemble_dir)
        info[ENSEMBLE] = {"params": m["params"], "epochs": "—",
                          "train_seconds": sum(info[n]["train_seconds"] for n in members),
                          "val": m.get("val", {})}
    return info


def write_plots(out: Path, runs: Mapping[str, Path], results: Mapping[str, Mapping[str, Any]],
                robust: Any | None) -> list[str]:
    """Training curves per run, test confusion matrix per model, ROC per set, robustness curves."""
    files = []
    for name, run in runs.items():
        history = read_history(Path(run) / "history.csv")
        if history:
            files.append(plots.plot_history(history, out / f"curves-{name}.png").name)
    for name, per_set in results.items():
        cm = per_set["test"]["confusion_matrix"]
        files.append(plots.plot_confusion_matrix(cm, out / f"confusion-{name}.png",
                                                 f"{name}, test, threshold 0.5").name)
    labels = next(iter(results.values())).keys() if results else []
    for label in labels:
        curves = {name: (per_set[label]["labels"], per_set[label]["scores"])
                  for name, per_set in results.items()}
        files.append(plots.plot_roc(curves, out / f"roc-{label}.png").name)
    if robust is not None and len(robust):
        files.append(plot_robustness(robust, out / "robustness.png",
                                     "robustness on the test folder").name)
    return files


def write_report(cfg: ExperimentConfig, runs: Mapping[str, Path], members: Sequence[str],
                 ensemble_dir: Path | None, sets: Mapping[str, Any],
                 results: Mapping[str, Mapping[str, Any]], robust: Any | None,
                 command: str | None = None, wall_seconds: float | None = None) -> Path:
    """``OUT/REPORT.md`` (:func:`tfdeepfake.report.experiment_report`) plus plots and ``results.json``;
    return the report's path."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    info = model_info(runs, ensemble_dir, members)
    files = write_plots(out, runs, results, robust)
    # the recipe line's settings: those of a member without its own --model-input/--model-config, if any
    first_run = next((run for name, run in runs.items() if name not in cfg.model_input
                      and name not in cfg.model_config), next(iter(runs.values())))
    train_cfg = json.loads((Path(first_run) / CONFIG_FILE).read_text())
    path = out / REPORT_FILE
    path.write_text(experiment_report(cfg, runs, members, ensemble_dir, sets, results, robust, info,
                                      files, train_cfg, command=command, wall_seconds=wall_seconds))
    slim = {name: {label: {k: v for k, v in res.items() if k not in ("labels", "scores")}
                   for label, res in per_set.items()} for name, per_set in results.items()}
    payload = {"config": asdict(cfg), "members": list(members), "results": slim, "info": info,
               "robustness": [] if robust is None else robust.to_dict("records")}
    (out / RESULTS_FILE).write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return path


# ------------------------------------------------------------------------------------------- driver
def run_experiment(cfg: ExperimentConfig, *, command: str | None = None, log: Log = print_line,
                   resume: str | None = None) -> Path:
    """Every step in order; return the path of ``REPORT.md``. ``resume`` (the command that resumes it)
    keeps the finished members and continues a partial one (:func:`train_models`); the report then
    shows both commands and no wall time (it would cover the last invocation only)."""
    started = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if resume is None:
        (out / EXPERIMENT_FILE).write_text(json.dumps({**asdict(cfg), "command": command}, indent=2) + "\n")
    runs = train_models(cfg, log, resume=resume is not None)
    worker = training_worker(cfg)
    if not worker.chief:
        log(f"worker {worker.index}: every member trained; the chief ensembles, evaluates and reports")
        return out / REPORT_FILE
    members = select_members(runs, cfg.ensemble_size)
    ensemble_dir = ensemble_runs(runs, members, out / "runs")
    log(f"ensemble of {', '.join(members)} written to {ensemble_dir}")
    sets = eval_sets(cfg)
    models = {**runs, ENSEMBLE: ensemble_dir}
    results = evaluate_models(models, sets, batch_size=cfg.batch_size, log=log)
    robust = None
    if cfg.robustness_images != 0:
        robust = robustness_sweeps(models, sets["test"], max_images=cfg.robustness_images,
                            batch_size=cfg.batch_size, seed=cfg.seed, log=log)
    if resume is not None:
        command = f"{command or '(command not recorded)'}\n# resumed with:\n{resume}"
    report = write_report(cfg, runs, members, ensemble_dir, sets, results, robust, command=command,
                          wall_seconds=None if resume is not None else time.perf_counter() - started)
    log(f"report written to {report}")
    return report


def per_model_options(entries: Sequence[tuple[str, tuple[str, Any]]]) -> dict[str, dict[str, Any]]:
    """``--model-option`` entries gathered per model (a later KEY wins)."""
    options: dict[str, dict[str, Any]] = {}
    for name, (key, value) in entries:
        options.setdefault(name, {})[key] = value
    return options


def _model_entry(value: str, form: str, convert: Any) -> tuple[str, Any]:
    """A per-model entry ``MODEL=VALUE`` as ``(MODEL, convert(VALUE))``; ``form`` names it in errors."""
    name, sep, rest = value.partition("=")
    if not sep or name not in MODEL_NAMES:
        raise argparse.ArgumentTypeError(f"{value!r}: expected {form} with MODEL one of {list(MODEL_NAMES)}")
    try:
        return name, convert(rest)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: expected {form}: {exc}") from exc


def model_epochs_entry(value: str) -> tuple[str, int]:
    """``--model-epochs`` (or ``--model-image-size``) entry ``MODEL=N`` as ``(MODEL, N)``."""
    return _model_entry(value, "MODEL=N", cli.positive_int)


def model_config_entry(value: str) -> tuple[str, str]:
    """``--model-config`` entry ``MODEL=FILE`` as ``(MODEL, FILE)`` (the file is checked before training)."""
    def file_name(raw: str) -> str:
        if not raw.strip():
            raise ValueError("FILE is empty")
        return raw
    return _model_entry(value, "MODEL=FILE", file_name)


def model_input_entry(value: str) -> tuple[str, str]:
    """``--model-input`` entry ``MODEL=INPUT`` as ``(MODEL, INPUT)``, INPUT one of the representations."""
    return _model_entry(value, "MODEL=INPUT", check_representation)


def model_option_entry(value: str) -> tuple[str, tuple[str, Any]]:
    """``--model-option`` entry ``MODEL:KEY=VALUE`` as ``(MODEL, (KEY, VALUE))`` (VALUE read as in
    ``train --model-option``)."""
    name, sep, option = value.partition(":")
    if not sep or name not in MODEL_NAMES:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected MODEL:KEY=VALUE with MODEL one of {list(MODEL_NAMES)}")
    try:
        return name, parse_option(option)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: {exc}") from exc


def build_parser() -> argparse.ArgumentParser:
    d = ExperimentConfig()
    p = argparse.ArgumentParser(
        prog="python -m tfdeepfake.experiment",
        description="Train and compare architectures, ensemble the best, evaluate on test and "
                    "cross-dataset folders, sweep robustness, and write REPORT.md with plots.")
    p.add_argument("--data", default=None,
                   help="training folder (real/ fake/ or splits); default: the SYNTHETIC demo data")
    p.add_argument("--test-data", default=None, metavar="DIR",
                   help="test folder (default: the test split carved from --data)")
    p.add_argument("--cross-data", action="append", default=[], metavar="DIR",
                   help="another dataset to evaluate on (repeatable)")
    p.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=None,
                   help="architectures to train (default: every registered one)")
    p.add_argument("--image-size", type=cli.positive_int, default=d.image_size)
    p.add_argument("--epochs", type=cli.positive_int, default=None, help="maximum epochs per model")
    p.add_argument("--model-epochs", nargs="+", type=model_epochs_entry, default=[], metavar="MODEL=N",
                   help="maximum epochs of one model, over --epochs (e.g. resnet18=10 xception=3): a "
                        "schedule such as cosine then ends where the model's share of the time does")
    p.add_argument("--model-image-size", nargs="+", type=model_epochs_entry, default=[], metavar="MODEL=N",
                   help="input size of one model, over --image-size (e.g. alexnet_rnn=128): a cheap model "
                        "can afford a larger input; the ensemble feeds each member at its own size")
    p.add_argument("--model-option", dest="model_options", action="append", type=model_option_entry,
                   default=[], metavar="MODEL:KEY=VALUE",
                   help="a builder option of one model, over --config's (repeatable), e.g. "
                        "resnet18:stem_pool=false; checked against the options the model declares")
    p.add_argument("--model-input", nargs="+", type=model_input_entry, default=[], metavar="MODEL=INPUT",
                   help="input representation of one model, over --config's (e.g. alexnet_rnn=rgb+wavelet); "
                        "each member applies its own inside the model, so the ensemble still takes raw images")
    p.add_argument("--model-config", nargs="+", type=model_config_entry, default=[], metavar="MODEL=FILE",
                   help="TrainConfig JSON of one model, instead of --config (e.g. "
                        "alexnet_rnn=configs/recipe-64-flip.json): each member can keep the recipe "
                        "that validation chose for it; --model-option/--model-input still apply over it")
    p.add_argument("--budget-minutes", type=cli.positive_float, default=None,
                   help="training time for all models together (split equally; each run stops within its share)")
    p.add_argument("--batch-size", type=cli.positive_int, default=d.batch_size)
    p.add_argument("--ensemble-size", type=cli.positive_int, default=d.ensemble_size,
                   help="members: the best N by validation ROC AUC (default: %(default)s)")
    p.add_argument("--robustness-images", type=cli.non_negative_int, default=d.robustness_images,
                   help="test images in the robustness sweep (0: skip it; default: %(default)s)")
    p.add_argument("--config", dest="train_config", default=None, metavar="FILE",
                   help="TrainConfig JSON (e.g. from tfdeepfake.tune) for optimiser/regularisation")
    p.add_argument("--seed", type=cli.non_negative_int, default=d.seed)
    p.add_argument("--out", required=True, help="folder for REPORT.md, plots and runs/")
    p.add_argument("--resume", action="store_true",
                   help="continue the experiment in --out with its saved settings: finished members are "
                        "kept, a member killed mid-run continues from its last epoch, the rest are trained")
    add_scale_out_flags(p, inherit=True)
    return cli.add_debug_flag(p)


def _resume(parser: argparse.ArgumentParser, argv: list[str], out: str) -> int:
    """``--resume --out OUT``: the experiment saved in ``OUT`` continued with its own settings."""
    ignored = [flag for dest, flag in cli.given_options(parser, argv).items()
               if dest not in ("resume", "out", "debug")]
    if ignored:
        raise cli.UsageError(f"--resume continues an experiment with its saved settings, so "
                             f"{', '.join(ignored)} would be ignored: drop them")
    saved = cli.input_dir("--out", out, optional=False) / EXPERIMENT_FILE
    if not saved.is_file():
        raise cli.usage_error("--out", out, f"an experiment folder to resume ({EXPERIMENT_FILE} not found)")
    cfg, command = ExperimentConfig.load(saved)
    cli.input_dir("--data", cfg.data)
    cli.input_dir("--test-data", cfg.test_data)
    for folder in cfg.cross_data:
        cli.input_dir("--cross-data", folder, optional=False)
    run_experiment(cfg, command=command, resume="python -m tfdeepfake.experiment " + shlex.join(argv))
    return 0


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume:
        return _resume(parser, argv, args.out)
    # every folder checked before any training
    cli.input_dir("--data", args.data)
    cli.input_dir("--test-data", args.test_data)
    for folder in args.cross_data:
        cli.input_dir("--cross-data", folder, optional=False)
    if args.train_config:
        cli.input_path("--config", args.train_config)
    for _, path in args.model_config:
        cli.input_path("--model-config", path)
    cli.output_dir("--out", args.out, optional=False)
    cfg = ExperimentConfig(
        data=args.data, test_data=args.test_data, cross_data=args.cross_data, models=args.models or [],
        image_size=args.image_size, epochs=args.epochs, model_epochs=dict(args.model_epochs),
        model_image_size=dict(args.model_image_size),
        model_options=per_model_options(args.model_options), model_input=dict(args.model_input),
        model_config=dict(args.model_config), budget_minutes=args.budget_minutes,
        batch_size=args.batch_size, ensemble_size=args.ensemble_size,
        robustness_images=args.robustness_images,
        seed=args.seed, train_config=args.train_config, train_options=scale_out_overrides(args),
        out=args.out)
    command = "python -m tfdeepfake.experiment " + shlex.join(argv)
    for model in cfg.resolved_models():  # each member's config and run folder, before any training
        check_paths(base_train_config(cfg, model).validate())
    run_experiment(cfg, command=command)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
