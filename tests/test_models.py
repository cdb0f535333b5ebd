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
    "alexnet_rnn": 64,
    "alexnet_tv": 64,
    "xception_keras": 32,
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


def kernel_regularizers(model: keras.Model) -> Iterator[tuple[str, object]]:
    """``(layer path, regularizer)`` for every kernel of every layer owning one: conv, separable and
    depthwise conv, dense, the projections inside attention layers, RNN kernels and recurrent kernels."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.MultiHeadAttention):
            for dense in (layer.query_dense, layer.key_dense, layer.value_dense, layer.output_dense):
                yield dense.path, dense.kernel_regularizer
        elif isinstance(layer, keras.layers.SeparableConv2D):
            yield layer.path, layer.depthwise_regularizer
            yield layer.path, layer.pointwise_regularizer
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            yield layer.path, layer.depthwise_regularizer
        elif isinstance(layer, keras.layers.SimpleRNN):
            yield layer.path, layer.kernel_regularizer
            yield layer.path, layer.recurrent_regularizer
        elif isinstance(
            layer, keras.layers.Conv2D | keras.layers.Dense | keras.layers.EinsumDense
        ):
            yield layer.path, layer.kernel_regularizer


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
    assert MODEL_NAMES == (
        "alexnet", "alexnet_rnn", "alexnet_tv", "vgg13", "resnet18", "densenet121", "xception",
        "xception_keras", "vit",
    )  # FAMILIES' order, each family's builders in their module's order
    assert set(MODEL_NAMES) == set(SIZES)  # every registered model is tested below
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
    for path, reg in kernel_regularizers(model):
        assert isinstance(reg, keras.regularizers.L2), path
        assert reg.l2 == pytest.approx(L2), path
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
        ("resnet18", {"stem_stride": 4}, r"stem_stride.*1 or 2"),
        ("densenet121", {"stem_pool": 0}, r"stem_pool.*bool"),
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


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_stem_options_keep_resolution_and_weights(name: str, tmp_path: Path) -> None:
    plain = build_model(name, 32)
    fine = build_model(name, 32, stem_stride=1, stem_pool=False)  # 4x the features' side
    side = plain.get_layer("features").output.shape[1]
    assert fine.get_layer("features").output.shape[1] == 4 * side
    assert "stem_pool" not in [layer.name for layer in fine.layers]
    assert [tuple(w.shape) for w in fine.weights] == [tuple(w.shape) for w in plain.weights]
    fine.save(tmp_path / "fine.keras")
    loaded = keras.saving.load_model(tmp_path / "fine.keras", safe_mode=True)
    np.testing.assert_allclose(predict(fine, raw_images()), predict(loaded, raw_images()), atol=1e-6)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_mixed_bfloat16_output_float32(name: str, mixed_bfloat16: None) -> None:
    model = build_model(name, SIZES[name])
    assert model.output.dtype == "float32"
    assert model.get_layer("features").output.dtype == "bfloat16"
    out = predict(model, raw_images())
    assert out.dtype == np.float32 and np.all(np.isfinite(out))


# ------------------------------------------------------------------------ the original layouts (224 px)
ORIGINAL_TRAINABLE = {
    "alexnet": 46_753_857,
    "alexnet_rnn": 5_672_257,
    "vgg13": 128_954_945,
    "xception": 10_047_617,
}
"""Trainable parameters of the original notebooks' models at 224 px (issue 14); the hybrid's is
PyTorch's 5,673,025 less its second bias per RNN layer (see test_alexnet_rnn_layout)."""


def trainable_count(model: keras.Model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def shape_of(model: keras.Model, layer: str) -> tuple[int | None, ...]:
    return tuple(model.get_layer(layer).output.shape[1:])


@pytest.mark.parametrize("name", sorted(ORIGINAL_TRAINABLE))
def test_original_parameter_count_at_224(name: str) -> None:
    model = build_model(name, 224)
    assert trainable_count(model) == ORIGINAL_TRAINABLE[name]
    assert shape_of(model, "resize") == (224, 224, 3)


def test_alexnet_layout_at_224() -> None:
    model = build_model("alexnet", 224)
    convs = [model.get_layer(f"block{i}_conv") for i in range(1, 6)]
    assert [c.filters for c in convs] == [96, 256, 384, 384, 256]
    assert [c.kernel_size for c in convs] == [(11, 11), (5, 5), (3, 3), (3, 3), (3, 3)]
    assert convs[0].strides == (4, 4) and convs[0].padding == "valid"  # no padding
    assert all(c.use_bias for c in convs)
    assert all(isinstance(model.get_layer(f"block{i}_bn"), keras.layers.BatchNormalization)
               for i in range(1, 6))
    assert shape_of(model, "block1_conv") == (54, 54, 96)
    assert [shape_of(model, f"block{i}_pool")[:2] for i in (1, 2, 5)] == [(26, 26), (12, 12), (5, 5)]
    assert shape_of(model, "features") == (12, 12, 256)
    assert shape_of(model, "flatten") == (6400,)
    assert [model.get_layer(n).units for n in ("fc1", "fc2", "logit")] == [4096, 4096, 1]
    assert [model.get_layer(n).rate for n in ("fc1_dropout", "fc2_dropout")] == [0.5, 0.5]


def test_alexnet_rnn_layout() -> None:
    model = build_model("alexnet_rnn", 224)
    assert shape_of(model, "flatten") == (6400,)
    assert shape_of(model, "sequence") == (1, 6400)  # the features as a sequence of length one
    rnns = [layer for layer in model.layers if isinstance(layer, keras.layers.SimpleRNN)]
    assert [(r.name, r.units) for r in rnns] == [
        ("rnn1", 256), ("rnn2", 256), ("rnn3", 128), ("rnn4_1", 64), ("rnn4_2", 64)
    ]
    assert all(r.activation is keras.activations.tanh for r in rnns)
    assert [model.get_layer(n).units for n in ("fc1", "logit")] == [256, 1]
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)
    # Same conv stack as AlexNet: the conv weights alone add up to the same count.
    alexnet = build_model("alexnet", 224)
    conv_part = trainable_count(alexnet) - sum(
        trainable_count(alexnet.get_layer(n)) for n in ("fc1", "fc2", "logit")
    )
    head_part = sum(trainable_count(layer) for layer in rnns) + sum(
        trainable_count(model.get_layer(n)) for n in ("fc1", "logit")
    )
    assert conv_part + head_part == trainable_count(model)
    # PyTorch's nn.RNN has a second bias (b_hh) per layer: its count is ours plus one per unit.
    assert trainable_count(model) + sum(r.units for r in rnns) == 5_673_025


def test_alexnet_rnn_is_a_tanh_stack_on_one_step() -> None:
    """With one time step and a zero state, the first RNN computes tanh(x W + b)."""
    model = build_model("alexnet_rnn", 64, l2=0.0)
    probe = keras.Model(model.input, [model.get_layer("flatten").output,
                                      model.get_layer("rnn1").output])
    flat, out = (keras.ops.convert_to_numpy(t) for t in probe(raw_images(), training=False))
    kernel, _, bias = (w.numpy() for w in model.get_layer("rnn1").weights)
    np.testing.assert_allclose(out[:, 0], np.tanh(flat @ kernel + bias), atol=1e-5)


def test_vgg13_layout_at_224() -> None:
    model = build_model("vgg13", 224)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512, 512, 512]
    assert all(c.use_bias and c.kernel_size == (3, 3) and c.padding == "same" for c in convs)
    assert [shape_of(model, f"block{s}_pool")[0] for s in range(1, 6)] == [112, 56, 28, 14, 7]
    assert shape_of(model, "flatten") == (25088,)
    assert [model.get_layer(n).units for n in ("fc1", "fc2", "logit")] == [4096, 4096, 1]
    # The original's Dropout(0) after fc1: no dropout by default, a rate goes there (only there).
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)
    with_dropout = build_model("vgg13", 32, dropout=0.3)
    dropouts = [layer for layer in with_dropout.layers if isinstance(layer, keras.layers.Dropout)]
    assert [(d.name, d.rate) for d in dropouts] == [("fc2_dropout", 0.3)]
    layer_names = [layer.name for layer in with_dropout.layers]
    assert layer_names.index("fc1_relu") < layer_names.index("fc2_dropout") < layer_names.index("fc2")


def test_xception_layout_at_224() -> None:
    model = build_model("xception", 224)
    assert shape_of(model, "stem1_relu") == (112, 112, 32)
    assert shape_of(model, "stem2_relu") == (112, 112, 64)
    assert [shape_of(model, f"entry_block{i}_add") for i in (1, 2, 3)] == [
        (56, 56, 128), (28, 28, 256), (14, 14, 728)
    ]
    assert shape_of(model, "middle_add9") == (14, 14, 728)
    assert shape_of(model, "exit_block1_add") == (7, 7, 1024)
    assert shape_of(model, "features") == (7, 7, 2048)
    assert shape_of(model, "avg_pool") == (2048,)
    # Shortcuts are plain 1x1 stride-2 convs with bias: no BN after them.
    for block in ("entry_block1", "entry_block2", "entry_block3", "exit_block1"):
        shortcut = model.get_layer(f"{block}_shortcut")
        assert (shortcut.kernel_size, shortcut.strides, shortcut.use_bias) == ((1, 1), (2, 2), True)
    bns = {layer.name for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert not any("shortcut" in n or "proj" in n for n in bns)
    assert {"middle_bn1", "middle_bn2"} <= bns and "middle_bn3" not in bns  # no final BN in the module
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)


def test_xception_middle_flow_shares_one_module() -> None:
    """Nine applications of one middle-flow module: one set of variables, used by every application."""
    keras.utils.set_random_seed(3)
    model = build_model("xception", 32, l2=0.0)
    middle = [layer for layer in model.layers
              if layer.name.startswith("middle_") and not layer.name.startswith("middle_add")]
    adds = [layer for layer in model.layers if layer.name.startswith("middle_add")]
    assert len(adds) == 9
    variables = [w for layer in middle for w in layer.trainable_weights]
    # 3 separable convs (depthwise kernel + bias, pointwise kernel + bias) and 2 BNs (gamma, beta).
    assert len(variables) == 3 * 4 + 2 * 2
    ids = {id(w) for w in model.trainable_weights}
    assert all(id(w) in ids for w in variables)
    assert len(ids) == len(model.trainable_weights)

    def module(x: np.ndarray) -> np.ndarray:
        for layer in middle:
            x = layer(x, training=False)
        return keras.ops.convert_to_numpy(x)

    # Every add's two inputs: the flow so far and the module's residual at that point.
    probe = keras.Model(model.input, [t for add in adds for t in add.input])
    images = raw_images()

    def residuals() -> tuple[list[np.ndarray], list[np.ndarray]]:
        outs = [keras.ops.convert_to_numpy(t) for t in probe(images, training=False)]
        return outs[0::2], outs[1::2]

    before_in, before_res = residuals()
    for x, res in zip(before_in, before_res, strict=True):
        np.testing.assert_allclose(res, module(x), rtol=1e-4, atol=1e-4)
    pointwise = model.get_layer("middle_sep3_pw")
    pointwise.bias.assign(pointwise.bias.numpy() + 1.0)  # change the one module
    after_in, after_res = residuals()
    np.testing.assert_allclose(after_in[0], before_in[0])  # the first input precedes the module
    for x, before, after in zip(after_in, before_res, after_res, strict=True):
        assert not np.allclose(before, after)  # all nine applications changed ...
        np.testing.assert_allclose(after, module(x), rtol=1e-4, atol=1e-4)  # ... to the same module


@pytest.mark.parametrize(("name", "default_rate"), [
    ("alexnet", 0.5), ("alexnet_tv", 0.5), ("resnet18", 0.5),
    ("vgg13", 0.0), ("xception", 0.0), ("alexnet_rnn", 0.0),
])
def test_dropout_none_is_the_layouts_own(name: str, default_rate: float) -> None:
    rates = {
        layer.rate
        for layer in build_model(name, SIZES[name], dropout=None).layers
        if isinstance(layer, keras.layers.Dropout)
    }
    assert rates == ({default_rate} if default_rate else set())


def test_small_inputs_pad_pools_that_would_vanish() -> None:
    """At 32 px AlexNet's maps are 6 -> 2 after pool 1; pools 2 and 3 pad and keep a 1 x 1 map."""
    model = build_model("alexnet", 32)
    assert shape_of(model, "block1_conv")[:2] == (6, 6)
    assert [model.get_layer(f"block{i}_pool").padding for i in (1, 2, 5)] == ["valid", "same", "same"]
    assert shape_of(model, "flatten") == (256,)
    large = build_model("alexnet", 67)  # the smallest size whose maps all stay >= 3 before a pool
    assert [large.get_layer(f"block{i}_pool").padding for i in (1, 2, 5)] == ["valid"] * 3


@pytest.mark.parametrize(("kernel", "padding", "strides"),
                         [(3, "same", 1), (1, "same", 1), (3, "valid", 1), (2, "valid", 1), (3, "same", 2)])
def test_fast_grad_conv_matches_keras_conv(kernel: int, padding: str, strides: int) -> None:
    """Same outputs and gradients (input and kernel) as keras' Conv2D, on the fast path and off it."""
    import tensorflow as tf

    from tfdeepfake.models.layers import FastGradConv2D

    args = {"filters": 5, "kernel_size": kernel, "padding": padding, "strides": strides, "use_bias": True}
    fast, stock = FastGradConv2D(**args), keras.layers.Conv2D(**args)
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 6, 7, 3)), tf.float32)
    fast.build(x.shape)
    stock.build(x.shape)
    stock.set_weights(fast.get_weights())
    assert fast._fast_path() == (strides == 1 and (padding == "valid" or kernel % 2 == 1))
    results = []
    for layer in (fast, stock):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            weights = tf.reshape(tf.range(tf.size(y), dtype=tf.float32) / 10.0, tf.shape(y))
            loss = tf.reduce_sum(y * weights)  # a different weight per output: a wrong gradient shows
        results.append((y, *tape.gradient(loss, [x, *layer.trainable_weights])))
    for mine, theirs in zip(*results, strict=True):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-4)
