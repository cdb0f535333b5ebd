"""Export for TensorFlow Serving: both signatures checked in a fresh TensorFlow-only process."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import helpers_models as hm
import numpy as np
import pytest

from tfdeepfake.export import check_name, main, models_config, next_version
from tfdeepfake.savedmodel import latest_version, read_export_info, version_numbers

# Runs in a new interpreter that imports TensorFlow only, as TensorFlow Serving would load the model.
FRESH_PROCESS = r"""
import base64, json, sys
import numpy as np
import tensorflow as tf

version_dir, inputs, out = sys.argv[1:]
spec = json.load(open(inputs))
loaded = tf.saved_model.load(version_dir)
images = tf.constant(np.array(spec["images"], np.uint8))
blobs = tf.constant([base64.b64decode(b) for b in spec["blobs"]])
results = {}
for key, call in (("serving_default", lambda f: f(images=images)),
                  ("predict_bytes", lambda f: f(image_bytes=blobs))):
    outputs = call(loaded.signatures[key])
    for name, value in outputs.items():
        results[f"{key}/{name}"] = value.numpy()
        results[f"{key}/{name}/dtype"] = np.array(value.dtype.name)
assert not any(m.split(".")[0] == "tfdeepfake" for m in sys.modules), "tfdeepfake was imported"
np.savez(out, **results)
"""


@pytest.fixture(scope="module")
def fresh_results(tmp_path_factory) -> dict[str, np.ndarray]:
    """Outputs of both signatures in a fresh process, plus ``saved_model_cli show --all`` (run alongside)."""
    folder = tmp_path_factory.mktemp("fresh")
    images = np.stack([hm.random_image(45, 61, 10 + i) for i in range(2)])
    spec = {"images": images.tolist(),
            "blobs": [base64.b64encode(b).decode() for b in hm.sample_images()]}
    (folder / "inputs.json").write_text(json.dumps(spec))
    (folder / "fresh.py").write_text(FRESH_PROCESS)
    version_dir = str(hm.exported())
    cli = Path(sys.executable).with_name("saved_model_cli")
    show = (subprocess.Popen([str(cli), "show", "--all", "--dir", version_dir], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            if cli.is_file() else None)
    subprocess.run([sys.executable, str(folder / "fresh.py"), version_dir,
                    str(folder / "inputs.json"), str(folder / "out.npz")],
                   check=True, cwd=folder, timeout=300)
    with np.load(folder / "out.npz") as data:
        results = {k: data[k] for k in data.files}
    results["_images"] = images
    if show is not None:
        text, _ = show.communicate(timeout=300)
        results["_cli"] = np.array(text if show.returncode == 0 else "")
    return results


def _check(results: dict[str, np.ndarray], key: str, images: list[np.ndarray]) -> None:
    expected = hm.keras_reference(images, threshold=read_export_info(hm.exported())["threshold"])
    n = len(images)
    assert results[f"{key}/probability_fake"].shape == (n,)
    assert results[f"{key}/members"].shape == (n, 2)
    assert str(results[f"{key}/probability_fake/dtype"]) == "float32"
    assert str(results[f"{key}/label/dtype"]) == "int64"
    np.testing.assert_allclose(results[f"{key}/probability_fake"], expected["probability_fake"],
                               atol=1e-5)
    np.testing.assert_allclose(results[f"{key}/members"], expected["members"], atol=1e-5)
    np.testing.assert_array_equal(results[f"{key}/label"], expected["label"])


def test_serving_default_in_fresh_tensorflow_process_matches_keras(fresh_results):
    _check(fresh_results, "serving_default", list(fresh_results["_images"]))


def test_predict_bytes_in_fresh_tensorflow_process_matches_keras(fresh_results):
    # images of different sizes and formats in one batch, each scored as the Keras ensemble would
    _check(fresh_results, "predict_bytes", [hm.decoded(b) for b in hm.sample_images()])


def test_saved_model_cli_lists_both_signatures(fresh_results):
    if "_cli" not in fresh_results:
        pytest.skip(f"saved_model_cli not installed beside {sys.executable}")
    text = str(fresh_results["_cli"])
    for needle in ("signature_def['serving_default']", "signature_def['predict_bytes']",
                   "inputs['images'] tensor_info:", "inputs['image_bytes'] tensor_info:",
                   "DT_UINT8", "DT_STRING", "outputs['probability_fake']", "outputs['label']",
                   "outputs['members']", "shape: (-1, -1, -1, 3)", "shape: (-1, 2)"):
        assert needle in text, needle


def test_export_folder_layout():
    version_dir = hm.exported()
    base = version_dir.parent
    assert version_dir.name == "1" and (version_dir / "saved_model.pb").is_file()
    assert (base / "tiny.keras").is_file()
    assert models_config("tiny") == (base / "models.config").read_text()
    assert 'base_path: "/models/tiny"' in models_config("tiny")
    assert 'model_platform: "tensorflow"' in models_config("tiny")
    info = read_export_info(version_dir)
    assert info["threshold"] == pytest.approx((0.4 + 2 * 0.7) / 3)
    assert [m["name"] for m in info["members"]] == ["resnet18-test", "alexnet-test"]
    assert info["version"] == 1 and info["mode"] == "prob"
    assert not [p for p in base.iterdir() if p.name.startswith(".tmp-")]


def test_single_model_export_cli_and_version_numbering(tmp_path, capsys):
    import tensorflow as tf

    from tfdeepfake.runs import load_model

    run = hm.member_runs()[0]
    model_root = tmp_path / "exports" / "single"
    for existing in ("1", "7", "notes", ".tmp-partial"):  # versions 1 and 7 taken; others not versions
        (model_root / existing).mkdir(parents=True)
    assert version_numbers(model_root) == [1, 7] and next_version(model_root) == 8
    assert main([str(run), "--name", "single", "--root", str(tmp_path / "exports"),
                 "--threshold", "0.25"]) == 0
    assert "docker run" in capsys.readouterr().out
    assert version_numbers(model_root) == [1, 7, 8] and next_version(model_root) == 9
    version, folder = latest_version(model_root)
    assert version == 8 and read_export_info(folder)["threshold"] == 0.25  # not the run's 0.4
    assert (model_root / "single.keras").is_file()

    image = hm.random_image(50, 40, 5)
    out = tf.saved_model.load(str(folder)).signatures["serving_default"](images=tf.constant(image[None]))
    expected = hm.sigmoid(load_model(run / "model.keras").predict_on_batch(image[None].astype("f4")))
    assert out["members"].shape == (1, 1)
    np.testing.assert_allclose(out["probability_fake"].numpy(), expected[:, 0], atol=1e-5)
    np.testing.assert_allclose(out["members"].numpy(), expected, atol=1e-5)
    assert int(out["label"][0]) == int(expected[0, 0] >= 0.25)


def test_bad_names_and_arguments(tmp_path):
    for bad in ("", "a/b", "../x", "has space", ".hidden"):
        with pytest.raises(ValueError, match="model name"):
            check_name(bad)
    with pytest.raises(FileNotFoundError):
        latest_version(tmp_path)
    for argv in (["x", "--name", "a/b"], [str(tmp_path / "missing"), "--name", "ok"],
                 [str(hm.member_runs()[0]), "--name", "ok", "--threshold", "2"]):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--root", str(tmp_path)])
        assert exc.value.code == 2
    assert not (tmp_path / "ok").exists() or not version_numbers(tmp_path / "ok")



def _assert_signatures_agree_on_pillow_pixels(blob: bytes) -> None:
    """A client decoding a JPEG with Pillow and sending pixels to ``serving_default`` gets the score
    that ``predict_bytes`` gives for the file's bytes (JPEG decoded with the accurate IDCT)."""
    import tensorflow as tf

    signatures = tf.saved_model.load(str(hm.exported())).signatures
    pixels = hm.decoded(blob)
    assert not np.array_equal(tf.io.decode_jpeg(blob).numpy(), pixels)  # the fast IDCT differs
    by_pixels = signatures["serving_default"](images=tf.constant(pixels[None]))
    by_bytes = signatures["predict_bytes"](image_bytes=tf.constant([blob]))
    for key in ("probability_fake", "members"):
        np.testing.assert_allclose(by_bytes[key].numpy(), by_pixels[key].numpy(), atol=1e-6)


def test_signatures_agree_on_a_written_jpeg_decoded_by_pillow():
    rng = np.random.default_rng(3)
    _assert_signatures_agree_on_pillow_pixels(
        hm.encode(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8), "JPEG"))  # fine detail


def test_signatures_agree_on_an_rvf10k_jpeg_decoded_by_pillow(shared_data):
    files = sorted((shared_data / "rvf10k" / "test" / "fake").glob("*.jpg"))
    if not files:
        pytest.skip(f"no JPEG files in {shared_data / 'rvf10k' / 'test' / 'fake'}")
    _assert_signatures_agree_on_pillow_pixels(files[0].read_bytes())
