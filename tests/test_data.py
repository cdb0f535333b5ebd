"""Tests of tfdeepfake.data (indexing, validation, splits, pipelines) and tfdeepfake.demo."""

from __future__ import annotations

import dataclasses
import io
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tfdeepfake import CLASS_NAMES, data, demo
from tfdeepfake.data import AugmentConfig, DataError

SIZE = 32


def _labels_by_folder(index: data.DataIndex) -> dict[str, set[int]]:
    """Class folder name (as on disk) -> labels given to its files."""
    out: dict[str, set[int]] = {}
    for path, label in zip(index.frame["path"], index.frame["label"], strict=True):
        out.setdefault(Path(path).parent.name, set()).add(int(label))
    return out


def _epoch(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


# -- layouts and labels ---------------------------------------------------------------------------

def test_label_polarity_case_insensitive(tiny_dataset):
    assert CLASS_NAMES == ("real", "fake")
    root = tiny_dataset(5, class_names=("Real", "FAKE"))
    index = data.index_folder(root)
    assert index.layout == "classes"
    assert _labels_by_folder(index) == {"Real": {0}, "FAKE": {1}}
    assert all(Path(p).is_absolute() for p in index.frame["path"])
    assert set(index.frame.columns) >= {"path", "label", "split"}


def test_wrong_folder_names_error(tmp_path, tiny_dataset):
    root = tiny_dataset(3, class_names=("cats", "dogs"))
    with pytest.raises(ValueError, match=r"cats/.*dogs/.*expected.*real/ and fake/"):
        data.index_folder(root)
    mixed = tiny_dataset(3)
    (mixed / "train").mkdir()  # a split folder beside class folders
    with pytest.raises(DataError, match=r"fake/.*real/"):
        data.index_folder(mixed)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "a.png")
    with pytest.raises(DataError, match="no sub-folders"):
        data.index_folder(flat)


def test_split_sizes_80_10_10_and_fractions(tiny_dataset):
    root = tiny_dataset(20)
    index = data.index_folder(root, seed=3)
    assert index.counts() == {"train": {"real": 16, "fake": 16}, "val": {"real": 2, "fake": 2},
                              "test": {"real": 2, "fake": 2}}
    other = data.index_folder(root, val_fraction=0.25, test_fraction=0.0)
    assert other.counts() == {"train": {"real": 15, "fake": 15}, "val": {"real": 5, "fake": 5}}
    with pytest.raises(ValueError, match="fraction"):
        data.index_folder(root, val_fraction=0.6, test_fraction=0.5)


def test_split_is_seeded_and_location_independent(tiny_dataset, tmp_path):
    root = tiny_dataset(20)
    a = data.index_folder(root, seed=7)
    b = data.index_folder(root, seed=7)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    c = data.index_folder(root, seed=8)
    assert not a.frame["split"].equals(c.frame["split"])
    moved = shutil.copytree(root, tmp_path / "elsewhere" / "copy")
    d = data.index_folder(moved, seed=7)
    rel = [Path(p).relative_to(root).as_posix() for p in a.frame["path"]]
    rel_d = [Path(p).relative_to(moved).as_posix() for p in d.frame["path"]]
    assert rel == rel_d and a.frame["split"].tolist() == d.frame["split"].tolist()


def test_splits_layout_kaggle_names(tiny_dataset):
    root = tiny_dataset({"Train": 6, "Validation": 3, "Test": 2}, layout="splits",
                        splits=("Train", "Validation", "Test"), class_names=("Real", "Fake"))
    index = data.index_folder(root)
    assert index.layout == "splits"
    assert index.counts() == {"train": {"real": 6, "fake": 6}, "val": {"real": 3, "fake": 3},
                              "test": {"real": 2, "fake": 2}}
    for split, folder in (("train", "Train"), ("val", "Validation"), ("test", "Test")):
        rows = index.rows(split)
        assert all(Path(p).relative_to(root).parts[0] == folder for p in rows["path"])
        assert all((Path(p).parent.name == "Fake") == bool(lab)
                   for p, lab in zip(rows["path"], rows["label"], strict=True))


def test_splits_layout_train_only_carves_val(tiny_dataset):
    root = tiny_dataset(10, layout="splits", splits=("train",))
    index = data.index_folder(root, val_fraction=0.2, seed=1)
    assert index.counts() == {"train": {"real": 8, "fake": 8}, "val": {"real": 2, "fake": 2}}
    notes = " ".join(index.notes)
    assert "no val/ folder" in notes and "no test/ folder" in notes
    assert "no test/ folder" in index.summary()
    root2 = tiny_dataset(4, layout="splits", splits=("val", "test"))
    with pytest.raises(DataError, match="no train/ folder"):
        data.index_folder(root2)


def test_nested_subfolders_count(tiny_dataset):
    root = tiny_dataset(3)
    from conftest import write_tiny_images

    write_tiny_images(root / "fake" / "gen_a" / "deeper", 2, fake=True, prefix="nested")
    index = data.index_folder(root, balance=False)
    assert sum(index.frame["label"] == 1) == 5
    assert sum(index.frame["path"].str.contains("deeper")) == 2


# -- balancing and class weights ------------------------------------------------------------------

def test_balanced_train_split(tiny_dataset):
    root = tiny_dataset(12, n_fake=30)
    index = data.index_folder(root, seed=5)
    c = index.counts()
    assert c["train"]["real"] == c["train"]["fake"] == 10
    assert c["val"] == {"real": 1, "fake": 3} and c["test"] == {"real": 1, "fake": 3}
    assert c["unused"] == {"real": 0, "fake": 14}
    again = data.index_folder(root, seed=5)
    pd.testing.assert_frame_equal(index.frame, again.frame)
    other = data.index_folder(root, seed=6)
    assert set(index.rows("unused")["path"]) != set(other.rows("unused")["path"])
    full = data.index_folder(root, seed=5, balance=False)
    assert full.counts()["train"] == {"real": 10, "fake": 24} and "unused" not in full.counts()
    # balancing only re-labels training rows: val/test identical with and without it
    for split in ("val", "test"):
        assert index.rows(split)["path"].tolist() == full.rows(split)["path"].tolist()


def test_class_weights():
    w = data.class_weights([0] * 10 + [1] * 30)
    assert w == pytest.approx({0: 2.0, 1: 40 / 60})
    assert data.class_weights(np.array([0, 1, 1, 0])) == {0: 1.0, 1: 1.0}
    with pytest.raises(ValueError, match="no fake"):
        data.class_weights([0, 0])
    with pytest.raises(ValueError):
        data.class_weights([0, 2])


# -- bad and unusual files ------------------------------------------------------------------------

def _rgb(h: int = 20, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_unusual(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Write unusual-but-valid images (name -> expected RGB) and bad files (name -> reason word)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    base = _rgb()
    good: dict[str, np.ndarray] = {}
    Image.fromarray(base).convert("L").save(folder / "gray.png")
    good["gray.png"] = np.asarray(Image.fromarray(base).convert("L").convert("RGB"))
    alpha = np.random.default_rng(1).integers(0, 256, base.shape[:2], dtype=np.uint8)
    Image.fromarray(np.dstack([base, alpha])).save(folder / "rgba.png")
    good["rgba.png"] = base
    pal = Image.fromarray(base).convert("P")
    pal.save(folder / "palette.png")
    good["palette.png"] = np.asarray(pal.convert("RGB"))
    Image.fromarray(base).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    good["cmyk.jpg"] = np.asarray(Image.open(folder / "cmyk.jpg").convert("RGB"))
    deep = base.astype(np.uint16) * 257 + np.random.default_rng(2).integers(0, 256, base.shape,
                                                                             dtype=np.uint16)
    cv2.imwrite(str(folder / "rgb16.png"), deep[..., ::-1])
    assert Image.open(folder / "rgb16.png").mode == "RGB"  # Pillow reads 16-bit RGB as 8-bit
    good["rgb16.png"] = np.asarray(Image.open(folder / "rgb16.png").convert("RGB"))
    assert np.array_equal(good["rgb16.png"], (deep >> 8).astype(np.uint8))
    cv2.imwrite(str(folder / "gray16.png"), deep[..., 0])
    # Pillow's convert("RGB") clips 16-bit grayscale instead of scaling it: expect the top 8 bits.
    good["gray16.png"] = np.repeat((deep[..., :1] >> 8).astype(np.uint8), 3, axis=-1)
    Image.fromarray(base).convert("P").save(folder / "anim.gif")
    good["anim.gif"] = np.asarray(Image.open(folder / "anim.gif").convert("RGB"))
    Image.fromarray(base).convert("P").save(folder / "palette.bmp")  # TF alone decodes this wrong
    good["palette.bmp"] = np.asarray(Image.open(folder / "palette.bmp").convert("RGB"))
    Image.fromarray(base).save(folder / "lossless.webp", lossless=True)
    good["lossless.webp"] = base
    Image.fromarray(base).save(folder / "image.tiff")
    good["image.tiff"] = base
    Image.fromarray(base).save(folder / "png_named.jpg", format="PNG")  # content, not extension
    good["png_named.jpg"] = base

    bad = {"zero.jpg": "empty", "text.jpg": "not an image", "notes.txt": "not an image",
           "random.png": "not an image", "truncated.jpg": "truncated"}
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a picture\n")
    (folder / "notes.txt").write_text("notes about the data\n")
    (folder / "random.png").write_bytes(np.random.default_rng(3).bytes(500))
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64, seed=4)).save(buf, "JPEG", quality=90)
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return good, bad


def test_bad_and_unusual_files(tiny_dataset):
    root = tiny_dataset(4, fmt="mixed")
    good, bad = _write_unusual(root / "fake" / "odd")
    (root / "real" / ".DS_Store").write_bytes(b"\0\0junk")  # hidden files are ignored silently
    index = data.index_folder(root, balance=False, val_fraction=0.0, test_fraction=0.0)

    skipped = {Path(p).name: r for p, r in index.skipped}
    assert set(skipped) == set(bad)
    for name, word in bad.items():
        assert word in skipped[name], (name, skipped[name])
    kept = {Path(p).name: p for p in index.frame["path"] if "/odd/" in p}
    assert set(kept) == set(good)
    for name, expected in good.items():
        got = data.load_image(kept[name])
        assert got.dtype == np.uint8 and got.shape == expected.shape, name
        diff = np.abs(got.astype(int) - expected.astype(int))
        if name.endswith(".jpg") and name != "png_named.jpg":  # JPEG decoders differ slightly
            assert diff.mean() < 2.0 and diff.max() <= 12, (name, diff.mean(), diff.max())
        else:
            assert diff.max() == 0, (name, diff.max())
    for name in bad:
        with pytest.raises(DataError, match=re.escape(name)):
            data.load_image(root / "fake" / "odd" / name)

    # A full training epoch yields exactly the valid images, and val-style order matches load_image.
    n_valid = len(index.frame)
    assert n_valid == 8 + len(good)
    ds = data.dataset_for(index, "train", image_size=SIZE, batch_size=5, training=True,
                          augment=AugmentConfig(), seed=0)
    x, y = _epoch(ds)
    assert x.shape == (n_valid, SIZE, SIZE, 3) and x.dtype == np.float32
    assert y.shape == (n_valid, 1) and y.dtype == np.float32 and y.sum() == 4 + len(good)
    assert x.min() >= 0 and x.max() <= 255
    rows = index.rows("train")
    x2, y2 = _epoch(data.make_dataset(rows["path"], rows["label"], image_size=SIZE, batch_size=5))
    expected = np.stack([data.load_image(p, SIZE) for p in rows["path"]]).astype(np.float32)
    np.testing.assert_array_equal(x2, expected)
    np.testing.assert_array_equal(y2[:, 0], rows["label"].to_numpy(np.float32))


def test_runtime_decode_failure_is_dropped_not_fatal(tiny_dataset):
    root = tiny_dataset(3)
    paths = sorted(str(p) for p in (root / "real").iterdir())
    broken = root / "real" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")  # bypasses validation on purpose
    x, _ = _epoch(data.make_dataset([*paths, str(broken)], [0] * 4, image_size=SIZE,
                                    batch_size=2))
    assert len(x) == 3


def test_missing_empty_and_single_class_errors(tmp_path, tiny_dataset):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match=re.escape(str(missing))):
        data.index_folder(missing)
    root = tiny_dataset(3)
    for f in (root / "fake").iterdir():
        f.unlink()
    (root / "fake" / "zero.png").write_bytes(b"")
    with pytest.raises(DataError, match=re.escape(str(root / "fake")) + r".*no usable images"):
        data.index_folder(root)
    single = tiny_dataset(3)
    shutil.rmtree(single / "fake")
    with pytest.raises(DataError, match=re.escape(str(single)) + r".*missing fake/"):
        data.index_folder(single)
    with pytest.raises(DataError, match=re.escape(str(single))):
        data.index_eval_folder(single)


def test_manifest_and_summary(tiny_dataset, tmp_path):
    root = tiny_dataset(10, n_fake=12)
    (root / "real" / "empty.jpg").write_bytes(b"")
    index = data.index_folder(root, seed=2)
    out = index.write_manifest(tmp_path / "run")  # a folder -> run/split.csv
    assert out == tmp_path / "run" / "split.csv"
    m = pd.read_csv(out, keep_default_na=False)
    assert list(m.columns) == ["path", "label", "split", "reason"]
    assert len(m) == 10 + 12 + 1
    row = m[m["split"] == "skipped"].iloc[0]
    assert row["path"].endswith("empty.jpg") and row["label"] == 0 and "empty" in row["reason"]
    kept = m[m["split"] != "skipped"]
    assert (kept["reason"] == "").all()
    assert sorted(kept["path"]) == sorted(index.frame["path"])
    counts = kept.groupby(["split", "label"]).size()
    for split, c in index.counts().items():
        assert counts.get((split, 0), 0) == c["real"] and counts.get((split, 1), 0) == c["fake"]
    assert index.write_manifest(tmp_path / "x.csv") == tmp_path / "x.csv"
    text = index.summary()
    assert "empty.jpg" in text and "empty file" in text and "train" in text and "unused" in text


def test_index_eval_folder(tiny_dataset):
    root = tiny_dataset(4, class_names=("REAL", "Fake"))
    ev = data.index_eval_folder(root)
    assert ev.counts() == {"test": {"real": 4, "fake": 4}}
    splits = tiny_dataset({"train": 3, "test": 2}, layout="splits", splits=("train", "test"))
    ev2 = data.index_eval_folder(splits)
    assert ev2.counts() == {"test": {"real": 2, "fake": 2}}
    assert all("/test/" in p for p in ev2.frame["path"])
    no_test = tiny_dataset(3, layout="splits", splits=("train", "val"))
    with pytest.raises(DataError, match="no test/ folder"):
        data.index_eval_folder(no_test)
    ds = data.dataset_for(ev, "test", image_size=SIZE, batch_size=3)
    with pytest.raises(DataError, match="'val' split is empty"):
        data.dataset_for(ev, "val", image_size=SIZE, batch_size=3)
    assert sum(len(y) for _, y in ds) == 8


# -- pipeline and augmentation --------------------------------------------------------------------

def test_augmentation_train_only(tiny_dataset):
    root = tiny_dataset(6)
    index = data.index_folder(root, balance=False, val_fraction=0.34, test_fraction=0.0)
    rows = index.rows("train")
    clean = {p: data.load_image(p, SIZE).astype(np.float32) for p in rows["path"]}
    clean_set = list(clean.values())
    jpeg_only = AugmentConfig(flip=False, blur=False, jpeg_prob=1.0)
    x, _ = _epoch(data.dataset_for(index, "train", image_size=SIZE, batch_size=4, training=True,
                                   augment=jpeg_only, seed=1))
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 255
    assert not any(np.array_equal(a, c) for a in x for c in clean_set)  # every image changed
    # ...but only mildly (same content)
    assert min(np.abs(x[0] - c).mean() for c in clean_set) < 12
    # sigma >= 0.5: at the default range's low end (0.1) the kernel is the identity to float precision
    blur_only = AugmentConfig(flip=False, jpeg=False, blur_prob=1.0, blur_sigma=(0.5, 1.0))
    xb, _ = _epoch(data.dataset_for(index, "train", image_size=SIZE, batch_size=4, training=True,
                                    augment=blur_only, seed=1))
    assert not any(np.array_equal(a, c) for a in xb for c in clean_set)
    for a in xb:  # each blurred image is smoother than its (nearest) clean original
        c = min(clean_set, key=lambda c: np.abs(a - c).mean())
        assert np.abs(np.diff(a, axis=1)).mean() < np.abs(np.diff(c, axis=1)).mean()
    # No augmentation: the training images are exactly the clean ones (shuffled).
    xn, _ = _epoch(data.dataset_for(index, "train", image_size=SIZE, batch_size=4, training=True,
                                    augment=None, seed=1))
    assert sorted(a.tobytes() for a in xn) == sorted(c.tobytes() for c in clean_set)
    # Val / test are never augmented, even when an augmentation config is passed.
    val_rows = index.rows("val")
    xv, _ = _epoch(data.dataset_for(index, "val", image_size=SIZE, batch_size=4, training=False,
                                    augment=AugmentConfig(jpeg_prob=1.0, blur_prob=1.0)))
    np.testing.assert_array_equal(
        xv, np.stack([data.load_image(p, SIZE) for p in val_rows["path"]]).astype(np.float32))


def test_training_pipeline_deterministic_and_reshuffled(tiny_dataset):
    root = tiny_dataset(8)
    index = data.index_folder(root, balance=False, val_fraction=0.0, test_fraction=0.0)

    def make():
        return data.dataset_for(index, "train", image_size=SIZE, batch_size=4, training=True,
                                augment=AugmentConfig(), seed=11)

    ds1 = make()
    e1, y1 = _epoch(ds1)
    e2, _ = _epoch(ds1)
    f1, z1 = _epoch(make())
    np.testing.assert_array_equal(e1, f1)
    np.testing.assert_array_equal(y1, z1)
    assert not np.array_equal(e1, e2)  # a new order / new augmentation each epoch


def test_make_dataset_argument_errors():
    with pytest.raises(ValueError, match="labels"):
        data.make_dataset(["a", "b"], [0], image_size=SIZE, batch_size=2)
    with pytest.raises(ValueError, match="image_size"):
        data.make_dataset(["a"], [0], image_size=2, batch_size=2)
    with pytest.raises(DataError, match="not found"):
        data.load_image("/definitely/not/here.png")


def test_keras_thin_path(tiny_dataset):
    root = tiny_dataset(3, class_names=("Real", "Fake"))
    ds = data.keras_folder_dataset(root, image_size=SIZE, batch_size=6)
    x, y = _epoch(ds)
    assert x.shape == (6, SIZE, SIZE, 3) and x.dtype == np.float32 and y.shape == (6, 1)
    assert y[:, 0].tolist() == [0, 0, 0, 1, 1, 1]


# -- demo dataset ---------------------------------------------------------------------------------

def test_demo_dataset_created_reused_and_not_trivial(tmp_path):
    root = demo.demo_dataset(tmp_path / "demo", n_per_class=60, image_size=32, seed=1)
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [
        "README.txt", "fake", "real"]
    assert "SYNTHETIC" in (root / "README.txt").read_text()
    first = root / "real" / "real_0000.png"
    mtime = first.stat().st_mtime_ns
    assert demo.demo_dataset(tmp_path / "demo", n_per_class=60, image_size=32, seed=1) == root
    assert first.stat().st_mtime_ns == mtime  # reused, not rewritten
    index = data.index_folder(root)
    assert index.layout == "classes" and not index.skipped
    assert sum(c["real"] + c["fake"] for c in index.counts().values()) == 120
    # other parameters in the same folder -> regenerated; a foreign folder is never overwritten
    demo.demo_dataset(tmp_path / "demo", n_per_class=10, image_size=32, seed=1)
    assert len(list((root / "fake").glob("*.png"))) == 10
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="not a tfdeepfake demo dataset"):
        demo.demo_dataset(foreign)

    real = np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / "demo" / "real").iterdir())])
    fake = np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / "demo" / "fake").iterdir())])
    assert real.shape == fake.shape == (10, 32, 32, 3)


def _best_threshold_accuracy(a: np.ndarray, b: np.ndarray) -> float:
    v = np.concatenate([a, b])
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    return max(max(((v > t) == y).mean(), ((v <= t) == y).mean()) for t in np.unique(v))


def test_demo_not_separable_by_brightness_but_learnable():
    real, fake = demo.generate_images(n_per_class=200, image_size=32, seed=3)
    r, f = real.astype(float).mean(-1), fake.astype(float).mean(-1)
    # two global features: mean brightness and contrast -> neither alone nor together separates
    feats = [np.stack([x.mean((1, 2)), x.std((1, 2))], 1) for x in (r, f)]
    for k in range(2):
        assert _best_threshold_accuracy(feats[0][:, k], feats[1][:, k]) < 0.65
    both = np.concatenate(feats)
    z = (both - both.mean(0)) / both.std(0)
    y = np.r_[np.zeros(200), np.ones(200)]
    centroids = np.stack([z[y == 0].mean(0), z[y == 1].mean(0)])
    pred = np.argmin(((z[:, None] - centroids[None]) ** 2).sum(-1), 1)
    assert (pred == y).mean() < 0.65
    lo, hi = max(feats[0][:, 0].min(), feats[1][:, 0].min()), min(feats[0][:, 0].max(),
                                                                   feats[1][:, 0].max())
    assert hi - lo > 80  # brightness ranges overlap almost fully
    # ...while the upsampling artefact is there to learn: the checkerboard phase difference
    cb = [np.abs(x[:, 1::2, 1::2].mean((1, 2)) - x[:, ::2, ::2].mean((1, 2))) for x in (r, f)]
    assert _best_threshold_accuracy(cb[0], cb[1]) > 0.9


# -- the real shared data -------------------------------------------------------------------------

def test_shared_rvf10k_train(shared_data):
    started = time.perf_counter()
    index = data.index_folder(shared_data / "rvf10k" / "train")
    seconds = time.perf_counter() - started
    assert not index.skipped
    total = {"real": 0, "fake": 0}
    for c in index.counts().values():
        total["real"] += c["real"]
        total["fake"] += c["fake"]
    assert total == {"real": 1500, "fake": 1500}
    assert index.counts()["train"] == {"real": 1200, "fake": 1200}
    assert seconds < 20, f"indexing 3000 files took {seconds:.1f} s"
    ds = data.dataset_for(index, "train", image_size=128, batch_size=32, training=True,
                          augment=AugmentConfig(), seed=0, cache=False)
    started = time.perf_counter()
    for i, (x, y) in enumerate(ds.take(5)):  # noqa: B007
        assert x.shape == (32, 128, 128, 3) and x.dtype.name == "float32"
        assert y.shape == (32, 1)
        assert 0 <= float(x.numpy().min()) and float(x.numpy().max()) <= 255
    assert i == 4 and time.perf_counter() - started < 30


# -- accurate JPEG decoding (#11) -----------------------------------------------------------------

def _pillow_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _assert_decodes_like_pillow(paths: list[Path]) -> int:
    """Pipeline pixels (``load_image``, ``decode_tf``) equal Pillow's; returns how many files TF's
    default fast IDCT decodes differently (so a test knows it would have caught the old decoder)."""
    import tensorflow as tf

    fast_differs = 0
    for path in paths:
        expected = _pillow_rgb(path)
        np.testing.assert_array_equal(data.load_image(path), expected, err_msg=str(path))
        contents = tf.io.read_file(str(path))
        np.testing.assert_array_equal(data.decode_tf(contents).numpy(), expected, err_msg=str(path))
        fast = tf.io.decode_image(contents, channels=3, expand_animations=False).numpy()
        fast_differs += int(not np.array_equal(fast, expected))
    return fast_differs


def test_jpeg_decoded_like_pillow_on_written_file(tmp_path):
    rng = np.random.default_rng(0)
    textured = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)  # fine detail: the IDCTs disagree
    paths = []
    for name, kwargs in (("q90-420.jpg", {"quality": 90}),
                         ("q75-444.jpg", {"quality": 75, "subsampling": 0}),
                         ("progressive.jpg", {"quality": 85, "progressive": True})):
        Image.fromarray(textured).save(tmp_path / name, format="JPEG", **kwargs)
        paths.append(tmp_path / name)
    Image.fromarray(textured[..., 0]).save(tmp_path / "gray.jpg", format="JPEG", quality=80)
    paths.append(tmp_path / "gray.jpg")
    assert _assert_decodes_like_pillow(paths) >= 3


def test_jpeg_decoded_like_pillow_on_rvf10k(shared_data):
    folder = shared_data / "rvf10k" / "test"
    paths = sorted((folder / "real").glob("*.jpg"))[:5] + sorted((folder / "fake").glob("*.jpg"))[:5]
    if len(paths) < 10:
        pytest.skip(f"fewer than 5 JPEG files per class in {folder}")
    assert _assert_decodes_like_pillow(paths) >= 5  # the fast IDCT differs on most rvf10k files
    batch, _ = _epoch(data.make_dataset([str(p) for p in paths[:2]], [0, 1], image_size=SIZE,
                                        batch_size=2, cache=False))
    for got, path in zip(batch, paths[:2], strict=True):  # the pipeline resizes Pillow's pixels
        np.testing.assert_array_equal(got, data.load_image(path, SIZE), err_msg=str(path))


def test_jpeg_augmentation_matches_pillow_recompression():
    import tensorflow as tf

    rng = np.random.default_rng(4)
    image = np.asarray(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
                       .resize((SIZE, SIZE), Image.BILINEAR))

    def pillow(quality: int) -> np.ndarray:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=quality)
        return _pillow_rgb(buf)

    seed = tf.constant([3, 4], tf.int64)
    for q in (60, 95):  # one quality: exactly Pillow's save + load (accurate IDCT)
        config = AugmentConfig(flip=False, blur=False, jpeg_prob=1.0, jpeg_quality=(q, q + 1))
        out = data.augment_image(tf.constant(image), seed, config).numpy()
        np.testing.assert_array_equal(out, pillow(q).astype(np.float32))
    assert not np.array_equal(tf.image.adjust_jpeg_quality(image, 95).numpy(), pillow(95))  # fast IDCT
    out = data.augment_image(tf.constant(image), seed, AugmentConfig(flip=False, blur=False, jpeg_prob=1.0))
    assert any(np.array_equal(out, pillow(q)) for q in range(60, 100))  # the default range [60, 100)
    with pytest.raises(ValueError, match="jpeg_quality"):
        data.augment_image(tf.constant(image), seed, AugmentConfig(jpeg_prob=1.0, jpeg_quality=(90, 90)))


def test_max_per_class_samples_before_the_split(tiny_dataset):
    root = tiny_dataset(12)
    capped = data.index_folder(root, max_per_class=5, seed=4)
    used = capped.frame[capped.frame["split"] != "unused"]
    assert used.groupby("label").size().tolist() == [5, 5]
    assert (capped.frame["split"] == "unused").sum() == 14
    assert set(used["split"]) == {"train", "val", "test"}  # the 80/10/10 split runs on the sample
    again = data.index_folder(root, max_per_class=5, seed=4)
    assert sorted(used["path"]) == sorted(again.frame.loc[again.frame["split"] != "unused", "path"])
    other = data.index_folder(root, max_per_class=5, seed=5)
    assert sorted(used["path"]) != sorted(other.frame.loc[other.frame["split"] != "unused", "path"])
    assert any("at most 5 images per class" in note for note in capped.notes)
    assert (data.index_folder(root, max_per_class=100).frame["split"] != "unused").sum() == 24
    split_root = tiny_dataset(6, layout="splits")
    per_split = data.index_folder(split_root, max_per_class=4).frame
    kept = per_split[per_split["split"] != "unused"]
    assert kept.groupby(["split", "label"]).size().tolist() == [4] * 6  # each split's classes capped
    with pytest.raises(ValueError, match="max_per_class"):
        data.index_folder(root, max_per_class=0)


def test_hold_out_fold_partitions_the_training_split_and_keeps_the_rest(tiny_dataset):
    index = data.index_folder(tiny_dataset(15), val_fraction=0.2, test_fraction=0.2, seed=4)
    train = set(index.rows("train")["path"])
    left_out = []
    for k in (1, 2, 3):
        part = data.hold_out_fold(index, k, 3)
        for split in ("val", "test"):  # only the training split changes
            assert part.rows(split)["path"].tolist() == index.rows(split)["path"].tolist()
        kept = set(part.rows("train")["path"])
        assert kept < train and set(part.rows("unused")["path"]) == train - kept
        assert part.rows("train").groupby("label").size().tolist() == [6, 6]  # stratified: 9 per class
        assert f"fold {k} of 3" in part.notes[-1]
        left_out.append(train - kept)
    assert set().union(*left_out) == train and sum(map(len, left_out)) == len(train)  # each image once
    assert set(data.hold_out_fold(index, 2, 3).rows("train")["path"]) == train - left_out[1]  # seeded
    shuffled = dataclasses.replace(index, frame=index.frame.sample(frac=1, random_state=0))
    assert set(data.hold_out_fold(shuffled, 2, 3).rows("train")["path"]) == train - left_out[1]  # by path
    other = data.hold_out_fold(data.index_folder(index.root, val_fraction=0.2, test_fraction=0.2, seed=4), 2, 3)
    assert set(other.rows("train")["path"]) == train - left_out[1]
    for fold, folds in ((0, 3), (4, 3), (1, 1), (True, 2)):
        with pytest.raises(ValueError, match="fold"):
            data.hold_out_fold(index, fold, folds)


def test_random_crop_zooms_into_a_window_and_leaves_other_draws_alone():
    import tensorflow as tf

    n = 64
    ramp = np.broadcast_to(np.linspace(0, 252, n, dtype=np.float32)[None, :, None], (n, n, 3))
    image = np.stack([ramp[..., 0], ramp[..., 0].T, np.full((n, n), 100, np.float32)], -1).round()
    image = tf.constant(image.astype(np.uint8))  # red rises along x, green along y, blue flat
    seed = tf.constant([3, 4], tf.int64)
    only_crop = {"flip": False, "jpeg": False, "blur": False, "crop": True}
    for side in (0.5, 0.8):
        out = data.augment_image(image, seed, AugmentConfig(**only_crop, crop_side=(side, side))).numpy()
        assert out.shape == (n, n, 3)
        for channel, axis in ((0, 1), (1, 0)):  # a window of `side` of the ramp, stretched to the full size
            profile = out[..., channel].mean(axis=1 - axis)
            assert np.ptp(profile) == pytest.approx(252 * side, abs=3), (side, channel)
            assert np.all(np.diff(profile) >= 0)
        np.testing.assert_allclose(out[..., 2], 100, atol=0.5)
    same = AugmentConfig(**only_crop)
    np.testing.assert_array_equal(data.augment_image(image, seed, same), data.augment_image(image, seed, same))
    full = data.augment_image(image, seed, AugmentConfig(**only_crop, crop_side=(1.0, 1.0))).numpy()
    np.testing.assert_array_equal(full, image.numpy().astype(np.float32))  # the whole image: unchanged
    with pytest.raises(ValueError, match="crop_side"):
        data.augment_image(image, seed, AugmentConfig(**only_crop, crop_side=(0.9, 0.8)))
    # Switching the crop on changes no other draw: flip + JPEG + blur seeds are those without it.
    a = tf.random.experimental.stateless_split(seed, num=5).numpy()
    b = tf.random.experimental.stateless_split(seed, num=6).numpy()
    np.testing.assert_array_equal(a, b[:5])


def test_random_shift_moves_whole_pixels_and_leaves_other_draws_alone():
    import tensorflow as tf

    n = 32
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (n, n, 3), dtype=np.uint8)
    only_shift = {"flip": False, "jpeg": False, "blur": False, "shift": 0.125}  # up to 4 px
    cfg = AugmentConfig(**only_shift)
    assert cfg.active and data.shift_pixels(0.125, n) == 4
    moves = set()
    for k in range(40):
        out = data.augment_image(tf.constant(image), tf.constant([k, 9], tf.int64), cfg).numpy()
        assert out.shape == (n, n, 3)
        # the output is the reflect-padded image at some offset: every pixel an input pixel, none resampled
        padded = np.pad(image, ((4, 4), (4, 4), (0, 0)), mode="reflect").astype(np.float32)
        found = [(dy, dx) for dy in range(9) for dx in range(9)
                 if np.array_equal(padded[dy:dy + n, dx:dx + n], out)]
        assert len(found) == 1, k
        moves.add(found[0])
    for axis in (0, 1):  # both directions, up to the full 4 px, and not only the extremes
        offsets = {m[axis] for m in moves}
        assert {0, 8} <= offsets and len(offsets) >= 7, (axis, offsets)
    seed = tf.constant([3, 4], tf.int64)
    np.testing.assert_array_equal(data.augment_image(tf.constant(image), seed, cfg),
                                  data.augment_image(tf.constant(image), seed, cfg))
    off = data.augment_image(tf.constant(image), seed, AugmentConfig(**{**only_shift, "shift": 0.0}))
    np.testing.assert_array_equal(off.numpy(), image.astype(np.float32))
    for bad in (-0.1, 0.5):
        with pytest.raises(ValueError, match="shift"):
            data.augment_image(tf.constant(image), seed, AugmentConfig(**{**only_shift, "shift": bad}))
    # Switching the shift on changes no other draw: the crop, flip, JPEG and blur seeds are those without it.
    a = tf.random.experimental.stateless_split(seed, num=6).numpy()
    b = tf.random.experimental.stateless_split(seed, num=7).numpy()
    np.testing.assert_array_equal(a, b[:6])


def test_subpixel_shift_moves_a_ramp_by_less_than_a_pixel_and_leaves_other_draws_alone():
    import tensorflow as tf

    n = 24
    # a ramp along x (8 levels per pixel) and along y (7 per pixel): a bilinear shift by (dy, dx) moves
    # every interior value by exactly -8 dx and -7 dy, up to the rounding to uint8 (1/8 and 1/7 px)
    yy, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    ramp = np.stack([40 + 8 * xx, 40 + 7 * yy, 40 + 4 * xx + 4 * yy], -1).astype(np.uint8)
    only = {"flip": False, "jpeg": False, "blur": False, "subpixel": 0.5}
    cfg = AugmentConfig(**only)
    assert cfg.active
    moves = []
    for k in range(30):
        out = data.augment_image(tf.constant(ramp), tf.constant([k, 5], tf.int64), cfg).numpy()
        assert out.shape == (n, n, 3) and out.dtype == np.float32
        inner = (out - ramp.astype(np.float32))[2:-2, 2:-2]
        dx, dy = -inner[..., 0].mean() / 8, -inner[..., 1].mean() / 7
        assert abs(dx) <= 0.5 + 0.08 and abs(dy) <= 0.5 + 0.08, (k, dx, dy)
        # one translation for the whole image: the same offset everywhere inside, up to rounding
        assert np.abs(inner[..., 0] + 8 * dx).max() <= 1.0 and np.abs(inner[..., 1] + 7 * dy).max() <= 1.0
        own = tf.random.experimental.stateless_fold_in(tf.constant([k, 5], tf.int64), data._SUBPIXEL_SEED)
        drawn = tf.random.stateless_uniform([2], own, minval=-0.5, maxval=0.5).numpy()
        np.testing.assert_allclose((dy, dx), drawn, atol=0.08)  # the content moves by the draw, down/right
        moves.append((dy, dx))
    moves = np.array(moves)
    assert (moves.min(0) < -0.25).all() and (moves.max(0) > 0.25).all()  # both ways on both axes
    seed = tf.constant([3, 4], tf.int64)
    np.testing.assert_array_equal(data.augment_image(tf.constant(ramp), seed, cfg),
                                  data.augment_image(tf.constant(ramp), seed, cfg))
    off = data.augment_image(tf.constant(ramp), seed, AugmentConfig(**{**only, "subpixel": 0.0}))
    np.testing.assert_array_equal(off.numpy(), ramp.astype(np.float32))
    with pytest.raises(ValueError, match="subpixel"):
        data.augment_image(tf.constant(ramp), seed, AugmentConfig(**{**only, "subpixel": 1.0}))
    # switching it on changes no other draw: with flip, JPEG and blur on, the result is those of the
    # same seed applied to the shifted image
    photo = tf.constant(np.random.default_rng(1).integers(0, 256, (n, n, 3), dtype=np.uint8))
    shifted = data._subpixel_shift(photo, seed, 0.5)
    both = data.augment_image(photo, seed, AugmentConfig(subpixel=0.5)).numpy()
    np.testing.assert_array_equal(both, data.augment_image(shifted, seed, AugmentConfig()).numpy())


def test_replica_batches_leave_no_replica_an_empty_batch(tiny_dataset):
    # the sizes: every item once, a whole number of rounds, no empty batch, at most one over the batch
    for n in range(2, 60):
        for batch in (1, 2, 4, 16):
            for replicas in (2, 3, 4):
                if n < replicas:
                    continue
                sizes = data.replica_batch_sizes(n, batch, replicas)
                assert sum(sizes) == n and len(sizes) % replicas == 0, (n, batch, replicas, sizes)
                assert min(sizes) >= 1 and max(sizes) <= batch + 1 and max(sizes) - min(sizes) <= 1
    assert data.replica_batch_sizes(12, 4, 2) == [3, 3, 3, 3]  # plain batch: 4, 4, 4 (one empty)
    assert data.replica_batch_sizes(9, 4, 1) == [4, 4, 1]
    with pytest.raises(data.DataError, match="1 image"):
        data.replica_batch_sizes(1, 4, 2)
    # the pipeline: a training epoch (iterated once, shuffled) cut that way still holds every image once
    root = tiny_dataset(5)
    index = data.index_folder(root, val_fraction=0, test_fraction=0)
    rows = index.rows("train")
    ds = data.make_dataset(rows["path"], rows["label"], image_size=SIZE, batch_size=4, training=True,
                           seed=0, replicas=3)
    batches = [(x.numpy(), y.numpy()) for x, y in ds]
    assert [len(y) for _, y in batches] == data.replica_batch_sizes(len(rows), 4, 3)
    x = np.concatenate([b[0] for b in batches])
    expected = np.stack([data.load_image(p, SIZE) for p in rows["path"]]).astype(np.float32)
    assert sorted(map(bytes, x)) == sorted(map(bytes, expected))  # a permutation of the images


def test_mixup_blends_each_batch_with_its_reverse_and_keeps_every_other_draw(tiny_dataset):
    import tensorflow as tf

    root = tiny_dataset(6)
    index = data.index_folder(root, val_fraction=0, test_fraction=0)
    rows = index.rows("train")
    flip_only = {"jpeg": False, "blur": False}  # the flip is drawn per image, from the same seeds either way

    def batches(**augment: float) -> list[tuple[np.ndarray, np.ndarray]]:
        ds = data.make_dataset(rows["path"], rows["label"], image_size=SIZE, batch_size=5, training=True,
                               seed=3, augment=AugmentConfig(**flip_only, **augment))
        return [(x.numpy(), y.numpy()) for x, y in ds]

    plain, mixed = batches(), batches(mixup=0.4)
    assert [len(y) for _, y in plain] == [len(y) for _, y in mixed]
    weights = []
    for (x, y), (xm, ym) in zip(plain, mixed, strict=True):
        assert ((ym >= 0) & (ym <= 1)).all() and set(np.unique(y)) <= {0.0, 1.0}
        # the weight of each blend, from the labels where the partner's class differs, else from the pixels
        xr, yr = x[::-1], y[::-1]
        for i in range(len(y)):
            if y[i, 0] != yr[i, 0]:
                w = (ym[i, 0] - yr[i, 0]) / (y[i, 0] - yr[i, 0])
            else:
                assert ym[i, 0] == y[i, 0]
                d = (x[i] - xr[i]).ravel()
                w = 1.0 if not d.any() else float(d @ (xm[i] - xr[i]).ravel() / (d @ d))
            np.testing.assert_allclose(xm[i], w * x[i] + (1 - w) * xr[i], atol=1e-3)
            weights.append(w)
    weights = np.array(weights)
    assert ((weights >= 0) & (weights <= 1)).all()
    # Beta(0.4, 0.4) is U-shaped: blends near either end and some in between, not one fixed weight
    assert (weights < 0.2).any() and (weights > 0.8).any() and len(np.unique(weights.round(3))) > 5
    assert batches(mixup=0.4)[0][0].tobytes() == mixed[0][0].tobytes()  # seeded: the same epoch again
    seed = tf.constant([5, 6], tf.int64)
    a, b = data.mixup_weight(seed, 0.4).numpy(), data.mixup_weight(seed, 0.4).numpy()
    assert a.shape == (1,) and a == b
    with pytest.raises(ValueError, match="mixup"):
        data.mixup_weight(seed, 0.0)
    # validation / test pipelines are never blended
    ds = data.make_dataset(rows["path"], rows["label"], image_size=SIZE, batch_size=5,
                           augment=AugmentConfig(mixup=0.4))
    assert set(np.concatenate([y.numpy() for _, y in ds]).ravel()) <= {0.0, 1.0}


def test_random_erase_replaces_one_rectangle_by_noise_and_leaves_other_draws_alone():
    import tensorflow as tf

    n = 32
    image = np.full((n, n, 3), 77, np.uint8)
    only_erase = {"flip": False, "jpeg": False, "blur": False, "erase": 1.0}
    cfg = AugmentConfig(**only_erase)
    assert cfg.active and not AugmentConfig(flip=False, jpeg=False, blur=False).active
    sizes, corners = [], set()
    for k in range(40):
        out = data.augment_image(tf.constant(image), tf.constant([k, 5], tf.int64), cfg).numpy()
        changed = np.any(out != 77, axis=-1)
        ys, xs = np.nonzero(changed)
        # exactly one axis-aligned rectangle changed (a noise pixel equal to 77 in all channels is
        # practically impossible), its area within 2-25 % of the image (rounding of its sides aside)
        box = changed[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        assert box.all(), k
        area = box.size / (n * n)
        assert 0.01 <= area <= 0.30, (k, area)
        sizes.append(box.shape)
        corners.add((ys.min(), xs.min()))
        assert out.min() >= 0 and out.max() <= 255
        assert out[changed].std() > 30  # noise, not a constant fill
    assert len(set(sizes)) > 10 and len(corners) > 10  # sizes and places vary
    # probability 0: unchanged; same seed: same output; probability 0.5: some images untouched
    seed = tf.constant([3, 4], tf.int64)
    off = data.augment_image(tf.constant(image), seed, AugmentConfig(**{**only_erase, "erase": 0.0}))
    np.testing.assert_array_equal(off.numpy(), image.astype(np.float32))
    np.testing.assert_array_equal(data.augment_image(tf.constant(image), seed, cfg),
                                  data.augment_image(tf.constant(image), seed, cfg))
    half = AugmentConfig(**{**only_erase, "erase": 0.5})
    touched = [bool(np.any(data.augment_image(tf.constant(image), tf.constant([k, 1], tf.int64), half)
                           .numpy() != 77)) for k in range(40)]
    assert 8 <= sum(touched) <= 32
    # switching it on changes no other draw: with the flip, JPEG and blur on, the pixels outside the
    # erased rectangle are those of the same seed without erasing
    rng = np.random.default_rng(1)
    photo = tf.constant(rng.integers(0, 256, (n, n, 3), dtype=np.uint8))
    base = data.augment_image(photo, seed, AugmentConfig()).numpy()
    erased = data.augment_image(photo, seed, AugmentConfig(erase=1.0)).numpy()
    differ = np.any(base != erased, axis=-1)
    assert 0 < differ.mean() <= 0.30
    for bad in ({"erase": 1.5}, {"erase_area": (0.3, 0.2)}, {"erase_ratio": (0.0, 1.0)}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            data.augment_image(photo, seed, AugmentConfig(**{**only_erase, **bad}))
