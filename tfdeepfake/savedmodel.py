"""Reading an export (``saved_models/NAME/VERSION/``, written by ``tfdeepfake.export``).

Version folders, the ``tfdeepfake.json`` metadata beside a version, the ``.keras`` file kept with it, and
:class:`ExportedModel`: one version loaded with ``tf.saved_model.load`` (no Keras needed), its signatures
checked, its member names and threshold read. ``tfdeepfake.serve`` and ``tfdeepfake.predict`` both load
exports through it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfdeepfake import DEFAULT_THRESHOLD

INFO_FILE = Path("assets.extra") / "tfdeepfake.json"
SAVED_MODEL_FILE = "saved_model.pb"
SIGNATURES = ("serving_default", "predict_bytes")
"""The signatures of an export: uint8 pixel batches, and encoded images."""
OUTPUTS = ("probability_fake", "label", "members")


def version_numbers(model_root: str | Path) -> list[int]:
    """The version numbers under ``model_root`` (folders named by an integer), ascending."""
    root = Path(model_root)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def latest_version(model_root: str | Path) -> tuple[int, Path]:
    """``(version, folder)`` of the newest version; ``FileNotFoundError`` when there is none."""
    found = version_numbers(model_root)
    if not found:
        raise FileNotFoundError(f"{model_root}: no version folder (1/, 2/, ...) holding a SavedModel")
    return found[-1], Path(model_root) / str(found[-1])


def find_saved_model(path: str | Path) -> Path | None:
    """The SavedModel folder ``path`` names: itself when it holds one (a version folder), else its newest
    version holding one (``saved_models/NAME``); ``None`` when there is none."""
    path = Path(path)
    if (path / SAVED_MODEL_FILE).is_file():
        return path
    held = [v for v in version_numbers(path) if (path / str(v) / SAVED_MODEL_FILE).is_file()]
    return path / str(held[-1]) if held else None


def keras_beside(version_dir: str | Path) -> Path | None:
    """The ``.keras`` file saved with an export, for Grad-CAM.

    ``NAME/VERSION.keras`` if there is one; else ``NAME/NAME.keras`` (what ``tfdeepfake.export`` writes:
    the Keras model of the newest version), used only when ``version_dir`` is that newest version.
    """
    version_dir = Path(version_dir)
    base = version_dir.parent
    exact = base / f"{version_dir.name}.keras"
    if exact.is_file():
        return exact
    newest = find_saved_model(base)
    if newest is None or newest.resolve() != version_dir.resolve():
        return None
    named = base / f"{base.name}.keras"
    if named.is_file():
        return named
    found = [p for p in base.glob("*.keras") if not p.name.startswith(".")]
    return found[0] if len(found) == 1 else None


def read_export_info(version_dir: str | Path) -> dict[str, Any]:
    """The ``tfdeepfake.json`` written beside an export (empty when the folder has none)."""
    path = Path(version_dir) / INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


class ExportedModel:
    """One export version, loaded once; safe to call from several threads.

    ``require``: the signatures it must have (``serving_default`` alone accepts any SavedModel whose
    default signature returns ``probability_fake``). ``members`` are the names recorded in the export's
    metadata, else ``member_0``, ``member_1``... for each column of the ``members`` output;
    ``threshold`` is the recorded one, else :data:`~tfdeepfake.DEFAULT_THRESHOLD`.
    """

    def __init__(self, version_dir: str | Path, *, require: Sequence[str] = SIGNATURES) -> None:
        import tensorflow as tf

        self.path = Path(version_dir)
        self.version = int(self.path.name) if self.path.name.isdigit() else None
        self.name = self.path.parent.name if self.version is not None else self.path.name
        self.info = read_export_info(self.path)
        self.loaded = tf.saved_model.load(str(self.path))
        missing = [s for s in require if s not in self.loaded.signatures]
        if missing:
            raise ValueError(f"{self.path}: SavedModel lacks signature(s) {missing} "
                             "(not a tfdeepfake export)")
        self.signatures = {s: self.loaded.signatures[s] for s in SIGNATURES
                           if s in self.loaded.signatures}
        outputs = self.signatures[SIGNATURES[0]].structured_outputs
        if "probability_fake" not in outputs:
            raise ValueError(f"{self.path}: signature {SIGNATURES[0]!r} has no 'probability_fake' output")
        n = int(outputs["members"].shape[-1]) if "members" in outputs else 0
        listed = [m if isinstance(m, str) else m.get("name", "") for m in self.info.get("members") or []]
        self.members = ([str(m) for m in listed] if len(listed) == n
                        else [f"member_{i}" for i in range(n)])
        self.threshold = float(self.info.get("threshold", DEFAULT_THRESHOLD))

    def run(self, signature: str, batch: list[bytes] | np.ndarray) -> dict[str, np.ndarray]:
        """Every output of ``signature`` on ``batch`` (encoded images for ``predict_bytes``, else uint8
        pixels ``[batch, height, width, 3]``), as NumPy arrays."""
        import tensorflow as tf

        fn = self.signatures[signature]
        key = next(iter(fn.structured_input_signature[1]))
        value = (tf.constant(batch, tf.string) if signature == "predict_bytes"
                 else tf.constant(np.asarray(batch).astype(np.uint8)))
        return {k: v.numpy() for k, v in fn(**{key: value}).items()}
