"""The table of ``docs/experiment/STUDY.md`` from finished ``train`` run folders (issue #11).

``python scripts/study_table.py RUN [RUN ...]`` prints one markdown row per run folder: what the run
changed (image size, input, recipe, data), its validation figures (the basis of every choice), then the
``--test-data`` figures (rvf10k/test, hardfake: reported, never used to choose), epochs and CPU time.
CPU time is read from ``RUN.log`` when the run was started under ``/usr/bin/time -v`` (user + system
seconds of the whole process, so it counts evaluation too); otherwise the run's training wall time.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from tfdeepfake.config import ADAMW_WEIGHT_DECAY

COLUMNS = ("run", "data", "px", "input", "recipe", "val acc @val thr", "val AUC", "test acc", "test acc @val thr",
           "test AUC", "hardfake AUC", "hardfake acc @val thr", "epochs (best)", "train min", "CPU min")


def _recipe(config: dict) -> str:
    parts = [config.get("lr_schedule") or "constant"]
    if config.get("label_smoothing"):
        parts.append(f"ls {config['label_smoothing']:g}")
    if config.get("l2", 1e-4) != 1e-4:
        parts.append(f"l2 {config['l2']:g}")
    if config.get("optimizer") == "adamw":
        decay = config.get("weight_decay")
        parts.append(f"adamw wd {ADAMW_WEIGHT_DECAY if decay is None else decay:g}")
    if config.get("mixup"):
        parts.append(f"mixup {config['mixup']:g}")
    if config.get("sam"):
        parts.append(f"sam {config['sam']:g}")
    if config.get("teacher"):
        cross = " cross-fitted" if config.get("cross_fit") else ""
        parts.append(f"distill {config.get('distill', 0.5):g}{cross} from {Path(config['teacher']).name}")
    if config.get("fold"):
        parts.append(f"fold {config['fold']}/{config.get('folds', 2)} held out")
    if config.get("ema"):
        parts.append(f"ema {config['ema']:g}")
    if config.get("tta_flip"):
        parts.append("tta-flip")
    if config.get("augment_crop"):
        parts.append("random crop")
    if config.get("augment_shift"):
        parts.append(f"shift {config['augment_shift']:g}")
    if config.get("augment_erase"):
        parts.append(f"erase {config['augment_erase']:g}")
    if config.get("augment_subpixel"):
        parts.append(f"subpixel {config['augment_subpixel']:g} px")
    if config.get("model_options"):
        parts += [f"{k}={v}" for k, v in sorted(config["model_options"].items())]
    if config.get("batch_size", 32) != 32:
        parts.append(f"batch {config['batch_size']}, lr {config['lr']:g}")
    if config.get("init_from"):
        parts.append(f"from {Path(config['init_from']).name}")
    if config.get("split_seed") is not None and config["split_seed"] != config.get("seed"):
        parts.append(f"seed {config['seed']} (split {config['split_seed']})")
    return ", ".join(parts)


def _cpu_minutes(log: Path) -> float | None:
    if not log.is_file():
        return None
    text = log.read_text(errors="replace")
    user = re.search(r"User time \(seconds\): ([\d.]+)", text)
    system = re.search(r"System time \(seconds\): ([\d.]+)", text)
    if not (user and system):
        return None
    return (float(user.group(1)) + float(system.group(1))) / 60


def _pick(results: dict, name: str) -> dict:
    return next((figures for folder, figures in results.get("test_data", {}).items()
                 if Path(folder).name == name), {})


def row(run: Path) -> list[str]:
    """One table row for run folder ``run``."""
    config = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    test, hard = _pick(metrics, "test"), _pick(metrics, "hardfake")

    def f(d: dict, key: str, tuned: bool = False) -> str:
        src = d.get("tuned", {}) if tuned else d
        return "—" if key not in src else f"{src[key]:.3f}"

    cpu = _cpu_minutes(run.parent / f"{run.name}.log")
    epochs = f"{metrics['epochs_run']} ({metrics.get('best_epoch')})"
    if config.get("epochs") == 0:  # --epochs 0: a trained run's weights scored as this config builds them
        epochs = "0 (scored only)"
    return [run.name, Path(config["data"]).name, str(config.get("image_size_resolved") or config["image_size"]),
            config.get("input", "rgb"), _recipe(config), f(metrics["val"], "accuracy"),
            f(metrics["val"], "roc_auc"), f(test, "accuracy"), f(test, "accuracy", True), f(test, "roc_auc"),
            f(hard, "roc_auc"), f(hard, "accuracy", True),
            epochs, f"{metrics['train_seconds'] / 60:.1f}",
            "—" if cpu is None else f"{cpu:.1f}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    args = p.parse_args(argv)
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for run in args.runs:
        if not (run / "metrics.json").is_file():
            print(f"{run}: no metrics.json (unfinished run)", file=sys.stderr)
            continue
        print("| " + " | ".join(row(run)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
