"""Fuse trained detectors: ``python -m tfdeepfake.ensemble RUN [RUN ...] --name NAME``.

The ensemble is a Keras functional model with the project-wide contract (input ``image``: raw RGB of any
size; output one float32 logit), built by :func:`tfdeepfake.models.fusion.build_ensemble`: every member is
the trained model nested as a sub-model named after its run (each keeps its own resize and normalisation,
so members may use different image sizes), and a registered ``FuseLogits`` layer averages them (mean of
probabilities by default, optional weights, optional logit averaging). It loads with ``safe_mode=True``
and is evaluated like any model. This module chooses its threshold and writes its run-like folder.

With ``--select greedy`` the RUNs are candidates: the members are chosen among them on validation images
by forward selection (:func:`greedy_selection`), and the choice is recorded in ``ensemble.json``.

The ensemble is written as a run-like folder ``runs/ensemble-NAME/`` (``model.keras``, ``ensemble.json``,
``metrics.json`` with a threshold) and, unless ``--no-export``, exported for TensorFlow Serving. The
threshold is chosen as in training (balanced accuracy) on ``--val-data``, else on the validation split the
members' runs share (their ``split.csv``), else it is the weighted mean of the members' thresholds.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from tfdeepfake import DEFAULT_THRESHOLD, cli
from tfdeepfake import data as data_mod
from tfdeepfake.export import check_name, describe_export, export_model
from tfdeepfake.metrics import binary_metrics, choose_threshold
from tfdeepfake.models.fusion import (
    MODES,
    build_ensemble,
    model_image_size,
    split_ensemble,
)
from tfdeepfake.runs import (
    METRICS_FILE,
    MODEL_FILE,
    ModelRef,
    load_model,
    resolve_model,
    save_model,
)
from tfdeepfake.scoring import BatchesAt, at_size, score_by_member

ENSEMBLE_FILE = "ensemble.json"
SPLIT_FILE = "split.csv"


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` made distinct by suffixing repeats with ``_2``, ``_3``..."""
    out: list[str] = []
    for name in names:
        candidate, k = name, 1
        while candidate in out:
            k += 1
            candidate = f"{name}_{k}"
        out.append(candidate)
    return out


def parse_weights(text: str | None) -> list[float] | None:
    """``"1,2,0.5"`` -> ``[1.0, 2.0, 0.5]``; ``None``/empty -> ``None``."""
    if not text:
        return None
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise cli.usage_error("--weights", text, "comma-separated numbers") from None
    for w in weights:
        cli.number("--weights", w, low=0)
    if not any(weights):
        raise cli.usage_error("--weights", text, "at least one weight > 0")
    return weights


def shared_validation_split(refs: Sequence[ModelRef]) -> tuple[list[str], list[int]] | None:
    """The validation images (paths, labels) every member's run used, if their ``split.csv`` agree."""
    found = []
    for ref in refs:
        path = ref.run_dir / SPLIT_FILE if ref.run_dir else None
        if path is None or not path.is_file():
            return None
        frame = pd.read_csv(path)
        val = frame[frame["split"] == "val"].sort_values("path")
        found.append((val["path"].astype(str).tolist(), val["label"].astype(int).tolist()))
    if not found[0][0] or any(f != found[0] for f in found[1:]):
        return None
    return found[0]


def validation_batches(
    refs: Sequence[ModelRef], *, val_data: str | Path | None = None, batch_size: int = 32,
) -> tuple[BatchesAt, str] | None:
    """``(size -> batches, where they come from)`` of the validation images for an ensemble of ``refs``:
    ``val_data`` (a real/ fake/ folder) if given, else the validation split the members' runs share
    (:func:`shared_validation_split`); None when neither exists."""
    if val_data is not None:
        index = data_mod.index_eval_folder(val_data)
        return (at_size(data_mod.dataset_for, index, "test", batch_size=batch_size, cache=False),
                f"chosen on {val_data}")
    split = shared_validation_split(refs)
    if split is None:
        return None
    return (at_size(data_mod.make_dataset, *split, batch_size=batch_size, cache=False),
            "chosen on the members' shared validation split")


def ensemble_threshold(
    model: Any, refs: Sequence[ModelRef], *, val_data: str | Path | None = None, batch_size: int = 32,
) -> tuple[float, str, dict[str, Any] | None]:
    """``(threshold, where it comes from, validation figures)`` for an ensemble of ``refs``.

    Chosen as in training (balanced accuracy) on the validation images of :func:`validation_batches`,
    else the weighted mean of the members' thresholds (:data:`~tfdeepfake.DEFAULT_THRESHOLD` when one
    recorded none).
    """
    found = validation_batches(refs, val_data=val_data, batch_size=batch_size)
    if found is None:
        thresholds = [ref.threshold for ref in refs]
        if any(t is None for t in thresholds):
            return (DEFAULT_THRESHOLD, f"{DEFAULT_THRESHOLD} (a member recorded no threshold)", None)
        weights = split_ensemble(model)[1].normalised_weights(len(refs))
        mean = sum(w * t for w, t in zip(weights, thresholds, strict=True))
        return float(mean), "weighted mean of the members' thresholds", None
    dataset_at, source = found
    labels, scores, _ = score_by_member(model, dataset_at)
    threshold = choose_threshold(labels, scores)
    return threshold, f"{source} ({len(labels)} images)", binary_metrics(labels, scores, threshold)


def greedy_selection(
    labels: np.ndarray, scores: Mapping[str, np.ndarray], *, max_members: int | None = None,
    mode: str = "prob",
) -> list[tuple[str, float]]:
    """Forward ensemble selection (Caruana et al., 2004, without replacement) on validation scores.

    ``scores`` maps each candidate to its P(fake) on the images of ``labels``. Starting from no member,
    add the candidate whose equal-weight fusion with those chosen (mean probability, or mean logit for
    ``mode="logit"``, as :class:`~tfdeepfake.models.fusion.FuseLogits`) has the highest ROC AUC; stop when
    no candidate raises it or at ``max_members``. Ties go to the earlier candidate. Returns
    ``[(name, ROC AUC once it was added), ...]``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    if not scores:
        raise ValueError("no candidates to select from")
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError("greedy selection needs validation images of both classes")

    def as_fused(p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, np.float64)
        if mode == "prob":
            return p
        p = np.clip(p, 1e-7, 1 - 1e-7)
        return np.log(p / (1 - p))

    columns = {name: as_fused(p) for name, p in scores.items()}
    chosen: list[tuple[str, float]] = []
    total = np.zeros(len(labels))
    limit = len(columns) if max_members is None else max_members
    while len(chosen) < limit:
        best: tuple[float, str] | None = None
        for name, column in columns.items():
            if any(name == c for c, _ in chosen):
                continue
            auc = float(roc_auc_score(labels, (total + column) / (len(chosen) + 1)))
            if best is None or auc > best[0]:
                best = (auc, name)
        if best is None or (chosen and best[0] <= chosen[-1][1]):
            break
        chosen.append((best[1], best[0]))
        total += columns[best[1]]
    return chosen


def greedy_members(
    runs: Sequence[str | Path], *, max_members: int | None = None, mode: str = "prob",
    val_data: str | Path | None = None, batch_size: int = 32,
) -> tuple[list[str | Path], dict[str, Any]]:
    """The members of ``runs`` chosen by :func:`greedy_selection` on validation images (``val_data``, else
    the runs' shared validation split; never test data), and a record of the choice for ``ensemble.json``.
    ``ValueError`` when there are no validation images to choose on."""
    refs = [resolve_model(r) for r in runs]
    found = validation_batches(refs, val_data=val_data, batch_size=batch_size)
    if found is None:
        raise ValueError("choosing members needs validation images: pass --val-data, or runs that share "
                         "one validation split (their split.csv)")
    dataset_at, source = found
    names = unique_names([ref.name for ref in refs])
    scores: dict[str, np.ndarray] = {}
    labels = np.zeros(0)
    for name, ref in zip(names, refs, strict=True):
        labels, scores[name], _ = score_by_member(load_model(ref.model_path), dataset_at)
    steps = greedy_selection(labels, scores, max_members=max_members, mode=mode)
    chosen = [runs[names.index(name)] for name, _ in steps]
    record = {"method": "greedy", "source": f"{source} ({len(labels)} images)", "candidates": names,
              "max_members": max_members,
              "steps": [{"member": name, "val_roc_auc": auc} for name, auc in steps]}
    return chosen, record


def create_ensemble(
    runs: Sequence[str | Path], name: str, *, weights: Sequence[float] | None = None,
    mode: str = "prob", root: str | Path = "runs", val_data: str | Path | None = None,
    selection: dict[str, Any] | None = None,
) -> Path:
    """Load the members, build the ensemble and write ``ROOT/ensemble-NAME/``; return that folder.
    ``selection`` (how the members were chosen, :func:`greedy_members`) is recorded in ``ensemble.json``.

    ``metrics.json`` holds the threshold used by ``evaluate`` and the export (see
    :func:`ensemble_threshold`) and, when it was chosen on validation images, their figures (``val``).
    """
    if weights is not None and len(weights) != len(runs):
        raise ValueError(f"{len(weights)} weights given for {len(runs)} members")
    refs = [resolve_model(r) for r in runs]
    members = [load_model(ref.model_path) for ref in refs]
    for member, member_name in zip(members, unique_names([ref.name for ref in refs]), strict=True):
        member.name = member_name
    model = build_ensemble(members, weights=weights, mode=mode, name=name)
    norm = split_ensemble(model)[1].normalised_weights(len(members))
    threshold, source, val = ensemble_threshold(model, refs, val_data=val_data)

    out = Path(root) / f"ensemble-{name}"
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, out / MODEL_FILE)
    info = {
        "name": name, "mode": mode, "weights": norm, "threshold": threshold,
        "threshold_source": source,
        "members": [
            {"name": m.name, "model": str(ref.model_path.resolve()), "threshold": ref.threshold,
             "image_size": model_image_size(m), "weight": w}
            for m, ref, w in zip(members, refs, norm, strict=True)
        ],
    }
    if selection is not None:
        info["selection"] = selection
    (out / ENSEMBLE_FILE).write_text(json.dumps(info, indent=2) + "\n")
    metrics: dict[str, Any] = {"model": "ensemble", "threshold": threshold,
                               "params": int(model.count_params()), "epochs_run": 0,
                               "train_seconds": 0.0, "ensemble": info}
    if val is not None:
        metrics["val"] = val
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    return out


def _main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tfdeepfake.ensemble",
        description="Fuse trained detectors into one averaging ensemble (and export it).",
    )
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folders or .keras files (the members, or the candidates with --select greedy)")
    p.add_argument("--name", required=True, help="ensemble name (folder runs/ensemble-NAME, export NAME)")
    p.add_argument("--weights", default=None, help="comma-separated member weights (default: equal)")
    p.add_argument("--mode", choices=MODES, default="prob",
                   help="average probabilities (default) or logits")
    p.add_argument("--val-data", default=None, metavar="DIR",
                   help="choose the threshold on this real/ fake/ folder (default: on the members' shared "
                        "validation split, else the weighted mean of their thresholds)")
    p.add_argument("--select", choices=("all", "greedy"), default="all",
                   help="all: every RUN is a member (default); greedy: choose the members among the RUNs on "
                        "the validation images (--val-data, else the runs' shared split), adding the one "
                        "that most raises the ensemble's ROC AUC until none does (Caruana et al., 2004)")
    p.add_argument("--max-members", type=int, default=None, metavar="N",
                   help="with --select greedy: at most N members (default: no limit)")
    p.add_argument("--root", default="runs", help="where to write ensemble-NAME/ (default: %(default)s)")
    p.add_argument("--export", action=argparse.BooleanOptionalAction, default=True,
                   help="also export for TensorFlow Serving to --export-root/NAME/VERSION (default: yes)")
    p.add_argument("--export-root", default="saved_models")
    args = cli.add_debug_flag(p).parse_args(argv)
    # every flag and path checked before a member is loaded
    for run in args.runs:
        cli.input_path("RUN", run)
    try:
        check_name(args.name)
    except ValueError as exc:
        raise cli.usage_error("--name", args.name, "letters, digits, '.', '_' or '-' (used in paths "
                              "and URLs)") from exc
    weights = parse_weights(args.weights)
    if weights is not None and len(weights) != len(args.runs):
        raise cli.usage_error("--weights", args.weights, f"{len(args.runs)} weights, one per RUN")
    if args.select == "greedy" and weights is not None:
        raise cli.usage_error("--weights", args.weights, "no weights with --select greedy (its members are "
                              "averaged equally)")
    if args.max_members is not None:
        if args.select != "greedy":
            raise cli.usage_error("--max-members", args.max_members, "it only with --select greedy")
        cli.number("--max-members", args.max_members, low=1, integer=True)
    cli.input_dir("--val-data", args.val_data)
    cli.output_dir("--root", args.root, optional=False)
    if args.export:
        cli.output_dir("--export-root", args.export_root, optional=False)
    runs, selection = list(args.runs), None
    if args.select == "greedy":
        try:
            runs, selection = greedy_members(runs, max_members=args.max_members, mode=args.mode,
                                             val_data=args.val_data)
        except ValueError as exc:
            raise cli.usage_error("--select", "greedy", str(exc)) from exc
        steps = ", ".join(f"+{s['member']} {s['val_roc_auc']:.4f}" for s in selection["steps"])
        print(f"chose {len(runs)} of {len(args.runs)} runs ({selection['source']}; ROC AUC {steps})")
    out = create_ensemble(runs, args.name, weights=weights, mode=args.mode, root=args.root,
                          val_data=args.val_data, selection=selection)
    info = json.loads((out / ENSEMBLE_FILE).read_text())
    members = ", ".join(f"{m['name']} ({m['weight']:.3g})" for m in info["members"])
    print(f"ensemble {args.name} ({args.mode} averaging of {members}; threshold "
          f"{info['threshold']:.4f}, {info['threshold_source']}) written to {out}")
    if args.export:
        print(describe_export(export_model(out, args.name, root=args.export_root)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
