"""Shared pytest fixtures.

* ``shared_data``: the real image folders (``rvf10k/train``, ``rvf10k/test``, ``hardfake``) beside the
  project (``../shared/data``, or ``$TFDEEPFAKE_SHARED_DATA``); the test is skipped when absent.
* ``tiny_dataset``: a factory writing small synthetic ``real/ fake/`` image folders in either layout.
  Its fake images carry a faint checkerboard, so even a tiny model can learn something from them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA_ENV = "TFDEEPFAKE_SHARED_DATA"


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """After each test: Keras' global dtype policy back to float32 (a benchmark helper sets it for its
    process) and its global state cleared, so no test depends on what ran before it in the same worker
    and models no longer referenced can be freed."""
    yield
    keras = sys.modules.get("keras")
    if keras is not None:
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session(free_memory=True)


def shared_data_root() -> Path:
    """``$TFDEEPFAKE_SHARED_DATA`` if set, else ``<project>/../shared/data``."""
    env = os.environ.get(SHARED_DATA_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the shared real/fake face data (holds ``rvf10k/train``, ``rvf10k/test``,
    ``hardfake``); skips the test with the reason when it is not there."""
    root = shared_data_root()
    if not (root / "rvf10k" / "train").is_dir():
        pytest.skip(f"shared real data not found at {root} (set {SHARED_DATA_ENV} to its folder)")
    return root


def write_tiny_images(folder: Path, n: int, *, fake: bool, size: int = 32, fmt: str = "png",
                      seed: int = 0, prefix: str = "img") -> list[Path]:
    """Write ``n`` small random RGB images into ``folder``; fakes get a faint checkerboard.

    ``fmt``: ``"png"``, ``"jpg"`` or ``"mixed"`` (alternating). Returns the written paths.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, int(fake)])
    checker = (np.indices((size, size)).sum(axis=0) % 2 * 2 - 1)[..., None] * 12.0
    paths = []
    for i in range(n):
        low = rng.uniform(40, 215, (max(2, size // 8), max(2, size // 8), 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(low).resize((size, size), Image.BILINEAR), np.float64)
        img += rng.normal(0, 4, img.shape) + (checker if fake else 0.0)
        arr = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        ext = fmt if fmt != "mixed" else ("png", "jpg")[i % 2]
        path = folder / f"{prefix}_{i:03d}.{ext}"
        Image.fromarray(arr).save(path, **({"quality": 95} if ext == "jpg" else {}))
        paths.append(path)
    return paths


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``tiny_dataset(n_per_class=6, *, layout="classes", size=32, fmt="png", ...)`` -> root.

    * ``layout="classes"``: ``root/<real>/``, ``root/<fake>/`` with ``n_per_class`` images each.
    * ``layout="splits"``: ``root/<split>/<real|fake>/`` for every name in ``splits`` (default
      ``("train", "val", "test")``, e.g. ``("Train", "Validation", "Test")``), ``n_per_class`` each;
      ``n_per_class`` may also be a dict ``{split_name: n}``.
    * ``class_names``: folder names for (real, fake), e.g. ``("Real", "FAKE")``.
    * ``n_fake``: a different number of fake images (imbalanced data); ``fmt``: png/jpg/mixed.
    Every call writes a fresh folder under ``tmp_path`` (or ``root=`` if given).
    """
    counter = {"n": 0}

    def make(n_per_class: int | dict[str, int] = 6, *, layout: str = "classes", size: int = 32,
             fmt: str = "png", class_names: Sequence[str] = ("real", "fake"),
             splits: Sequence[str] = ("train", "val", "test"), n_fake: int | None = None,
             root: Path | None = None, seed: int = 0) -> Path:
        if root is None:
            counter["n"] += 1
            root = tmp_path / f"tiny{counter['n']}"
        real_name, fake_name = class_names
        if layout == "classes":
            groups = [(root, n_per_class)]
        elif layout == "splits":
            groups = [(root / s, n_per_class[s] if isinstance(n_per_class, dict) else n_per_class)
                      for s in splits]
        else:
            raise ValueError(f"layout must be 'classes' or 'splits', got {layout!r}")
        for k, (folder, n) in enumerate(groups):
            assert isinstance(n, int)
            write_tiny_images(folder / real_name, n, fake=False, size=size, fmt=fmt,
                              seed=seed + 10 * k, prefix="real")
            write_tiny_images(folder / fake_name, n if n_fake is None else n_fake, fake=True,
                              size=size, fmt=fmt, seed=seed + 10 * k, prefix="fake")
        return root

    return make
