"""Where a training step's CPU time goes (#11: accuracy per CPU-minute): model vs input pipeline.

1. ``model``: for each ``--models`` x ``--sizes`` x ``--batch-sizes`` (x XLA off/on with ``--jit``, x
   ``--conv-grad fast stock``: ``models.layers.FastGradConv2D``'s input gradient or TensorFlow's), a
   model is built and compiled exactly as ``train`` does (``train.compile_model``: Adam, L2 1e-4, BCE on
   the logit, accuracy + AUC metrics, float32) and ``train_on_batch`` is timed on a fixed random batch:
   the median of ``--steps`` steps after 3 warm-up steps, as ms/step and images/s. Every combination runs
   in its own fresh process, one after the other.
2. ``pipeline``: the training input of ``train`` (``data.dataset_for``: decoded once into the in-memory
   cache, then seeded shuffle + flip/JPEG/blur augmentation + batching) over a real folder: images/s of
   the first pass (decoding) and of a second pass (from the cache, augmentation only).

    python benchmarks/step_cost.py model --models resnet18 --sizes 64 96 128 --batch-sizes 32 128 --jit
    python benchmarks/step_cost.py model --models resnet18 densenet121 vgg13 --sizes 64 128 --batch-sizes 32 \
        --conv-grad fast stock
    python benchmarks/step_cost.py pipeline --data ../shared/data/rvf10k/train --size 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MODEL_STEP = """
import json, statistics, sys, time
import numpy as np, keras
from tfdeepfake.config import TrainConfig
from tfdeepfake.models import build_model
from tfdeepfake.train import compile_model
name, size, batch, jit, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5])
from tfdeepfake.models import layers
layers.FAST_CONV_GRAD = sys.argv[6] == "fast"
keras.mixed_precision.set_global_policy("float32")
config = TrainConfig(model=name, image_size=size, batch_size=batch, optimizer="adam", lr=1e-3,
                     precision="float32", jit_compile=jit)
model = compile_model(build_model(name, size, l2=config.l2), config, 100)
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (batch, size, size, 3)).astype("float32")
y = rng.integers(0, 2, (batch, 1)).astype("float32")
for _ in range(3):
    model.train_on_batch(x, y)
times = []
for _ in range(steps):
    t = time.perf_counter(); model.train_on_batch(x, y); times.append(time.perf_counter() - t)
ms = 1000 * statistics.median(times)
print(json.dumps({"model": name, "size": size, "batch": batch, "jit": jit, "conv_grad": sys.argv[6],
                  "ms_step": round(ms, 1),
                  "img_s": round(batch / ms * 1000, 1)}))
"""

PIPELINE = """
import json, sys, time
from tfdeepfake import data
root, size = sys.argv[1], int(sys.argv[2])
index = data.index_folder(root, val_fraction=0.1, test_fraction=0.1, seed=1337)
ds = data.dataset_for(index, "train", image_size=size, batch_size=32, training=True,
                      augment=data.AugmentConfig(), cache=True)
rates = []
for _ in range(2):
    t = time.perf_counter(); n = 0
    for x, _ in ds:
        n += int(x.shape[0])
    rates.append(round(n / (time.perf_counter() - t), 1))
print(json.dumps({"data": root, "size": size, "train_images": n, "decode_pass_img_s": rates[0],
                  "cached_pass_img_s": rates[1]}))
"""


def _run(code: str, *args: str) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          check=True)
    row = json.loads(done.stdout.splitlines()[-1])
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    m = sub.add_parser("model")
    m.add_argument("--models", nargs="+", default=["resnet18"])
    m.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128])
    m.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    m.add_argument("--steps", type=int, default=10)
    m.add_argument("--jit", action="store_true", help="also time each with XLA (jit_compile=True)")
    m.add_argument("--conv-grad", nargs="+", choices=("fast", "stock"), default=["fast"],
                   help="FastGradConv2D's input gradient (fast) and/or TensorFlow's own (stock)")
    q = sub.add_parser("pipeline")
    q.add_argument("--data", required=True)
    q.add_argument("--size", type=int, default=64)
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args(argv)
    if args.what == "model":
        rows = [_run(MODEL_STEP, name, str(size), str(batch), jit, str(args.steps), grad)
                for name in args.models for size in args.sizes for batch in args.batch_sizes
                for jit in (("0", "1") if args.jit else ("0",)) for grad in args.conv_grad]
    else:
        rows = [_run(PIPELINE, args.data, str(args.size))]
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
