"""Markdown reports: one per training run, a comparison table across runs, the tables of an evaluation and
the experiment's ``REPORT.md``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tfdeepfake import DEFAULT_THRESHOLD
from tfdeepfake.config import TrainConfig
from tfdeepfake.hardware import versions
from tfdeepfake.robustness import markdown_table
from tfdeepfake.runs import METRICS_FILE

FIGURES = ("accuracy", "precision", "recall", "f1", "roc_auc", "average_precision", "eer")
GOAL_ISSUE = 11  # the issue whose accuracy goals the report checks
GOAL_ACCURACY = 0.95  # ensemble test accuracy, at 0.5 and at the validation threshold
GOAL_AUC = 0.99  # ensemble test ROC AUC
GOAL_SINGLE_ACCURACY = 0.90  # the best single model's test accuracy...
GOAL_SINGLE_MINUTES = 30  # ...within this much training
GOAL_CROSS_AUC = 0.95  # ensemble ROC AUC on each cross-dataset folder
GOAL_CROSS_ACCURACY = 0.85  # ensemble accuracy at the validation threshold on each cross-dataset folder
ENSEMBLE = "ensemble"
"""The ensemble's name in an experiment's results."""


def fmt(value: Any, digits: int = 4) -> str:
    """A figure for a table: floats to ``digits`` places, ``n/a`` for NaN and ``None``."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.{digits}f}"
    return str(value)


def metrics_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """A markdown table: one row per named result, one column per figure (fake = positive class)."""
    head = "| | " + " | ".join(FIGURES) + " | threshold | images |"
    lines = [head, "|" + "---|" * (len(FIGURES) + 3)]
    for name, m in rows.items():
        cells = [fmt(m.get(k)) for k in FIGURES]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {fmt(m.get('threshold'))} | "
                     f"{m.get('n_images', '')} |")
    return "\n".join(lines) + "\n"


def result_rows(results: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Rows for ``metrics_table`` from a run's ``metrics.json`` content."""
    rows: dict[str, Mapping[str, Any]] = {}
    if "val" in results:
        rows["validation (tuned threshold)"] = results["val"]
    for name, res in [("test", results.get("test")), *results.get("test_data", {}).items()]:
        if res is None:
            continue
        rows[f"{name} @0.5"] = res
        if "tuned" in res:
            rows[f"{name} @val threshold"] = res["tuned"]
    return rows


def run_report(config: Any, index: Any, results: Mapping[str, Any]) -> str:
    """The ``report.md`` of a training run."""
    counts = index.counts()
    data = config.data or "built-in SYNTHETIC demo data (not a real deepfake dataset)"
    lines = [
        f"# {config.model} — training report",
        "",
        f"- data: `{data}` ({index.layout} layout); skipped unreadable files: {len(index.skipped)}",
        "- images per split: " + ", ".join(
            f"{split} {c.get('real', 0)} real / {c.get('fake', 0)} fake" for split, c in counts.items()
        ),
        f"- image size {config.resolved_image_size}, batch {config.batch_size}, optimizer "
        f"{config.optimizer_label}, L2 {config.l2}, dropout {config.dropout_label}, "
        f"precision {config.precision} ({config.resolved_precision}), {config.seed_label}",
        f"- parameters: {results['params']:,}; epochs run: {results['epochs_run']} "
        f"(best {results['best_epoch']} by {results.get('monitor', 'val_loss')}, weights of epoch "
        f"{results.get('kept_epoch', results['best_epoch'])} kept); training time {results['train_seconds']} s",
        f"- threshold chosen on validation (balanced accuracy): {results['threshold']:.4f}",
        "",
        "Fake is the positive class; precision, recall and F1 are the binary figures for fake.",
        "",
        metrics_table(result_rows(results)),
    ]
    if "test" in results:
        lines += ["## Test split classification report (threshold 0.5)", "", "```",
                  results["test"]["classification_report"].rstrip(), "```", ""]
    lines += ["![curves](curves.png) ![roc](roc.png) ![confusion](confusion_matrix.png)", ""]
    return "\n".join(lines)


def comparison_table(run_dirs: Iterable[str | Path]) -> str:
    """Test figures of several runs side by side (the comparison the original project made)."""
    lines = ["| model | params | epochs | train s | " + " | ".join(FIGURES) + " |",
             "|" + "---|" * (len(FIGURES) + 4)]
    for run in run_dirs:
        res = json.loads((Path(run) / METRICS_FILE).read_text())
        test = res.get("test") or next(iter(res.get("test_data", {}).values()), None) or res.get("val", {})
        lines.append(f"| {res.get('model', Path(run).name)} | {res.get('params', 0):,} | "
                     f"{res.get('epochs_run', '')} | {res.get('train_seconds', '')} | "
                     + " | ".join(fmt(test.get(k)) for k in FIGURES) + " |")
    return "\n".join(lines) + "\n"


def experiment_table(results: Mapping[str, Mapping[str, Any]], set_label: str,
                     info: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: one row per model on ``set_label``: figures at
    :data:`~tfdeepfake.DEFAULT_THRESHOLD`, accuracy at the validation
    threshold, parameters, epochs and training time (``info[model]``)."""
    head = ("| model | " + " | ".join(FIGURES) + " | accuracy @val thr | params | epochs (best) "
            "| train s |")
    lines = [head, "|" + "---|" * (len(FIGURES) + 5)]
    for name, per_set in results.items():
        res, meta = per_set[set_label], info.get(name, {})
        tuned = res.get("tuned", {}).get("accuracy")
        lines.append(f"| {name} | " + " | ".join(fmt(res.get(k)) for k in FIGURES)
                     + f" | {fmt(tuned)} | {meta.get('params', 0):,} | {meta.get('epochs', '')} "
                     f"| {fmt(meta.get('train_seconds'), 1)} |")
    return "\n".join(lines) + "\n"


def _verdict(value: float, goal: float, points: bool) -> str:
    if value >= goal:
        return "met"
    return f"MISSED by {100 * (goal - value):.1f} points" if points else f"MISSED by {goal - value:.3f}"


def goal_lines(results: Mapping[str, Mapping[str, Any]], sets: Sequence[str],
               info: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """The issue's accuracy goals (``GOAL_*``), met or missed and by how much: the ensemble's test
    accuracy at 0.5 and at its validation threshold and its ROC AUC; the best single model's test
    accuracy and its training minutes (``info``); the ensemble's ROC AUC and accuracy at the validation
    threshold on every cross-dataset folder."""
    ens = results.get(ENSEMBLE)
    if ens is None:
        return []
    test = ens["test"]
    lines = [
        f"- ensemble test accuracy (threshold {DEFAULT_THRESHOLD}) ≥ {GOAL_ACCURACY:.0%}: "
        f"{100 * test['accuracy']:.1f} % — {_verdict(test['accuracy'], GOAL_ACCURACY, True)}",
    ]
    if "tuned" in test:
        acc = test["tuned"]["accuracy"]
        lines.append(f"- ensemble test accuracy @val thr ≥ {GOAL_ACCURACY:.0%}: {100 * acc:.1f} % — "
                     f"{_verdict(acc, GOAL_ACCURACY, True)}")
    lines.append(f"- ensemble test ROC AUC ≥ {GOAL_AUC}: {test['roc_auc']:.3f} — "
                 f"{_verdict(test['roc_auc'], GOAL_AUC, False)}")
    singles = {name: per_set["test"]["accuracy"] for name, per_set in results.items() if name != ENSEMBLE}
    if singles:
        best = max(singles, key=singles.get)
        seconds = (info or {}).get(best, {}).get("train_seconds")
        took = "" if seconds is None else f" after {seconds / 60:.1f} min of training"
        within = "" if seconds is None or seconds <= 60 * GOAL_SINGLE_MINUTES else " (over the time limit)"
        lines.append(f"- best single model test accuracy ≥ {GOAL_SINGLE_ACCURACY:.0%} within "
                     f"{GOAL_SINGLE_MINUTES} min of training: {best}, {100 * singles[best]:.1f} %{took} — "
                     f"{_verdict(singles[best], GOAL_SINGLE_ACCURACY, True)}{within}")
    for label in sets:
        if label == "test":
            continue
        auc = ens[label]["roc_auc"]
        lines.append(f"- ensemble ROC AUC on {label} ≥ {GOAL_CROSS_AUC}: {auc:.3f} — "
                     f"{_verdict(auc, GOAL_CROSS_AUC, False)}")
        if "tuned" in ens[label]:
            acc = ens[label]["tuned"]["accuracy"]
            lines.append(f"- ensemble accuracy @val thr on {label} ≥ {GOAL_CROSS_ACCURACY:.0%}: "
                         f"{100 * acc:.1f} % — {_verdict(acc, GOAL_CROSS_ACCURACY, True)}")
    return lines


def data_line(label: str, index: Any) -> str:
    """One markdown bullet: a data folder and its images per split."""
    counts = index.counts()
    parts = ", ".join(f"{s} {c.get('real', 0)} real / {c.get('fake', 0)} fake" for s, c in counts.items()
                      if s != "unused")
    return f"- {label}: `{index.root}` — {parts}; skipped unreadable files: {len(index.skipped)}"


def models_setup(cfg: Any, names: Iterable[str]) -> str:
    """The report's "models: ..." phrase: the models, their sizes, any per-model builder options, inputs
    and TrainConfig files."""
    return (f"models: {', '.join(names)}; image size {cfg.image_size} px"
            + "".join(f" ({m}: {n} px)" for m, n in sorted(cfg.model_image_size.items()))
            + "".join(f"; {m} options " + ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(o.items()))
                      for m, o in sorted(cfg.model_options.items()) if o)
            + "".join(f"; {m} input {r}" for m, r in sorted(cfg.model_input.items()))
            + "".join(f"; {m} config `{f}`" for m, f in sorted(cfg.model_config.items())))


def experiment_report(cfg: Any, runs: Mapping[str, Path], members: Sequence[str],
                      ensemble_dir: Path | None, sets: Mapping[str, Any],
                      results: Mapping[str, Mapping[str, Any]], robust: Any | None,
                      info: Mapping[str, Mapping[str, Any]], files: Sequence[str],
                      train_cfg: Mapping[str, Any], *, command: str | None = None,
                      wall_seconds: float | None = None) -> str:
    """The experiment's ``REPORT.md`` (``cfg``: its ``ExperimentConfig``; ``files``: the plots written;
    ``train_cfg``: the first run's ``config.json``)."""
    v = versions()
    t = TrainConfig.from_dict(dict(train_cfg))  # the defaults of fields an older config.json lacks
    distilled = (f", distilled from {t.teacher} (weight {t.distill:g}{', cross-fitted' if t.cross_fit else ''})"
                 if t.teacher else "")
    lines = ["# tfdeepfake experiment report", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += [
        f"Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} on {v['processor']} "
        f"(TensorFlow {v['tensorflow']}, Keras {v['keras']}, Python {v['python']})"
        + (f"; wall time {wall_seconds / 60:.1f} min." if wall_seconds else "."),
        "",
        "## Data",
        "",
        f"- training: `{cfg.data or 'built-in SYNTHETIC demo data (not real faces)'}` "
        f"({'train/val split only' if cfg.test_data else 'train/val/test split'}, seed {cfg.seed}, "
        "training split class-balanced)",
        *[data_line(label, index) for label, index in sets.items()],
        "",
        "## Setup",
        "",
        f"- {models_setup(cfg, runs)}; batch {cfg.batch_size}; optimizer "
        f"{t.optimizer_label}, L2 {t.l2}, dropout {t.dropout_label}"
        f"{' (but see the models line)' if cfg.model_config else ''}; augmentation flip/JPEG/blur "
        f"{t.augment_flip}/{t.augment_jpeg}/{t.augment_blur}{', random crop' if t.augment_crop else ''}"
        f"{f', random shift {t.augment_shift:g}' if t.augment_shift else ''}"
        f"{f', random erasing {t.augment_erase:g}' if t.augment_erase else ''}"
        f"{f', sub-pixel shift {t.augment_subpixel:g} px' if t.augment_subpixel else ''}; "
        f"early-stopping patience {t.patience}"
        + (f"; training budget {cfg.budget_minutes} min in all" if cfg.budget_minutes else ""),
        f"- recipe: learning-rate schedule {t.lr_schedule}, label smoothing {t.label_smoothing}"
        f"{f', mixup {t.mixup:g}' if t.mixup else ''}{f', SAM rho {t.sam:g}' if t.sam else ''}"
        f"{distilled}, EMA {t.ema}, "
        f"input {t.input}{' (but see the models line)' if cfg.model_input else ''}, "
        f"test-time flip averaging {t.tta_flip}",
        f"- ensemble: probability average of the {len(members)} best member(s) by validation ROC AUC: "
        f"{', '.join(members)}" if ensemble_dir else "- no ensemble",
        "- every choice (epochs by early stopping on validation loss, thresholds, ensemble members) uses "
        "the validation split only; test and cross-dataset folders are only scored.",
        "- fake is the positive class: precision, recall, F1 and AP are the binary figures for fake; "
        f"figures are at threshold {DEFAULT_THRESHOLD} unless marked `@val thr` (the threshold chosen on validation).",
        "",
    ]
    goals = goal_lines(results, list(sets), info)
    if goals:
        lines += [f"## Goals of issue #{GOAL_ISSUE}", "", *goals, ""]
    lines += ["## Validation (the basis of every choice)", "",
              "| model | accuracy | roc_auc | threshold |", "|---|---|---|---|"]
    for name, meta in info.items():
        val = meta.get("val", {})
        lines.append(f"| {name} | {fmt(val.get('accuracy'))} | {fmt(val.get('roc_auc'))} | "
                     f"{fmt(val.get('threshold'))} |")
    lines.append("")
    for label in sets:
        title = "Test folder" if label == "test" else f"Cross-dataset: {label}"
        lines += [f"## {title}", "", experiment_table(results, label, info),
                  f"![ROC {label}](roc-{label}.png)", ""]
    lines += [f"## Confusion matrices (test, threshold {DEFAULT_THRESHOLD})", "",
              " ".join(f"![{f}]({f})" for f in files if f.startswith("confusion-")), "",
              "## Training curves", "",
              " ".join(f"![{f}]({f})" for f in files if f.startswith("curves-")), ""]
    if robust is not None and len(robust):
        n = int(robust["n_images"].iloc[0])
        lines += ["## Robustness (test folder)", "",
                  f"{n} test images (seeded, class-stratified sample), each perturbed at its stored "
                  f"resolution and then resized by the model pipeline; accuracy at threshold {DEFAULT_THRESHOLD}.", "",
                  "![robustness](robustness.png)", "", "Accuracy:", "", markdown_table(robust, "accuracy"),
                  "ROC AUC:", "", markdown_table(robust, "roc_auc")]
    return "\n".join(lines) + "\n"
