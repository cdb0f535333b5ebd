"""Tests for ``tfdeepfake.models``: registry, contract (I/O, features, regularisers), saving, precision."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest

from tfdeepfake.models import MODEL_NAMES, build_model, get_builder, register_model
from tfdeepfake.models.common import IMAGENET_MEAN, IMAGENET_STD, Resize
from tfdeepfake.models.vit import default_patch_size

# Small sizes keep the suite fast; the heavy families stay at the 32 px minimum.
SIZES: dict[str, int] = {
    "alexnet": 64,
    "vgg13": 32,
    "resnet18": 48,
    "densenet121": 32,
    "xception": 32,
    "vit": 32,
}
L2 = 1e-4


def raw_images(
    batch: int = 2, height: int = 50, width: int = 70, dtype: str = "uint8"
) -> np.ndarray:
    """Random RGB images in 0-255 of a size different from every model's ``image_size``."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(batch, height, width, 3)).astype(dtype)


def predict(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Inference-mode outputs via an eager call (cheaper than tracing ``predict`` for one batch)."""
    return keras.ops.convert_to_numpy(model(images, training=False))


def kernel_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Every layer owning a conv/dense kernel, including the projections inside attention layers."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.MultiHeadAttention):
            yield from (layer.query_dense, layer.key_dense, layer.value_dense, layer.output_dense)
        elif isinstance(
            layer,
            keras.layers.Conv2D
            | keras.layers.SeparableConv2D
            | keras.layers.Dense
            | keras.layers.EinsumDense,
        ):
            yield layer


def kernel_variables(model: keras.Model) -> list[keras.Variable]:
    return [w for w in model.trainable_weights if w.name.endswith("kernel")]


def reg_loss(model: keras.Model) -> float:
    return float(sum(float(loss) for loss in model.losses))


@pytest.fixture(scope="module", params=MODEL_NAMES)
def built(request: pytest.FixtureRequest) -> tuple[str, keras.Model]:
    """Each architecture built once per module at its small test size."""
    name = request.param
    keras.utils.set_random_seed(0)
    return name, build_model(name, SIZES[name], l2=L2, dropout=0.5)


@pytest.fixture
def mixed_bfloat16() -> Iterator[None]:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


# ------------------------------------------------------------------------------------------ registry
def test_registry_names() -> None:
    assert MODEL_NAMES == ("alexnet", "vgg13", "resnet18", "densenet121", "xception", "vit")
    for name in MODEL_NAMES:
        assert callable(get_builder(name))


def test_register_duplicate_name_rejected() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet18")(lambda *a, **k: None)


def test_default_patch_size() -> None:
    assert default_patch_size(224) == 16
    assert default_patch_size(128) == 16
    assert default_patch_size(64) == 8
    assert default_patch_size(32) == 4


# ------------------------------------------------------------------------------------ contract (I/O)
def test_forward_raw_images_any_size(built: tuple[str, keras.Model]) -> None:
    name, model = built
    assert model.name == name
    assert tuple(model.input.shape) == (None, None, None, 3)
    for dtype in ("uint8", "float32"):
        out = predict(model, raw_images(dtype=dtype))
        assert out.shape == (2, 1)
        assert out.dtype == np.float32
        assert np.all(np.isfinite(out))
    assert model.get_layer("logit").dtype_policy.compute_dtype == "float32"


def test_structure_features_no_lambda(built: tuple[str, keras.Model]) -> None:
    name, model = built
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    assert "Lambda" not in model.to_json()
    assert isinstance(model.get_layer("resize"), keras.layers.Resizing)
    assert isinstance(model.get_layer("normalize"), keras.layers.Rescaling)
    features = model.get_layer("features").output
    if name == "vit":
        assert len(features.shape) == 3  # (b, 1 + patches, dim)
        assert features.shape[1] == (SIZES[name] // default_patch_size(SIZES[name])) ** 2 + 1
    else:
        assert len(features.shape) == 4  # (b, h, w, c)
        assert features.shape[1] >= 1 and features.shape[3] >= 64


def test_every_kernel_regularized(built: tuple[str, keras.Model]) -> None:
    _, model = built
    found = 0
    for layer in kernel_layers(model):
        if isinstance(layer, keras.layers.SeparableConv2D):
            regs = [layer.depthwise_regularizer, layer.pointwise_regularizer]
        else:
            regs = [layer.kernel_regularizer]
        for reg in regs:
            assert isinstance(reg, keras.regularizers.L2), layer.path
            assert reg.l2 == pytest.approx(L2), layer.path
            found += 1
    kernels = kernel_variables(model)
    # One penalty per kernel, none elsewhere, and it is exactly l2 * sum of squared kernels.
    assert found == len(kernels) == len(model.losses)
    expected = L2 * sum(float(np.sum(np.square(k.numpy()))) for k in kernels)
    assert reg_loss(model) > 0
    assert reg_loss(model) == pytest.approx(expected, rel=1e-4)


def test_train_step_finite_loss(built: tuple[str, keras.Model]) -> None:
    _, model = built
    model.compile(
        optimizer=keras.optimizers.SGD(1e-3),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        run_eagerly=True,  # one step: eager is faster than tracing a graph
    )
    x = raw_images(dtype="float32")
    y = np.array([[0.0], [1.0]], dtype="float32")
    loss = model.train_on_batch(x, y)
    loss = float(np.asarray(loss).reshape(-1)[0])
    assert np.isfinite(loss) and loss > 0


def test_keras_round_trip(built: tuple[str, keras.Model], tmp_path: Path) -> None:
    name, model = built
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.name == name
    x = raw_images(dtype="uint8")
    np.testing.assert_allclose(predict(model, x), predict(loaded, x), atol=1e-6)


# -------------------------------------------------------------------------------------- L2 scaling
# Linearity in l2 for every family is already exact in test_every_kernel_regularized.
@pytest.mark.parametrize("name", ["resnet18", "vit"])
def test_l2_penalty_scales(name: str) -> None:
    size = SIZES[name]
    keras.utils.set_random_seed(1)
    none = build_model(name, size, l2=0.0)
    assert reg_loss(none) == 0.0
    keras.utils.set_random_seed(1)
    small = build_model(name, size, l2=1e-4)
    keras.utils.set_random_seed(1)
    large = build_model(name, size, l2=1e-3)
    assert reg_loss(small) > 0
    assert reg_loss(large) == pytest.approx(10 * reg_loss(small), rel=1e-3)


def test_vit_graph_mode_dynamic_batch() -> None:
    """Traced (graph) inference with a partial last batch: the class token broadcasts per batch."""
    model = build_model("vit", 32)
    out = model.predict(raw_images(batch=3), batch_size=2, verbose=0)
    assert out.shape == (3, 1) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out, predict(model, raw_images(batch=3)), atol=1e-5)


# --------------------------------------------------------------------------------------- preprocess
def test_preprocess_normalizes_imagenet_mean_to_zero() -> None:
    model = build_model("resnet18", 32, l2=0.0)
    pre = keras.Model(model.input, model.get_layer("normalize").output)
    image = np.broadcast_to(np.array(IMAGENET_MEAN, "float32"), (1, 40, 40, 3))
    out = predict(pre, image)
    assert out.shape == (1, 32, 32, 3)
    np.testing.assert_allclose(out, 0.0, atol=1e-4)
    one_std_up = np.broadcast_to(np.add(IMAGENET_MEAN, IMAGENET_STD).astype("float32"), (1, 32, 32, 3))
    np.testing.assert_allclose(predict(pre, one_std_up), 1.0, atol=1e-4)


def test_resize_is_skipped_only_when_the_size_already_matches() -> None:
    resize = Resize(32, 32, interpolation="bilinear", dtype="float32")
    plain = keras.layers.Resizing(32, 32, interpolation="bilinear", dtype="float32")
    rng = np.random.default_rng(0)
    same = rng.integers(0, 256, (2, 32, 32, 3)).astype("float32")
    other = rng.integers(0, 256, (2, 40, 24, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(resize(same)), same)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(same)), same, atol=1e-3)
    out = keras.ops.convert_to_numpy(resize(other))
    assert out.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(plain(other)), atol=1e-4)
    assert Resize.from_config(resize.get_config()).get_config() == resize.get_config()


# ------------------------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("resnet50", {}, r"Unknown model name 'resnet50'.*alexnet.*vgg13.*vit.*xception"),
        ("resnet18", {"image_size": 16}, r"image_size.*>= 32"),
        ("alexnet", {"image_size": 64.0}, r"image_size.*int"),
        ("alexnet", {"image_size": True}, r"image_size.*int"),
        ("vgg13", {"l2": -1e-4}, r"l2.*>= 0"),
        ("xception", {"l2": float("nan")}, r"l2"),
        ("densenet121", {"dropout": 1.0}, r"dropout.*\[0, 1\)"),
        ("resnet18", {"dropout": -0.1}, r"dropout.*\[0, 1\)"),
        ("vit", {"size": "huge"}, r"size.*tiny, small, base"),
        ("vit", {"image_size": 64, "patch_size": 6}, r"patch_size.*divide"),
        ("vit", {"image_size": 36, "patch_size": 0}, r"patch_size.*positive"),
        ("vit", {"image_size": 33}, r"patch_size` \(4\) must divide `image_size` \(33\)"),
        ("vit", {"encoder_dropout": 1.5}, r"encoder_dropout"),
        ("vgg13", {"batch_norm": "yes"}, r"batch_norm.*bool"),
    ],
)
def test_bad_arguments(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model(name, **kwargs)


# ------------------------------------------------------------------------------- variants/precision
def test_vit_patch_and_vgg_bn_variants() -> None:
    vit = build_model("vit", 48, patch_size=16, dropout=0.0)
    assert vit.get_layer("features").output.shape[1:] == (10, 192)
    vgg = build_model("vgg13", 32, batch_norm=True)
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in vgg.layers)
    assert predict(vgg, raw_images()).shape == (2, 1)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_mixed_bfloat16_output_float32(name: str, mixed_bfloat16: None) -> None:
    model = build_model(name, SIZES[name])
    assert model.output.dtype == "float32"
    assert model.get_layer("features").output.dtype == "bfloat16"
    out = predict(model, raw_images())
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
