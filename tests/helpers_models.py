"""Models shared by the ensemble / export / serve / browser tests, built once per test process.

Two members with random weights, built with ``build_model`` at different sizes (``resnet18`` at 32 px,
``alexnet`` at 48 px), saved as run folders with a validation threshold; the ensemble of both (weights
1:2) as ``ensemble-tiny/``; and its export ``saved_models/tiny/1``. Everything lives in one temporary
folder removed at exit.
"""

from __future__ import annotations

import atexit
import functools
import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

MEMBERS = (("resnet18", 32, 0.4), ("alexnet", 48, 0.7))
WEIGHTS = (1.0, 2.0)
ENSEMBLE_NAME = "tiny"


@functools.cache
def workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="tfdeepfake-serving-tests-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def member_runs() -> tuple[Path, ...]:
    """Run folders ``runs/<arch>-test`` holding ``model.keras`` and ``metrics.json`` (threshold)."""
    import keras

    from tfdeepfake.models import build_model

    keras.utils.set_random_seed(7)
    runs = []
    for arch, size, threshold in MEMBERS:
        run = workdir() / "runs" / f"{arch}-test"
        run.mkdir(parents=True)
        build_model(arch, size).save(run / "model.keras")
        (run / "metrics.json").write_text(json.dumps({"model": arch, "threshold": threshold}))
        runs.append(run)
    return tuple(runs)


@functools.cache
def ensemble_run() -> Path:
    """``runs/ensemble-tiny``: the probability-averaging ensemble of both members, weights 1:2."""
    from tfdeepfake.ensemble import create_ensemble

    return create_ensemble(member_runs(), ENSEMBLE_NAME, weights=WEIGHTS, root=workdir() / "runs")


@functools.cache
def exported() -> Path:
    """``saved_models/tiny/1``: the ensemble exported for TensorFlow Serving."""
    from tfdeepfake.export import export_model

    return export_model(ensemble_run(), ENSEMBLE_NAME, root=workdir() / "saved_models")


@functools.cache
def keras_ensemble():
    from tfdeepfake.runs import load_model

    return load_model(ensemble_run() / "model.keras")


def random_image(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random RGB uint8 image (so JPEG round trips stay close)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(low).resize((width, height), Image.BILINEAR))


def encode(image: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def sample_images() -> list[bytes]:
    """Encoded images of different sizes and formats (PNG, JPEG, grayscale PNG)."""
    from PIL import Image

    gray = io.BytesIO()
    Image.fromarray(random_image(41, 29, 3)[..., 0]).save(gray, format="PNG")
    return [encode(random_image(37, 53, 1)), encode(random_image(64, 64, 2), "JPEG"), gray.getvalue()]


def decoded(data: bytes) -> np.ndarray:
    """RGB uint8 pixels of an encoded image, decoded by Pillow (what a client would send; the
    package decodes JPEG with the accurate IDCT, so its pixels are the same)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def keras_reference(images: list[np.ndarray], threshold: float) -> dict[str, np.ndarray]:
    """What the export must answer for these images, computed with the Keras ensemble image by image."""
    from tfdeepfake.ensemble import split_ensemble

    model = keras_ensemble()
    members = split_ensemble(model)[0]
    prob, mem = [], []
    for image in images:
        x = image[np.newaxis].astype(np.float32)
        prob.append(sigmoid(model(x, training=False))[0, 0])
        mem.append([sigmoid(m(x, training=False))[0, 0] for m in members])
    prob_arr = np.asarray(prob)
    return {"probability_fake": prob_arr, "label": (prob_arr >= threshold).astype(int),
            "members": np.asarray(mem)}
