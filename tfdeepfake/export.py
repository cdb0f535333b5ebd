"""Export a model or ensemble for TensorFlow Serving: ``python -m tfdeepfake.export MODEL --name NAME``.

Writes ``ROOT/NAME/VERSION/`` (VERSION = the next free integer; written under a temporary name and then
renamed, so a polling TF Serving never sees half a model) with Keras' ``ExportArchive``. Signatures:

- ``serving_default``: ``images`` uint8 ``[batch, height, width, 3]`` of any height and width (each
  member resizes inside);
- ``predict_bytes``: ``image_bytes`` string ``[batch]`` of encoded JPEG/PNG/GIF/BMP images, which may differ
  in size: each image is decoded (JPEG with the accurate IDCT, the same pixels as Pillow and as training)
  and resized to every member's own size, exactly as the member would.

Both return ``probability_fake`` float32 ``[batch]``, ``label`` int64 ``[batch]`` (1 = fake when
``probability_fake >= threshold``) and ``members`` float32 ``[batch, n_members]`` (each member's P(fake)).
Beside the version folders: ``NAME.keras`` (the Keras model of the newest version) and
``models.config`` for ``tensorflow_model_server --model_config_file``. ``VERSION/assets.extra/
tfdeepfake.json`` records the threshold and the members (size, input representation, flip averaging; TF
Serving ignores it); ``tfdeepfake.savedmodel`` reads all of it back.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tfdeepfake import DEFAULT_THRESHOLD, cli
from tfdeepfake.data import decode_tf
from tfdeepfake.runs import load_model, resolve_model, save_model, write_atomic
from tfdeepfake.savedmodel import (  # noqa: F401  (re-exported: reading an export lives in savedmodel)
    INFO_FILE,
    OUTPUTS,
    SIGNATURES,
    latest_version,
    read_export_info,
    version_numbers,
)

MODELS_CONFIG = "models.config"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_name(name: str) -> str:
    """A model name usable as a folder and in URLs (letters, digits, ``.``, ``_``, ``-``)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"model name must match {_NAME.pattern} (used in paths and URLs); got {name!r}")
    return name


def next_version(model_root: str | Path) -> int:
    """One more than the newest version (1 when there is none)."""
    return max(version_numbers(model_root), default=0) + 1


def models_config(name: str) -> str:
    """A ``--model_config_file`` for ``tensorflow_model_server`` with ``ROOT`` mounted at ``/models``."""
    return ("model_config_list {\n  config {\n"
            f'    name: "{name}"\n    base_path: "/models/{name}"\n    model_platform: "tensorflow"\n'
            "  }\n}\n")


def _member_resizer(member: Any) -> Any:
    """The member's own resize layer (a plain bilinear ``Resizing`` to its size if it has none)."""
    import keras

    from tfdeepfake.models.fusion import model_image_size, resize_layer

    found = resize_layer(member)
    if found is not None:
        return found
    size = model_image_size(member)
    return keras.layers.Resizing(size, size, interpolation="bilinear", dtype="float32")


def serving_functions(model: Any, threshold: float) -> dict[str, tuple[Any, list[Any]]]:
    """``{signature: (fn, input_signature)}`` for ``serving_default`` and ``predict_bytes``."""
    import tensorflow as tf

    from tfdeepfake.models.fusion import split_ensemble

    members, fuse = split_ensemble(model)
    resizers = [_member_resizer(m) for m in members]

    def heads(inputs: Sequence[Any]) -> dict[str, Any]:
        logits = [tf.cast(m(x, training=False), tf.float32)
                  for m, x in zip(members, inputs, strict=True)]
        fused = tf.cast(fuse(logits), tf.float32) if fuse is not None else logits[0]
        prob = tf.sigmoid(fused[:, 0])
        return {"probability_fake": prob,
                "label": tf.cast(prob >= tf.constant(threshold, tf.float32), tf.int64),
                "members": tf.sigmoid(tf.concat(logits, axis=1))}

    def serve_images(images: Any) -> dict[str, Any]:
        return heads([tf.cast(images, tf.float32)] * len(members))

    def decode_and_resize(data: Any) -> tuple[Any, ...]:
        image = decode_tf(data)  # the pipeline's decoder: JPEG with the accurate IDCT (Pillow's pixels)
        image = tf.cast(image, tf.float32)[tf.newaxis]
        return tuple(resize(image)[0] for resize in resizers)

    def serve_bytes(image_bytes: Any) -> dict[str, Any]:
        specs = tuple(tf.TensorSpec([r.height, r.width, 3], tf.float32) for r in resizers)
        resized = tf.map_fn(decode_and_resize, image_bytes, fn_output_signature=specs)
        return heads(list(resized))

    return {
        "serving_default": (serve_images, [tf.TensorSpec([None, None, None, 3], tf.uint8, "images")]),
        "predict_bytes": (serve_bytes, [tf.TensorSpec([None], tf.string, "image_bytes")]),
    }


def export_model(
    model_or_path: Any, name: str, *, root: str | Path = "saved_models", threshold: float | None = None,
) -> Path:
    """Export a Keras model, ``.keras`` file or run folder to ``ROOT/NAME/VERSION/``; return that folder.

    ``threshold`` (for ``label``) defaults to the run's validation threshold when given a run folder
    that recorded one, else :data:`~tfdeepfake.DEFAULT_THRESHOLD`.
    """
    import keras

    from tfdeepfake.models import has_tta_flip, model_representation
    from tfdeepfake.models.fusion import model_image_size, split_ensemble

    check_name(name)
    source: Path | None = None
    if isinstance(model_or_path, str | Path):
        ref = resolve_model(model_or_path)
        source, model = ref.model_path, load_model(ref.model_path)
        if threshold is None:
            threshold = ref.threshold
    else:
        model = model_or_path
    threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1]; got {threshold}")

    base = Path(root) / name
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{uuid.uuid4().hex}"
    archive = keras.export.ExportArchive()
    archive.track(model)
    for signature, (fn, spec) in serving_functions(model, threshold).items():
        archive.add_endpoint(signature, fn, input_signature=spec)
    try:
        archive.write_out(str(tmp), verbose=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    members, fuse = split_ensemble(model)
    info: dict[str, Any] = {
        "name": name, "threshold": threshold, "image_size": model_image_size(model),
        "mode": fuse.mode if fuse is not None else None,
        "weights": fuse.normalised_weights(len(members)) if fuse is not None else [1.0],
        "members": [{"name": m.name, "image_size": model_image_size(m), "input": model_representation(m),
                     "tta_flip": has_tta_flip(m)} for m in members],
        "source": str(source) if source else None, "signatures": list(SIGNATURES),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    while True:  # another export may take a number meanwhile: rename fails, try the next one
        version = next_version(base)
        info["version"] = version
        (tmp / INFO_FILE).parent.mkdir(exist_ok=True)
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        try:
            os.rename(tmp, base / str(version))
            break
        except OSError:
            if not tmp.is_dir():
                raise
    if source is not None:
        write_atomic(base / f"{name}.keras", lambda partial: shutil.copyfile(source, partial))
    else:
        save_model(model, base / f"{name}.keras")
    (base / MODELS_CONFIG).write_text(models_config(name))
    return base / str(version)


def describe_export(version_dir: str | Path) -> str:
    """What was written and the commands that serve it (ours and TensorFlow Serving's)."""
    version_dir = Path(version_dir)
    base = version_dir.parent.resolve()
    name, root = base.name, base.parent
    return "\n".join([
        f"exported {name} version {version_dir.name} to {version_dir} "
        "(signatures serving_default: uint8 images; predict_bytes: encoded images)",
        f"  Keras model:           {version_dir.parent / (name + '.keras')}",
        f"  serve it:              python -m tfdeepfake.serve --model-dir {version_dir.parent}",
        f'  with TF Serving:       docker run --rm -p 8501:8501 -v "{base}:/models/{name}" '
        f"-e MODEL_NAME={name} tensorflow/serving",
        f'  or with models.config: docker run --rm -p 8501:8501 -v "{root}:/models" tensorflow/serving '
        f"--model_config_file=/models/{name}/{MODELS_CONFIG}",
    ])


def _main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tfdeepfake.export",
                                description="Export a detector or ensemble for TensorFlow Serving.")
    p.add_argument("model", help="run folder (also ensemble-NAME/) or .keras file")
    p.add_argument("--name", required=True, help="model name: writes ROOT/NAME/VERSION/")
    p.add_argument("--root", default="saved_models", help="(default: %(default)s)")
    p.add_argument("--threshold", type=cli.threshold, default=None,
                   help="P(fake) at which label = 1 (default: the run's validation threshold, else "
                        f"{DEFAULT_THRESHOLD})")
    args = cli.add_debug_flag(p).parse_args(argv)
    cli.input_path("MODEL", args.model)  # checked before the model is loaded
    check_name(args.name)
    cli.output_dir("--root", args.root, optional=False)
    out = export_model(args.model, args.name, root=args.root, threshold=args.threshold)
    print(describe_export(out))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
