"""tfdeepfake (Keras/TensorFlow) vs the original project's PyTorch code on this machine's CPU (#5, #14).

``python -m benchmarks.vs_pytorch [--quick] [--json FILE]`` measures, side by side in one run:

1. training throughput (images/s, batch 32, 224 px) of the notebooks' models (:data:`MODELS`: AlexNet,
   the CNN-RNN hybrid, VGG13, Xception): our model built by ``tfdeepfake.models.build_model`` and
   compiled by ``tfdeepfake.train.compile_model`` (Keras ``train_on_batch``) vs two PyTorch columns of
   the same layouts (``benchmarks/torch_reference.py``): the notebooks' own float32 loop
   (``reference``) and the same models as a performance-minded PyTorch user runs them on this CPU
   (``tuned``: :data:`TORCH_TUNED`);
2. inference throughput (batch 32): our exported SavedModel (``serving_default``, uint8 images) and
   ``model.predict`` vs the reference in ``eval()`` under ``torch.no_grad()`` and the tuned column;
3. the input pipeline, JPEG folder -> normalised 224 px batches: ``tfdeepfake.data.make_dataset`` plus the
   model's own ``Normalization`` layer as a batch map (also: ``make_dataset`` alone, 0-255 batches as
   training consumes them) vs the reference ``DataLoader`` with 2 workers;
4. each side's peak resident memory (``VmHWM`` of its process, plus its DataLoader workers');
5. the bf16 matrix-multiply peak of the machine (best of TF and torch, 4096^3 bf16 matmuls), to which
   AlexNet inference is compared.

Our side runs with the fast defaults (``auto`` = mixed_bfloat16 on CPUs with AVX512_BF16/AMX, else
float32; no XLA); ``--levers`` or ``--train-settings``/``--infer-settings`` add rows for other settings
(float32, XLA, TensorFlow's oneDNN bf16 graph rewrite ``amp``, ``TF_ONEDNN_*`` variables, inter-op
threads); ``--torch-settings`` picks the PyTorch columns.

Every measurement runs in its own worker process per side and column (``--worker``; peak memory is not
shared). Workers are started one after the other and warmed up (warm-up excluded from timing), then the
parent asks them in turn for one timed repetition each (A B C, C B A, ...: ABBA order, so a slow drift
of the machine's load hits every column alike) and reports medians. A repetition during which other
processes kept more than ``--max-others`` CPU cores busy is discarded and redone (the PyTorch side slows
down far more than ours under contention, which would flatter us). Ratios are ours / PyTorch measured in
the same run; absolute images/s depend on the machine.

``--accuracy`` trains a small model on rvf10k with ``python -m tfdeepfake.train`` in float32 and with
the fast settings (same seed, same split) and reports both test accuracies.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "rvf10k"
MODELS = ("alexnet", "alexnet_rnn", "vgg13", "xception")
"""The notebooks' models (``benchmarks/torch_reference.py``); ``--models`` may name any tfdeepfake
architecture, timed on our side only when the reference has no model of that name."""
TASKS = ("peak", "pipeline", "train", "infer")
TARGETS = {"train": 1.5, "infer": 2.0, "train_tuned": 1.0, "infer_tuned": 1.0, "pipeline": 1.5,
           "pipeline_vs_train": 5.0, "alexnet_peak_fraction": 0.60}
REFERENCE = "reference"
"""The notebooks' own loop: float32, NCHW, eager, ``loss.item()`` every step."""
TUNED = "tuned"
"""The same PyTorch models as a performance-minded user runs them on this CPU (``TORCH_TUNED``)."""
TORCH_TUNED = "channels_last+auto+trycompile"
"""``channels_last`` memory format; bf16 autocast where the CPU has native bf16 (``auto``, the rule of
our side's ``auto``; emulated bf16 is ~50x slower on CPUs without it); ``torch.compile`` (inductor; for
inference with weight freezing, under ``inference_mode``) kept only when it compiles and beats eager on
a probe (``trycompile``)."""
TORCH_TOKENS = ("channels_last", "bf16", "auto", "compile", "trycompile")

# Our default ("fast") settings, the winners of the lever rows (see BENCHMARKS.md): bf16 where the CPU
# has AVX512_BF16/AMX ("auto"); XLA loses on CPU (its convolutions do not use oneDNN's bf16 kernels).
DEFAULT_TRAIN_SETTING = "auto"
DEFAULT_INFER_SETTING = "savedmodel:auto+frozen"
"""As ``python -m tfdeepfake.serve`` / ``predict`` run: bf16 where native, and
``TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1`` (``tfdeepfake.hardware.set_inference_env``)."""
LEVER_TRAIN_SETTINGS = ("float32", "mixed_bfloat16", "mixed_bfloat16+xla")
LEVER_INFER_SETTINGS = ("savedmodel:float32", "savedmodel:mixed_bfloat16",
                        "savedmodel:mixed_bfloat16+xla", "predict:mixed_bfloat16")


# ============================================================================================ settings
@dataclass
class Settings:
    """What to run. ``quick()`` and ``full()`` give the two standard modes."""

    models: tuple[str, ...] = MODELS
    tasks: tuple[str, ...] = TASKS
    image_size: int = 224
    batch: int = 32
    reps: int = 3
    train_steps: dict[str, int] = field(default_factory=lambda: {"alexnet": 4, "alexnet_rnn": 4,
                                                                  "vgg13": 1, "xception": 1})
    infer_batches: dict[str, int] = field(default_factory=lambda: {"alexnet": 12, "alexnet_rnn": 12,
                                                                    "vgg13": 1, "xception": 2})
    warmup: dict[str, int] = field(default_factory=lambda: {"alexnet": 2, "alexnet_rnn": 2, "vgg13": 1,
                                                             "xception": 2, "pipeline": 2})
    pipeline_images: int = 3008
    """Timed images per pipeline repetition (one rvf10k train epoch: long enough for tf.data's
    autotuning to settle, as it has in any real training run)."""
    peak_sizes: tuple[int, ...] = (2048, 4096)
    data: str = str(DEFAULT_DATA / "train")
    sides: tuple[str, ...] = ("tf", "torch")
    pipeline_settings: tuple[str, ...] = ("make_dataset+normalize", "make_dataset")
    """Our pipeline rows; the first is compared to the target (normalised batches, as the reference's)."""
    train_settings: dict[str, list[str]] = field(default_factory=dict)
    infer_settings: dict[str, list[str]] = field(default_factory=dict)
    torch_settings: tuple[str, ...] = (REFERENCE, TUNED)
    """The PyTorch columns of the train/infer rows: the notebooks' loop, then the tuned one (or any
    ``+``-joined :data:`TORCH_TOKENS`)."""
    workers: int = 2
    max_others: float = 0.3
    """A repetition is discarded (and redone) when other processes kept more CPU cores than this busy."""
    max_wait: float = 30.0
    """Seconds to wait for other processes to quiet down before each repetition."""
    retries: int = 2
    """Repetitions that may be redone in all, per measurement."""
    mode: str = "full"

    def train_rows(self, model: str) -> list[str]:
        return self.train_settings.get(model) or [DEFAULT_TRAIN_SETTING]

    def infer_rows(self, model: str) -> list[str]:
        return self.infer_settings.get(model) or [DEFAULT_INFER_SETTING]

    def steps(self, task: str, model: str) -> int:
        """Timed train steps / inference batches per repetition (2 / 4 for unlisted models)."""
        return (self.train_steps if task == "train" else self.infer_batches).get(
            model, 2 if task == "train" else 4)

    @classmethod
    def quick(cls) -> Settings:
        """Seconds: AlexNet only, 128 px, batch 16, one repetition (ratios indicative only)."""
        return cls(models=("alexnet",), image_size=128, batch=16, reps=1,
                   train_steps={"alexnet": 2}, infer_batches={"alexnet": 2}, max_wait=0.0, retries=0,
                   pipeline_images=192, peak_sizes=(2048,), mode="quick")

    @classmethod
    def full(cls) -> Settings:
        return cls()


# ============================================================================================ helpers
def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident set size (``VmHWM``) of a process in MiB (0.0 when unknown)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if pid == "self" else 0.0


def memory_status() -> dict[str, float]:
    """``VmRSS``, ``VmHWM`` (peak), ``RssAnon`` and ``RssFile`` (shared libraries) of this process, MiB."""
    keys = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
    out: dict[str, float] = {}
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            key = line.split(":")[0]
            if key in keys:
                out[key] = round(int(line.split()[1]) / 1024, 1)
    return out


def memory_stages(side: str, model: str, image_size: int = 224, batch: int = 32, steps: int = 4,
                  setting: str = "") -> list[tuple[str, dict[str, float]]]:
    """Memory after each stage of one training worker's work (``--memory-stages``): the framework's
    import, the model built and compiled, the first step, ``steps`` steps. Run in a fresh process."""
    stages = [("start", memory_status())]
    if side == "tf":
        _tf_setup("float32")
    else:
        import torch  # noqa: F401
    stages.append(("framework imported", memory_status()))
    m = (TFTrain(model, image_size, batch, 1, setting or DEFAULT_TRAIN_SETTING) if side == "tf"
         else TorchTrain(model, image_size, batch, 1, setting or REFERENCE))
    stages.append((f"model built ({m.params:,} parameters)", memory_status()))
    m.step()
    stages.append(("first training step", memory_status()))
    for _ in range(steps - 1):
        m.step()
    stages.append((f"{steps} training steps", memory_status()))
    return stages


def memory_table(results: dict[str, list[tuple[str, dict[str, float]]]]) -> str:
    """Markdown: one row per stage and side, RSS / peak / file-backed MiB."""
    lines = ["| side | stage | RSS MiB | peak RSS MiB | of which file-backed MiB |", "|---|---|---:|---:|---:|"]
    for side, stages in results.items():
        lines += [f"| {side} | {stage} | {v.get('VmRSS', 0):.0f} | {v.get('VmHWM', 0):.0f} | "
                  f"{v.get('RssFile', 0):.0f} |" for stage, v in stages]
    return "\n".join(lines)


def _busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine since boot (all cores, from ``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used by process ``pid`` and its descendants (DataLoader workers), living or reaped."""
    total, todo = 0.0, [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in stat[11:15]) / tick  # utime stime cutime cstime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


def _available_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError):
        pass
    return math.inf


def busy_cores(seconds: float = 1.0) -> float:
    """Average CPU cores kept busy by all processes over the next ``seconds``."""
    try:
        before = _busy_seconds()
        time.sleep(seconds)
        return (_busy_seconds() - before) / seconds
    except OSError:
        return 0.0


def wait_for_quiet(threshold: float, max_wait: float) -> float:
    """Wait (up to ``max_wait`` s) until other processes use at most ``threshold`` cores; seconds waited."""
    start = time.perf_counter()
    if max_wait <= 0:
        return 0.0
    while busy_cores(1.0) > threshold and time.perf_counter() - start < max_wait:
        pass
    return time.perf_counter() - start


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``)."""
    from tfdeepfake.hardware import cpu_name

    return cpu_name()


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def list_images(root: str | Path) -> list[tuple[str, int]]:
    """``(path, label)`` of the JPEG/PNG images under ``root/real`` (0) and ``root/fake`` (1)."""
    root = Path(root)
    items: list[tuple[str, int]] = []
    for label, cls in enumerate(("real", "fake")):
        items += [(str(p), label) for p in sorted((root / cls).rglob("*"))
                  if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.is_file()]
    if not items:
        raise FileNotFoundError(f"{root}: no images under real/ and fake/")
    return items


def conv_dense_flops(model: Any) -> int:
    """Multiply-add FLOPs (2 per MAC) of one image through the Conv2D, SeparableConv2D,
    DepthwiseConv2D, Dense and SimpleRNN layers (an RNN: one time step per sequence element, both
    matmuls; a layer applied several times, like Xception's shared middle module, counted each time)."""
    import keras

    total = 0
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.Model):
            continue
        nodes = [n for n in getattr(layer, "_inbound_nodes", []) if n.input_tensors and n.outputs]
        if not nodes:
            continue
        total += sum(_layer_flops(layer, n.input_tensors[0], n.outputs[0]) for n in nodes)
    return int(total)


def _layer_flops(layer: Any, inp: Any, out: Any) -> int:
    """FLOPs of one call of ``layer`` from ``inp`` to ``out`` (0 for layers not counted)."""
    import keras

    if isinstance(layer, keras.layers.SimpleRNN):
        cin, units = layer.cell.kernel.shape
        return 2 * inp.shape[1] * (cin * units + units * units)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw, cin, mult = layer.kernel.shape
        return 2 * out.shape[1] * out.shape[2] * kh * kw * cin * mult
    if isinstance(layer, keras.layers.SeparableConv2D):
        kh, kw, cin, mult = layer.depthwise_kernel.shape
        h, w, cout = out.shape[1:]
        return 2 * h * w * (kh * kw * cin * mult + cin * mult * cout)
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, cin, cout = layer.kernel.shape
        return 2 * out.shape[1] * out.shape[2] * kh * kw * cin * cout
    if isinstance(layer, keras.layers.Dense):
        return 2 * math.prod(layer.kernel.shape)
    return 0


def trainable_parameters(model: Any) -> int:
    """Trainable parameters of a Keras model."""
    return int(sum(math.prod(w.shape) for w in model.trainable_weights))


ENV_FLAGS = {
    "frozen": ("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS", "1"),  # inference: oneDNN keeps reordered weights
    "caller": ("TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD", "1"),
    "sysalloc": ("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1"),
    "noonednn": ("TF_ENABLE_ONEDNN_OPTS", "0"),
}
"""Setting flags that set a TensorFlow environment variable in the worker (before TF is imported)."""


def parse_setting(setting: str) -> dict[str, Any]:
    """``[mode:]precision[+xla][+inter1][+ENV_FLAG...]`` -> ``{"mode", "precision", "jit", ...}``."""
    mode, _, rest = setting.rpartition(":")
    tokens = rest.split("+")
    flags = set(tokens[1:])
    unknown = flags - {"xla", "inter1", "amp", *ENV_FLAGS}
    if unknown or mode not in ("", "savedmodel", "predict"):
        raise ValueError(f"bad setting {setting!r}: [savedmodel:|predict:]PRECISION[+xla][+inter1]"
                         f"[+{'|'.join(ENV_FLAGS)}]")
    return {"mode": mode or "savedmodel", "precision": tokens[0], "jit": "xla" in flags,
            "inter_op": 1 if "inter1" in flags else None, "amp": "amp" in flags,
            "env": dict(ENV_FLAGS[f] for f in sorted(flags & set(ENV_FLAGS)))}


# ======================================================================================== TF side
def _tf_setup(precision: str, inter_op: int | None = None, env: dict[str, str] | None = None,
              amp: bool = False) -> str:
    """Import TF quietly, apply env/thread settings and the Keras precision policy; return the policy.

    ``amp``: TensorFlow's graph rewrite to bf16 on oneDNN (``auto_mixed_precision_onednn_bfloat16``).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.update(env or {})
    import keras
    import tensorflow as tf

    from tfdeepfake.hardware import resolve_precision

    if inter_op is not None:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    if amp:
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    policy = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(policy)
    return policy


class TFTrain:
    """Our training step: ``build_model`` + ``compile_model`` (SGD momentum 0.9, BCE on the logit)."""

    def __init__(self, model: str, image_size: int, batch: int, steps: int, setting: str,
                 seed: int = 0) -> None:
        opts = parse_setting(setting)
        self.policy = _tf_setup(opts["precision"], opts["inter_op"], opts["env"], opts["amp"])
        import numpy as np
        import tensorflow as tf

        from tfdeepfake.config import TrainConfig
        from tfdeepfake.models import build_model
        from tfdeepfake.train import compile_model

        rng = np.random.default_rng(seed)
        self.model = build_model(model, image_size)
        self.params = trainable_parameters(self.model)
        compile_model(self.model, TrainConfig(model=model, precision=self.policy,
                                              jit_compile=opts["jit"]))
        self.x = tf.constant(rng.integers(0, 256, (batch, image_size, image_size, 3)), tf.float32)
        self.y = tf.constant(rng.integers(0, 2, (batch, 1)), tf.float32)
        self.batch, self.steps = batch, steps

    def step(self) -> None:
        self.model.train_on_batch(self.x, self.y)

    def run(self) -> float:
        start = time.perf_counter()
        for _ in range(self.steps):
            self.step()
        return self.steps * self.batch / (time.perf_counter() - start)


def _export_fallback(model: Any, path: Path, jit: bool) -> None:
    """``serving_default`` taking uint8 ``[b, h, w, 3]`` (as ``tfdeepfake.export``), optional XLA."""
    import keras
    import tensorflow as tf

    def serve(images: Any) -> dict[str, Any]:
        logit = tf.cast(model(tf.cast(images, tf.float32), training=False), tf.float32)
        return {"probability_fake": tf.sigmoid(logit[:, 0])}

    fn = tf.function(serve, jit_compile=True) if jit else serve
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", fn,
                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, "images")])
    archive.write_out(str(path), verbose=False)


class TFInfer:
    """Our inference: the exported SavedModel's ``serving_default`` (uint8), or ``model.predict``."""

    def __init__(self, model: str, image_size: int, batch: int, steps: int, setting: str,
                 seed: int = 0) -> None:
        opts = parse_setting(setting)
        self.policy = _tf_setup(opts["precision"], opts["inter_op"], opts["env"], opts["amp"])
        import numpy as np
        import tensorflow as tf

        from tfdeepfake.models import build_model

        rng = np.random.default_rng(seed)
        keras_model = build_model(model, image_size)
        self.flops = conv_dense_flops(keras_model)
        self.params = trainable_parameters(keras_model)
        self.mode, self.batch, self.steps = opts["mode"], batch, steps
        images = rng.integers(0, 256, (batch * steps, image_size, image_size, 3), dtype=np.uint8)
        self.exporter = ""
        if self.mode == "predict":
            keras_model.compile(jit_compile=opts["jit"])
            self.model, self.images = keras_model, images
            return
        self._tmp = tempfile.TemporaryDirectory(prefix="tfdeepfake-bench-")
        path = Path(self._tmp.name)
        if not opts["jit"]:  # the project's exporter, when it is there, as users get it
            try:
                from tfdeepfake.export import export_model

                path = export_model(keras_model, "bench", root=path)
                self.exporter = "tfdeepfake.export"
            except ImportError:
                pass
        if not self.exporter:
            _export_fallback(keras_model, path / "export", opts["jit"])
            path, self.exporter = path / "export", "keras.export.ExportArchive" + (
                "+xla" if opts["jit"] else "")
        self.serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        self.batches = [tf.constant(images[i * batch:(i + 1) * batch]) for i in range(steps)]

    def step(self) -> None:
        if self.mode == "predict":
            self.model.predict(self.images[: self.batch], batch_size=self.batch, verbose=0)
        else:
            self.serve(images=self.batches[0])["probability_fake"].numpy()

    def run(self) -> float:
        start = time.perf_counter()
        if self.mode == "predict":
            self.model.predict(self.images, batch_size=self.batch, verbose=0)
        else:
            for b in self.batches:
                self.serve(images=b)["probability_fake"].numpy()
        return self.steps * self.batch / (time.perf_counter() - start)


class TFPipeline:
    """``tfdeepfake.data.make_dataset`` (decode + bilinear resize to uint8, batch, float32; no cache).

    ``setting``: ``make_dataset`` (0-255 batches, as training consumes them: the model's first layer
    normalises, and that cost is inside our training/inference figures) or ``make_dataset+normalize``
    (plus the models' own ``normalize`` layer, ``tfdeepfake.models.common.normalize_layer``: one
    multiply-add per value, as a batch map: normalised batches, like the reference's).
    Each repetition opens a fresh iterator, pulls ``warmup`` batches untimed, times ``images`` worth
    of batches and closes it, so nothing is prefetched in the background while the other side runs.
    """

    SETTINGS = ("make_dataset", "make_dataset+normalize")

    def __init__(self, data: str, image_size: int, batch: int, images: int, warmup: int = 2,
                 setting: str = "make_dataset+normalize") -> None:
        if setting not in self.SETTINGS:
            raise ValueError(f"pipeline setting must be one of {self.SETTINGS}; got {setting!r}")
        _tf_setup("float32")
        import tensorflow as tf

        from tfdeepfake.data import make_dataset
        from tfdeepfake.models.common import normalize_layer

        items = list_images(data)
        ds = make_dataset([p for p, _ in items], [y for _, y in items], image_size=image_size,
                          batch_size=batch, training=False, cache=False).repeat()
        if setting == "make_dataset+normalize":
            norm = normalize_layer()
            ds = ds.map(lambda x, y: (norm(x), y), num_parallel_calls=tf.data.AUTOTUNE)
        self.dataset = ds.prefetch(tf.data.AUTOTUNE)
        self.batches, self.warmup = max(1, images // batch), warmup

    def step(self) -> None:
        next(iter(self.dataset))

    def run(self) -> float:
        iterator = iter(self.dataset)
        for _ in range(self.warmup):
            next(iterator)
        n = 0
        start = time.perf_counter()
        for _ in range(self.batches):
            n += int(next(iterator)[0].shape[0])
        seconds = time.perf_counter() - start
        del iterator
        return n / seconds


def _best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


class _Peak:
    """Best GFLOP/s of square matmuls of each size in ``sizes``: bf16 (the value) and float32."""

    def __init__(self, sizes: Sequence[int], repeats: int = 3) -> None:
        self.sizes, self.repeats = tuple(sizes), repeats
        self.extra: dict[str, float] = {}

    def _gflops(self, n: int, dtype: str) -> float:
        raise NotImplementedError

    def step(self) -> None:
        pass

    def run(self) -> float:
        best = {"bfloat16": 0.0, "float32": 0.0}
        for n in self.sizes:
            for dtype in best:
                value = self._gflops(n, dtype)
                self.extra[f"{dtype}_{n}_gflops"] = value
                best[dtype] = max(best[dtype], value)
        self.extra["float32_gflops"] = best["float32"]
        return best["bfloat16"]


class TFPeak(_Peak):
    """:class:`_Peak` with ``tf.matmul``."""

    def __init__(self, sizes: Sequence[int] | int, repeats: int = 3) -> None:
        _tf_setup("float32")
        import tensorflow as tf

        super().__init__([sizes] if isinstance(sizes, int) else sizes, repeats)
        self.tf = tf

    def _gflops(self, n: int, dtype: str) -> float:
        tf = self.tf
        a = tf.cast(tf.random.normal((n, n)), dtype)
        b = tf.cast(tf.random.normal((n, n)), dtype)
        mm = tf.function(lambda: tf.matmul(a, b))
        return 2 * n**3 / _best_seconds(lambda: mm().numpy(), self.repeats) / 1e9


# ===================================================================================== torch side
def parse_torch_setting(setting: str) -> dict[str, Any]:
    """``reference`` | ``tuned`` | ``+``-joined :data:`TORCH_TOKENS` -> options of the PyTorch side."""
    spec = TORCH_TUNED if setting == TUNED else setting
    tokens = set() if spec == REFERENCE else set(spec.split("+"))
    if tokens - set(TORCH_TOKENS) or not (tokens or spec == REFERENCE):
        raise ValueError(f"bad PyTorch setting {setting!r}: {REFERENCE}, {TUNED} or "
                         f"{'+'.join(TORCH_TOKENS)} (any of them)")
    bf16 = "bf16" in tokens
    if "auto" in tokens:
        from tfdeepfake.hardware import has_native_bf16  # no TensorFlow import

        bf16 = has_native_bf16()
    return {"reference": spec == REFERENCE, "channels_last": "channels_last" in tokens, "bf16": bf16,
            "compile": "compile" in tokens or "trycompile" in tokens,
            "keep_if_faster": "trycompile" in tokens}


class _TorchSide:
    """What the PyTorch training and inference measurements share: the model, batches and options.

    ``reference``: the notebooks' float32 NCHW eager code (``torch_reference.train_step`` /
    ``predict_logits``). Otherwise the options of :func:`parse_torch_setting`; with ``compile`` the
    model goes through ``torch.compile`` (which falls back to eager, noted in ``info``, when it fails) and
    with ``trycompile`` the compiled model is kept only when a probe times it faster than eager.
    """

    task = ""

    def __init__(self, model: str, image_size: int, batch: int, steps: int, setting: str = REFERENCE,
                 seed: int = 0) -> None:
        import torch

        from benchmarks import torch_reference as ref

        self.opts = parse_torch_setting(setting)
        torch.manual_seed(seed)
        self.torch, self.ref = torch, ref
        self.model = ref.build_reference(model, image_size)
        self.params = ref.trainable_parameters(self.model)
        self.batch, self.steps = batch, steps
        fmt = torch.channels_last if self.opts["channels_last"] else torch.contiguous_format
        self.model = self.model.to(memory_format=fmt)
        self.batches = [torch.randn(batch, 3, image_size, image_size).contiguous(memory_format=fmt)
                        for _ in range(steps)]
        self.info: dict[str, Any] = {"params": self.params, "bf16": self.opts["bf16"],
                                     "channels_last": self.opts["channels_last"]}
        self.setup()
        self.forward = self.model
        if self.opts["compile"]:
            self._compile()

    def setup(self) -> None:
        raise NotImplementedError

    def call(self, x: Any) -> None:
        raise NotImplementedError

    def _probe(self) -> float:
        """Seconds of one pass over the batches (after three untimed calls: oneDNN's first calls of a
        layout are slow, and one warm-up call left eager looking slower than a compiled model)."""
        for _ in range(3):
            self.call(self.batches[0])
        start = time.perf_counter()
        for b in self.batches:
            self.call(b)
        return time.perf_counter() - start

    def _compile(self) -> None:
        torch = self.torch
        eager = self._probe() if self.opts["keep_if_faster"] else None
        start = time.perf_counter()
        try:
            # inference: freezing constant-folds and prepacks the weights (inductor's CPU advice)
            options = {"freezing": True} if self.task == "infer" else None
            self.forward = torch.compile(self.model, options=options)
            self.call(self.batches[0])  # compiles
            self.info["compile_s"] = round(time.perf_counter() - start, 1)
        except Exception as exc:  # a user falls back to eager when the compiler fails
            self.forward = self.model
            self.info["compiled"] = False
            self.info["compile_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            return
        self.info["compiled"] = True
        if eager is not None:
            compiled = self._probe()
            self.info["probe_s"] = {"eager": round(eager, 3), "compiled": round(compiled, 3)}
            if compiled >= eager:
                self.forward, self.info["compiled"] = self.model, False

    def step(self) -> None:
        self.call(self.batches[0])

    def run(self) -> float:
        start = time.perf_counter()
        for b in self.batches:
            self.call(b)
        return self.steps * self.batch / (time.perf_counter() - start)


class TorchTrain(_TorchSide):
    """Training: the notebooks' loop (``reference``), or the same step with the tuned options."""

    task = "train"

    def setup(self) -> None:
        torch = self.torch
        self.model.train()
        self.optimizer = self.ref.make_optimizer(self.model)
        self.criterion = torch.nn.BCEWithLogitsLoss()
        self.y = torch.randint(0, 2, (self.batch, 1)).float()

    def call(self, x: Any) -> None:
        if self.opts["reference"]:
            self.ref.train_step(self.model, self.optimizer, self.criterion, x, self.y)
            return
        torch = self.torch
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.opts["bf16"]):
            logits = self.forward(x)
        loss = self.criterion(logits.float(), self.y)
        loss.backward()
        self.optimizer.step()
        loss.item()


class TorchInfer(_TorchSide):
    """Inference: ``eval()`` + ``no_grad`` (``reference``), or ``inference_mode`` + the tuned options."""

    task = "infer"

    def setup(self) -> None:
        self.model.eval()

    def call(self, x: Any) -> None:
        if self.opts["reference"]:
            self.ref.predict_logits(self.model, x)
            return
        torch = self.torch
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                    enabled=self.opts["bf16"]):
            self.forward(x).float().numpy()


class TorchPipeline:
    """The reference ``DataLoader`` (PIL, ToTensor, Resize, Normalize; ``workers`` processes).

    Each repetition starts the loader's workers (as every epoch of the original does), pulls ``warmup``
    batches untimed, times ``images`` worth of batches and shuts the workers down.
    """

    def __init__(self, data: str, image_size: int, batch: int, images: int, workers: int = 2,
                 warmup: int = 2) -> None:
        from benchmarks import torch_reference as ref

        self.loader = ref.reference_loader(ref.list_images(data), size=image_size, batch_size=batch,
                                           workers=workers, samples=10**8, persistent=False)
        self.batches, self.warmup = max(1, images // batch), warmup
        self.workers_rss_mb = 0.0

    def step(self) -> None:
        iterator = iter(self.loader)
        next(iterator)
        del iterator

    def run(self) -> float:
        iterator = iter(self.loader)
        for _ in range(self.warmup):
            next(iterator)
        n = 0
        start = time.perf_counter()
        for _ in range(self.batches):
            n += int(next(iterator)[0].shape[0])
        seconds = time.perf_counter() - start
        rss = sum(peak_rss_mb(w.pid) for w in getattr(iterator, "_workers", []))
        self.workers_rss_mb = max(self.workers_rss_mb, rss)
        del iterator
        return n / seconds

    def children_rss_mb(self) -> float:
        """Peak RSS of the DataLoader workers (summed; read just before each shutdown)."""
        return self.workers_rss_mb


class TorchPeak(_Peak):
    """:class:`_Peak` with ``torch.matmul``."""

    def __init__(self, sizes: Sequence[int] | int, repeats: int = 3) -> None:
        import torch

        super().__init__([sizes] if isinstance(sizes, int) else sizes, repeats)
        self.torch = torch

    def _gflops(self, n: int, dtype: str) -> float:
        torch = self.torch
        a = torch.randn(n, n).to(getattr(torch, dtype))
        b = torch.randn(n, n).to(getattr(torch, dtype))
        return 2 * n**3 / _best_seconds(lambda: torch.matmul(a, b), self.repeats) / 1e9


def make_measurement(spec: dict[str, Any]) -> Any:
    """The measurement object a worker runs for ``spec`` (see :class:`Job`)."""
    side, task = spec["side"], spec["task"]
    common = {"image_size": spec["image_size"], "batch": spec["batch"]}
    if task == "peak":
        return (TFPeak if side == "tf" else TorchPeak)(spec["peak_sizes"])
    if task == "pipeline":
        if side == "tf":
            return TFPipeline(spec["data"], images=spec["images"], warmup=spec["warmup"],
                              setting=spec["setting"], **common)
        return TorchPipeline(spec["data"], images=spec["images"], workers=spec["workers"],
                             warmup=spec["warmup"], **common)
    cls = {("tf", "train"): TFTrain, ("tf", "infer"): TFInfer,
           ("torch", "train"): TorchTrain, ("torch", "infer"): TorchInfer}[(side, task)]
    return cls(spec["model"], steps=spec["steps"], setting=spec["setting"], **common)


# ========================================================================================= worker
def worker_main(stdin: IO[str], out: IO[str]) -> int:
    """Worker loop: read a spec, build + warm up, answer ``run`` with one timed repetition."""

    def send(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    spec = json.loads(stdin.readline())
    try:
        start = time.perf_counter()
        m = make_measurement(spec)
        for _ in range(1 if spec["task"] == "pipeline" else spec.get("warmup", 1)):
            m.step()
        ready: dict[str, Any] = {"ready": True, "setup_s": round(time.perf_counter() - start, 2)}
        for key in ("policy", "exporter", "flops", "params"):
            if getattr(m, key, None):
                ready[key] = getattr(m, key)
        ready.update(getattr(m, "info", {}))
        send(ready)
        for line in stdin:
            command = json.loads(line)["cmd"]
            if command == "run":
                value = m.run()
                send({"value": value, "extra": dict(getattr(m, "extra", {}))})
            elif command == "quit":
                children = m.children_rss_mb() if hasattr(m, "children_rss_mb") else 0.0
                send({"peak_rss_mb": peak_rss_mb() + children, "children_rss_mb": children})
                break
    except Exception as exc:  # reported to the parent, which stops with the message
        import traceback

        send({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        return 1
    return 0


class Worker:
    """A ``--worker`` subprocess speaking JSON lines on its stdin / a private stdout pipe."""

    def __init__(self, spec: dict[str, Any], log: IO[str] | None = None, timeout: float = 1800) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.spec, self.timeout = spec, timeout
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.vs_pytorch", "--worker"], cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log or subprocess.DEVNULL,
            text=True, bufsize=1,
        )
        self._send(spec)
        self.ready = self._receive()

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            raise RuntimeError(f"worker {self.spec['side']}/{self.spec['task']} died "
                               f"(exit {self.proc.returncode}); rerun with --log FILE")
        message = json.loads(line)
        if "error" in message:
            self.proc.wait(timeout=30)
            raise RuntimeError(f"worker {self.spec}: {message['error']}\n{message['traceback']}")
        return message

    def run(self) -> dict[str, Any]:
        """One timed repetition; adds ``others_cores``: the CPU cores other processes kept busy."""
        try:
            busy, own, start = _busy_seconds(), _tree_cpu_seconds(self.proc.pid), time.perf_counter()
        except OSError:
            busy = None
        self._send({"cmd": "run"})
        result = self._receive()
        if busy is not None:
            wall = time.perf_counter() - start
            others = (_busy_seconds() - busy) - (_tree_cpu_seconds(self.proc.pid) - own)
            result["others_cores"] = max(0.0, others / wall) if wall > 0 else 0.0
        return result

    def quit(self) -> dict[str, Any]:
        self._send({"cmd": "quit"})
        result = self._receive()
        self.proc.wait(timeout=60)
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ===================================================================================== orchestrator
@dataclass
class Row:
    """One side of one measurement: its per-repetition values and peak memory."""

    task: str
    model: str | None
    side: str
    setting: str
    values: list[float] = field(default_factory=list)
    others: list[float] = field(default_factory=list)
    clean: list[bool] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    setup_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def kept(self) -> list[float]:
        """The values of the clean repetitions (all values when none was clean)."""
        kept = [v for v, c in zip(self.values, self.clean, strict=False) if c]
        return kept or self.values

    @property
    def median(self) -> float:
        return statistics.median(self.kept) if self.kept else float("nan")

    @property
    def label(self) -> str:
        return f"torch[{self.setting}]" if self.side == "torch" else f"ours[{self.setting}]"


def jobs_for(settings: Settings) -> Iterator[tuple[str, str | None, list[tuple[str, str]]]]:
    """``(task, model, [(side, setting), ...])`` in run order."""
    sides = settings.sides
    if "peak" in settings.tasks:
        yield "peak", None, [(s, "matmul") for s in sides]
    if "pipeline" in settings.tasks:
        pairs = [("tf", p) for p in settings.pipeline_settings] if "tf" in sides else []
        yield "pipeline", None, pairs + ([("torch", REFERENCE)] if "torch" in sides else [])
    for task in ("train", "infer"):
        if task not in settings.tasks:
            continue
        for model in settings.models:
            rows = settings.train_rows(model) if task == "train" else settings.infer_rows(model)
            pairs = [("tf", r) for r in rows] if "tf" in sides else []
            if "torch" in sides and model in MODELS:
                pairs += [("torch", t) for t in settings.torch_settings]
            yield task, model, pairs


def run_job(task: str, model: str | None, pairs: list[tuple[str, str]], settings: Settings,
            say: Callable[[str], None], log: IO[str] | None = None) -> list[Row]:
    """Start one worker per side (one after the other), then ABBA repetitions, then quit them."""
    rows = [Row(task, model, side, setting) for side, setting in pairs]
    workers: list[Worker] = []
    try:
        for row in rows:
            spec = {"side": row.side, "task": task, "model": model, "setting": row.setting,
                    "image_size": settings.image_size, "batch": settings.batch,
                    "steps": settings.steps(task, model or ""),
                    "warmup": settings.warmup.get(model or task, 1), "images": settings.pipeline_images,
                    "data": settings.data, "workers": settings.workers,
                    "peak_sizes": settings.peak_sizes}
            if _available_gib() < 4:
                say(f"  warning: only {_available_gib():.1f} GiB of memory available")
            worker = Worker(spec, log)
            workers.append(worker)
            row.setup_s = worker.ready.get("setup_s", 0.0)
            row.info = {k: v for k, v in worker.ready.items() if k not in ("ready", "setup_s")}
        rep = clean = 0
        while clean < settings.reps and rep < settings.reps + settings.retries:
            waited = wait_for_quiet(settings.max_others, settings.max_wait)
            order = list(range(len(rows)))
            for i in order if rep % 2 == 0 else order[::-1]:
                result = workers[i].run()
                rows[i].values.append(float(result["value"]))
                rows[i].others.append(float(result.get("others_cores", float("nan"))))
                for key, value in result.get("extra", {}).items():
                    rows[i].extra.setdefault(key, []).append(float(value))
            quiet = all(not r.others[-1] > settings.max_others for r in rows)
            for r in rows:
                r.clean.append(quiet)
            rep, clean = rep + 1, clean + quiet
            say(f"  {task:8s} {model or '':9s} rep {rep} ({'clean' if quiet else 'DISCARDED'}"
                f"{f', waited {waited:.0f} s' if waited >= 1 else ''}): "
                + "  ".join(f"{r.label} {r.values[-1]:.1f}" for r in rows)
                + "  (other processes' CPU cores: "
                + " ".join(f"{r.others[-1]:.1f}" for r in rows) + ")")
        for row, worker in zip(rows, workers, strict=True):
            row.peak_rss_mb = float(worker.quit()["peak_rss_mb"])
    finally:
        for worker in workers:
            worker.kill()
    return rows


def _ratio(ours: float, ref: float) -> float | None:
    return round(ours / ref, 3) if ref and ours and not math.isnan(ours) and not math.isnan(ref) \
        else None


def summarise(rows: list[Row], settings: Settings, meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON result: per architecture ``train_ratio``, ``infer_ratio``, ``pipeline_ratio``, ..."""

    def find(task: str, model: str | None, side: str) -> list[Row]:
        return [r for r in rows if r.task == task and r.model == model and r.side == side]

    def row_dict(r: Row) -> dict[str, Any]:
        d = {"setting": r.setting, "images_per_s": round(r.median, 3),
             "best": round(max(r.values), 3) if r.values else None,
             "values": [round(v, 3) for v in r.values], "clean": r.clean,
             "others_cores": [round(v, 2) for v in r.others], "peak_rss_mb": round(r.peak_rss_mb, 1),
             "setup_s": r.setup_s, **r.info}
        return d

    peaks = {r.side: r for r in rows if r.task == "peak"}
    bf16_peak = max((max(r.values) for r in peaks.values() if r.values), default=None)
    result: dict[str, Any] = {"meta": meta, "bf16_peak_gflops": bf16_peak and round(bf16_peak, 1),
                              "peak": {}, "pipeline": {}, "models": {}}
    for side, r in peaks.items():
        result["peak"][side] = {"bf16_gflops": [round(v, 1) for v in r.values],
                                **{k: [round(v, 1) for v in vs] for k, vs in r.extra.items()}}
    pipe_ours, pipe_ref = find("pipeline", None, "tf"), find("pipeline", None, "torch")
    pipeline_ratio = None
    if pipe_ours:
        result["pipeline"]["ours"] = row_dict(pipe_ours[0])
    if pipe_ref:
        result["pipeline"]["reference"] = row_dict(pipe_ref[0])
    if pipe_ours and pipe_ref:
        pipeline_ratio = _ratio(pipe_ours[0].median, pipe_ref[0].median)
        result["pipeline"]["ratio"] = pipeline_ratio
        result["pipeline"]["ratio_of_best"] = _ratio(max(pipe_ours[0].values),
                                                     max(pipe_ref[0].values))
        for r in pipe_ours:
            r.info["ratio"] = _ratio(r.median, pipe_ref[0].median)
            r.info["ratio_of_best"] = _ratio(max(r.values), max(pipe_ref[0].values))
        result["pipeline"]["ours"] = row_dict(pipe_ours[0])
    result["pipeline"]["rows"] = [row_dict(r) for r in pipe_ours]
    for model in settings.models:
        entry: dict[str, Any] = {"bf16_peak_gflops": result["bf16_peak_gflops"],
                                 "pipeline_ratio": pipeline_ratio}
        for task in ("train", "infer"):
            ours, torch_rows = find(task, model, "tf"), find(task, model, "torch")
            ref = [r for r in torch_rows if r.setting == REFERENCE]
            tuned = [r for r in torch_rows if r.setting != REFERENCE]
            if not ours and not torch_rows:
                continue
            block: dict[str, Any] = {"rows": [row_dict(r) for r in ours]}
            if ref:
                block["reference"] = row_dict(ref[0])
            if tuned:
                block["tuned"] = row_dict(tuned[0])
            if ours:
                best = ours[0]  # the first row is the default ("fast") setting
                for suffix, other in (("", ref), ("_tuned", tuned)):
                    if not other:
                        continue
                    entry[f"{task}_ratio{suffix}"] = _ratio(best.median, other[0].median)
                    entry[f"{task}_ratio{suffix}_of_best"] = _ratio(max(best.values),
                                                                    max(other[0].values))
                    for r in ours:
                        r.info[f"ratio{suffix}"] = _ratio(r.median, other[0].median)
                        r.info[f"ratio{suffix}_of_best"] = _ratio(max(r.values), max(other[0].values))
                block["ours"] = row_dict(best)
                block["rows"] = [row_dict(x) for x in ours]
                if torch_rows:
                    block["same_parameter_count"] = best.info.get("params") == torch_rows[0].info.get(
                        "params")
            entry[task] = block
        infer = entry.get("infer", {}).get("ours")
        if infer and infer.get("flops") and bf16_peak:
            achieved = infer["images_per_s"] * infer["flops"] / 1e9
            entry["infer_gflops"] = round(achieved, 1)
            entry["infer_peak_fraction"] = round(achieved / bf16_peak, 3)
        train = entry.get("train", {}).get("ours")
        if train and pipe_ours:
            entry["pipeline_vs_train"] = round(pipe_ours[0].median / train["images_per_s"], 2)
        result["models"][model] = entry
    return result


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _torch_note(row: dict[str, Any]) -> str:
    """What the tuned PyTorch worker actually ran: ``channels_last, bf16, compiled``."""
    notes = [n for n, on in (("channels_last", row.get("channels_last")), ("bf16", row.get("bf16")))
             if on]
    if "compiled" in row:
        notes.append("compiled" if row["compiled"] else
                     "eager: compile failed" if row.get("compile_error") else "eager: compile slower")
    return ", ".join(notes) or "fp32 eager"


def _mark(value: float | None, target: float) -> str:
    if value is None:
        return ""
    return "yes" if value >= target else f"NO ({value / target:.0%} of target)"


def table(result: dict[str, Any]) -> str:
    """A Markdown table of every measurement (medians) against both PyTorch columns, and the targets.

    ``notebooks``: the notebooks' float32 loop; ``tuned``: the same models as a performance-minded PyTorch
    user runs them (:data:`TORCH_TUNED`). ``params``: trainable parameters, ours / PyTorch's (a
    difference means the layouts differ, or PyTorch's second RNN bias: see BENCHMARKS.md).
    """
    lines = ["| measurement | ours (setting) | ours img/s | notebooks img/s | ratio | target | met | "
             "tuned PyTorch img/s | ratio vs tuned | met (>= 1x) | peak RSS MiB ours / notebooks / "
             "tuned | params ours / PyTorch |",
             "|---|---|---:|---:|---:|---:|---|---:|---:|---|---|---|"]

    def line(name: str, row: dict[str, Any], ref: dict[str, Any], tuned: dict[str, Any], target: float,
             tuned_target: float | None, mark: bool) -> str:
        ratio, ratio_tuned = row.get("ratio"), row.get("ratio_tuned")
        rss = " / ".join(_fmt(d.get("peak_rss_mb"), 0) for d in (row, ref, tuned) if d)
        params = (f"{row['params']:,} / {ref.get('params', tuned.get('params', 0)):,}"
                  if row.get("params") and (ref.get("params") or tuned.get("params")) else "-")
        tuned_cells = (f"{_fmt(tuned.get('images_per_s'))} ({_torch_note(tuned)}) | {_fmt(ratio_tuned, 2)} | "
                       f"{_mark(ratio_tuned, tuned_target) if mark and tuned_target else ''}"
                       if tuned else "- | - | ")
        if not all(any(d.get("clean") or [True]) for d in (row, ref, tuned) if d):
            name += " (no clean repetition: contended)"
        return (f"| {name} | {row.get('setting', '-')} | {_fmt(row.get('images_per_s'))} | "
                f"{_fmt(ref.get('images_per_s'))} | {_fmt(ratio, 2)} | {target}x | "
                f"{_mark(ratio, target) if mark else ''} | {tuned_cells} | {rss} | {params} |")

    for model, entry in result["models"].items():
        for task in ("train", "infer"):
            block = entry.get(task)
            if not block:
                continue
            ref, tuned = block.get("reference", {}), block.get("tuned", {})
            for i, row in enumerate(block["rows"] or [{}]):
                lines.append(line(f"{task} {model}", row, ref, tuned, TARGETS[task],
                                  TARGETS[f"{task}_tuned"], i == 0))
    pipe = result.get("pipeline", {})
    for i, row in enumerate(pipe.get("rows") or ([{}] if pipe.get("reference") else [])):
        lines.append(line("input pipeline", row, pipe.get("reference", {}), {}, TARGETS["pipeline"],
                          None, i == 0))
    extra = []
    if result.get("bf16_peak_gflops"):
        peak = result["peak"]
        extra.append(f"bf16 matmul peak: {result['bf16_peak_gflops']:.1f} GFLOP/s (best of "
                     + ", ".join(f"{side} bf16 {max(v['bf16_gflops']):.0f} / f32 "
                                 f"{max(v.get('float32_gflops') or [0]):.0f}" for side, v in peak.items())
                     + ")")
    for model, entry in result["models"].items():
        if entry.get("infer_peak_fraction") is not None:
            target = TARGETS["alexnet_peak_fraction"] if model == "alexnet" else None
            extra.append(f"{model} inference: {entry['infer_gflops']:.1f} GFLOP/s = "
                         f"{entry['infer_peak_fraction']:.0%} of the bf16 peak"
                         + (f" (target {target:.0%}: {_mark(entry['infer_peak_fraction'], target)})"
                            if target else ""))
        if entry.get("pipeline_vs_train") is not None:
            extra.append(f"pipeline / our {model} training rate: {entry['pipeline_vs_train']:.1f}x "
                         f"(target {TARGETS['pipeline_vs_train']}x: "
                         f"{_mark(entry['pipeline_vs_train'], TARGETS['pipeline_vs_train'])})")
    if result.get("meta", {}).get("mode") == "quick":
        extra.append("quick mode (small images and batches, one repetition): a smoke check; the "
                     "targets apply to the full mode")
    return "\n".join(lines) + ("\n\n" + "\n".join(f"- {e}" for e in extra) if extra else "")


def run_benchmark(settings: Settings, say: Callable[[str], None] = print,
                  log: IO[str] | None = None, command: str = "") -> dict[str, Any]:
    """Run every job of ``settings``; return the summary dict (see :func:`summarise`)."""
    meta = {"cpu": cpu_model(), "cores": os.cpu_count(), "date": datetime.now(timezone.utc).isoformat(
        timespec="seconds"), "mode": settings.mode, "command": command,
        "settings": dataclasses.asdict(settings), "load_before": round(load_average(), 2),
        "python": platform.python_version()}
    meta.update(_versions(settings.sides))
    started = time.perf_counter()
    rows: list[Row] = []
    for task, model, pairs in jobs_for(settings):
        say(f"{task} {model or ''}: " + ", ".join(f"{s}[{v}]" for s, v in pairs))
        rows += run_job(task, model, pairs, settings, say, log)
    meta["load_after"] = round(load_average(), 2)
    meta["seconds"] = round(time.perf_counter() - started, 1)
    return summarise(rows, settings, meta)


def _versions(sides: Sequence[str]) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("tensorflow", "keras", "torch", "numpy", "pillow"):
        if dist == "torch" and "torch" not in sides:
            continue
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


# ========================================================================================= accuracy
def run_accuracy(data: Path, model: str, image_size: int, epochs: int, seeds: Sequence[int],
                 settings: Sequence[str], out_dir: Path, say: Callable[[str], None] = print,
                 batch: int = 32) -> dict[str, Any]:
    """Train ``model`` with ``python -m tfdeepfake.train`` once per setting and seed; test accuracy.

    A setting is ``PRECISION[+xla]``; everything else (split, augmentation, seed, epochs) is equal.
    """
    results: dict[str, Any] = {"model": model, "image_size": image_size, "epochs": epochs,
                               "data": str(data), "runs": {}}
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for seed in seeds:
        for setting in settings:
            opts = parse_setting(setting)
            from tfdeepfake.hardware import resolve_precision

            precision = resolve_precision(opts["precision"])
            run = out_dir / f"{model}-{setting.replace(':', '_').replace('+', '_')}-seed{seed}"
            args = [sys.executable, "-m", "tfdeepfake.train", "--model", model, "--data", str(data),
                    "--image-size", str(image_size), "--epochs", str(epochs), "--batch-size",
                    str(batch), "--seed", str(seed), "--precision", precision, "--out", str(run),
                    "--patience", str(epochs)]
            if opts["jit"]:
                args.append("--jit-compile")
            start = time.perf_counter()
            proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                raise RuntimeError(f"training failed ({' '.join(args)}):\n{proc.stderr[-3000:]}")
            metrics = json.loads((run / "metrics.json").read_text())
            test = metrics["test"]
            entry = {"precision": precision, "jit_compile": opts["jit"], "seed": seed,
                     "test_accuracy": test["accuracy"], "test_roc_auc": test.get("roc_auc"),
                     "train_seconds": metrics.get("train_seconds"), "wall_seconds": round(seconds, 1),
                     "epochs_run": metrics.get("epochs_run"), "n_test": test.get("n_images")}
            results["runs"].setdefault(setting, []).append(entry)
            say(f"  {setting:24s} seed {seed}: test accuracy {entry['test_accuracy']:.4f}, "
                f"AUC {entry['test_roc_auc']:.4f}, training {entry['train_seconds']} s")
    for setting, runs in results["runs"].items():
        accs = [r["test_accuracy"] for r in runs]
        results.setdefault("summary", {})[setting] = {
            "mean_test_accuracy": round(statistics.mean(accs), 4),
            "std_test_accuracy": round(statistics.stdev(accs), 4) if len(accs) > 1 else None,
            "mean_train_seconds": round(statistics.mean(r["train_seconds"] for r in runs), 1)}
    n = next(iter(results["runs"].values()))[0].get("n_test") or 1000
    results["binomial_std_at_0.5"] = round(math.sqrt(0.25 / n), 4)
    return results


# ============================================================================================= CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.vs_pytorch", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="seconds: AlexNet, 128 px, one repetition")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--models", nargs="+", metavar="MODEL",
                   help=f"tfdeepfake architectures (default: {' '.join(MODELS)}, the notebooks' "
                        f"models; any other is timed on our side only)")
    p.add_argument("--tasks", nargs="+", choices=TASKS, help="measurements (default: all)")
    p.add_argument("--reps", type=int, help="timed repetitions per side (default 3; quick 1)")
    p.add_argument("--batch", type=int, help="batch size (default 32)")
    p.add_argument("--image-size", type=int, help="image size (default 224)")
    p.add_argument("--steps", type=int, help="timed train steps / inference batches per repetition")
    p.add_argument("--pipeline-images", type=int, help="images per pipeline repetition")
    p.add_argument("--data", default=None, help=f"JPEG folder with real/ fake/ (default "
                                                 f"{DEFAULT_DATA / 'train'})")
    p.add_argument("--ours-only", action="store_true", help="skip the PyTorch side")
    p.add_argument("--torch-settings", nargs="+", metavar="SETTING",
                   help=f"PyTorch columns of the train/infer rows (default: {REFERENCE} {TUNED}): "
                        f"{REFERENCE} (the notebooks' loop), {TUNED} (= {TORCH_TUNED}) or "
                        f"'+'-joined {'/'.join(TORCH_TOKENS)}; the first non-{REFERENCE} one is the "
                        f"tuned column")
    p.add_argument("--train-settings", nargs="+", metavar="SETTING",
                   help="our training rows, e.g. float32 mixed_bfloat16 mixed_bfloat16+xla auto "
                        "(first = the one compared to the targets; default: the fast defaults)")
    p.add_argument("--infer-settings", nargs="+", metavar="SETTING",
                   help="our inference rows, e.g. savedmodel:auto savedmodel:float32 predict:auto "
                        "savedmodel:mixed_bfloat16+xla")
    p.add_argument("--levers", action="store_true",
                   help=f"rows for each lever: train {LEVER_TRAIN_SETTINGS}, infer {LEVER_INFER_SETTINGS}")
    p.add_argument("--log", metavar="FILE", help="append the workers' stderr to FILE")
    p.add_argument("--max-others", type=float, help="discard a repetition during which other "
                   "processes kept more CPU cores busy than this (default 0.3)")
    p.add_argument("--max-wait", type=float, help="seconds to wait for a quiet machine before each "
                   "repetition (default 30; quick 0)")
    p.add_argument("--retries", type=int, help="discarded repetitions redone per measurement "
                   "(default 2; quick 0)")
    p.add_argument("--accuracy", action="store_true",
                   help="instead: train on rvf10k in float32 and with the fast settings, compare "
                        "test accuracy")
    p.add_argument("--accuracy-model", default="resnet18")
    p.add_argument("--accuracy-image-size", type=int, default=64)
    p.add_argument("--accuracy-epochs", type=int, default=4)
    p.add_argument("--accuracy-seeds", type=int, nargs="+", default=[1337])
    p.add_argument("--accuracy-settings", nargs="+", default=["float32", "auto"])
    p.add_argument("--memory-stages", action="store_true",
                   help="instead: memory after each stage of a training worker (framework import, model "
                        "built, first step, --steps steps), each side in a fresh process")
    p.add_argument("--memory-worker", nargs=3, metavar=("SIDE", "MODEL", "SETTING"),
                   help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    s = Settings.quick() if args.quick else Settings.full()
    if args.models:
        s.models = tuple(args.models)
    if args.tasks:
        s.tasks = tuple(args.tasks)
    for name, attr in (("reps", "reps"), ("batch", "batch"), ("image_size", "image_size"),
                       ("pipeline_images", "pipeline_images"), ("data", "data"),
                       ("max_others", "max_others"), ("max_wait", "max_wait"),
                       ("retries", "retries")):
        if getattr(args, name) is not None:
            setattr(s, attr, getattr(args, name))
    if args.steps is not None:
        s.train_steps = dict.fromkeys(s.models, args.steps)
        s.infer_batches = dict.fromkeys(s.models, args.steps)
    if args.ours_only:
        s.sides = ("tf",)
    train_rows = list(args.train_settings or (LEVER_TRAIN_SETTINGS if args.levers else []))
    infer_rows = list(args.infer_settings or (LEVER_INFER_SETTINGS if args.levers else []))
    for setting in train_rows + infer_rows:
        parse_setting(setting)
    if args.torch_settings:
        for setting in args.torch_settings:
            parse_torch_setting(setting)
        s.torch_settings = tuple(args.torch_settings)
    if train_rows:
        s.train_settings = dict.fromkeys(s.models, train_rows)
    if infer_rows:
        s.infer_settings = dict.fromkeys(s.models, infer_rows)
    return s


def run_memory_stages(args: argparse.Namespace, command: str) -> int:
    """``--memory-stages``: :func:`memory_stages` of each side (and each ``--train-settings`` row of
    ours) for each ``--models`` model, each in its own process; a table, and the JSON with ``--json``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sides = [("tf", s) for s in (args.train_settings or [DEFAULT_TRAIN_SETTING])]
    if not args.ours_only:
        sides += [("torch", s) for s in (args.torch_settings or [REFERENCE])]
    result: dict[str, Any] = {"meta": {"cpu": cpu_model(), "command": command, "date": datetime.now(
        timezone.utc).isoformat(timespec="seconds")}, "models": {}}
    for model in args.models or ["alexnet"]:
        stages: dict[str, Any] = {}
        for side, setting in sides:
            extra = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in ("image_size", "batch", "steps")
                     if getattr(args, k) is not None]
            proc = subprocess.run([sys.executable, "-m", "benchmarks.vs_pytorch", "--memory-worker", side,
                                   model, setting, *extra], cwd=ROOT, env=env, capture_output=True,
                                  text=True)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("STAGES ")), None)
            if proc.returncode or line is None:
                raise RuntimeError(f"memory worker {side} {model} failed:\n{proc.stderr[-2000:]}")
            stages[f"{'ours' if side == 'tf' else 'torch'}[{setting}]"] = json.loads(line[7:])
        result["models"][model] = stages
        print(f"\n{model}\n\n{memory_table(stages)}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        out = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)  # library chatter on stdout must not mix with the protocol
        sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), write_through=True)
        return worker_main(sys.stdin, out)
    command = "python -m benchmarks.vs_pytorch " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.memory_worker:
        side, model, setting = args.memory_worker
        stages = memory_stages(side, model, args.image_size or 224, args.batch or 32, args.steps or 4,
                               "" if setting == "-" else setting)
        print("STAGES " + json.dumps(stages), flush=True)
        return 0
    if args.memory_stages:
        return run_memory_stages(args, command)
    if args.accuracy:
        data = Path(args.data) if args.data else DEFAULT_DATA
        with tempfile.TemporaryDirectory(prefix="tfdeepfake-acc-") as tmp:
            print(f"accuracy: {args.accuracy_model} {args.accuracy_image_size} px, "
                  f"{args.accuracy_epochs} epochs on {data}", flush=True)
            result = run_accuracy(data, args.accuracy_model, args.accuracy_image_size,
                                  args.accuracy_epochs, args.accuracy_seeds, args.accuracy_settings,
                                  Path(tmp), say=lambda m: print(m, flush=True))
        result["meta"] = {"cpu": cpu_model(), "date": datetime.now(timezone.utc).isoformat(
            timespec="seconds"), "command": command}
        print(json.dumps(result.get("summary", {}), indent=2))
    else:
        settings = settings_from_args(args)
        log = open(args.log, "a") if args.log else None  # noqa: SIM115
        try:
            print(f"{cpu_model()}, {os.cpu_count()} cores, load {load_average():.1f}; "
                  f"mode {settings.mode}", flush=True)
            result = run_benchmark(settings, say=lambda m: print(m, flush=True), log=log,
                                   command=command)
        finally:
            if log:
                log.close()
        print()
        print(table(result))
        print(f"\n{result['meta']['seconds']:.0f} s, load {result['meta']['load_before']} -> "
              f"{result['meta']['load_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
