"""Input representations and test-time flip averaging inside the models (#11): each layer computes
what it claims on a known image, every family accepts the extra channels, and models round-trip
through ``.keras`` (safe mode) and the exported SavedModel with the same outputs."""

from __future__ import annotations

import io

import keras
import numpy as np
import pytest
from PIL import Image
from test_models import SIZES  # each family's smallest test size, kept in one place

from tfdeepfake.models import (
    MODEL_NAMES,
    REPRESENTATIONS,
    HaarSubbands,
    HaarWavelet,
    HighPassResidual,
    build_model,
    has_tta_flip,
    model_representation,
)
from tfdeepfake.models.representations import input_channels, representation_layer


def _np(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def _raw(batch: int = 2, height: int = 37, width: int = 45, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, height, width, 3)).astype("uint8")


# ------------------------------------------------------------------------------- the layers themselves
def test_highpass_is_the_laplacian_zero_on_a_ramp_inside():
    rows, cols = np.mgrid[0:9, 0:11].astype("float32")
    ramp = np.stack([2 * rows + 3 * cols, -rows + 0.5 * cols + 7, cols - 4 * rows], -1)[None]
    out = _np(HighPassResidual(gain=3.0)(ramp))
    assert out.shape == (1, 9, 11, 6)
    np.testing.assert_array_equal(out[..., :3], ramp)  # RGB passes through
    np.testing.assert_allclose(out[0, 1:-1, 1:-1, 3:], 0.0, atol=1e-5)  # second derivative of a plane
    assert np.abs(out[0, 0, 1:-1, 3]).max() > 1.0  # reflected border: a kink, not zero

    impulse = np.zeros((1, 7, 7, 3), "float32")
    impulse[0, 3, 3, 1] = 1.0
    lap = _np(HighPassResidual(gain=2.0)(impulse))[0, ..., 4]  # the residual of channel G
    expected = np.zeros((7, 7), "float32")
    expected[3, 3] = -4.0 * 2.0
    expected[[2, 4, 3, 3], [3, 3, 2, 4]] = 2.0
    np.testing.assert_allclose(lap, expected, atol=1e-6)
    np.testing.assert_allclose(_np(HighPassResidual(gain=2.0)(impulse))[0, ..., [3, 5]], 0.0)


def test_haar_of_a_constant_image_and_of_a_known_block():
    const = np.full((1, 8, 6, 3), 5.0, "float32")
    out = _np(HaarWavelet(gain=3.0)(const))
    assert out.shape == (1, 8, 6, 15)
    np.testing.assert_allclose(out[..., :3], 5.0)
    np.testing.assert_allclose(out[..., 3:6], 10.0)  # LL = 2 x value (orthonormal Haar)
    np.testing.assert_allclose(out[..., 6:], 0.0, atol=1e-6)  # no detail

    block = np.array([[1.0, 2.0], [4.0, 8.0]], "float32")  # a b / c d
    tiled = np.tile(block, (3, 4))[None, ..., None].repeat(3, -1) * np.array([1, 2, 3], "float32")
    gain = 3.0
    out = _np(HaarWavelet(gain=gain)(tiled))
    a, b, c, d = 1.0, 2.0, 4.0, 8.0
    bands = {"LL": (a + b + c + d) / 2, "LH": gain * (a + b - c - d) / 2,
             "HL": gain * (a - b + c - d) / 2, "HH": gain * (a - b - c + d) / 2}
    for i, value in enumerate(bands.values()):
        for ch, scale in enumerate((1, 2, 3)):  # channel order: band-major, RGB within
            np.testing.assert_allclose(out[0, ..., 3 + 3 * i + ch], value * scale, rtol=1e-6)

    ramp = np.arange(5 * 7, dtype="float32").reshape(1, 5, 7, 1)  # odd sides: edge-padded
    out = _np(HaarWavelet(gain=1.0)(ramp))
    assert out.shape == (1, 5, 7, 5)
    ll = out[0, ..., 1]
    assert ll[0, 0] == ll[1, 1] == pytest.approx((0 + 1 + 7 + 8) / 2)  # nearest upsampling
    assert ll[4, 6] == pytest.approx(2 * 34)  # corner block: the last pixel repeated 4 times


def test_haar_subbands_are_the_wavelet_bands_at_half_side_and_lose_nothing():
    image = np.random.default_rng(1).normal(size=(2, 10, 14, 3)).astype("float32")
    gain = 3.0
    half = _np(HaarSubbands(gain=gain)(image))
    assert half.shape == (2, 5, 7, 12)  # no RGB copy: 4 bands x 3 channels, half the side
    stacked = _np(HaarWavelet(gain=gain)(image))  # the same bands, nearest-upsampled, after RGB
    np.testing.assert_allclose(half, stacked[:, 0::2, 0::2, 3:], rtol=1e-6)
    np.testing.assert_allclose(half, stacked[:, 1::2, 1::2, 3:], rtol=1e-6)

    # orthonormal: the inverse transform gives back every pixel, and the energy is kept
    ll, lh, hl, hh = np.split(half, 4, axis=-1)
    lh, hl, hh = lh / gain, hl / gain, hh / gain
    rebuilt = np.empty_like(image)
    rebuilt[:, 0::2, 0::2] = (ll + lh + hl + hh) / 2
    rebuilt[:, 0::2, 1::2] = (ll + lh - hl - hh) / 2
    rebuilt[:, 1::2, 0::2] = (ll - lh + hl - hh) / 2
    rebuilt[:, 1::2, 1::2] = (ll - lh - hl + hh) / 2
    np.testing.assert_allclose(rebuilt, image, atol=1e-5)
    np.testing.assert_allclose((ll**2 + lh**2 + hl**2 + hh**2).sum(), (image**2).sum(), rtol=1e-5)

    odd = _np(HaarSubbands()(np.ones((1, 5, 7, 3), "float32")))  # odd sides: edge-padded, ceil
    assert odd.shape == (1, 3, 4, 12)
    np.testing.assert_allclose(odd[..., :3], 2.0)
    np.testing.assert_allclose(odd[..., 3:], 0.0)


def test_representation_layers_config_and_errors():
    assert representation_layer("rgb") is None
    assert [input_channels(r) for r in REPRESENTATIONS] == [3, 6, 15, 12]
    layer = representation_layer("rgb+wavelet")
    assert layer.name == "representation" and layer.get_config()["representation"] == "rgb+wavelet"
    assert HighPassResidual().gain == 1.0 and HaarWavelet().gain == 4.0 == HaarSubbands().gain
    assert representation_layer("wavelet").get_config()["representation"] == "wavelet"
    with pytest.raises(ValueError, match="rgb\\+wavelet"):
        HighPassResidual(representation="rgb+wavelet")
    with pytest.raises(ValueError, match="unknown input representation 'hsv'"):
        build_model("resnet18", 32, representation="hsv")
    with pytest.raises(ValueError, match="tta_flip"):
        build_model("resnet18", 32, tta_flip="yes")


# ---------------------------------------------------------------------------------- in every builder
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_builder_takes_the_wavelet_channels(name):
    model = build_model(name, SIZES[name], representation="rgb+wavelet")
    assert model_representation(model) == "rgb+wavelet" and not has_tta_flip(model)
    assert model.get_layer("representation").output.shape[-1] == 15
    first = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert first.kernel.shape[2] == 15  # the first convolution reads all stacked channels
    out = _np(model(_raw(), training=False))
    assert out.shape == (2, 1) and np.isfinite(out).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_builder_runs_on_the_half_side_subbands(name):
    size = 2 * SIZES[name]  # the layers after the representation see SIZES[name]
    model = build_model(name, size, representation="wavelet")
    assert model_representation(model) == "wavelet"
    assert tuple(model.get_layer("representation").output.shape)[1:] == (SIZES[name], SIZES[name], 12)
    first = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert first.kernel.shape[2] == 12
    out = _np(model(_raw(), training=False))
    assert out.shape == (2, 1) and np.isfinite(out).all()


def test_vit_patches_tile_the_half_side_of_the_wavelet_input():
    model = build_model("vit", 64, representation="wavelet")  # 32 px sub-bands, default patch 4
    assert model.get_layer("patch_embed").kernel.shape[:2] == (4, 4)
    assert model.get_layer("patch_tokens").output.shape[1] == 64
    with pytest.raises(ValueError, match="the 32 px side the patches see"):
        build_model("vit", 64, representation="wavelet", patch_size=6)


def test_highpass_in_a_model_under_bfloat16():
    from tfdeepfake.hardware import precision_policy

    with precision_policy("mixed_bfloat16"):
        model = build_model("resnet18", 32, representation="rgb+highpass")
    assert model.get_layer("representation").compute_dtype == "float32"
    assert model.get_layer("representation").output.shape[-1] == 6
    assert _np(model(_raw(), training=False)).dtype == np.float32


# ------------------------------------------------------------------------------------ flip averaging
def test_tta_flip_averages_each_image_and_its_mirror():
    keras.utils.set_random_seed(3)
    tta = build_model("resnet18", 32, dropout=0.0, tta_flip=True)
    plain = build_model("resnet18", 32, dropout=0.0)
    plain.set_weights(tta.get_weights())  # the flip layers have no weights
    x = _raw(3).astype("float32")
    expected = (_np(plain(x, training=False)) + _np(plain(x[:, :, ::-1], training=False))) / 2
    np.testing.assert_allclose(_np(tta(x, training=False)), expected, atol=1e-5)
    np.testing.assert_allclose(_np(tta(x)), expected, atol=1e-5)  # training unset: inference
    np.testing.assert_allclose(_np(tta.predict(x, verbose=0)), expected, atol=1e-5)
    # training: no averaging (same as the plain model on the same batch)
    np.testing.assert_allclose(_np(tta(x, training=True)), _np(plain(x, training=True)), atol=1e-5)
    assert has_tta_flip(tta) and not has_tta_flip(plain)


# ------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize(("representation", "tta_flip"),
                         [("rgb+highpass", False), ("rgb+wavelet", True), ("wavelet", True)])
def test_round_trip_keras_and_saved_model(representation, tta_flip, tmp_path):
    import tensorflow as tf

    from tfdeepfake.export import export_model, read_export_info

    keras.utils.set_random_seed(5)
    model = build_model("resnet18", 32, representation=representation, tta_flip=tta_flip)
    images = _raw(2, 41, 30)
    expected = 1 / (1 + np.exp(-_np(model(images.astype("float32"), training=False))[:, 0]))

    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert model_representation(loaded) == representation and has_tta_flip(loaded) == tta_flip
    np.testing.assert_array_equal(_np(loaded(images, training=False)), _np(model(images, training=False)))

    version = export_model(model, "rep", root=tmp_path / "saved")
    info = read_export_info(version)["members"][0]
    assert (info["input"], info["tta_flip"]) == (representation, tta_flip)
    signatures = tf.saved_model.load(str(version)).signatures  # the client still sends raw images
    by_pixels = signatures["serving_default"](images=tf.constant(images))["probability_fake"]
    np.testing.assert_allclose(by_pixels.numpy(), expected, atol=1e-6)
    blobs = []
    for image in images:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        blobs.append(buf.getvalue())
    by_bytes = signatures["predict_bytes"](image_bytes=tf.constant(blobs))["probability_fake"]
    np.testing.assert_allclose(by_bytes.numpy(), expected, atol=1e-6)
