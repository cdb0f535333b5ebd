"""``benchmarks/vs_pytorch.py`` smoke tests: the Keras side with tiny sizes (32 px, 2 steps), the
worker protocol end to end, the summary/JSON keys; the PyTorch reference when torch is installed."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is not installed with the package
    sys.path.insert(0, str(ROOT))

from benchmarks import vs_pytorch as vs  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch not installed (pip install -e .[bench])")


def _alexnet_flops(s: int) -> int:
    """Hand count for ``tfdeepfake.models.alexnet`` at ``s`` px (same-padded convs and pools)."""
    c1 = math.ceil(s / 4)
    c2 = math.ceil(c1 / 2)
    c3 = math.ceil(c2 / 2)
    flat = math.ceil(c3 / 2) ** 2 * 256
    macs = (c1 * c1 * 64 * 11 * 11 * 3 + c2 * c2 * 192 * 5 * 5 * 64
            + c3 * c3 * (384 * 9 * 192 + 256 * 9 * 384 + 256 * 9 * 256)
            + flat * 4096 + 4096 * 4096 + 4096)
    return 2 * macs


def test_tf_side_tiny(tiny_dataset):
    """Our training step, exported SavedModel, predict, pipeline and matmul peak at 32 px."""
    train = vs.TFTrain("alexnet", image_size=32, batch=4, steps=2, setting="auto")
    train.step()  # warm-up
    assert train.run() > 0
    assert train.policy in ("mixed_bfloat16", "float32")

    infer = vs.TFInfer("alexnet", image_size=32, batch=4, steps=2, setting="savedmodel:float32")
    infer.step()
    assert infer.run() > 0 and infer.exporter
    assert infer.flops == _alexnet_flops(32)
    predict = vs.TFInfer("alexnet", image_size=32, batch=4, steps=2, setting="predict:float32")
    assert predict.run() > 0

    root = tiny_dataset(5, fmt="jpg")
    pipe = vs.TFPipeline(str(root), image_size=32, batch=4, images=8)
    x, y = next(iter(pipe.dataset))
    assert x.shape == (4, 32, 32, 3) and y.shape == (4, 1)
    assert -3 < float(np.min(x)) and float(np.max(x)) < 3  # ImageNet-normalised
    assert pipe.run() > 0

    peak = vs.TFPeak((32, 64), repeats=1)
    assert peak.run() > 0 and peak.extra["float32_gflops"] > 0 and "bfloat16_32_gflops" in peak.extra


def test_flops_count_at_224():
    from tfdeepfake.models import build_model

    assert vs.conv_dense_flops(build_model("alexnet", 224)) == _alexnet_flops(224)


def test_worker_end_to_end(tmp_path, capsys):
    """``main`` with our side only: a worker subprocess, a clean repetition, the table and the JSON."""
    out = tmp_path / "result.json"
    code = vs.main(["--ours-only", "--models", "alexnet", "--tasks", "train", "--image-size", "32",
                    "--batch", "4", "--steps", "2", "--reps", "1", "--max-wait", "0",
                    "--max-others", "100", "--train-settings", "float32", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    row = result["models"]["alexnet"]["train"]["ours"]
    assert row["setting"] == "float32" and row["images_per_s"] > 0 and row["peak_rss_mb"] > 100
    assert row["clean"] == [True]
    assert "| train alexnet | float32 |" in capsys.readouterr().out


def _row(task, model, side, setting, values, rss=100.0):
    row = vs.Row(task, model, side, setting, values=list(values), peak_rss_mb=rss)
    row.others = [0.0] * len(values)
    row.clean = [True] * len(values)
    return row


def test_summary_ratios_and_table():
    settings = vs.Settings(models=("alexnet",))
    rows = [
        _row("peak", None, "tf", "matmul", [200.0, 250.0]),
        _row("peak", None, "torch", "matmul", [400.0, 300.0]),
        _row("pipeline", None, "tf", "make_dataset", [900.0, 1000.0, 1100.0]),
        _row("pipeline", None, "torch", "reference", [500.0, 500.0, 500.0]),
        _row("train", "alexnet", "tf", "auto", [50.0, 52.0, 10.0]),
        _row("train", "alexnet", "torch", "reference", [30.0, 35.0, 40.0]),
        _row("infer", "alexnet", "tf", "savedmodel:auto", [200.0, 210.0, 190.0]),
        _row("infer", "alexnet", "torch", "reference", [100.0, 100.0, 100.0]),
    ]
    rows[4].clean = [True, True, False]  # a disturbed repetition is left out of the median
    rows[6].info["flops"] = 1_600_000_000
    result = vs.summarise(rows, settings, {"cpu": "x"})
    entry = result["models"]["alexnet"]
    assert result["bf16_peak_gflops"] == 400.0 == entry["bf16_peak_gflops"]
    assert entry["train_ratio"] == round(51.0 / 35.0, 3)
    assert entry["infer_ratio"] == 2.0 and entry["pipeline_ratio"] == 2.0
    assert entry["train"]["ours"]["images_per_s"] == 51.0
    assert entry["train"]["reference"]["images_per_s"] == 35.0
    assert entry["infer_peak_fraction"] == round(200 * 1.6 / 400, 3)
    assert entry["pipeline_vs_train"] == round(1000 / 51, 2)
    text = vs.table(result)
    assert "| train alexnet | auto | 51.0 | 35.0 | 1.46 |" in text
    assert "NO (97% of target)" in text and "80% of the bf16 peak" in text
    json.dumps(result)


def test_settings_parsing():
    assert vs.parse_setting("auto") == {"mode": "savedmodel", "precision": "auto", "jit": False,
                                        "inter_op": None, "amp": False, "env": {}}
    opts = vs.parse_setting("predict:mixed_bfloat16+xla+frozen")
    assert opts["mode"] == "predict" and opts["jit"] and opts["env"] == {
        "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS": "1"}
    with pytest.raises(ValueError):
        vs.parse_setting("float32+turbo")
    quick = vs.settings_from_args(vs.build_parser().parse_args(["--quick", "--ours-only"]))
    assert quick.models == ("alexnet",) and quick.sides == ("tf",) and quick.reps == 1
    levers = vs.settings_from_args(vs.build_parser().parse_args(["--levers"]))
    assert levers.train_rows("vgg13") == list(vs.LEVER_TRAIN_SETTINGS)


@needs_torch
@pytest.mark.parametrize(("name", "size"), [("alexnet", 64), ("xception", 71)])
def test_reference_matches_our_parameter_count(name, size):
    from benchmarks.torch_reference import build_reference, trainable_parameters
    from tfdeepfake.models import build_model

    ours = build_model(name, size)
    n_ours = sum(int(np.prod(w.shape)) for w in ours.trainable_weights)
    assert trainable_parameters(build_reference(name, size)) == n_ours


@needs_torch
def test_torch_side_tiny(tiny_dataset):
    import torch

    from benchmarks import torch_reference as ref

    train = vs.TorchTrain("alexnet", image_size=32, batch=4, steps=2)
    train.step()
    assert train.run() > 0
    infer = vs.TorchInfer("xception", image_size=71, batch=2, steps=1)
    assert infer.run() > 0 and not infer.model.training
    assert ref.build_reference("vgg13")(torch.zeros(1, 3, 32, 32)).shape == (1, 1)

    root = tiny_dataset(4, size=40, fmt="jpg")
    items = ref.list_images(root)
    assert [y for _, y in items] == [0] * 4 + [1] * 4
    x, y = ref.ReferenceImageFolder(items, size=32)[0]
    assert x.shape == (3, 32, 32) and y.tolist() == [0.0]
    pipe = vs.TorchPipeline(str(root), image_size=32, batch=4, images=8, workers=2)
    assert pipe.run() > 0
    assert pipe.children_rss_mb() > 0


@needs_torch
def test_reference_transforms_follow_torchvision():
    import torch
    from PIL import Image

    from benchmarks import torch_reference as ref

    arr = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    t = ref.to_tensor(Image.fromarray(arr))
    assert t.shape == (3, 6, 8) and torch.allclose(t, torch.from_numpy(arr).permute(2, 0, 1) / 255)
    assert ref.resize(t, 3).shape == (3, 3, 4)  # shorter side to 3, aspect kept
    assert ref.resize(t, 6) is t
    n = ref.normalize(t.clone())
    expected = (t - torch.tensor(ref.IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(
        ref.IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(n, expected)
