"""Robustness to common image degradations (JPEG re-compression, Gaussian blur, downscaling) and to
misalignment (the face shifted by a few pixels).

``python -m tfdeepfake.robustness MODEL [MODEL ...] --data DIR [--levels shift=0,4,8] [--out DIR]``
sweeps a folder and prints accuracy and ROC AUC per model and level (``--out``: CSV and plot).

Each perturbation maps a uint8 RGB ``(h, w, 3)`` image to one of the same shape and dtype and is the
identity (within JPEG rounding for quality 100) at its neutral level. :func:`robustness_sweep` applies
each level to the images *as stored* (the way a deployed detector receives them), lets the model resize
them as the evaluation pipeline does (bilinear, rounded to uint8) and reports accuracy and ROC AUC per
level; :func:`plot_robustness` draws the curves.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from tfdeepfake import DEFAULT_THRESHOLD, cli
from tfdeepfake import data as data_mod
from tfdeepfake.metrics import binary_metrics
from tfdeepfake.plots import plt  # pyplot with the Agg backend selected
from tfdeepfake.runs import load_model, resolve_model
from tfdeepfake.scoring import score_by_member

Perturbation = Callable[[np.ndarray, float], np.ndarray]

# The sweep of issue #6: JPEG quality 100 -> 30, blur sigma 0 -> 3, downscale factor 1 -> 0.25; and
# (issue #11) a diagonal shift of 0 -> 16 stored pixels (0 -> 4 px of a 64 px model's input on rvf10k).
DEFAULT_LEVELS: dict[str, tuple[float, ...]] = {
    "jpeg": (100, 90, 70, 50, 30),
    "blur": (0.0, 0.5, 1.0, 2.0, 3.0),
    "downscale": (1.0, 0.75, 0.5, 0.25),
    "shift": (0.0, 4.0, 8.0, 16.0),
}
IDENTITY = {("blur", 0.0), ("downscale", 1.0), ("shift", 0.0)}
LABELS = {"jpeg": "JPEG quality", "blur": "Gaussian blur sigma (px)", "downscale": "downscale factor",
          "shift": "shift right and down (stored px)"}


def _check(image: Any) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected a uint8 (h, w, 3) image, got {arr.dtype} {arr.shape}")
    return arr


def jpeg(image: np.ndarray, quality: float) -> np.ndarray:
    """Re-encode as JPEG at ``quality`` (1-100) with Pillow, full-resolution chroma (4:4:4), and decode."""
    arr = _check(image)
    q = int(round(quality))
    if not 1 <= q <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=q, subsampling=0)
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` pixels (kernel 2*ceil(3 sigma)+1, reflected
    borders); ``sigma = 0`` returns a copy."""
    import cv2

    arr = _check(image)
    if sigma < 0:
        raise ValueError(f"blur sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return arr.copy()
    k = 2 * int(np.ceil(3 * sigma)) + 1
    return cv2.GaussianBlur(arr, (k, k), sigmaX=float(sigma), sigmaY=float(sigma),
                            borderType=cv2.BORDER_REFLECT_101)


def downscale(image: np.ndarray, factor: float) -> np.ndarray:
    """Shrink by ``factor`` (0 < f <= 1, area interpolation), then enlarge back to the original size
    (bilinear); ``factor = 1`` returns a copy."""
    import cv2

    arr = _check(image)
    if not 0 < factor <= 1:
        raise ValueError(f"downscale factor must be in (0, 1], got {factor}")
    if factor == 1:
        return arr.copy()
    h, w = arr.shape[:2]
    small = cv2.resize(arr, (max(1, round(w * factor)), max(1, round(h * factor))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def shift(image: np.ndarray, pixels: float) -> np.ndarray:
    """Move the content ``pixels`` (rounded, >= 0) right and down, the uncovered top and left edges
    filled by reflection (as ``train --random-shift`` does; past the image's side the reflection
    repeats, so every level is defined for every image size); ``0`` returns a copy. Nothing is
    resampled: it asks whether the detector depends on where the face sits."""
    arr = _check(image)
    if not (np.isfinite(pixels) and pixels >= 0):
        raise ValueError(f"shift must be a finite number of pixels >= 0, got {pixels}")
    k = int(round(pixels))
    h, w = arr.shape[:2]
    return np.pad(arr, ((k, 0), (k, 0), (0, 0)), mode="reflect")[:h, :w].copy()


PERTURBATIONS: dict[str, Perturbation] = {"jpeg": jpeg, "blur": gaussian_blur, "downscale": downscale,
                                          "shift": shift}


def perturb(image: np.ndarray, kind: str, level: float) -> np.ndarray:
    """Apply the perturbation ``kind`` (``jpeg``, ``blur``, ``downscale`` or ``shift``) at ``level``."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}; expected one of {sorted(PERTURBATIONS)}")
    return PERTURBATIONS[kind](image, level)


def sample_rows(frame: pd.DataFrame, max_images: int | None, seed: int = 0) -> pd.DataFrame:
    """At most ``max_images`` rows, stratified by label (seeded); all rows when ``None``."""
    if max_images is None or len(frame) <= max_images:
        return frame
    share = max_images / len(frame)
    parts = [g.sample(n=max(1, int(round(len(g) * share))), random_state=seed)
             for _, g in frame.groupby("label")]
    return pd.concat(parts).sort_values("path")


def _images(index_or_folder: Any, split: str, max_images: int | None, seed: int
            ) -> tuple[list[np.ndarray], np.ndarray]:
    index = (data_mod.index_eval_folder(index_or_folder)
             if isinstance(index_or_folder, str | Path) else index_or_folder)
    rows = sample_rows(index.rows(split), max_images, seed)
    if rows.empty:
        raise ValueError(f"{index.root}: no images in the {split!r} split")
    images = [data_mod.load_image(p) for p in rows["path"]]
    return images, rows["label"].to_numpy(int)


def _score(model: Any, images: Sequence[np.ndarray], size: int | None, batch_size: int) -> np.ndarray:
    """P(fake) per image after the pipeline's bilinear resize (rounded to uint8) to ``size``, or to each
    ensemble member's own size when ``size`` is None."""
    import tensorflow as tf

    def batches_at(member_size: int) -> Iterator[tuple[Any, np.ndarray]]:
        side = size or member_size
        for start in range(0, len(images), batch_size):
            batch = [tf.image.resize(im, (side, side), method="bilinear")
                     for im in images[start:start + batch_size]]
            x = tf.cast(tf.clip_by_value(tf.round(tf.stack(batch)), 0.0, 255.0), tf.float32)
            yield x, np.zeros(len(batch), int)

    return score_by_member(model, batches_at)[1]


def robustness_sweep(
    model: Any, index_or_folder: Any, *, levels: Mapping[str, Sequence[float]] | None = None,
    split: str = "test", max_images: int | None = None, threshold: float = DEFAULT_THRESHOLD,
    batch_size: int = 32, image_size: int | None = None, seed: int = 0, name: str | None = None,
) -> pd.DataFrame:
    """Accuracy (at ``threshold``) and ROC AUC of ``model`` per perturbation level.

    ``model``: a Keras model or anything :func:`tfdeepfake.runs.resolve_model` accepts (run folder or
    ``.keras``). ``index_or_folder``: a :class:`~tfdeepfake.data.DataIndex` (its ``split`` is used) or a
    folder evaluated like ``tfdeepfake.evaluate`` does. ``max_images`` draws a seeded, class-stratified
    sample. ``image_size``: the size each perturbed image is resized to (default: each model or ensemble
    member's own size). Returns one row per (perturbation, level): ``model, perturbation, level,
    accuracy, roc_auc, eer, n_images``.
    """
    if isinstance(model, str | Path):
        ref = resolve_model(model)
        model, name = load_model(ref.model_path), name or ref.name
    levels = dict(DEFAULT_LEVELS if levels is None else levels)
    for kind in levels:
        if kind not in PERTURBATIONS:
            raise ValueError(f"unknown perturbation {kind!r}; expected one of {sorted(PERTURBATIONS)}")
    images, labels = _images(index_or_folder, split, max_images, seed)
    rows = []
    clean: np.ndarray | None = None  # blur 0, downscale 1 and shift 0 are the identity: score once
    for kind, values in levels.items():
        for level in values:
            identity = (kind, float(level)) in IDENTITY
            if identity and clean is not None:
                scores = clean
            else:
                scores = _score(model, [perturb(im, kind, level) for im in images], image_size,
                                batch_size)
                clean = scores if identity else clean
            m = binary_metrics(labels, scores, threshold)
            rows.append({"model": name or model.name, "perturbation": kind, "level": float(level),
                         "accuracy": m["accuracy"], "roc_auc": m["roc_auc"], "eer": m["eer"],
                         "n_images": m["n_images"]})
    return pd.DataFrame(rows)


def plot_robustness(frame: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Accuracy (top) and ROC AUC (bottom) against each perturbation's level, one line per model.

    The x axes run from mild to strong (JPEG quality and downscale factor decreasing).
    """
    path = Path(path)
    kinds = [k for k in PERTURBATIONS if k in set(frame["perturbation"])]
    fig, axes = plt.subplots(2, len(kinds), figsize=(4.2 * len(kinds), 7), squeeze=False)
    for col, kind in enumerate(kinds):
        part = frame[frame["perturbation"] == kind]
        for row, metric in enumerate(("accuracy", "roc_auc")):
            ax = axes[row][col]
            for model_name, g in part.groupby("model", sort=False):
                g = g.sort_values("level")
                ax.plot(g["level"], g[metric], marker="o", label=str(model_name))
            if kind in ("jpeg", "downscale"):
                ax.invert_xaxis()
            ax.axhline(0.5, ls=":", color="grey")
            ax.set_ylim(0.0, 1.02)
            ax.set_xlabel(LABELS[kind])
            ax.set_ylabel("accuracy @0.5" if metric == "accuracy" else "ROC AUC")
            ax.grid(alpha=0.3)
    axes[0][0].legend(loc="lower left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def markdown_table(frame: pd.DataFrame, metric: str = "accuracy") -> str:
    """``metric`` per model (rows) and perturbation level (columns) as a markdown table."""
    cols = [(k, lv) for k in PERTURBATIONS for lv in frame.loc[frame["perturbation"] == k, "level"].unique()]
    head = "| model | " + " | ".join(f"{k} {lv:g}" for k, lv in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for model_name, g in frame.groupby("model", sort=False):
        cells = []
        for k, lv in cols:
            v = g.loc[(g["perturbation"] == k) & (g["level"] == lv), metric]
            cells.append(f"{float(v.iloc[0]):.3f}" if len(v) else "")
        lines.append(f"| {model_name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ command line
def levels_entry(value: str) -> tuple[str, tuple[float, ...]]:
    """``--levels`` entry ``KIND=L1,L2,...`` as ``(KIND, (L1, L2, ...))``."""
    kind, sep, raw = value.partition("=")
    try:
        levels = tuple(float(x) for x in raw.split(",") if x.strip()) if sep else ()
    except ValueError:
        levels = ()
    if kind not in PERTURBATIONS or not levels:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected KIND=L1,L2,... with KIND one of {sorted(PERTURBATIONS)} and numeric levels")
    return kind, levels


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tfdeepfake.robustness",
        description="Accuracy and ROC AUC of one or more detectors on a real/fake folder whose images are "
                    "JPEG re-compressed, blurred, downscaled or shifted, level by level.")
    p.add_argument("models", nargs="+", metavar="MODEL", help="run folders or .keras files")
    p.add_argument("--data", required=True, help="folder with real/ and fake/ (or a test split)")
    p.add_argument("--levels", nargs="+", type=levels_entry, default=None, metavar="KIND=L1,L2,...",
                   help="the perturbations and levels to sweep (default: "
                        + "; ".join(f"{k}={','.join(f'{v:g}' for v in lv)}" for k, lv in DEFAULT_LEVELS.items())
                        + ")")
    p.add_argument("--max-images", type=cli.non_negative_int, default=0,
                   help="a seeded, class-stratified sample of this many images (default 0: every image)")
    p.add_argument("--seed", type=cli.non_negative_int, default=0, help="the sample's seed")
    p.add_argument("--batch-size", type=cli.positive_int, default=32)
    p.add_argument("--out", default=None, help="folder for robustness.csv and robustness.png")
    return cli.add_debug_flag(p)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    for model in args.models:
        cli.input_path("MODEL", model)
    cli.input_dir("--data", args.data)
    out = cli.output_dir("--out", args.out)
    names = [Path(m).name for m in args.models]
    names = [n if names.count(n) == 1 else m for n, m in zip(names, args.models, strict=True)]  # same name: the path
    frame = pd.concat([robustness_sweep(m, args.data, levels=dict(args.levels) if args.levels else None,
                                        max_images=args.max_images or None, seed=args.seed,
                                        batch_size=args.batch_size, name=n)
                       for m, n in zip(args.models, names, strict=True)], ignore_index=True)
    print(f"{args.data}: {int(frame['n_images'].iloc[0])} images; accuracy at {DEFAULT_THRESHOLD}:\n")
    print(markdown_table(frame, "accuracy"))
    print("ROC AUC:\n")
    print(markdown_table(frame, "roc_auc"))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out / "robustness.csv", index=False)
        plot_robustness(frame, out / "robustness.png")
        print(f"written: {out / 'robustness.csv'}, {out / 'robustness.png'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
