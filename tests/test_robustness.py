"""Perturbations do what they say; the sweep returns one row per (perturbation, level) and plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfdeepfake import robustness as rb


def _photo(size: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth image with some fine texture (so JPEG and blur have something to remove)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([120 + 80 * np.sin(6 * xx), 100 + 90 * yy, 140 - 60 * xx * yy], -1)
    return np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype(np.uint8)


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


def _high_freq_energy(img: np.ndarray) -> float:
    g = img.astype(float).mean(-1)
    return float((np.diff(g, axis=0) ** 2).mean() + (np.diff(g, axis=1) ** 2).mean())


def test_neutral_levels_are_the_identity():
    img = _photo()
    assert np.array_equal(rb.gaussian_blur(img, 0), img)
    assert np.array_equal(rb.downscale(img, 1.0), img)
    assert np.array_equal(rb.shift(img, 0), img)
    assert _mad(rb.jpeg(img, 100), img) < 1.5
    for kind in rb.PERTURBATIONS:
        out = rb.perturb(img, kind, rb.DEFAULT_LEVELS[kind][-1])
        assert out.shape == img.shape and out.dtype == np.uint8


def test_jpeg_lower_quality_changes_pixels_more():
    img = _photo()
    errors = [_mad(rb.jpeg(img, q), img) for q in (100, 90, 70, 50, 30)]
    assert errors == sorted(errors) and errors[-1] > 3 * errors[0]


def test_blur_and_downscale_remove_high_frequencies():
    img = _photo()
    blur = [_high_freq_energy(rb.gaussian_blur(img, s)) for s in (0, 0.5, 1, 2, 3)]
    assert blur == sorted(blur, reverse=True) and blur[-1] < 0.1 * blur[0]
    down = [_high_freq_energy(rb.downscale(img, f)) for f in (1, 0.75, 0.5, 0.25)]
    assert down == sorted(down, reverse=True) and down[-1] < 0.2 * down[0]


def test_shift_moves_the_content_and_reflects_the_edge():
    img = _photo()
    out = rb.shift(img, 4)
    assert np.array_equal(out[4:, 4:], img[:-4, :-4])  # content moved 4 px right and down, unchanged
    assert np.array_equal(out[:4, 4:], img[4:0:-1, :-4])  # the uncovered top rows mirror the image's
    assert np.array_equal(out[4:, :4], img[:-4, 4:0:-1])
    assert not np.array_equal(rb.shift(img, 1), img)
    # past the side the reflection repeats, so any level is defined on any image size: a shift by
    # one whole mirror period (2 * (side - 1)) gives the image back; half a period flips it
    tiny = img[:10, :10]
    assert np.array_equal(rb.shift(tiny, 18), tiny)
    assert np.array_equal(rb.shift(tiny, 9), tiny[::-1, ::-1])


def test_bad_arguments():
    img = _photo()
    for call in (lambda: rb.jpeg(img, 0), lambda: rb.gaussian_blur(img, -1),
                 lambda: rb.downscale(img, 0), lambda: rb.downscale(img, 1.5),
                 lambda: rb.shift(img, -1), lambda: rb.shift(img, float("nan")),
                 lambda: rb.perturb(img, "noise", 1), lambda: rb.jpeg(img.astype(float), 90)):
        with pytest.raises(ValueError):
            call()


def test_sweep_rows_plot_and_table(tiny_dataset, tmp_path):
    import keras

    from tfdeepfake.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model("alexnet", 32)
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    data = tiny_dataset(5, size=40)
    levels = {"jpeg": (100, 30), "blur": (0.0, 2.0), "downscale": (1.0, 0.5)}
    frame = rb.robustness_sweep(run, data, levels=levels, max_images=8, batch_size=4)
    assert list(frame[["perturbation", "level"]].itertuples(index=False, name=None)) == [
        ("jpeg", 100.0), ("jpeg", 30.0), ("blur", 0.0), ("blur", 2.0), ("downscale", 1.0), ("downscale", 0.5)]
    assert set(frame["model"]) == {"run"} and (frame["n_images"] == 8).all()
    assert frame["accuracy"].between(0, 1).all() and frame["roc_auc"].between(0, 1).all()
    identity = frame[frame["level"].isin([0.0, 1.0]) & (frame["perturbation"] != "jpeg")]
    assert identity["roc_auc"].nunique() == 1  # blur 0 and downscale 1 score the same clean images

    default = rb.robustness_sweep(model, data, max_images=4, batch_size=4)
    assert len(default) == sum(len(v) for v in rb.DEFAULT_LEVELS.values())
    both = pd.concat([frame.assign(model="a"), frame.assign(model="b")])
    png = rb.plot_robustness(both, tmp_path / "robustness.png", title="tiny")
    assert png.stat().st_size > 1000
    table = rb.markdown_table(both, "roc_auc")
    assert table.count("\n") == 4 and "| a |" in table and "jpeg 30" in table


def test_clean_level_over_a_whole_folder_matches_evaluate(tiny_dataset, tmp_path):
    """The sweep scores like evaluate: on every image of a folder its clean level gives evaluate's
    accuracy at 0.5 and AUC (a sample's clean column may differ from the test table only by the draw)."""
    import keras

    from tfdeepfake.evaluate import evaluate
    from tfdeepfake.models import build_model

    keras.utils.set_random_seed(3)
    run = tmp_path / "run"
    run.mkdir()
    build_model("alexnet", 32).save(run / "model.keras")
    data = tiny_dataset(6, size=40, seed=4)  # stored at 40 px: both paths resize to 32
    clean = rb.robustness_sweep(run, data, levels={"blur": (0.0,)}, batch_size=5).iloc[0]
    result = evaluate(run, data, batch_size=4)
    assert clean["n_images"] == result["n_images"] == 12
    assert clean["accuracy"] == pytest.approx(result["accuracy"])
    assert clean["roc_auc"] == pytest.approx(result["roc_auc"], abs=1e-6)


def test_command_line_sweeps_each_model_and_writes_csv_and_plot(tiny_dataset, tmp_path, capsys):
    import keras

    from tfdeepfake.models import build_model

    keras.utils.set_random_seed(1)
    runs = []
    for name in ("a", "b"):
        run = tmp_path / name
        run.mkdir()
        build_model("alexnet", 32).save(run / "model.keras")
        runs.append(str(run))
    data = tiny_dataset(4, size=40)
    out = tmp_path / "out"
    assert rb.main([*runs, "--data", str(data), "--levels", "shift=0,2", "blur=0,1", "--out", str(out)]) == 0
    frame = pd.read_csv(out / "robustness.csv")
    assert list(frame[["model", "perturbation", "level"]].itertuples(index=False, name=None)) == [
        (m, k, lv) for m in ("a", "b") for k, lv in (("shift", 0.0), ("shift", 2.0), ("blur", 0.0), ("blur", 1.0))]
    assert (frame["n_images"] == 8).all() and (out / "robustness.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "| a |" in printed and "shift 2" in printed and "8 images" in printed
    for bad in (["--levels", "noise=1"], ["--levels", "shift="], ["--levels", "shift=a"]):
        with pytest.raises(SystemExit) as exc:
            rb.main([*runs, "--data", str(data), *bad])
        assert exc.value.code == 2 and "--levels" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        rb.main([str(tmp_path / "missing"), "--data", str(data)])
    assert exc.value.code == 2 and "missing" in capsys.readouterr().err
