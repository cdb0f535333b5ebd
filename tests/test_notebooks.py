"""The notebooks are committed without outputs, and each executes with a tiny configuration.

They run in order in one working folder (03 and 04 reuse the runs of 02) on a kernel spec written
under a temporary folder that starts *this* interpreter (``sys.executable``), so the kernel is the venv's
ipykernel with this checkout importable, whatever ``python3`` kernel is installed elsewhere.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("01_data.ipynb", "02_train_and_compare.ipynb", "03_ensemble_export_serve.ipynb",
             "04_robustness_and_explain.ipynb")
KERNEL = "tfdeepfake-tests"
TINY = {  # overrides of the parameters cells (only the names a notebook defines are injected)
    "MODELS": ["alexnet"], "IMAGE_SIZE": 32,  # one small model: the two-model path is in test_experiment "EPOCHS": 1, "BATCH_SIZE": 8,
    "N_SAMPLES": 3, "N_REQUEST": 2, "ROBUSTNESS_IMAGES": 6, "N_EXPLAIN": 2,
    "LEVELS": {"jpeg": [100, 30], "blur": [0.0, 2.0], "downscale": [1.0, 0.5]},
}


def _parameters_cell(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    return tagged[0]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs_and_with_a_parameters_cell(name):
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: outputs not stripped"
    i = _parameters_cell(nb)
    assert all(c.cell_type == "markdown" for c in nb.cells[:i]), "parameters must be the first code cell"
    assert "OUT = " in nb.cells[i].source and "DATA = None" in nb.cells[i].source


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A kernel spec starting this interpreter, tiny data folders and the shared OUT folder."""
    from conftest import write_tiny_images

    base = tmp_path_factory.mktemp("notebooks")
    spec = base / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tfdeepfake tests", "language": "python",
        "env": {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"},
    }))
    folders = {}
    for key, n, seed in (("DATA", 8, 0), ("TEST_DATA", 3, 1), ("CROSS", 2, 2)):
        folders[key] = base / "data" / key.lower()
        write_tiny_images(folders[key] / "real", n, fake=False, seed=seed, prefix="real")
        write_tiny_images(folders[key] / "fake", n, fake=True, seed=seed, prefix="fake")
    params = {**TINY, "DATA": str(folders["DATA"]), "TEST_DATA": str(folders["TEST_DATA"]),
              "CROSS_DATA": [str(folders["CROSS"])], "OUT": str(base / "out")}
    return base, params


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name, workspace, monkeypatch):
    base, params = workspace
    monkeypatch.setenv("JUPYTER_PATH", str(base / "jupyter"))
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    i = _parameters_cell(nb)
    defined = {line.split("=")[0].strip() for line in nb.cells[i].source.splitlines() if " = " in line}
    source = "\n".join(f"{k} = {v!r}" for k, v in params.items() if k in defined)
    injected = nbformat.v4.new_code_cell(source + "\nimport sys\nprint(sys.executable)")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(i + 1, injected)

    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=300,
                                     resources={"metadata": {"path": str(base)}})
    client.execute()
    printed = "".join(o.get("text", "") for o in nb.cells[i + 1].outputs)
    assert printed.strip() == sys.executable
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors

    out = Path(params["OUT"])
    expected = {
        "01_data.ipynb": ["data_balance.png", "samples_train_folder.png"],
        "02_train_and_compare.ipynb": ["runs/alexnet/model.keras", "roc-test.png", "curves-alexnet.png"],
        "03_ensemble_export_serve.ipynb": ["runs/ensemble-experiment/model.keras",
                                           "saved_models/notebook/1/saved_model.pb"],
        "04_robustness_and_explain.ipynb": ["robustness.png", "perturbations.png", "roc-cross.png"],
    }[name]
    for rel in expected:
        assert (out / rel).is_file(), rel
    if name == "04_robustness_and_explain.ipynb":
        assert len(list(out.glob("gradcam-*.png"))) == 2
