"""Detect deepfakes in images, folders and videos.

``python -m tfdeepfake.predict MODEL PATH [PATH ...] [--csv FILE] [--json FILE] [--faces] [--frames N]
[--explain DIR] [--threshold T]``

* MODEL: a run folder, a ``.keras`` file, or an exported SavedModel (``saved_models/NAME``, whose
  highest version is used, or ``saved_models/NAME/VERSION``).
* PATH: image files, folders (walked recursively) and videos (``.mp4 .avi .mov .mkv ...``, ``--frames``
  frames sampled evenly). Every scored item gets a row ``path, frame, face, probability_fake, label``;
  a video also gets an aggregate row (mean and max of its scores, verdict from the mean).
* ``--faces``: MTCNN face detection, each box enlarged 1.3x (as FaceForensics++), each face scored; an
  image without a face is reported as such and not scored.
* ``--explain DIR``: a Grad-CAM PNG per scored item (input + overlay, one overlay per ensemble member).
* Unreadable files are reported on their row with the reason and the run goes on; the exit code is 1
  only when nothing could be read (2 for a bad MODEL or bad arguments).

:func:`tfdeepfake.scorer.load_scorer` turns any MODEL kind into one callable, ``scorer(images) -> Scores``;
this module walks the inputs, batches them, and writes the rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfdeepfake import CLASS_NAMES, cli
from tfdeepfake.explain import heatmaps, panel, save_png
from tfdeepfake.faces import Box, get_detector
from tfdeepfake.hardware import set_inference_env
from tfdeepfake.media import (
    DEFAULT_FRAMES,
    MediaError,
    expand_paths,
    is_video,
    read_image,
)
from tfdeepfake.media import read_video_frames as _read_video_frames
from tfdeepfake.scorer import Scorer, load_scorer


# --------------------------------------------------------------------------------------------- rows
@dataclass
class Row:
    """One line of the report: a scored image / frame / face, a video aggregate, or a failure.

    ``kind``: ``image``, ``frame`` (of a video) or ``video`` (aggregate over its scored frames/faces).
    ``status``: ``ok``, ``no_face`` (``--faces`` found none: not scored) or ``error`` (see ``reason``).
    """

    path: str
    kind: str = "image"
    frame: int | None = None
    face: Box | None = None
    probability_fake: float | None = None
    label: str = ""
    status: str = "ok"
    reason: str = ""
    probability_max: float | None = None  # video aggregate only
    n_scored: int | None = None  # video aggregate only
    face_confidence: float | None = None
    members: dict[str, float] = field(default_factory=dict)
    explanation: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (face as ``[x, y, w, h]`` or ``None``)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["face"] = list(self.face) if self.face is not None else None
        return out

    def to_csv(self, member_names: Sequence[str]) -> dict[str, Any]:
        """Flat dict for CSV: empty cells for missing values, face as ``x,y,w,h``."""
        out = {k: ("" if v is None else v) for k, v in self.to_dict().items() if k != "members"}
        out["face"] = ",".join(map(str, self.face)) if self.face is not None else ""
        out.update({f"member_{n}": self.members.get(n, "") for n in member_names})
        return out


CSV_COLUMNS = ("path", "kind", "frame", "face", "probability_fake", "label", "status", "reason",
               "probability_max", "n_scored", "face_confidence", "explanation")


@dataclass
class Prediction:
    """Everything a run produced: rows in input order and the settings used."""

    model: str
    threshold: float | None
    member_names: tuple[str, ...]
    rows: list[Row]

    @property
    def n_read(self) -> int:
        """Inputs that could be read (an image, or a video with at least one frame)."""
        return len({r.path for r in self.rows if r.status != "error"})

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "threshold": self.threshold,
                "members": list(self.member_names), "rows": [r.to_dict() for r in self.rows]}

    def write_csv(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = list(CSV_COLUMNS) + [f"member_{n}" for n in self.member_names]
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for row in self.rows:
                writer.writerow(row.to_csv(self.member_names))
        return path

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    def table(self) -> str:
        """A readable fixed-width table."""
        head = ("path", "frame", "face", "p(fake)", "label", "note")
        lines = []
        for r in self.rows:
            frame = "all" if r.kind == "video" else ("" if r.frame is None else str(r.frame))
            face = "" if r.face is None else "{},{},{}x{}".format(*r.face)
            prob = "" if r.probability_fake is None else f"{r.probability_fake:.4f}"
            note = r.reason
            if r.kind == "video":
                note = f"mean of {r.n_scored} scores, max {r.probability_max:.4f}" \
                    if r.n_scored else r.reason
            elif r.status == "no_face":
                note = "no face found"
            if r.members:
                note = (note + "; " if note else "") + " ".join(
                    f"{k}={v:.3f}" for k, v in r.members.items())
            lines.append((r.path, frame, face, prob, r.label.upper() if r.kind == "video"
                          else r.label, note))
        widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(head[:-1])]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
        out = [fmt.format(*head), fmt.format(*("-" * w for w in widths), "-" * 4)]
        out += [fmt.format(*line).rstrip() for line in lines]
        return "\n".join(out)


# -------------------------------------------------------------------------------------------- runner
@dataclass
class _Item:
    row: Row
    image: np.ndarray
    stem: str


class Predictor:
    """Scores images, folders and videos with one :class:`Scorer` (see :func:`predict`)."""

    def __init__(self, scorer: Scorer, *, faces: bool = False, frames: int = DEFAULT_FRAMES,
                 explain_dir: str | Path | None = None, progress: bool = True,
                 detector: Any = None) -> None:
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        self.scorer = scorer
        self.faces = faces
        self.frames = frames
        self.explain_dir = Path(explain_dir) if explain_dir is not None else None
        self.progress = progress
        self._detector = detector
        self._explain_model = scorer.keras_model() if self.explain_dir is not None else None
        self._pending: list[_Item] = []
        self._rows: list[Row] = []
        self._names: set[str] = set()

    @property
    def detector(self) -> Any:
        if self._detector is None:
            self._detector = get_detector()
        return self._detector

    def run(self, paths: Iterable[str | Path]) -> Prediction:
        """Rows for every file under ``paths`` (folders walked), in input order."""
        self._rows = []
        for path in self._bar(expand_paths(paths), "files", unit="file", min_items=2):
            if is_video(path):
                self.video(path)
            else:
                self.image(path)
        self._flush()
        rows, self._rows = self._rows, []
        return Prediction(model=str(self.scorer.source), threshold=self.scorer.threshold,
                          member_names=self.scorer.member_names, rows=rows)

    # -- one input ---------------------------------------------------------------------------
    def image(self, path: Path) -> None:
        """Add the rows of one image file (scored in batches, at the latest by :meth:`run`)."""
        try:
            image = read_image(path)
        except MediaError as exc:
            self._row(Row(str(path), status="error", reason=str(exc)))
            return
        self._regions(image, Row(str(path)), _stem(path))
        if len(self._pending) >= self.scorer.batch_size:
            self._flush()

    def video(self, path: Path) -> None:
        """Add one row per scored frame (or face) of a video, then its aggregate row."""
        try:
            frames = _read_video_frames(path, self.frames)
        except MediaError as exc:
            self._row(Row(str(path), kind="video", status="error", reason=str(exc)))
            return
        start = len(self._rows)
        for index, frame in self._bar(frames, Path(path).name, unit="frame", min_items=1):
            base = Row(str(path), kind="frame", frame=index)
            self._regions(frame, base, f"{_stem(path)}_f{index:06d}")
        self._flush()
        scored = [r for r in self._rows[start:] if r.status == "ok"]
        aggregate = self._row(Row(str(path), kind="video"))
        if scored:
            probs = [r.probability_fake for r in scored]
            mean = float(np.mean(probs))
            aggregate.probability_fake = mean
            aggregate.probability_max = float(np.max(probs))
            aggregate.label = CLASS_NAMES[int(mean >= self.scorer.verdict_threshold)]
            aggregate.n_scored = len(scored)
            aggregate.members = {n: float(np.mean([r.members[n] for r in scored]))
                                 for n in self.scorer.member_names}
        else:
            aggregate.status = "no_face" if self.faces else "error"
            aggregate.reason = ("no face found in any sampled frame" if self.faces
                                else "no frame could be scored")

    def _regions(self, image: np.ndarray, base: Row, stem: str) -> None:
        """Queue the whole image, or each face in it (a row saying so when there is none)."""
        if not self.faces:
            self._pending.append(_Item(self._row(base), image, stem))
            return
        try:
            found = self.detector.detect(image)
        except Exception as exc:  # noqa: BLE001 - a detector failure is this input's problem only
            self._row(_replace(base, status="error", reason=f"face detection failed: {exc}"))
            return
        if not found:
            self._row(_replace(base, status="no_face", reason="no face found"))
        for k, face in enumerate(found):
            row = self._row(_replace(base, face=face.crop_box,
                                     face_confidence=round(face.confidence, 4)))
            self._pending.append(_Item(row, face.crop(image), f"{stem}_face{k}"))

    # -- batching, scoring, explaining ---------------------------------------------------------
    def _flush(self) -> None:
        items, self._pending = self._pending, []
        if not items:
            return
        scores = self.scorer([it.image for it in items])
        for i, it in enumerate(items):
            it.row.probability_fake = float(scores.probability_fake[i])
            it.row.label = CLASS_NAMES[int(scores.label[i])]
            if scores.members is not None:
                it.row.members = {n: float(v) for n, v in
                                  zip(self.scorer.member_names, scores.members[i], strict=True)}
            if self._explain_model is not None:
                it.row.explanation = str(self._explain(it))

    def _explain(self, item: _Item) -> Path:
        assert self.explain_dir is not None
        maps = heatmaps(self._explain_model, item.image, target=item.row.label)
        captions = {n: f"{n} p={item.row.members[n]:.3f}" if n in item.row.members else
                    f"Grad-CAM ({item.row.label})" for n in maps}
        title = f"{item.row.label} p={item.row.probability_fake:.3f}"
        name = self._unique(item.stem)
        return save_png(self.explain_dir / f"{name}.png",
                        panel(item.image, maps, title=title, captions=captions))

    def _unique(self, stem: str) -> str:
        name, k = stem, 1
        while name in self._names:
            k += 1
            name = f"{stem}-{k}"
        self._names.add(name)
        return name

    def _row(self, row: Row) -> Row:
        self._rows.append(row)
        return row

    def _bar(self, items: Sequence[Any], desc: str, *, unit: str, min_items: int) -> Iterable[Any]:
        if not self.progress or len(items) < min_items:
            return items
        from tqdm import tqdm

        return tqdm(items, desc=desc, unit=unit, file=sys.stderr, leave=False)


def _replace(row: Row, **changes: Any) -> Row:
    values = {k: getattr(row, k) for k in row.__dataclass_fields__}
    values.update(changes)
    values["members"] = dict(values["members"])
    return Row(**values)


def _stem(path: str | Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem) or "input"


def predict(model: str | Path | Scorer, paths: Iterable[str | Path], *, faces: bool = False,
            frames: int = DEFAULT_FRAMES, explain_dir: str | Path | None = None,
            threshold: float | None = None, batch_size: int = 32,
            progress: bool = True) -> Prediction:
    """Score every image / folder / video in ``paths`` with MODEL (path or :class:`Scorer`)."""
    scorer = model if isinstance(model, Scorer) else load_scorer(
        model, threshold=threshold, batch_size=batch_size)
    return Predictor(scorer, faces=faces, frames=frames, explain_dir=explain_dir,
                     progress=progress).run(paths)


# ----------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tfdeepfake.predict",
        description="Detect deepfakes in images, folders and videos.")
    p.add_argument("model", metavar="MODEL",
                   help="run folder, .keras file, or SavedModel folder (saved_models/NAME"
                        " or saved_models/NAME/VERSION)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders, videos")
    p.add_argument("--csv", help="write one row per scored item to this CSV file")
    p.add_argument("--json", help="write the rows to this JSON file")
    p.add_argument("--faces", action="store_true",
                   help="detect faces (MTCNN), enlarge each box 1.3x and score each face")
    p.add_argument("--frames", type=cli.positive_int, default=DEFAULT_FRAMES,
                   help=f"frames sampled evenly from each video (default {DEFAULT_FRAMES})")
    p.add_argument("--explain", metavar="DIR", help="write Grad-CAM overlays (PNG) to DIR")
    p.add_argument("--threshold", type=cli.threshold, default=None,
                   help="P(fake) at or above which an item is fake (default: the run's validation "
                        "threshold, a SavedModel's own label, else 0.5)")
    p.add_argument("--batch-size", type=cli.positive_int, default=32)
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    return cli.add_debug_flag(p)


def _main(argv: list[str], scorer_factory: Callable[..., Scorer]) -> int:
    args = build_parser().parse_args(argv)
    # every output checked before the model is loaded or anything scored
    cli.input_path("MODEL", args.model)
    csv_path, json_path = cli.output_file("--csv", args.csv), cli.output_file("--json", args.json)
    if csv_path is not None and csv_path == json_path:
        raise cli.usage_error("--json", args.json, "a different file from --csv")
    explain_dir = cli.output_dir("--explain", args.explain)
    set_inference_env()  # this process never changes weights
    scorer = scorer_factory(args.model, threshold=args.threshold, batch_size=args.batch_size)
    predictor = Predictor(scorer, faces=args.faces, frames=args.frames,
                          explain_dir=explain_dir, progress=not args.no_progress)
    result = predictor.run(args.paths)
    print(result.table())
    threshold = "the model's own label" if scorer.threshold is None else f"{scorer.threshold:.4f}"
    print(f"\n{len(result.rows)} row(s), {result.n_read} input(s) read; model {scorer.name} "
          f"({scorer.kind}), threshold {threshold}")
    if csv_path is not None:
        print(f"CSV written to {result.write_csv(csv_path)}")
    if json_path is not None:
        print(f"JSON written to {result.write_json(json_path)}")
    if explain_dir is not None:
        print(f"Grad-CAM overlays in {explain_dir}")
    if result.n_read == 0:
        print("error: no input could be read", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None, *, scorer_factory: Callable[..., Scorer] = load_scorer
         ) -> int:
    """Exit code 0, 1 when no input could be read; a user error exits 2 (``tfdeepfake.cli``)."""
    return cli.run_cli(lambda args: _main(args, scorer_factory), argv)


if __name__ == "__main__":
    sys.exit(main())
