"""Knowledge distillation (#11): a trained model's P(fake) as part of each training image's target.

``train --teacher MODEL --distill W`` scores every training image once with MODEL (a run folder, a
``.keras`` file or an ensemble's folder; each member at its own input size, flip averaging included where
it was trained with it), on the image as decoded, before augmentation, and trains on the target
``(1 - W) * label + W * P_teacher(fake)`` instead of the 0/1 label (Hinton et al., 2015, at temperature 1:
BCE is linear in its target, so the loss is exactly ``1 - W`` times the label's plus ``W`` times the one
against the teacher's probability). ``--mixup`` blends these targets as it blends labels; label smoothing
applies on top. Typical use: compress an ensemble into one model of one member's serving cost.

The teacher must not have seen this run's validation or test images (its knowledge of them would flow
into the targets and make the validation figures optimistic): where the teacher's runs recorded their
split (``split.csv``), any of this run's validation/test images among their training images is refused
(:func:`check_teacher`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tfdeepfake import data as data_mod
from tfdeepfake.console import Log, print_line
from tfdeepfake.runs import load_model, resolve_model
from tfdeepfake.scoring import at_size, score_by_member

TEACHER_FILE = "teacher.csv"
"""Written in the run folder: each training image's label, teacher P(fake) and target."""
_SPLIT_FILE = "split.csv"  # as ensemble.SPLIT_FILE and DataIndex.write_manifest (no import: it pulls export)
_ENSEMBLE_FILE = "ensemble.json"  # as ensemble.ENSEMBLE_FILE


def soft_targets(labels: Sequence[int] | np.ndarray, teacher: Sequence[float] | np.ndarray,
                 weight: float) -> np.ndarray:
    """``(1 - weight) * labels + weight * teacher`` as float32, checked: labels 0/1, teacher in [0, 1],
    the same length, ``weight`` in [0, 1]."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(teacher, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"soft_targets: {y.size} labels but {p.size} teacher probabilities")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("soft_targets: labels must be 0 (real) or 1 (fake)")
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise ValueError("soft_targets: teacher probabilities must lie in [0, 1]")
    if not 0 <= weight <= 1:
        raise ValueError(f"soft_targets: weight must be in [0, 1], got {weight}")
    return ((1.0 - weight) * y + weight * p).astype(np.float32)


def teacher_runs(teacher: str | Path) -> list[tuple[str, Path | None]]:
    """``(name, run folder or None)`` of each model inside ``teacher``: the members of an ensemble's
    folder (its ``ensemble.json``), else the teacher itself."""
    ref = resolve_model(teacher)
    record = ref.run_dir / _ENSEMBLE_FILE if ref.run_dir else None
    if record is not None and record.is_file():
        found = []
        for m in json.loads(record.read_text()).get("members", []):
            if not Path(m["model"]).exists():
                raise FileNotFoundError(f"--teacher {teacher}: its member {m.get('name')}'s model {m['model']} "
                                        f"(from {record}) does not exist")
            found.append((m.get("name", m["model"]), resolve_model(m["model"]).run_dir))
        return found
    return [(ref.name, ref.run_dir)]


def _trained_on(run_dir: Path | None) -> set[str] | None:
    """The resolved paths a run trained on, from its ``split.csv``; None when it has none."""
    manifest = run_dir / _SPLIT_FILE if run_dir else None
    if manifest is None or not manifest.is_file():
        return None
    frame = pd.read_csv(manifest)
    return {str(Path(p).resolve()) for p in frame.loc[frame["split"] == "train", "path"]}


def check_teacher(teacher: str | Path, index: data_mod.DataIndex, log: Log = print_line) -> None:
    """Refuse a teacher any of whose runs trained on one of ``index``'s validation or test images
    (``ValueError`` naming the run and an image); log the runs whose split is unknown."""
    held_out = {str(Path(p).resolve()) for split in ("val", "test") if split in index.counts()
                for p in index.rows(split)["path"]}
    for name, run_dir in teacher_runs(teacher):
        trained = _trained_on(run_dir)
        if trained is None:
            log(f"teacher {name}: no {_SPLIT_FILE} beside it, so whether it saw this run's validation "
                "images cannot be checked")
            continue
        overlap = sorted(trained & held_out)
        if overlap:
            raise ValueError(
                f"--teacher {teacher}: its run {run_dir} trained on {len(overlap)} of this run's validation/"
                f"test images (e.g. {overlap[0]}), so they would not be held out; train the teacher on "
                "the same split (the same --data and --split-seed) or on other images")


def _score(teacher: str | Path, index: data_mod.DataIndex, split: str,
           batch_size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The teacher's P(fake) and its members' (empty for one model) on ``index``'s ``split``, in row order."""
    model = load_model(resolve_model(teacher).model_path)
    batches = at_size(data_mod.dataset_for, index, split, batch_size=batch_size, cache=False)
    labels, scores, by_member = score_by_member(model, batches)
    expected = index.rows(split)["label"].to_numpy().astype(int)
    if labels.shape != expected.shape:  # a file that failed to decode was dropped: order lost
        raise data_mod.DataError(
            f"--teacher: {expected.size - labels.size} of the {expected.size} {split} images could not be "
            "decoded, so the teacher's scores cannot be matched to images")
    return np.asarray(scores, dtype=np.float64), by_member


def teacher_probabilities(teacher: str | Path, index: data_mod.DataIndex, *, batch_size: int = 32,
                          split: str = "train") -> np.ndarray:
    """The teacher's P(fake) on each image of ``index``'s ``split``, in the split's row order (each
    ensemble member at its own input size, as ``evaluate`` scores)."""
    return _score(teacher, index, split, batch_size)[0]


def held_out_mask(teacher: str | Path, paths: Sequence[str]) -> np.ndarray:
    """``mask[i, j]``: member ``i`` of the ensemble ``teacher`` did not train on ``paths[j]`` (from each
    member run's ``split.csv``); ``ValueError`` for one model, a member without ``split.csv``, or an image
    every member trained on."""
    runs = teacher_runs(teacher)
    if len(runs) < 2:
        raise ValueError(f"--cross-fit: --teacher {teacher} is one model; it needs the ensemble of runs "
                         "trained with --fold 1..N --folds N (python -m tfdeepfake.ensemble RUN_1 ... RUN_N)")
    wanted = [str(Path(p).resolve()) for p in paths]
    mask = np.zeros((len(runs), len(wanted)), dtype=bool)
    for i, (name, run_dir) in enumerate(runs):
        trained = _trained_on(run_dir)
        if trained is None:
            raise ValueError(f"--cross-fit: teacher member {name} has no {_SPLIT_FILE} beside it, so the "
                             "images it trained on are unknown")
        mask[i] = [p not in trained for p in wanted]
    seen_by_all = np.flatnonzero(~mask.any(axis=0))
    if seen_by_all.size:
        raise ValueError(f"--cross-fit: every member of --teacher {teacher} trained on {seen_by_all.size} of "
                         f"the {len(wanted)} training images (e.g. {wanted[seen_by_all[0]]}); train the members "
                         "with --fold 1..N --folds N on this run's --data and --split-seed")
    return mask


def cross_fit_probabilities(teacher: str | Path, index: data_mod.DataIndex, *,
                            batch_size: int = 32) -> np.ndarray:
    """Each training image's P(fake) as the mean over the members of the ensemble ``teacher`` that did not
    train on it (:func:`held_out_mask`), in the training split's row order: out-of-fold scores."""
    mask = held_out_mask(teacher, index.rows("train")["path"].tolist())
    _, by_member = _score(teacher, index, "train", batch_size)
    scores = np.stack([by_member[name] for name, _ in teacher_runs(teacher)]).astype(np.float64)
    return (scores * mask).sum(axis=0) / mask.sum(axis=0)


def distill_targets(teacher: str | Path, weight: float, index: data_mod.DataIndex, out: Path | None, *,
                    batch_size: int = 32, cross_fit: bool = False, log: Log = print_line) -> np.ndarray:
    """Checked teacher (:func:`check_teacher`), its P(fake) on the training images (``cross_fit``: each
    image's out-of-fold score, :func:`cross_fit_probabilities`) and their targets (:func:`soft_targets`),
    logged and written to ``out/teacher.csv``; returns the targets in the training split's row order."""
    check_teacher(teacher, index, log)
    rows = index.rows("train")
    labels = rows["label"].to_numpy().astype(int)
    if cross_fit:
        p = cross_fit_probabilities(teacher, index, batch_size=batch_size)
    else:
        p = teacher_probabilities(teacher, index, batch_size=batch_size)
    targets = soft_targets(labels, p, weight)
    agree = float(np.mean((p >= 0.5) == labels.astype(bool)))
    log(f"teacher {teacher}{' (cross-fitted: each image scored by the members that left it out)' if cross_fit else ''}: "
        f"accuracy {agree:.3f} on the {labels.size} training images at 0.5, mean "
        f"P(fake) {p[labels == 1].mean():.3f} on fakes and {p[labels == 0].mean():.3f} on real; "
        f"targets = {1 - weight:g} x label + {weight:g} x teacher")
    if out is not None:
        pd.DataFrame({"path": rows["path"].to_numpy(), "label": labels, "teacher": p,
                      "target": targets}).to_csv(Path(out) / TEACHER_FILE, index=False)
    return targets


__all__ = ["TEACHER_FILE", "check_teacher", "cross_fit_probabilities", "distill_targets", "held_out_mask",
           "soft_targets", "teacher_probabilities", "teacher_runs"]
