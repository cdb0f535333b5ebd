"""Folder indexing, file validation, splits, balancing, tf.data pipelines and augmentation.

Accepted layouts (folder names matched case-insensitively, hidden files/folders ignored, images in
nested sub-folders of a class folder count, files directly in the root such as a README ignored):

* ``classes``: ``ROOT/real/...`` and ``ROOT/fake/...`` -> a seeded, stratified train/val/test split
  (default 80/10/10).
* ``splits``: ``ROOT/{train,val,test}/{real,fake}/...`` (aliases: ``training``; ``valid``,
  ``validation``; ``testing``), e.g. Kaggle's ``Dataset/Train/Real`` -> used as given. Without a
  ``val`` folder the validation split is carved (seeded, stratified) from ``train``; a missing
  ``test`` folder is allowed and reported in :attr:`DataIndex.notes`.

Every file is validated *before* training (Pillow ``open`` + ``load`` with truncated images refused,
in a thread pool): empty, non-image, corrupt and truncated files are skipped and reported as
``(path, reason)``. Grayscale, RGBA, palette, CMYK and 16-bit images are kept and always come out
as 3-channel RGB in 0-255. JPEG and PNG are decoded by TensorFlow (:func:`decode_tf`: JPEG with the
accurate IDCT, so the pixels equal Pillow's; ``tf.io.decode_image`` for PNG, which handles 16-bit PNG);
every other format Pillow can read (GIF, BMP, WebP, TIFF, ...) is decoded through Pillow inside the
pipeline. BMP is deliberately *not* left to TensorFlow: its decoder silently returns wrong colours for
8-bit palette BMPs. EXIF orientation is ignored (pixels are used as stored), as by TensorFlow/Keras.

Why not ``keras.utils.image_dataset_from_directory``: it lists files by extension (a ``notes.txt``
or a misnamed file is silently ignored or crashes the epoch instead of being reported), matches
class folders case-sensitively, cannot skip corrupt files, split three ways or balance classes.
:func:`make_dataset` therefore builds the same pipeline it builds internally (``from_tensor_slices``
over paths -> parallel read + decode + bilinear ``tf.image.resize`` -> batch -> prefetch)
from the *validated* file list, adding a cache, seeded shuffling and augmentation.
:func:`keras_folder_dataset` is the thin Keras path for an already clean ``real/ fake/`` folder.

Everything is deterministic given the seed: the same files and seed always give the same split (paths
are ordered by their path relative to the root, so moving the folder does not change it).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageFile, UnidentifiedImageError

from tfdeepfake import CLASS_NAMES
from tfdeepfake.distribute import CACHE_MODES

__all__ = [
    "AugmentConfig",
    "DataError",
    "DataIndex",
    "CACHE_MODES",
    "augment_image",
    "mix_batch",
    "mixup_weight",
    "cache_bytes",
    "class_weights",
    "dataset_for",
    "decode_tf",
    "index_eval_folder",
    "hold_out_fold",
    "index_folder",
    "keras_folder_dataset",
    "load_image",
    "make_dataset",
    "resolve_cache",
    "steps_per_epoch",
    "validate_files",
]

SPLITS: tuple[str, str, str] = ("train", "val", "test")
_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}
_CLASS_LABELS = {name: label for label, name in enumerate(CLASS_NAMES)}  # real=0, fake=1
_IGNORED_DIRS = {"__macosx"}
_EXPECTED = ("expected class folders real/ and fake/, or split folders train/ [val/] [test/] "
             "each holding real/ and fake/ (names are case-insensitive)")
_MIN_IMAGE_SIZE = 8
_EPOCH_SEED_STRIDE = 2**20  # per-epoch seed = seed * stride + epoch (epochs < 2**20)


class DataError(ValueError):
    """A data folder cannot be used as given (the message names the path and what is wrong)."""


# --------------------------------------------------------------------------------------------
# Index
# --------------------------------------------------------------------------------------------

@dataclass
class DataIndex:
    """Every image of a data folder with its label and split, plus the skipped files.

    ``frame`` columns: ``path`` (absolute str), ``label`` (0 real / 1 fake), ``split`` (``train`` /
    ``val`` / ``test``; ``unused`` for training images dropped by class balancing and images left out by
    a per-class cap).
    """

    frame: pd.DataFrame
    skipped: list[tuple[str, str]]
    root: Path
    layout: str  # "classes" | "splits"
    seed: int = 1337
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    balanced: bool = True
    notes: list[str] = field(default_factory=list)
    skipped_labels: dict[str, int] = field(default_factory=dict, repr=False)

    def rows(self, split: str) -> pd.DataFrame:
        """The rows of one split, in index order."""
        return self.frame[self.frame["split"] == split]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {"real": n, "fake": n}}`` for every split holding at least one image."""
        out: dict[str, dict[str, int]] = {}
        for split in (*SPLITS, "unused"):
            rows = self.rows(split)
            if len(rows):
                out[split] = {name: int((rows["label"] == lab).sum())
                              for lab, name in enumerate(CLASS_NAMES)}
        return out

    def manifest(self) -> pd.DataFrame:
        """All files, kept and skipped: columns ``path, label, split, reason``."""
        kept = self.frame[["path", "label", "split"]].assign(reason="")
        skipped = pd.DataFrame(
            {
                "path": [p for p, _ in self.skipped],
                "label": [self.skipped_labels.get(p, -1) for p, _ in self.skipped],
                "split": "skipped",
                "reason": [r for _, r in self.skipped],
            },
            columns=["path", "label", "split", "reason"],
        )
        parts = [f for f in (kept, skipped) if len(f)]
        if not parts:
            return kept
        return pd.concat(parts, ignore_index=True).astype({"label": int})

    def write_manifest(self, path: str | Path) -> Path:
        """Write the manifest CSV (a folder -> ``folder/split.csv``); return the file written."""
        path = Path(path)
        if path.is_dir() or not path.suffix:
            path = path / "split.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.manifest().to_csv(path, index=False)
        return path

    def summary(self) -> str:
        """Human-readable counts per split and class, notes, and the skipped files with reasons."""
        counts = self.counts()
        lines = [f"data: {self.root} ({self.layout} layout, seed {self.seed}, "
                 f"{'balanced' if self.balanced else 'unbalanced'} training split)",
                 f"  {'split':<8}{'real':>8}{'fake':>8}{'total':>8}"]
        for split, c in counts.items():
            lines.append(f"  {split:<8}{c['real']:>8}{c['fake']:>8}{c['real'] + c['fake']:>8}")
        lines += [f"  note: {n}" for n in self.notes]
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} file(s):")
            lines += [f"    {p}: {r}" for p, r in self.skipped]
        else:
            lines.append("  skipped 0 files")
        return "\n".join(lines)


def index_folder(
    root: str | Path,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 1337,
    balance: bool = True,
    max_per_class: int | None = None,
) -> DataIndex:
    """Index, validate, split and (by default) balance a data folder for training.

    ``val_fraction``/``test_fraction`` apply to the ``classes`` layout (and ``val_fraction`` to a
    ``splits`` layout without a val folder). ``balance`` undersamples the larger class of the train
    split only (seeded); dropped rows get split ``unused``. ``max_per_class`` keeps a seeded sample of
    at most that many readable images per class *before* the split (the original project's 25,000 per
    class split 80/10/10); in a ``splits`` layout it caps each split folder's classes. Images left out
    get split ``unused``.
    """
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0
            and val_fraction + test_fraction < 1.0):
        raise ValueError(f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be "
                         "in [0, 1) with a sum below 1")
    root = _check_dir(root)
    layout, folders = _detect_layout(root)
    notes: list[str] = []
    if max_per_class is not None and (isinstance(max_per_class, bool) or max_per_class < 1):
        raise ValueError(f"max_per_class must be a positive integer or None; got {max_per_class!r}")
    unused: list[tuple[str, int]] = []
    if layout == "classes":
        files, skipped, skipped_labels = _collect(root, folders)
        files, left_out = _cap_per_class(files, root, max_per_class, seed)
        unused += left_out
        frame = _split_classes(files, root, seed, val_fraction, test_fraction)
    else:
        if "train" not in folders:
            raise DataError(f"{root}: split folders {sorted(folders)} found but no train/ folder")
        per_split: dict[str, pd.DataFrame] = {}
        skipped, skipped_labels = [], {}
        for split in SPLITS:
            if split not in folders:
                continue
            classes = _class_folders(folders[split])
            files, sk, sk_lab = _collect(folders[split], classes)
            files, left_out = _cap_per_class(files, root, max_per_class, seed)
            unused += left_out
            skipped += sk
            skipped_labels.update(sk_lab)
            per_split[split] = pd.DataFrame(
                {"path": [p for p, _ in files], "label": [lab for _, lab in files], "split": split})
        if "val" not in per_split:
            if val_fraction <= 0:
                raise DataError(f"{root}: no val/ folder and val_fraction is 0: no validation split")
            train = per_split["train"]
            carved = _split_classes(list(zip(train["path"], train["label"], strict=True)),
                                    root, seed, val_fraction, 0.0)
            per_split["train"] = carved
            notes.append(f"no val/ folder: {val_fraction:.0%} of train carved out as validation "
                         f"(stratified, seed {seed})")
        if "test" not in per_split:
            notes.append("no test/ folder: no test split")
        frame = pd.concat([per_split[s] for s in SPLITS if s in per_split], ignore_index=True)
    if unused:
        notes.append(f"at most {max_per_class} images per class{' per split' if layout == 'splits' else ''}"
                     f" (seeded sample): {len(unused)} left out")
        frame = pd.concat([frame, pd.DataFrame(unused, columns=["path", "label"]).assign(split="unused")],
                          ignore_index=True)
    if balance:
        frame = _balance(frame, seed)
    frame = frame.reset_index(drop=True).astype({"label": int})
    return DataIndex(frame=frame, skipped=skipped, root=root, layout=layout, seed=seed,
                     val_fraction=val_fraction, test_fraction=test_fraction, balanced=balance,
                     notes=notes, skipped_labels=skipped_labels)


def hold_out_fold(index: DataIndex, fold: int, folds: int) -> DataIndex:
    """A copy of ``index`` whose training split leaves out fold ``fold`` (1-based) of ``folds`` seeded folds
    of its training images, stratified by class; the fold's rows get split ``unused``.

    The folds depend only on the training rows' paths and labels and ``index.seed``, so the ``folds`` runs
    ``fold = 1 .. folds`` of one split each leave out another fold and every training image is held out
    from exactly one of them: cross-fitted teachers for ``train --teacher ENSEMBLE --cross-fit``.
    """
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2; got {folds!r}")
    if isinstance(fold, bool) or not isinstance(fold, int) or not 1 <= fold <= folds:
        raise ValueError(f"fold must be an integer from 1 to {folds}; got {fold!r}")
    frame = index.frame.copy()
    left_out: list[Any] = []
    for label in (0, 1):
        idx = frame.index[(frame["split"] == "train") & (frame["label"] == label)].to_numpy()
        idx = idx[np.argsort(frame.loc[idx, "path"].to_numpy())]  # order independent of frame order
        shuffled = np.random.default_rng([index.seed, 3, label]).permutation(idx)
        left_out += shuffled[fold - 1::folds].tolist()
    if not left_out or len(left_out) == int((frame["split"] == "train").sum()):
        raise DataError(f"{index.root}: {int((frame['split'] == 'train').sum())} training images cannot be "
                        f"cut into {folds} folds leaving some to train on")
    frame.loc[left_out, "split"] = "unused"
    note = (f"fold {fold} of {folds} held out (seeded, stratified): {len(left_out)} training images "
            "left out")
    return dataclasses.replace(index, frame=frame, notes=[*index.notes, note])


def index_eval_folder(root: str | Path) -> DataIndex:
    """Index a folder for evaluation: every valid image of a ``classes`` folder becomes split ``test``;
    a ``splits`` folder contributes its test split (error if it has none)."""
    root = _check_dir(root)
    layout, folders = _detect_layout(root)
    if layout == "splits":
        if "test" not in folders:
            raise DataError(f"{root}: split folders {sorted(folders)} found but no test/ folder to "
                            "evaluate on (pass the test folder itself, or a real/ fake/ folder)")
        folders = _class_folders(folders["test"])
    files, skipped, skipped_labels = _collect(root, folders)
    frame = pd.DataFrame({"path": [p for p, _ in files], "label": [lab for _, lab in files],
                          "split": "test"}).astype({"label": int})
    return DataIndex(frame=frame, skipped=skipped, root=root, layout=layout, balanced=False,
                     val_fraction=0.0, test_fraction=1.0, skipped_labels=skipped_labels)


def class_weights(labels: Iterable[int] | np.ndarray) -> dict[int, float]:
    """sklearn-style "balanced" weights ``n / (2 * n_c)`` for labels 0/1."""
    y = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels).reshape(-1)
    y = y.astype(int)
    if y.size == 0:
        raise ValueError("class_weights: no labels")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"class_weights: labels must be 0 or 1, got {sorted(set(y.tolist()))}")
    counts = np.bincount(y, minlength=2)
    if (counts == 0).any():
        missing = CLASS_NAMES[int(np.argmin(counts))]
        raise ValueError(f"class_weights: no {missing} examples among {y.size} labels")
    return {c: float(y.size / (2 * counts[c])) for c in (0, 1)}


# -- folder helpers ---------------------------------------------------------------------------

def _check_dir(root: str | Path) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"data folder not found: {path}")
    if not path.is_dir():
        raise DataError(f"not a folder: {path}")
    return path.resolve()


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and p.name.lower() not in _IGNORED_DIRS)


def _match(path: Path, aliases: dict[str, Any], kind: str) -> dict[Any, Path]:
    """Map sub-folders of ``path`` through ``aliases`` (case-insensitive); error on unknown ones."""
    dirs = _subdirs(path)
    found: dict[Any, Path] = {}
    unknown = [d.name for d in dirs if d.name.lower() not in aliases]
    if unknown or not dirs:
        names = ", ".join(f"{d.name}/" for d in dirs) or "no sub-folders"
        raise DataError(f"{path}: unexpected folder layout (found: {names}); {_EXPECTED}"
                        if unknown else f"{path}: no {kind} folders (found: {names}); {_EXPECTED}")
    for d in dirs:
        key = aliases[d.name.lower()]
        if key in found:
            raise DataError(f"{path}: both {found[key].name}/ and {d.name}/ mean {key!r}; keep one")
        found[key] = d
    return found


def _detect_layout(root: Path) -> tuple[str, dict[Any, Path]]:
    names = {d.name.lower() for d in _subdirs(root)}
    if names & set(_SPLIT_ALIASES):
        return "splits", _match(root, _SPLIT_ALIASES, "split")
    return "classes", _class_folders(root)


def _class_folders(path: Path) -> dict[Any, Path]:
    folders = _match(path, _CLASS_LABELS, "class")
    missing = [CLASS_NAMES[lab] for lab in (0, 1) if lab not in folders]
    if missing:
        present = ", ".join(f"{p.name}/" for p in folders.values())
        raise DataError(f"{path}: only one class folder ({present}); missing {missing[0]}/ — "
                        "training and evaluation need both real/ and fake/ images")
    return folders


def _walk_files(folder: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and d.lower() not in _IGNORED_DIRS)
        out += [os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith(".")]
    return out


def _collect(root: Path, classes: dict[Any, Path]
             ) -> tuple[list[tuple[str, int]], list[tuple[str, str]], dict[str, int]]:
    """Validate every file under each class folder; return kept (path, label), skipped, labels."""
    kept: list[tuple[str, int]] = []
    skipped: list[tuple[str, str]] = []
    skipped_labels: dict[str, int] = {}
    for label in (0, 1):
        folder = classes[label]
        paths = _walk_files(folder)
        good, bad = validate_files(paths)
        skipped += bad
        skipped_labels.update({p: label for p, _ in bad})
        if not good:
            why = f" ({len(bad)} unreadable file(s) skipped)" if bad else ""
            raise DataError(f"{folder}: no usable images in the {CLASS_NAMES[label]} class "
                            f"folder{why}")
        kept += [(p, label) for p in good]
    return kept, skipped, skipped_labels


# -- file validation --------------------------------------------------------------------------

def _check_image(path: str) -> str | None:
    """``None`` when ``path`` is a readable image, else the reason it is not."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as img:
            fmt = img.format or "unknown"
            if fmt == "JPEG":  # DCT-scaled decode: still reads (and checks) every byte, 2x faster
                img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
            if fmt not in ("JPEG", "PNG"):  # decoded by Pillow in the pipeline: check that works
                _pil_to_rgb(img)
    except UnidentifiedImageError:
        return "not an image, or a format Pillow cannot read (content not recognised)"
    except Image.DecompressionBombError as exc:
        return f"too large ({exc})"
    except PermissionError:
        return "unreadable (permission denied)"
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        return f"corrupt or truncated image ({exc})"
    except Exception as exc:  # noqa: BLE001 - any other decoder failure means: unusable
        return f"unreadable image ({type(exc).__name__}: {exc})"
    return None


def validate_files(paths: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Split ``paths`` into readable images and ``(path, reason)`` for the rest (thread pool)."""
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # truncated files must be refused, not padded
    try:
        workers = min(16, 2 * (os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            reasons = list(pool.map(_check_image, paths))
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved
    good = [p for p, r in zip(paths, reasons, strict=True) if r is None]
    bad = [(p, r) for p, r in zip(paths, reasons, strict=True) if r is not None]
    return good, bad


# -- splitting and balancing ------------------------------------------------------------------

def _rel_key(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Images of one class going to (val, test); at least one each when asked for and n >= 3."""
    n_val = int(round(n * val_fraction))
    n_test = int(round(n * test_fraction))
    if n >= 3:
        n_val = max(n_val, 1 if val_fraction > 0 else 0)
        n_test = max(n_test, 1 if test_fraction > 0 else 0)
    while n_val + n_test >= n and (n_val or n_test):  # keep at least one training image
        if n_test >= n_val and n_test:
            n_test -= 1
        else:
            n_val -= 1
    return n_val, n_test


def _split_classes(files: Sequence[tuple[str, int]], root: Path, seed: int,
                   val_fraction: float, test_fraction: float) -> pd.DataFrame:
    """Seeded stratified split; order by path relative to ``root`` so it does not depend on it."""
    rows = []
    for label in (0, 1):
        paths = sorted((p for p, lab in files if lab == label), key=lambda p: _rel_key(p, root))
        order = np.random.default_rng([seed, label]).permutation(len(paths))
        n_val, n_test = _split_counts(len(paths), val_fraction, test_fraction)
        split = np.full(len(paths), "train", dtype=object)
        split[order[:n_test]] = "test"
        split[order[n_test:n_test + n_val]] = "val"
        rows += [(p, label, s) for p, s in zip(paths, split, strict=True)]
    return pd.DataFrame(rows, columns=["path", "label", "split"])


def _cap_per_class(files: Sequence[tuple[str, int]], root: Path, limit: int | None, seed: int
                   ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """``(kept, left out)``: a seeded sample of at most ``limit`` files per class (all when ``None``),
    drawn in path order relative to ``root`` so it does not depend on the listing order."""
    if limit is None:
        return list(files), []
    kept: list[tuple[str, int]] = []
    left_out: list[tuple[str, int]] = []
    for label in (0, 1):
        paths = sorted((p for p, lab in files if lab == label), key=lambda p: _rel_key(p, root))
        chosen = set(np.random.default_rng([seed, label, 3]).permutation(len(paths))[:limit].tolist())
        for i, path in enumerate(paths):
            (kept if i in chosen else left_out).append((path, label))
    return kept, left_out


def _balance(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Undersample the larger class of the train split (seeded); dropped rows -> ``unused``."""
    frame = frame.copy()
    train = frame[frame["split"] == "train"]
    counts = train["label"].value_counts()
    if len(counts) < 2 or counts.iloc[0] == counts.iloc[-1]:
        return frame
    big, n_keep = int(counts.idxmax()), int(counts.min())
    idx = train.index[train["label"] == big].to_numpy()
    idx = idx[np.argsort(frame.loc[idx, "path"].to_numpy())]  # order independent of frame order
    drop = np.random.default_rng([seed, 2]).permutation(idx)[n_keep:]
    frame.loc[drop, "split"] = "unused"
    return frame


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------

def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow image -> uint8 RGB array; 16/32-bit integer modes are scaled (>> 8) like TF."""
    if img.mode.startswith("I;16") or img.mode == "I":
        arr = np.asarray(img).astype(np.int64)
        if img.mode.startswith("I;16") or arr.max(initial=0) > 255:
            arr = arr >> 8
        arr = np.clip(arr, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=-1)
    if img.mode == "F":
        arr = np.clip(np.rint(np.asarray(img)), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=-1)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # avoids Pillow's warning; alpha is dropped below (as TF does)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _pil_decode_bytes(contents: Any) -> np.ndarray:
    import io

    if isinstance(contents, np.ndarray):  # tf.numpy_function passes a 0-d object array
        contents = contents.item()
    with Image.open(io.BytesIO(bytes(contents))) as img:
        img.load()
        return _pil_to_rgb(img)


_JPEG_MAGIC = b"\xff\xd8\xff"


def decode_tf(contents: Any) -> Any:
    """Encoded bytes (tf.string) -> uint8 ``(h, w, 3)`` with TensorFlow ops only (SavedModel-safe).

    The one TensorFlow decoder of the package (training/evaluation pipeline, :func:`load_image`, the
    export's ``predict_bytes``). JPEG is decoded with the accurate integer IDCT
    (``dct_method="INTEGER_ACCURATE"``), which gives exactly Pillow's / libjpeg's pixels; TensorFlow's
    default fast IDCT differs from them in most pixel values (by up to ~18 levels on rvf10k files).
    ``tf.io.decode_image`` has no ``dct_method``, so it only handles the other formats.
    """
    import tensorflow as tf

    def jpeg() -> Any:
        return tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE")

    def other() -> Any:
        return tf.io.decode_image(contents, channels=3, dtype=tf.uint8, expand_animations=False)

    image = tf.cond(tf.strings.substr(contents, 0, 3) == _JPEG_MAGIC, jpeg, other)
    return tf.ensure_shape(image, [None, None, 3])


def _decode_rgb(contents: Any) -> Any:
    """Encoded bytes (tf.string) -> uint8 ``(h, w, 3)`` tensor. JPEG/PNG by TF, others by Pillow."""
    import tensorflow as tf

    head = tf.strings.substr(contents, 0, 8)
    native = tf.logical_or(tf.strings.substr(head, 0, 3) == _JPEG_MAGIC,
                           head == b"\x89PNG\r\n\x1a\n")

    def by_pil() -> Any:
        return tf.numpy_function(_pil_decode_bytes, [contents], tf.uint8, stateful=False)

    image = tf.cond(native, lambda: decode_tf(contents), by_pil)
    return tf.ensure_shape(image, [None, None, 3])


def _resize_uint8(image: Any, image_size: int) -> Any:
    import tensorflow as tf

    resized = tf.image.resize(image, (image_size, image_size), method="bilinear")
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def load_image(path: str | Path, image_size: int | None = None) -> np.ndarray:
    """One file -> uint8 RGB ``(h, w, 3)`` (or ``(s, s, 3)``) with exactly the pipeline's pixels."""
    import tensorflow as tf

    path = str(path)
    if not os.path.isfile(path):
        raise DataError(f"cannot read image {path}: file not found")
    _, bad = validate_files([path])
    if bad:
        raise DataError(f"cannot read image {path}: {bad[0][1]}")
    try:
        image = _decode_rgb(tf.io.read_file(path))
        if image_size is not None:
            image = _resize_uint8(image, int(image_size))
        return image.numpy()
    except tf.errors.OpError as exc:
        raise DataError(f"cannot decode image {path}: {exc.message}") from exc


# --------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------

@dataclass
class AugmentConfig:
    """Training-time augmentation (each switchable); applied per image, output stays in 0-255."""

    flip: bool = True  # random horizontal flip (p = 0.5)
    jpeg: bool = True  # random JPEG re-compression
    blur: bool = True  # mild Gaussian blur
    jpeg_quality: tuple[int, int] = (60, 100)  # quality drawn from [lo, hi)
    jpeg_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 1.0)
    blur_prob: float = 0.3
    crop: bool = False  # random crop of most of the face, resized back to the image size
    crop_side: tuple[float, float] = (0.8, 1.0)  # the crop's side as a fraction of the image's, from [lo, hi]
    shift: float = 0.0  # random translation by up to this fraction of the side (whole pixels, reflected edge)
    subpixel: float = 0.0  # random translation by up to this many pixels, below one (bilinear, see _subpixel_shift)
    mixup: float = 0.0  # mixup's Beta(alpha, alpha) parameter; 0 = off (see mix_batch)
    erase: float = 0.0  # probability of random erasing (see _random_erase); 0 = off
    erase_area: tuple[float, float] = (0.02, 0.25)  # the erased rectangle's area as a fraction of the image's
    erase_ratio: tuple[float, float] = (0.3, 3.3)  # its aspect ratio (height / width), log-uniform

    @property
    def active(self) -> bool:
        """Whether any augmentation is switched on."""
        return bool(self.flip or (self.jpeg and self.jpeg_prob > 0)
                    or (self.blur and self.blur_prob > 0) or self.crop or self.shift > 0 or self.mixup > 0
                    or self.erase > 0 or self.subpixel > 0)


_BLUR_RADIUS = 3  # kernel 7: covers 3 sigma for sigma <= 1
_MIXUP_SEED = 7  # folded into an image's augmentation seed for its mixup weight (augment_image splits 7)
_ERASE_SEED = 11  # folded into it for random erasing, likewise
_SUBPIXEL_SEED = 13  # and for the sub-pixel shift


def _gaussian_blur(image: Any, sigma: Any) -> Any:
    """Separable Gaussian blur of a float ``(h, w, 3)`` image (reflect padding, depthwise conv)."""
    import tensorflow as tf

    x = tf.range(-_BLUR_RADIUS, _BLUR_RADIUS + 1, dtype=tf.float32)
    k = tf.exp(-0.5 * tf.square(x / sigma))
    k = k / tf.reduce_sum(k)
    kh = tf.tile(tf.reshape(k, [-1, 1, 1, 1]), [1, 1, 3, 1])
    kw = tf.tile(tf.reshape(k, [1, -1, 1, 1]), [1, 1, 3, 1])
    r = _BLUR_RADIUS
    padded = tf.pad(image[None], [[0, 0], [r, r], [r, r], [0, 0]], mode="REFLECT")
    out = tf.nn.depthwise_conv2d(padded, kh, [1, 1, 1, 1], "VALID")
    out = tf.nn.depthwise_conv2d(out, kw, [1, 1, 1, 1], "VALID")
    return out[0]


def _jpeg_recompress(image: Any, quality: Any, lo: int, hi: int) -> Any:
    """Encode a uint8 image as JPEG at ``quality`` (an int32 tensor in ``[lo, hi)``) and decode it with
    :func:`decode_tf` (accurate IDCT): the same pixels as a Pillow save + load at that quality.
    (``tf.image.adjust_jpeg_quality`` decodes with the fast IDCT.)"""
    import tensorflow as tf

    def at(q: int) -> Any:
        return lambda: decode_tf(tf.io.encode_jpeg(image, quality=q))

    return tf.switch_case(quality - lo, [at(q) for q in range(lo, hi)])


def _random_crop(x: Any, seed: Any, side: tuple[float, float]) -> Any:
    """A square window of a float ``(s, s, 3)`` image, its side a uniform fraction of ``s`` from ``side``
    at a uniform position, resized back to ``s`` x ``s`` (bilinear): a mild zoom and shift that keeps
    most of the face in view."""
    import tensorflow as tf

    lo, hi = side
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"AugmentConfig.crop_side must be (lo, hi) with 0 < lo <= hi <= 1; got {side}")
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    f = tf.random.stateless_uniform([], seeds[0], minval=lo, maxval=hi)
    y0, x0 = tf.unstack(tf.random.stateless_uniform([2], seeds[1]) * (1.0 - f))
    size = x.shape[:2]
    out = tf.image.crop_and_resize(x[None], [[y0, x0, y0 + f, x0 + f]], [0], size, method="bilinear")
    return tf.ensure_shape(out[0], x.shape)


def _random_erase(x: Any, seed: Any, config: AugmentConfig) -> Any:
    """Random erasing (Zhong et al., 2020): with probability ``config.erase`` replace a rectangle of a
    float ``(s, s, c)`` image (area a uniform fraction of the image's from ``erase_area``, aspect ratio
    log-uniform in ``erase_ratio``, clipped to the image, at a uniform position) by uniform noise in
    0-255. Nothing outside it moves or is resampled, so the face keeps its alignment and fine detail.
    Its seed is folded out of the image's own, so switching it on changes no other draw."""
    import tensorflow as tf

    p, (a_lo, a_hi), (r_lo, r_hi) = config.erase, config.erase_area, config.erase_ratio
    if not 0 <= p <= 1:
        raise ValueError(f"AugmentConfig.erase must be a probability in [0, 1]; got {p}")
    if not 0 < a_lo <= a_hi <= 1:
        raise ValueError(f"AugmentConfig.erase_area must be (lo, hi) with 0 < lo <= hi <= 1; got {config.erase_area}")
    if not 0 < r_lo <= r_hi:
        raise ValueError(f"AugmentConfig.erase_ratio must be (lo, hi) with 0 < lo <= hi; got {config.erase_ratio}")
    own = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), _ERASE_SEED)
    s = tf.random.experimental.stateless_split(own, num=5)
    h, w = x.shape[0], x.shape[1]

    def erase() -> Any:
        area = tf.random.stateless_uniform([], s[0], minval=a_lo, maxval=a_hi) * float(h * w)
        ratio = tf.exp(tf.random.stateless_uniform([], s[1], minval=math.log(r_lo), maxval=math.log(r_hi)))
        eh = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(area * ratio)), tf.int32), 1, h)
        ew = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(area / ratio)), tf.int32), 1, w)
        pos = tf.random.stateless_uniform([2], s[2])
        y0 = tf.cast(pos[0] * tf.cast(h - eh + 1, tf.float32), tf.int32)
        x0 = tf.cast(pos[1] * tf.cast(w - ew + 1, tf.float32), tf.int32)
        rows, cols = tf.range(h)[:, None, None], tf.range(w)[None, :, None]
        inside = (rows >= y0) & (rows < y0 + eh) & (cols >= x0) & (cols < x0 + ew)
        noise = tf.random.stateless_uniform(x.shape, s[4], minval=0.0, maxval=255.0)
        return tf.where(inside, noise, x)

    # as the JPEG and blur: the rectangle and its noise are drawn only for the images erased
    out = tf.cond(tf.random.stateless_uniform([], s[3]) < p, erase, lambda: x)
    return tf.ensure_shape(out, x.shape)


def shift_pixels(shift: float, size: int) -> int:
    """The largest translation, in whole pixels, that ``AugmentConfig.shift`` allows at ``size`` px."""
    if not 0 <= shift < 0.5:
        raise ValueError(f"AugmentConfig.shift must be a fraction of the side in [0, 0.5); got {shift}")
    return int(round(shift * size))


def _random_shift(image: Any, seed: Any, pixels: int) -> Any:
    """Translate a ``(s, s, c)`` image by a uniform whole number of pixels in ``[-pixels, pixels]`` along
    each axis, filling the uncovered edge by reflection: pad by ``pixels`` then take an ``s`` x ``s``
    window. No pixel is resampled, so the fine detail keeps the statistics of the unshifted image."""
    import tensorflow as tf

    p = pixels
    padded = tf.pad(image, [[p, p], [p, p], [0, 0]], mode="REFLECT")
    offset = tf.random.stateless_uniform([2], seed, minval=0, maxval=2 * p + 1, dtype=tf.int32)
    out = tf.slice(padded, tf.concat([offset, [0]], 0), tf.shape(image))
    return tf.ensure_shape(out, image.shape)


def _subpixel_shift(image: Any, seed: Any, pixels: float) -> Any:
    """Translate a uint8 ``(s, s, c)`` image by a uniform real offset in ``[-pixels, pixels]`` along each
    axis (``0 <= pixels < 1``), resampled bilinearly with reflected edges and rounded back to uint8: the
    face moves by less than one pixel, so it stays on the grid the aligned data puts it on (a whole-pixel
    ``_random_shift`` does not), while the exact pixel values vary. Its seed is folded out of the image's
    own, so switching it on changes no other draw."""
    import tensorflow as tf

    if not 0 <= pixels < 1:
        raise ValueError(f"AugmentConfig.subpixel must be a number of pixels in [0, 1); got {pixels}")
    own = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), _SUBPIXEL_SEED)
    dy, dx = tf.unstack(tf.random.stateless_uniform([2], own, minval=-pixels, maxval=pixels))
    # output (x, y) samples input (x - dx, y - dy): the content moves by (+dx, +dy)
    transform = tf.stack([1.0, 0.0, -dx, 0.0, 1.0, -dy, 0.0, 0.0])[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(image, tf.float32)[None], transforms=transform, output_shape=tf.shape(image)[:2],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")[0]
    return tf.ensure_shape(tf.cast(tf.round(tf.clip_by_value(out, 0.0, 255.0)), tf.uint8), image.shape)


def augment_image(image: Any, seed: Any, config: AugmentConfig) -> Any:
    """Augment one uint8 ``(s, s, 3)`` image with stateless ops; return float32 in 0-255.

    ``seed`` is a shape-``(2,)`` integer tensor: same seed, same result. The crop and the shifts (when on)
    come first, so the JPEG and blur act on the image at the size the model sees; random erasing (when
    on) comes last, so its noise is not re-compressed or blurred.
    """
    import tensorflow as tf

    shape = image.shape
    # the first five seeds are those of num=5 and the sixth that of num=6 (checked in the tests): adding
    # the crop and the shift changed no other draw
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=7)
    if config.crop:
        image = tf.cast(tf.round(_random_crop(tf.cast(image, tf.float32), seeds[5], config.crop_side)), tf.uint8)
    pixels = shift_pixels(config.shift, shape[0])
    if pixels:
        image = _random_shift(image, seeds[6], pixels)
    if config.subpixel:
        image = _subpixel_shift(image, seed, config.subpixel)
    if config.flip:
        image = tf.image.stateless_random_flip_left_right(image, seeds[0])
    if config.jpeg and config.jpeg_prob > 0:
        lo, hi = config.jpeg_quality
        if not 0 <= lo < hi <= 101:
            raise ValueError(f"AugmentConfig.jpeg_quality must be (lo, hi) with 0 <= lo < hi <= 101; "
                             f"got {config.jpeg_quality}")
        src = image
        quality = tf.random.stateless_uniform([], seeds[2], minval=lo, maxval=hi, dtype=tf.int32)
        image = tf.cond(
            tf.random.stateless_uniform([], seeds[1]) < config.jpeg_prob,
            lambda: _jpeg_recompress(src, quality, lo, hi),
            lambda: src,
        )
        image = tf.ensure_shape(image, shape)
    x = tf.cast(image, tf.float32)
    if config.blur and config.blur_prob > 0:
        lo_s, hi_s = config.blur_sigma
        sigma = tf.random.stateless_uniform([], seeds[4], minval=lo_s, maxval=hi_s)
        src_x = x
        x = tf.cond(tf.random.stateless_uniform([], seeds[3]) < config.blur_prob,
                    lambda: _gaussian_blur(src_x, sigma), lambda: src_x)
        x = tf.ensure_shape(tf.clip_by_value(x, 0.0, 255.0), shape)
    if config.erase > 0:
        x = _random_erase(x, seed, config)
    return x


def mixup_weight(seed: Any, alpha: float) -> Any:
    """A ``(1,)`` float32 draw from Beta(``alpha``, ``alpha``) (as the ratio of two Gamma draws), from a
    seed of its own folded out of an image's augmentation ``seed``, so switching mixup on changes no
    other draw."""
    import tensorflow as tf

    if not alpha > 0:
        raise ValueError(f"AugmentConfig.mixup must be > 0 when used (Beta's alpha); got {alpha}")
    own = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), _MIXUP_SEED)
    g = tf.random.stateless_gamma([2], own, alpha=alpha)
    return tf.reshape(g[0] / tf.maximum(g[0] + g[1], 1e-30), [1])


def mix_batch(images: Any, labels: Any, weights: Any) -> tuple[Any, Any]:
    """mixup (Zhang et al., 2018) within a batch: image ``i`` becomes ``w_i * x_i + (1 - w_i) * x_j`` with
    ``j = b - 1 - i`` (the batch is shuffled, so that is a random partner), its label the same blend of
    the two labels. BCE on a blended label equals the blend of the two images' losses."""
    import tensorflow as tf

    w = tf.reshape(weights, [-1, 1, 1, 1])
    mixed = w * images + (1.0 - w) * tf.reverse(images, [0])
    return mixed, weights * labels + (1.0 - weights) * tf.reverse(labels, [0])


# --------------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------------

def make_dataset(
    paths: Sequence[str],
    labels: Sequence[int],
    *,
    image_size: int,
    batch_size: int,
    training: bool = False,
    augment: AugmentConfig | None = None,
    seed: int | None = None,
    cache: bool | str = True,
    epoch: Any = None,
    shard: tuple[int, int] | None = None,
    replicas: int = 1,
    targets: Sequence[float] | None = None,
) -> Any:
    """tf.data pipeline yielding ``(images float32 (b, s, s, 3) in 0-255, labels float32 (b, 1))``;
    with ``targets`` (one in [0, 1] per image, e.g. ``train --teacher``'s soft targets) those take the
    labels' place in the batches.

    [``shard=(n, i)``: the first ``len // n * n`` files, every n-th from the i-th, so each of n
    workers reads and decodes only its equal share] -> read + decode + bilinear resize (parallel, order
    kept) -> uint8 -> ``cache`` (True: memory, a str: that tf.data cache file prefix, False: none; see
    :func:`resolve_cache`) -> [training: seeded shuffle (:func:`shuffle_buffer`) -> ``augment`` per
    image] -> batch (``replicas`` > 1: :func:`replica_batches`) -> [training with ``augment.mixup``:
    :func:`mix_batch`, labels then blends in [0, 1]] -> float32 -> prefetch. Val/test (``training=False``) are never shuffled or
    augmented. A file that fails to decode despite validation is dropped with a warning
    (``ignore_errors``), never crashing the epoch.

    Training order and augmentation are a function of ``(seed, epoch)`` only: ``epoch`` is a scalar
    int64 ``tf.Variable`` that each new iteration (one per Keras epoch) reads as its epoch number and
    then increments, so successive iterations are successive epochs. A training loop that sets it at
    the start of each epoch (``train.EpochSeeds``) makes epoch ``e`` identical whether the run went
    through uninterrupted or was resumed at ``e``. Default: a fresh counter from 0.
    """
    import tensorflow as tf

    paths = [str(p) for p in paths]
    labels_arr = np.asarray(labels).reshape(-1)
    if len(paths) != len(labels_arr):
        raise ValueError(f"make_dataset: {len(paths)} paths but {len(labels_arr)} labels")
    if not paths:
        raise DataError("make_dataset: no images")
    if not np.isin(labels_arr, (0, 1)).all():
        raise ValueError("make_dataset: labels must be 0 (real) or 1 (fake)")
    values = labels_arr.astype(np.float32)
    if targets is not None:
        values = np.asarray(targets, dtype=np.float32).reshape(-1)
        if values.shape != labels_arr.shape:
            raise ValueError(f"make_dataset: {len(paths)} paths but {values.size} targets")
        if not (np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()):
            raise ValueError("make_dataset: targets must lie in [0, 1]")
    if int(image_size) < _MIN_IMAGE_SIZE:
        raise ValueError(f"make_dataset: image_size must be >= {_MIN_IMAGE_SIZE}, got {image_size}")
    if int(batch_size) < 1:
        raise ValueError(f"make_dataset: batch_size must be >= 1, got {batch_size}")
    n_items = len(paths) // shard[0] if shard is not None and shard[0] > 1 else len(paths)
    sizes = replica_batch_sizes(n_items, int(batch_size), int(replicas)) if replicas > 1 else None
    size = int(image_size)
    autotune = tf.data.AUTOTUNE

    def read(path: Any, label: Any) -> tuple[Any, Any]:
        image = _resize_uint8(_decode_rgb(tf.io.read_file(path)), size)
        return image, tf.reshape(tf.cast(label, tf.float32), [1])

    ds = tf.data.Dataset.from_tensor_slices((paths, values))
    if shard is not None and shard[0] > 1:  # before decoding: a worker never decodes another's images
        n_shards, shard_index = shard
        ds = ds.take(len(paths) // n_shards * n_shards).shard(n_shards, shard_index)
    ds = ds.map(read, num_parallel_calls=autotune, deterministic=True)
    ds = ds.ignore_errors(log_warning=True)  # drop only the bad image, not its whole batch
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if training:
        counter = tf.Variable(0, dtype=tf.int64, trainable=False) if epoch is None else epoch
        base_seed = np.random.randint(2**31) if seed is None else int(seed) % 2**31
        buffer = shuffle_buffer(len(paths), size)
        cached = ds

        def one_epoch(_: Any) -> Any:
            # counter.assign_add returns the new value: this iteration's epoch is the one before it
            epoch_seed = base_seed * _EPOCH_SEED_STRIDE + counter.assign_add(1) - 1
            shuffled = cached.shuffle(buffer, seed=epoch_seed)
            if augment is None or not augment.active:
                return shuffled
            seeds = tf.data.Dataset.random(seed=epoch_seed).batch(2)
            return tf.data.Dataset.zip((shuffled, seeds))

        ds = tf.data.Dataset.from_tensors(np.int64(0)).flat_map(one_epoch)
        if augment is not None and augment.active:
            cfg = augment

            def augment_item(item: Any, s: Any) -> tuple[Any, ...]:
                x = augment_image(item[0], s, cfg)
                return (x, item[1], mixup_weight(s, cfg.mixup)) if cfg.mixup > 0 else (x, item[1])

            ds = ds.map(augment_item, num_parallel_calls=autotune, deterministic=True)
    ds = ds.batch(int(batch_size)) if sizes is None else replica_batches(ds, sizes)
    if training and augment is not None and augment.mixup > 0:  # after batching: partners share a batch
        ds = ds.map(mix_batch, num_parallel_calls=autotune, deterministic=True)  # float32 already
    else:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=autotune)
    ds = ds.ignore_errors(log_warning=True)  # last safety net
    return ds.prefetch(autotune)


def replica_batch_sizes(n_items: int, batch_size: int, replicas: int) -> list[int]:
    """Batch sizes for ``n_items`` read by one pipeline that feeds ``replicas`` replicas in turn, at
    most ``batch_size + 1`` each: a multiple of ``replicas`` batches, none empty, sizes within one of
    each other (``[4, 4, 1]`` for 9 items, batch 4, one replica; ``[3, 3, 3, 3]`` for 12 items, batch 4,
    two replicas; ``[5, 4]`` for 9). Plain ``batch`` would leave a replica an empty last batch, and TensorFlow's oneDNN
    convolution returns a wrong shape for an empty batch (seen on AVX-512 CPUs), which fails the step.
    A final round of fewer than ``replicas`` items is merged into the one before it."""
    if replicas < 1 or batch_size < 1:
        raise ValueError(f"replica_batch_sizes: batch_size and replicas must be >= 1, got {batch_size}, "
                         f"{replicas}")
    if n_items < replicas:
        raise DataError(f"{n_items} image(s) for {replicas} replicas: every replica needs at least one "
                        f"(use fewer replicas or more images)")
    if replicas == 1:
        full, rest = divmod(n_items, batch_size)
        return [batch_size] * full + ([rest] if rest else [])
    per_round = replicas * batch_size
    rounds = -(-n_items // per_round) if n_items % per_round >= replicas else max(1, n_items // per_round)
    count = rounds * replicas
    small, extra = divmod(n_items, count)
    return [small + 1] * extra + [small] * (count - extra)


def replica_batches(ds: Any, sizes: Sequence[int]) -> Any:
    """``ds`` (unbatched, in order) cut into consecutive batches of ``sizes`` (:func:`replica_batch_sizes`),
    in one pass (a training epoch is iterated once). Sizes take two values at most, the larger first."""
    import tensorflow as tf

    large, small = int(sizes[0]), int(sizes[-1])
    n_large = sum(1 for s in sizes if s == large) if large != small else len(sizes)
    boundary = n_large * large  # items before the first small batch

    def key(position: Any, _: Any) -> Any:
        return tf.where(position < boundary, position // large, n_large + (position - boundary) // small)

    return ds.enumerate().group_by_window(
        key_func=key, reduce_func=lambda _, window: window.map(lambda p, item: item).batch(large),
        window_size_func=lambda k: tf.where(k < n_large, tf.constant(large, tf.int64),
                                            tf.constant(small, tf.int64)))


def dataset_for(
    index: DataIndex,
    split: str,
    *,
    image_size: int,
    batch_size: int,
    training: bool = False,
    augment: AugmentConfig | None = None,
    seed: int | None = None,
    cache: bool | str = True,
    epoch: Any = None,
    shard: tuple[int, int] | None = None,
    replicas: int = 1,
    targets: Sequence[float] | None = None,
) -> Any:
    """:func:`make_dataset` over one split of ``index`` (``seed`` defaults to the index's seed;
    ``targets`` in the split's row order)."""
    rows = index.rows(split)
    if rows.empty:
        have = ", ".join(index.counts()) or "none"
        raise DataError(f"{index.root}: the {split!r} split is empty (splits with images: {have})")
    return make_dataset(
        rows["path"].tolist(), rows["label"].tolist(), image_size=image_size,
        batch_size=batch_size, training=training, augment=augment,
        seed=index.seed if seed is None else seed, cache=cache, epoch=epoch,
        shard=shard, replicas=replicas, targets=targets,
    )


def keras_folder_dataset(
    root: str | Path, *, image_size: int, batch_size: int, shuffle: bool = False,
    seed: int | None = None,
) -> Any:
    """Thin path: ``keras.utils.image_dataset_from_directory`` on a clean ``real/ fake/`` folder.

    Same batch contract (float32 0-255, float32 ``(b, 1)`` labels, real = 0), class folders matched
    case-insensitively; no validation, splitting or balancing (use :func:`index_folder` for those).
    Keras decodes JPEG with TensorFlow's fast IDCT, so its pixels differ slightly from
    :func:`make_dataset`'s (accurate IDCT, see :func:`decode_tf`): train and evaluate with the latter.
    """
    import keras

    root = _check_dir(root)
    classes = _class_folders(root)
    return keras.utils.image_dataset_from_directory(
        root, labels="inferred", label_mode="binary",
        class_names=[classes[0].name, classes[1].name], color_mode="rgb",
        batch_size=batch_size, image_size=(image_size, image_size), shuffle=shuffle, seed=seed,
        interpolation="bilinear", verbose=False,
    )


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Batches per epoch for ``n_images`` (last partial batch included)."""
    return math.ceil(n_images / batch_size)


def shuffle_buffer(n_images: int, image_size: int) -> int:
    """Training shuffle buffer: every image up to 20,000, and at most 512 MiB of decoded images.

    The same in every cache mode (so they give the same batches); the byte cap keeps the buffer from
    outgrowing the cache budget on large 224 px datasets (3,566 images there).
    """
    return max(1, min(int(n_images), 20_000, _SHUFFLE_BYTES // cache_bytes(1, image_size)))


_SHUFFLE_BYTES = 512 * 1024 ** 2
_GIB = 1024 ** 3


def cache_bytes(n_images: int, image_size: int) -> int:
    """Size of the decoded uint8 ``(s, s, 3)`` images of a split, i.e. of its in-memory cache."""
    return int(n_images) * int(image_size) ** 2 * 3


def default_cache_budget() -> int:
    """Half of the memory available now: the other half is left to the model, TF and the OS."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume 8 GiB available
        available = 8 * _GIB
    return int(available // 2)


def resolve_cache(mode: str, n_bytes: int, budget: int, cache_dir: str | Path, name: str
                  ) -> bool | str:
    """The ``cache`` argument of :func:`make_dataset` for ``mode`` (one of :data:`CACHE_MODES`).

    ``memory`` -> True, ``none`` -> False, ``disk`` -> the file prefix ``cache_dir/name`` (tf.data
    writes ``name.index`` and ``name.data-*`` there after the first full pass); ``auto`` -> memory when
    ``n_bytes`` (see :func:`cache_bytes`) fits ``budget`` bytes, else disk.
    """
    if mode not in CACHE_MODES:
        raise ValueError(f"cache mode must be one of {CACHE_MODES}, got {mode!r}")
    if mode == "memory" or (mode == "auto" and n_bytes <= budget):
        return True
    if mode == "none":
        return False
    prefix = Path(cache_dir) / name
    prefix.parent.mkdir(parents=True, exist_ok=True)
    if not Path(f"{prefix}.index").is_file():  # not a finished cache: drop what a killed run left
        remove_cache(prefix)
    return str(prefix)


def cache_name(paths: Sequence[str], image_size: int, shard: tuple[int, int] | None = None,
               targets: Sequence[float] | None = None) -> str:
    """A disk-cache file name unique to the files, their order, the size, the shard and the soft
    ``targets`` it stores in the labels' place, if any (so a kept cache is reused only by a pipeline
    that would write the same one)."""
    import hashlib

    h = hashlib.sha1("\n".join(map(str, paths)).encode())
    if targets is not None:
        h.update(np.asarray(targets, dtype=np.float32).tobytes())
    digest = h.hexdigest()[:12]
    part = f"-w{shard[1]}of{shard[0]}" if shard and shard[0] > 1 else ""
    return f"cache-{image_size}px-{len(paths)}-{digest}{part}"


def remove_cache(prefix: str | Path) -> None:
    """Delete the files of the tf.data file cache ``prefix`` (data, index and lock files)."""
    prefix = Path(prefix)
    if prefix.parent.is_dir():
        for pattern in (f"{prefix.name}.*", f"{prefix.name}_*"):  # .index, .data-*, _0.lockfile
            for f in prefix.parent.glob(pattern):
                f.unlink()


class CachePlan:
    """Where a run caches each split's decoded images, within one memory budget for all of them.

    ``mode`` is one of :data:`CACHE_MODES`; ``budget_gb=None`` means :func:`default_cache_budget`.
    Disk caches go to ``cache_dir``; :meth:`clean` removes them at the end of the run.
    """

    def __init__(self, mode: str, budget_gb: float | None, cache_dir: str | Path) -> None:
        self.mode = mode
        self.budget = default_cache_budget() if budget_gb is None else int(budget_gb * _GIB)
        self.cache_dir = Path(cache_dir)
        self.disk: list[str] = []

    def choose(self, split: str, paths: Sequence[str], image_size: int,
               shard: tuple[int, int] | None = None, log: Any = print,
               targets: Sequence[float] | None = None) -> bool | str:
        """The ``cache`` argument for one split (of one worker's shard; ``targets``: the soft targets
        the cache stores with the images); memory use is booked."""
        shards = shard[0] if shard else 1
        n_bytes = cache_bytes(len(paths) // shards, image_size)
        choice = resolve_cache(self.mode, n_bytes, self.budget, self.cache_dir,
                               cache_name(paths, image_size, shard, targets))
        if choice is True:
            self.budget -= n_bytes
        elif choice:
            self.disk.append(str(choice))
        where = "memory" if choice is True else "none" if choice is False else f"disk {choice}"
        log(f"cache {split}: {where} ({n_bytes / _GIB:.2f} GiB decoded, --cache {self.mode}, "
            f"{max(self.budget, 0) / _GIB:.2f} GiB of memory budget left)")
        return choice

    def clean(self, keep: bool = False, log: Any = print) -> None:
        """Remove the disk caches (unless ``keep``)."""
        for prefix in self.disk:
            if keep:
                log(f"disk cache kept: {prefix}*")
            else:
                remove_cache(prefix)
        if not keep and self.cache_dir.is_dir() and not any(self.cache_dir.iterdir()):
            self.cache_dir.rmdir()
