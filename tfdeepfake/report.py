"""Markdown reports: one per run, a comparison table across runs, one per evaluation."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

FIGURES = ("accuracy", "precision", "recall", "f1", "roc_auc", "average_precision", "eer")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.4f}"
    return str(value)


def metrics_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """A markdown table: one row per named result, one column per figure (fake = positive class)."""
    head = "| | " + " | ".join(FIGURES) + " | threshold | images |"
    lines = [head, "|" + "---|" * (len(FIGURES) + 3)]
    for name, m in rows.items():
        cells = [_fmt(m.get(k)) for k in FIGURES]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_fmt(m.get('threshold'))} | "
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
        f"{config.optimizer} (lr {config.lr}), L2 {config.l2}, dropout {config.dropout_label}, "
        f"precision {config.precision} ({config.resolved_precision}), seed {config.seed}",
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
        res = json.loads((Path(run) / "metrics.json").read_text())
        test = res.get("test") or next(iter(res.get("test_data", {}).values()), None) or res.get("val", {})
        lines.append(f"| {res.get('model', Path(run).name)} | {res.get('params', 0):,} | "
                     f"{res.get('epochs_run', '')} | {res.get('train_seconds', '')} | "
                     + " | ".join(_fmt(test.get(k)) for k in FIGURES) + " |")
    return "\n".join(lines) + "\n"
