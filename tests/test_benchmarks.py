"""``benchmarks/vs_pytorch.py`` smoke tests: the Keras side with tiny sizes (32 px, 2 steps), the
worker protocol end to end, the summary/JSON keys; the PyTorch reference when torch is installed."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import time
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
    """Hand count for ``tfdeepfake.models.alexnet`` (notebook 1) at ``s`` px: conv1 11/4 unpadded,
    3x3/2 unpadded pools (a pool on a map under 3x3 pads instead: ``ceil(n / 2)``)."""

    def pool(n: int) -> int:
        return (n - 3) // 2 + 1 if n >= 3 else math.ceil(n / 2)

    c1 = (s - 11) // 4 + 1
    c2 = pool(c1)
    c3 = pool(c2)
    flat = pool(c3) ** 2 * 256
    macs = (c1 * c1 * 96 * 11 * 11 * 3 + c2 * c2 * 256 * 5 * 5 * 96
            + c3 * c3 * (384 * 9 * 256 + 384 * 9 * 384 + 256 * 9 * 384)
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
    """AlexNet by hand; Xception counts its shared middle module nine times; the hybrid its RNNs."""
    from tfdeepfake.models import build_model

    assert vs.conv_dense_flops(build_model("alexnet", 224)) == _alexnet_flops(224)
    xception = build_model("xception", 64)
    middle = 2 * 3 * 4 * 4 * (9 * 728 + 728 * 728)  # three separable 728 convs at 4x4 (64 px)
    without_middle = vs.conv_dense_flops(xception) - 9 * middle
    assert 0 < without_middle < vs.conv_dense_flops(xception) / 2
    rnn = build_model("alexnet_rnn", 67)  # 1x1x256 map: flatten 256
    conv_and_rnn = vs.conv_dense_flops(rnn)
    rnns = 2 * (256 * 256 + 256 * 256 + 256 * 256 + 256 * 256 + 256 * 128 + 128 * 128
                + 128 * 64 + 64 * 64 + 64 * 64 + 64 * 64)
    heads = 2 * (64 * 256 + 256)
    assert conv_and_rnn == _alexnet_flops(67) - 2 * (256 * 4096 + 4096 * 4096 + 4096) + rnns + heads


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
        _row("train", "alexnet", "torch", "tuned", [60.0, 60.0, 60.0]),
        _row("infer", "alexnet", "tf", "savedmodel:auto", [200.0, 210.0, 190.0]),
        _row("infer", "alexnet", "torch", "reference", [100.0, 100.0, 100.0]),
        _row("infer", "alexnet", "torch", "tuned", [150.0, 160.0, 170.0]),
    ]
    rows[4].clean = [True, True, False]  # a disturbed repetition is left out of the median
    rows[4].info["params"] = rows[5].info["params"] = rows[6].info["params"] = 46_753_857
    rows[6].info.update(channels_last=True, bf16=False, compiled=False)
    rows[7].info["flops"] = 1_600_000_000
    rows[9].info.update(channels_last=True, bf16=False, compiled=False, compile_error="x")
    result = vs.summarise(rows, settings, {"cpu": "x"})
    entry = result["models"]["alexnet"]
    assert result["bf16_peak_gflops"] == 400.0 == entry["bf16_peak_gflops"]
    assert entry["train_ratio"] == round(51.0 / 35.0, 3)
    assert entry["train_ratio_tuned"] == round(51.0 / 60.0, 3)
    assert entry["infer_ratio"] == 2.0 and entry["pipeline_ratio"] == 2.0
    assert entry["infer_ratio_tuned"] == round(200 / 160, 3)
    assert entry["train"]["ours"]["images_per_s"] == 51.0
    assert entry["train"]["reference"]["images_per_s"] == 35.0
    assert entry["train"]["tuned"]["images_per_s"] == 60.0
    assert entry["train"]["same_parameter_count"] is True
    assert entry["infer_peak_fraction"] == round(200 * 1.6 / 400, 3)
    assert entry["pipeline_vs_train"] == round(1000 / 51, 2)
    text = vs.table(result)
    assert ("| train alexnet | auto | 51.0 | 35.0 | 1.46 | 1.5x | NO (97% of target) | "
            "60.0 (channels_last, eager: compile slower) | 0.85 | NO (85% of target) |") in text
    assert "46,753,857 / 46,753,857" in text
    assert "| infer alexnet | savedmodel:auto | 200.0 | 100.0 | 2.00 | 2.0x | yes | " \
           "160.0 (channels_last, eager: compile failed) | 1.25 | yes |" in text
    assert "80% of the bf16 peak" in text and "contended" not in text
    result["models"]["alexnet"]["infer"]["tuned"]["clean"] = [False] * 3
    assert "| infer alexnet (no clean repetition: contended) |" in vs.table(result)
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
def test_reference_models_are_the_notebooks():
    """Parameter counts at 224 px (issue #14's figures), AlexNet's 6,400-wide flatten, the hybrid's
    length-1 sequence, Xception's one middle-flow module applied nine times with shared weights."""
    import torch

    from benchmarks import torch_reference as ref

    with torch.device("meta"):  # shapes and counts only: nothing allocated, nothing computed
        x = torch.zeros(2, 3, 224, 224)
        for name, expected in ref.PARAMETERS_AT_224.items():
            model = ref.build_reference(name)
            assert ref.trainable_parameters(model) == expected, name
            assert model(x).shape == (2, 1), name
        alexnet = ref.build_reference("alexnet")
        stages = [tuple(m(torch.zeros(1, 3, 224, 224)).shape[-2:]) for m in (
            alexnet.features[:4], alexnet.features[:8], alexnet.features[:19])]
        assert stages == [(26, 26), (12, 12), (5, 5)]
        assert alexnet.classifier[2].in_features == 6400
        rnn = ref.build_reference("alexnet_rnn")
        assert (rnn.rnn1.input_size, rnn.rnn4.num_layers, rnn.rnn4.hidden_size) == (6400, 2, 64)
        xception = ref.build_reference("xception")
        calls: list[int] = []
        xception.middle.register_forward_hook(lambda mod, inp, out: calls.append(id(mod)))
        xception(x)
        assert len(calls) == 9 and len(set(calls)) == 1
        # its BN placement: every separable conv but the middle module's last is followed by BN
        middle = list(xception.middle.residual)
        assert isinstance(middle[-1], ref.DepthWiseSeparable)
        assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in middle) == 2
    assert ref.AlexNet(67)(torch.zeros(1, 3, 67, 67)).shape == (1, 1)  # the smallest AlexNet input
    with pytest.raises(ValueError, match="no PyTorch reference"):
        ref.build_reference("resnet18")


@needs_torch
@pytest.mark.parametrize(("name", "size", "gap"), [("alexnet", 67, 0), ("alexnet_rnn", 67, 768),
                                                   ("xception", 32, 0)])
def test_both_sides_build_the_same_layout(name, size, gap):
    """Our model and the notebooks' have the same trainable parameters (the hybrid: PyTorch's second
    bias vector per RNN layer, 256 + 256 + 128 + 64 + 64, is the only difference)."""
    from benchmarks.torch_reference import build_reference, trainable_parameters
    from tfdeepfake.models import build_model

    ours = vs.trainable_parameters(build_model(name, size))
    assert trainable_parameters(build_reference(name, size)) - ours == gap


@needs_torch
def test_torch_side_tiny(tiny_dataset):
    import torch

    from benchmarks import torch_reference as ref

    train = vs.TorchTrain("alexnet", image_size=67, batch=4, steps=2)
    train.step()
    assert train.run() > 0 and train.info["params"] == train.params
    before = [p.detach().clone() for p in train.model.parameters()]
    train.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, train.model.parameters(), strict=True))
    infer = vs.TorchInfer("xception", image_size=32, batch=2, steps=1)
    assert infer.run() > 0 and not infer.model.training
    tuned = vs.TorchTrain("alexnet_rnn", image_size=67, batch=2, steps=1, setting="channels_last")
    tuned.step()
    assert tuned.run() > 0 and tuned.info["channels_last"] and "compiled" not in tuned.info
    assert tuned.batches[0].is_contiguous(memory_format=torch.channels_last)
    tuned_infer = vs.TorchInfer("vgg13", image_size=32, batch=2, steps=1, setting="channels_last")
    assert tuned_infer.run() > 0

    root = tiny_dataset(4, size=40, fmt="jpg")
    items = ref.list_images(root)
    assert [y for _, y in items] == [0] * 4 + [1] * 4
    x, y = ref.ReferenceImageFolder(items, size=32)[0]
    assert x.shape == (3, 32, 32) and y.tolist() == [0.0]
    pipe = vs.TorchPipeline(str(root), image_size=32, batch=4, images=8, workers=2)
    assert pipe.run() > 0
    assert pipe.children_rss_mb() > 0


@needs_torch
def test_torch_settings_and_compile_fallback(monkeypatch):
    """``tuned`` = channels_last + bf16 only where native + torch.compile kept only when it works
    and is faster; a compiler failure falls back to eager, recorded in the worker's info."""
    import torch

    from tfdeepfake.hardware import has_native_bf16

    tuned = vs.parse_torch_setting(vs.TUNED)
    assert tuned == {"reference": False, "channels_last": True, "bf16": has_native_bf16(),
                     "compile": True, "keep_if_faster": True}
    assert vs.parse_torch_setting(vs.REFERENCE)["reference"]
    assert vs.parse_torch_setting("bf16+compile")["bf16"]
    for bad in ("turbo", "channels_last+turbo", ""):
        with pytest.raises(ValueError, match="bad PyTorch setting"):
            vs.parse_torch_setting(bad)

    def broken(model, **kwargs):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(torch, "compile", broken)
    failed = vs.TorchInfer("xception", image_size=32, batch=1, steps=1, setting="channels_last+compile")
    assert failed.info["compiled"] is False and "no compiler" in failed.info["compile_error"]
    assert failed.forward is failed.model and failed.run() > 0

    def slow(model, **kwargs):
        def forward(x):  # the eager work twice plus a pause: slower than eager however busy the CPU
            model(x)
            time.sleep(3.0)
            return model(x)
        return forward

    monkeypatch.setattr(torch, "compile", slow)
    kept_eager = vs.TorchInfer("xception", image_size=32, batch=1, steps=1,
                               setting="channels_last+trycompile")
    assert kept_eager.info["compiled"] is False and "compile_error" not in kept_eager.info
    assert kept_eager.info["probe_s"]["compiled"] > kept_eager.info["probe_s"]["eager"]
    assert kept_eager.forward is kept_eager.model


@needs_torch
def test_reference_transforms_follow_torchvision():
    import torch
    from PIL import Image

    from benchmarks import torch_reference as ref

    arr = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    t = ref.to_tensor(Image.fromarray(arr))
    assert t.shape == (3, 6, 8) and torch.allclose(t, torch.from_numpy(arr).permute(2, 0, 1) / 255)
    image = Image.fromarray(arr)
    assert ref.resize(image, 3).size == (4, 3)  # shorter side to 3, aspect kept (PIL: w, h)
    assert ref.resize(Image.fromarray(arr.transpose(1, 0, 2)), 3).size == (3, 4)
    assert ref.resize(image, 6) is image
    assert np.array_equal(np.asarray(ref.resize(image, 12)),
                          np.asarray(image.resize((16, 12), Image.BILINEAR)))
    n = ref.normalize(t.clone())
    expected = (t - torch.tensor(ref.IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(
        ref.IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(n, expected)
    # the notebooks' order: Resize on the PIL image, then ToTensor, then Normalize
    out = ref.reference_transform(3)(image)
    assert out.shape == (3, 3, 4)
    assert torch.allclose(out, ref.normalize(ref.to_tensor(ref.resize(image, 3))))


def test_memory_stages_tiny():
    """``--memory-stages``: one row per stage, the peak never falls, the framework's pages counted."""
    stages = vs.memory_stages("tf", "alexnet", image_size=32, batch=2, steps=2)
    names = [name for name, _ in stages]
    assert names[:2] == ["start", "framework imported"] and names[-1] == "2 training steps"
    assert "parameters)" in names[2]
    peaks = [v["VmHWM"] for _, v in stages]
    # the kernel's RSS counters are per-CPU approximations (percpu_counter since Linux 6.2), so a later
    # peak can read a few pages under an earlier one; it never falls by more than that
    assert all(b >= a - 2.0 for a, b in zip(peaks[:-1], peaks[1:], strict=True)) and peaks[-1] > 100
    assert stages[1][1]["RssFile"] > 0
    text = vs.memory_table({"ours[auto]": stages})
    assert text.count("\n") == len(stages) + 1 and "| ours[auto] | framework imported |" in text


def test_step_cost_smoke(tmp_path):
    from benchmarks import step_cost

    out = tmp_path / "rows.json"
    assert step_cost.main(["--json", str(out), "model", "--models", "resnet18", "--sizes", "32",
                           "--batch-sizes", "4", "--steps", "2"]) == 0
    (row,) = json.loads(out.read_text())
    assert (row["model"], row["size"], row["batch"], row["jit"], row["conv_grad"]) == ("resnet18", 32, 4, False, "fast")
    assert row["ms_step"] > 0 and row["img_s"] == pytest.approx(4 / row["ms_step"] * 1000, rel=0.01)
