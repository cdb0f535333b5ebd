"""Scale-out benchmark (#12): large folders under ``--cache auto``, and the tf.distribute strategies.

1. ``cache``: for each ``--sizes`` N, N small synthetic JPEGs at 224 px are written to a temporary folder
   (deleted afterwards); then, in a fresh process each, the folder is indexed (time per 1,000 files)
   and the training pipeline of ``train`` (``data.CachePlan`` with ``--cache auto`` and
   ``--budget-gb``, shuffle, flip augmentation, batches of 32) is read for ``--epochs`` epochs
   (``--big-epochs`` for folders over 5,000 images): images/s of each epoch and the process's peak
   RSS. Past the budget the cache goes to disk and the RSS stays flat.
2. ``strategies``: ``train`` on one device, ``--strategy mirrored`` over 2 logical CPU devices and
   ``--strategy multiworker`` with 2 processes on 127.0.0.1, same global batch: images/s of the last
   epoch and the communication overhead (time per image relative to one device), and each run's
   validation AUC. With ``--data`` a real folder, ``--seeds`` several seeds (the seed-to-seed spread is
   the noise a strategy's AUC is judged by).

    python benchmarks/scale_out.py cache --sizes 2000 20000 100000 --budget-gb 1 --big-epochs 1
    python benchmarks/scale_out.py strategies --images 256 --image-size 64 --batch-size 32
    python benchmarks/scale_out.py strategies --data ../shared/data/rvf10k/train --epochs 4 \
        --strategies default multiworker --seeds 1337 7
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("default", "mirrored", "multiworker")
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


def write_jpegs(root: Path, n: int, size: int = 224, seed: int = 0) -> float:
    """``n`` small JPEGs (half real/, half fake/) of smooth random colour fields; seconds taken."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        low = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(low).resize((size, size), Image.BILINEAR)
        img.save(root / ("real", "fake")[i % 2] / f"{i:06d}.jpg", quality=70)
    return time.perf_counter() - start


PIPELINE = """
import json, resource, sys, time
from tfdeepfake import data
root, budget, epochs, size, batch = sys.argv[1], float(sys.argv[2]), int(sys.argv[4]), 224, 32
t0 = time.perf_counter()
index = data.index_folder(root)
index_s = time.perf_counter() - t0
plan = data.CachePlan("auto", budget, sys.argv[3])
paths = index.rows("train")["path"].tolist()
cache = plan.choose("train", paths, size, log=lambda m: print(m, file=sys.stderr))
ds = data.dataset_for(index, "train", image_size=size, batch_size=batch, training=True,
                      augment=data.AugmentConfig(jpeg=False, blur=False), cache=cache)
rates = []
for epoch in range(epochs):
    t = time.perf_counter(); n = 0
    for x, _ in ds:
        n += int(x.shape[0])
    rates.append(n / (time.perf_counter() - t))
plan.clean()
print(json.dumps({"files": len(index.frame), "train": len(paths), "index_s": index_s,
                  "cache": "memory" if cache is True else "disk", "epoch_img_s": rates,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("TF_CONFIG", None)
    return env


def bench_cache(sizes: list[int], budget_gb: float, epochs: int, big_epochs: int) -> list[dict]:
    rows = []
    for n in sizes:
        tmp = Path(tempfile.mkdtemp(prefix=f"scale_out_{n}_"))
        try:
            gen_s = write_jpegs(tmp / "data", n)
            done = subprocess.run([sys.executable, "-c", PIPELINE, str(tmp / "data"), str(budget_gb),
                                   str(tmp / "cache"), str(epochs if n <= 5000 else big_epochs)], env=_env(), capture_output=True, text=True,
                                  check=True)
            row = {"images": n, "generate_s": round(gen_s, 1), **json.loads(done.stdout.splitlines()[-1])}
            row["index_s_per_1000"] = round(1000 * row.pop("index_s") / n, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _last_epoch_rate(log: str, n_train: float) -> float:
    seconds = [float(s) for s in re.findall(r"^epoch \d+: .* steps, ([\d.]+)s\)", log, flags=re.M)]
    return round(n_train / seconds[-1], 1)


def _val_figures(run: Path) -> dict[str, float]:
    """Validation ROC AUC and accuracy of a finished run (its ``metrics.json``)."""
    val = json.loads((run / "metrics.json").read_text()).get("val", {})
    return {"val_auc": round(val.get("roc_auc", float("nan")), 4),
            "val_accuracy": round(val.get("accuracy", float("nan")), 4)}


def _train_images(run: Path) -> int:
    """Training images of a finished run (rows of its ``split.csv`` in the train split)."""
    with open(run / "split.csv", newline="") as f:
        return sum(1 for row in csv.DictReader(f) if row["split"] == "train")


def bench_strategies(images: int, image_size: int, batch: int, model: str, epochs: int,
                     data: str | None = None, strategies: tuple[str, ...] = STRATEGIES,
                     seeds: tuple[int, ...] = (1337,), augment: bool = False) -> list[dict]:
    """Train once per strategy and seed (same global batch, epochs and split): images/s of the last
    epoch, wall time, and the chief's validation AUC/accuracy. ``data``: a real folder instead of
    ``images`` synthetic JPEGs; several ``seeds`` give the seed-to-seed noise to judge the AUCs by."""
    from tfdeepfake.distribute import loopback_cluster

    tmp = Path(tempfile.mkdtemp(prefix="scale_out_strategies_"))
    try:
        if data is None:
            write_jpegs(tmp / "data", images, size=image_size)
            data = str(tmp / "data")
        args = ["--model", model, "--data", data, "--image-size", str(image_size),
                "--batch-size", str(batch), "--epochs", str(epochs), "--patience", "50"]
        if not augment:
            args += ["--no-jpeg", "--no-blur"]
        rows = []
        for seed in seeds:
            for name in strategies:
                start = time.perf_counter()
                out = tmp / f"{name}-{seed}"
                run_args = [*args, "--seed", str(seed), "--strategy", name]
                if name == "multiworker":
                    procs = []
                    for i, tf_config in enumerate(loopback_cluster(2)):
                        env = {**_env(), "TF_CONFIG": tf_config}
                        procs.append(subprocess.Popen(
                            [sys.executable, "-m", "tfdeepfake.train", *run_args, "--out",
                             str(out) + (f"-w{i}" if i else "")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True))
                    log = procs[0].communicate()[0]
                    procs[1].communicate()
                else:
                    split = ("from tfdeepfake.distribute import split_cpu; split_cpu(2); "
                             if name == "mirrored" else "")
                    code = (f"import sys; {split}from tfdeepfake import train; "
                            f"sys.exit(train.main({[*run_args, '--out', str(out)]!r}))")
                    log = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                                         text=True, check=True).stdout
                rows.append({"strategy": name, "seed": seed,
                             "img_s": _last_epoch_rate(log, _train_images(out)),
                             "wall_s": round(time.perf_counter() - start, 1), **_val_figures(out)})
        base = rows[0]["img_s"]
        for row in rows:
            row["overhead_pct"] = round(100 * (base / row["img_s"] - 1), 1)
            print(json.dumps(row), flush=True)
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("cache")
    c.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 100000])
    c.add_argument("--budget-gb", type=float, default=1.0)
    c.add_argument("--epochs", type=int, default=2)
    c.add_argument("--big-epochs", type=int, default=2, help="epochs for folders over 5,000 images")
    s = sub.add_parser("strategies")
    s.add_argument("--images", type=int, default=256)
    s.add_argument("--image-size", type=int, default=64)
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--model", default="resnet18")
    s.add_argument("--epochs", type=int, default=2)
    s.add_argument("--data", help="a real folder (real/ fake/) instead of synthetic JPEGs")
    s.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    s.add_argument("--seeds", type=int, nargs="+", default=[1337])
    s.add_argument("--augment", action="store_true", help="keep train's JPEG/blur augmentation")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args(argv)
    if args.what == "cache":
        rows = bench_cache(args.sizes, args.budget_gb, args.epochs, args.big_epochs)
    else:
        rows = bench_strategies(args.images, args.image_size, args.batch_size, args.model, args.epochs,
                                args.data, tuple(args.strategies), tuple(args.seeds), args.augment)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    print(f"peak RSS of this driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
