"""Grad-CAM on CNNs, the ViT and ensembles; overlays."""

from __future__ import annotations

from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from tfdeepfake.ensemble import build_ensemble
from tfdeepfake.explain import (
    gradcam,
    heatmaps,
    is_ensemble,
    main,
    overlay,
    panel,
    save_png,
    target_layer,
)
from tfdeepfake.media import read_image
from tfdeepfake.models import build_model


@pytest.fixture(scope="module")
def images(shared_data: Path) -> list[np.ndarray]:
    """Two different real images of different sizes (256 px and 300 px)."""
    return [read_image(sorted((shared_data / "rvf10k" / "test" / "fake").glob("*.jpg"))[0]),
            read_image(sorted((shared_data / "hardfake" / "real").glob("*.jpg"))[0])]


def check_heatmap(heat: np.ndarray, image: np.ndarray) -> None:
    assert heat.shape == image.shape[:2] and heat.dtype == np.float32
    assert 0.0 <= heat.min() and heat.max() <= 1.0


def informative(model: keras.Model, image: np.ndarray) -> np.ndarray:
    """The evidence map (for "fake" or for "real") that is not empty.

    With random weights either map may legitimately be all zero (Grad-CAM keeps the positive part
    only), but the "fake" map is relu(S) and the "real" map relu(-S) of the same S: one of them
    must vary unless S is constant.
    """
    maps = [gradcam(model, image, target=t) for t in ("fake", "real")]
    for heat in maps:
        check_heatmap(heat, image)
    best = max(maps, key=np.std)
    assert best.std() > 1e-3, "heatmap is constant"
    return best


@pytest.mark.parametrize(("name", "size"), [("alexnet", 64), ("vgg13", 64), ("vit", 32)])
def test_gradcam_has_the_input_size_and_depends_on_the_input(
        images: list[np.ndarray], name: str, size: int) -> None:
    keras.utils.set_random_seed(3)
    model = build_model(name, size, l2=0.0, dropout=0.0)
    layer, tokens = target_layer(model)
    assert tokens == (name == "vit")
    assert layer.name == ("encoder12_ln1" if name == "vit" else "features")
    maps = [informative(model, image) for image in images]
    a, b = (cv2.resize(m, (64, 64)) for m in maps)
    assert np.abs(a - b).mean() > 1e-3, "two different inputs gave the same heatmap"
    assert not np.allclose(gradcam(model, images[0], target="real"),
                           gradcam(model, images[0], target="fake"))


def test_gradcam_gives_one_heatmap_per_ensemble_member(images: list[np.ndarray]) -> None:
    keras.utils.set_random_seed(4)
    a = build_model("alexnet", 64, l2=0.0, dropout=0.0)
    v = build_model("vit", 32, l2=0.0, dropout=0.0)
    ensemble = build_ensemble([v, a])
    assert is_ensemble(ensemble) and not is_ensemble(a)
    maps = gradcam(ensemble, images[1], target="fake")
    assert isinstance(maps, dict) and list(maps) == ["vit", "alexnet"]  # fusion order
    for heat in maps.values():
        check_heatmap(heat, images[1])
    np.testing.assert_allclose(maps["alexnet"], gradcam(a, images[1], target="fake"), atol=1e-5)
    np.testing.assert_allclose(maps["vit"], gradcam(v, images[1], target="fake"), atol=1e-5)
    informative(v, images[1])
    assert list(heatmaps(a, images[1])) == ["alexnet"]


def test_overlay_and_panel(images: list[np.ndarray], tmp_path: Path) -> None:
    image = images[0]
    heat = np.zeros(image.shape[:2], np.float32)
    heat[50:100, 60:120] = 1.0
    out = overlay(image, heat)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out[75, 90].astype(int) - image[75, 90]).sum() > 30  # hot: coloured
    assert np.abs(out[200, 200].astype(int) - image[200, 200]).sum() < 0.2 * 3 * 255
    assert overlay(image, heat[::2, ::2]).shape == image.shape  # heatmap resized to the image
    pic = panel(image, {"a": heat, "b": heat}, tile_height=100)
    assert pic.dtype == np.uint8 and pic.shape[0] == 126 and pic.shape[1] == 3 * 100 + 2 * 4
    assert save_png(tmp_path / "x" / "p.png", pic).is_file()
    with pytest.raises(ValueError):
        gradcam(build_model("alexnet", 64), image, target="nonsense")
    with pytest.raises(ValueError):
        overlay(image[..., 0], heat)


def test_explain_cli_writes_a_figure_with_one_row_per_image(
        shared_data: Path, tmp_path: Path) -> None:
    keras.utils.set_random_seed(5)
    build_model("alexnet", 64, l2=0.0, dropout=0.0).save(tmp_path / "m.keras")
    paths = [sorted((shared_data / "rvf10k" / "test" / c).glob("*.jpg"))[0] for c in ("fake", "real")]
    out = tmp_path / "fig.png"
    assert main([str(tmp_path / "m.keras"), *map(str, paths), "--out", str(out),
                 "--tile-height", "100"]) == 0
    figure = read_image(out)
    assert figure.shape == (2 * 126 + 4, 2 * 100 + 4, 3)
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "missing.keras"), str(paths[0]), "--out", str(out)])
    assert exc.value.code == 2
