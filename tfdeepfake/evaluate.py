"""Evaluate a model on any folder: ``python -m tfdeepfake.evaluate MODEL --data DIR [--data DIR2 ...]
[--out FILE.json]``.

MODEL is a run folder or a ``.keras`` file. DIR holds ``real/`` and ``fake/`` (every image is used) or
train/val/test splits (its test split is used); each ``--data`` folder is scored in turn, by one loaded
model. Figures are reported at threshold 0.5 and, when the run recorded one, at the threshold chosen on
its validation split (under ``"tuned"``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfdeepfake import DEFAULT_THRESHOLD, cli
from tfdeepfake import data as data_mod
from tfdeepfake.data import DataIndex
from tfdeepfake.metrics import evaluation_report
from tfdeepfake.models.fusion import model_image_size
from tfdeepfake.report import metrics_table
from tfdeepfake.runs import load_model, resolve_model
from tfdeepfake.scoring import at_size, score_by_member


def evaluate_index(
    model: Any, index: DataIndex, *, threshold: float | None, batch_size: int = 32,
    image_size: int | None = None, cache: bool = True, per_member: bool = True,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """``(figures, labels, P(fake))`` of a loaded model on the test split of ``index``.

    Figures at :data:`~tfdeepfake.DEFAULT_THRESHOLD` and, under ``"tuned"``, at ``threshold`` (when
    given); with ``per_member``, an ensemble's members' own figures under ``"members"`` (same pass).
    Each member is fed at its own input size unless ``image_size`` is given.
    """
    dataset_at = at_size(data_mod.dataset_for, index, "test", batch_size=batch_size, cache=cache)
    labels, scores, members = score_by_member(model, dataset_at, image_size=image_size)
    result = evaluation_report(labels, scores, threshold)
    if per_member and members:
        result["members"] = {name: evaluation_report(labels, member_scores, threshold)
                             for name, member_scores in members.items()}
    return result, labels, scores


def evaluate(
    model_path: str | Path, data_dir: str | Path, *, batch_size: int = 32,
    image_size: int | None = None, threshold: float | None = None,
) -> dict[str, Any]:
    """Score every image of ``data_dir``; return the metrics dict (JSON-ready)."""
    return evaluate_folders(model_path, [data_dir], batch_size=batch_size, image_size=image_size,
                            threshold=threshold)[0]


def evaluate_folders(
    model_path: str | Path, data_dirs: Sequence[str | Path], *, batch_size: int = 32,
    image_size: int | None = None, threshold: float | None = None,
) -> list[dict[str, Any]]:
    """:func:`evaluate` on each of ``data_dirs`` in turn, loading the model once."""
    ref = resolve_model(model_path)
    model = load_model(ref.model_path)
    tuned = threshold if threshold is not None else ref.threshold
    results = []
    for data_dir in data_dirs:
        index = data_mod.index_eval_folder(data_dir)
        result, _, _ = evaluate_index(model, index, threshold=tuned, batch_size=batch_size,
                                      image_size=image_size, cache=False)  # one pass: memory stays flat
        members = result.pop("members", None)
        result.update(
            model=str(ref.model_path), data=str(data_dir), image_size=image_size or model_image_size(model),
            skipped=[{"path": p, "reason": r} for p, r in index.skipped],
        )
        if members:  # each member's own figures, from the same pass
            result["members"] = members
        results.append(result)
    return results


def format_result(result: dict[str, Any]) -> str:
    rows = {f"@{DEFAULT_THRESHOLD}": result}
    if "tuned" in result:
        rows["@val threshold"] = result["tuned"]
    for name, res in result.get("members", {}).items():
        rows[f"member {name} @{DEFAULT_THRESHOLD}"] = res
    text = [f"{result['model']} on {result['data']} ({result['n_images']} images: "
            f"{result['n_real']} real, {result['n_fake']} fake; {len(result['skipped'])} skipped)",
            metrics_table(rows), result["classification_report"]]
    return "\n".join(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tfdeepfake.evaluate",
                                description="Evaluate a detector on a real/fake folder.")
    p.add_argument("model", help="run folder or .keras file")
    p.add_argument("--data", required=True, action="append",
                   help="folder with real/ and fake/ (or a test split); repeat it to score several folders")
    p.add_argument("--out", help="write the metrics as JSON to this file (a list of them, one per folder, "
                                 "when --data is repeated)")
    p.add_argument("--batch-size", type=cli.positive_int, default=32)
    p.add_argument("--image-size", type=cli.positive_int, default=None,
                   help="pipeline size (default: each model or ensemble member at the size it resizes to)")
    p.add_argument("--threshold", type=cli.threshold, default=None,
                   help="threshold for the 'tuned' figures (default: the run's validation threshold)")
    return cli.add_debug_flag(p)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    cli.input_path("MODEL", args.model)  # every path checked before the model is loaded
    for folder in args.data:
        cli.input_dir("--data", folder)
    out = cli.output_file("--out", args.out)
    results = evaluate_folders(args.model, args.data, batch_size=args.batch_size,
                               image_size=args.image_size, threshold=args.threshold)
    for result in results:
        print(format_result(result))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results[0] if len(results) == 1 else results, indent=2) + "\n")
        print(f"metrics written to {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
