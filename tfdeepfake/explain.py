"""Grad-CAM explanations for any detector of the project (CNNs, the ViT, ensembles of them).

Grad-CAM (Selvaraju et al., 2017) weights each channel of a feature map by the mean gradient of the
logit with respect to it, sums, keeps the positive part and upsamples the map to the input's size.

* CNNs: the feature map is the output of the layer named ``"features"`` (the last convolutional
  stage, see ``docs/DESIGN.md``).
* ViT: the last encoder block's patch tokens where its attention reads them (the output of its first
  LayerNorm, ``encoder{depth}_ln1``), class token dropped, reshaped to the patch grid. (The block's
  *output* patch tokens never reach the logit, which reads the class token only, so their gradient is
  zero; this is the usual ``blocks[-1].norm1`` choice for ViT Grad-CAM.)
* Ensembles (a Keras model whose nested sub-models are the members): one map per member, each member
  explained by its own logit on the same input.

>>> from tfdeepfake.explain import gradcam, overlay
>>> heat = gradcam(model, image_uint8)          # float32 (H, W) in [0, 1]; a dict for an ensemble
>>> picture = overlay(image_uint8, heat)        # uint8 RGB (H, W, 3)
"""

from __future__ import annotations

import argparse
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tfdeepfake import CLASS_NAMES, cli
from tfdeepfake.faces import detect_faces
from tfdeepfake.media import MediaError, read_image
from tfdeepfake.scorer import load_scorer

FEATURES_LAYER = "features"
TARGETS = ("predicted", "fake", "real")
"""``fake``: evidence for *fake* (gradient of the logit); ``real``: of its negation; ``predicted``: the
model's own verdict at logit 0 (probability 0.5)."""

_GRAD_MODELS: weakref.WeakKeyDictionary[Any, tuple[Any, bool]] = weakref.WeakKeyDictionary()


# --------------------------------------------------------------------------------------------- models
def _members(model: Any) -> list[Any]:
    """:func:`tfdeepfake.models.fusion.ensemble_members`, imported on first use (it loads Keras)."""
    from tfdeepfake.models.fusion import ensemble_members

    return ensemble_members(model)


def is_ensemble(model: Any) -> bool:
    """True when ``model`` has no feature layer of its own but nests member models."""
    return not _has_layer(model, FEATURES_LAYER) and bool(_members(model))


def _has_layer(model: Any, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)


def target_layer(model: Any) -> tuple[Any, bool]:
    """The layer Grad-CAM reads and whether its output is a token sequence ``(b, 1 + n, dim)``."""
    if not _has_layer(model, FEATURES_LAYER):
        spatial = [layer for layer in model.layers if _rank(layer) == 4]
        if not spatial:
            raise ValueError(f"model {model.name!r} has no layer named {FEATURES_LAYER!r} "
                             "and no 4-D feature map: cannot compute Grad-CAM")
        return spatial[-1], False
    features = model.get_layer(FEATURES_LAYER)
    if _rank(features) == 4:
        return features, False
    if _rank(features) == 3:  # ViT: the last block's pre-attention LayerNorm
        norms = [layer for layer in model.layers if layer.name.endswith("_ln1")
                 and _rank(layer) == 3]
        return (norms[-1] if norms else features), True
    raise ValueError(f"layer {FEATURES_LAYER!r} of {model.name!r} has rank {_rank(features)}; "
                     "expected 4 (CNN) or 3 (ViT tokens)")


def _rank(layer: Any) -> int:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):
        return -1


def _grad_model(model: Any) -> tuple[Any, bool]:
    """``image -> (feature map, logit)`` on the functional graph (cached per model)."""
    import keras

    if model in _GRAD_MODELS:
        return _GRAD_MODELS[model]
    if not hasattr(model, "inputs") or not model.inputs:
        raise ValueError(f"Grad-CAM needs a functional Keras model; {model.name!r} has no graph")
    layer, tokens = target_layer(model)
    grad_model = keras.Model(model.inputs, [layer.output, model.outputs[0]],
                             name=f"{model.name}_gradcam")
    _GRAD_MODELS[model] = (grad_model, tokens)
    return grad_model, tokens


# ------------------------------------------------------------------------------------------- Grad-CAM
def _single_gradcam(model: Any, image: np.ndarray, target: str) -> np.ndarray:
    import cv2
    import tensorflow as tf

    grad_model, tokens = _grad_model(model)
    x = tf.convert_to_tensor(image[None].astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        feats, logit = grad_model(x, training=False)
        logit = tf.reshape(tf.cast(logit, tf.float32), [-1])[0]
        sign = {"fake": 1.0, "real": -1.0}.get(target, 1.0 if float(logit) >= 0 else -1.0)
        objective = sign * logit
    grads = tape.gradient(objective, feats)
    feats = tf.cast(feats, tf.float32)[0].numpy()
    grads = (tf.zeros_like(feats) if grads is None else tf.cast(grads, tf.float32)[0]).numpy()
    if tokens:
        feats, grads = _tokens_to_grid(feats), _tokens_to_grid(grads)
    weights = grads.mean(axis=(0, 1))
    cam = np.maximum((feats * weights).sum(axis=-1), 0.0).astype(np.float32)
    height, width = image.shape[:2]
    cam = cv2.resize(cam, (width, height), interpolation=cv2.INTER_LINEAR)
    peak = float(cam.max())
    cam = cam / peak if peak > 0 else np.zeros_like(cam)
    return np.clip(cam, 0.0, 1.0).astype(np.float32)


def _tokens_to_grid(tokens: np.ndarray) -> np.ndarray:
    """``(1 + n, dim)`` with a class token first -> ``(g, g, dim)`` patch grid."""
    patches = tokens[1:]
    grid = int(round(np.sqrt(len(patches))))
    if grid * grid != len(patches):  # no class token after all
        patches = tokens
        grid = int(round(np.sqrt(len(patches))))
    if grid * grid != len(patches):
        raise ValueError(f"cannot arrange {len(tokens)} tokens into a square patch grid")
    return patches.reshape(grid, grid, -1)


def _check_image(image: Any) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected one RGB image (h, w, 3), got shape {image.shape}")
    return image


def heatmaps(model: Any, image: Any, *, target: str = "predicted") -> dict[str, np.ndarray]:
    """Grad-CAM maps keyed by model name: one for a single model, one per member for an ensemble.

    ``image`` is raw RGB 0-255 ``(H, W, 3)`` of any size; each map is float32 ``(H, W)`` in [0, 1]
    (all zeros when no region supports ``target``, see :data:`TARGETS`).
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    image = _check_image(image)
    if is_ensemble(model):
        return {m.name: _single_gradcam(m, image, target) for m in _members(model)}
    return {model.name: _single_gradcam(model, image, target)}


def gradcam(model: Any, image: Any, *, target: str = "predicted"
            ) -> np.ndarray | dict[str, np.ndarray]:
    """Grad-CAM of one image: float32 ``(H, W)`` in [0, 1] at the input's size.

    For an ensemble, a dict ``{member name: heatmap}`` (see :func:`heatmaps`).
    """
    maps = heatmaps(model, image, target=target)
    return maps if is_ensemble(model) else next(iter(maps.values()))


# -------------------------------------------------------------------------------------------- drawing
def overlay(image: Any, heatmap: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """Heatmap (JET colours) blended over ``image``; uint8 RGB at the image's size.

    The colour is weighted by the heat itself, so cold regions keep the original pixels.
    """
    import cv2

    image = _check_image(image).astype(np.float32)
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.shape != image.shape[:2]:
        heat = cv2.resize(heat, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat = np.clip(heat, 0.0, 1.0)
    colour = cv2.applyColorMap(np.uint8(np.round(255 * heat)), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB).astype(np.float32)
    weight = alpha * (0.35 + 0.65 * heat)[..., None]
    return np.clip(np.round(image * (1 - weight) + colour * weight), 0, 255).astype(np.uint8)


def panel(image: Any, maps: Mapping[str, np.ndarray], *, title: str = "",
          captions: Mapping[str, str] | None = None, tile_height: int = 320,
          alpha: float = 0.45) -> np.ndarray:
    """The input followed by one overlay per map, side by side with captions; uint8 RGB."""
    import cv2

    image = _check_image(image)
    scale = tile_height / image.shape[0]
    width = max(1, int(round(image.shape[1] * scale)))
    captions = captions or {}

    def tile(picture: np.ndarray, text: str) -> np.ndarray:
        picture = cv2.resize(picture, (width, tile_height), interpolation=cv2.INTER_AREA
                             if scale < 1 else cv2.INTER_LINEAR)
        bar = np.full((26, width, 3), 255, np.uint8)
        cv2.putText(bar, text[: max(4, width // 8)], (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 0, 0), 1, cv2.LINE_AA)
        return np.vstack([bar, picture])

    tiles = [tile(np.asarray(image, np.uint8), title or "input")]
    tiles += [tile(overlay(image, heat, alpha=alpha), captions.get(name, name))
              for name, heat in maps.items()]
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    out = [tiles[0]]
    for t in tiles[1:]:
        out += [gap, t]
    return np.hstack(out)


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 RGB ``(h, w, 3)`` or grayscale ``(h, w)`` image encoded as PNG."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 RGB image as PNG (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(image))
    return path


# ------------------------------------------------------------------------------------------------ CLI
def explain_files(model: str | Path, images: list[str | Path], *, faces: bool = False,
                  target: str = "predicted", threshold: float | None = None,
                  tile_height: int = 256) -> np.ndarray:
    """A figure: one row per image (input, then one Grad-CAM overlay per model/member); uint8 RGB.

    MODEL is anything ``tfdeepfake.predict`` accepts that has a Keras model; ``faces`` explains the
    largest face (1.3x box) instead of the whole image; ``target="predicted"`` explains the verdict at
    the model's threshold.
    """
    scorer = load_scorer(model, threshold=threshold)
    keras_model = scorer.keras_model()
    rows = []
    for path in images:
        try:
            image = read_image(path)
        except MediaError as exc:
            raise MediaError(f"{path}: {exc}") from None
        if faces:
            found = detect_faces(image)
            if not found:
                raise ValueError(f"{path}: no face found")
            image = np.ascontiguousarray(found[0].crop(image))
        scores = scorer([image])
        prob, label = float(scores.probability_fake[0]), CLASS_NAMES[int(scores.label[0])]
        maps = heatmaps(keras_model, image, target=label if target == "predicted" else target)
        member_p = dict(zip(scorer.member_names, scores.members[0], strict=True)) \
            if scores.members is not None else {}
        captions = {n: f"{n} p={member_p[n]:.2f}" if n in member_p else f"Grad-CAM ({label})"
                    for n in maps}
        title = f"{Path(path).parent.name}/{Path(path).name}: {label} p={prob:.2f}"
        rows.append(panel(image, maps, title=title, captions=captions, tile_height=tile_height))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.vstack(rows)[:-4]


def build_parser() -> Any:
    p = argparse.ArgumentParser(prog="python -m tfdeepfake.explain",
                                description="Grad-CAM figure for a few images (one row per image).")
    p.add_argument("model", help="run folder, .keras file, or SavedModel with its .keras beside it")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--faces", action="store_true", help="explain the largest face (MTCNN, 1.3x box)")
    p.add_argument("--target", choices=TARGETS, default="predicted")
    p.add_argument("--threshold", type=cli.threshold, default=None)
    p.add_argument("--tile-height", type=cli.positive_int, default=256)
    return cli.add_debug_flag(p)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    cli.input_path("MODEL", args.model)  # every path checked before the model is loaded
    for image in args.images:
        cli.input_path("IMAGE", image)
    out = cli.output_file("--out", args.out, optional=False)
    figure = explain_files(args.model, args.images, faces=args.faces, target=args.target,
                           threshold=args.threshold, tile_height=args.tile_height)
    print(f"Grad-CAM figure written to {save_png(out, figure)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
