"""Latency and throughput of ``python -m tfdeepfake.serve`` on loopback.

Starts the service in a subprocess on 127.0.0.1 (a free port), then sends ``:predict`` requests holding
one base64 JPEG each: first one at a time (single-image latency p50/p99), then from ``--concurrency``
client threads with keep-alive connections (throughput and latency under load). Each phase stops after
its request count or its time budget, whichever comes first. Prints a table; ``--json`` writes the figures.

    python benchmarks/serve_latency.py --model-dir saved_models/NAME --json bench.json
    python benchmarks/serve_latency.py --members resnet18:224,alexnet:224   # random-weight ensemble

Without ``--model-dir`` a random-weight ensemble of ``--members`` is exported to a temporary folder
(same compute as a trained one).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from tfdeepfake.config import cpu_name  # noqa: E402
from tfdeepfake.export import latest_version, read_export_info  # noqa: E402

SHARED_FAKES = ROOT.parent / "shared" / "data" / "rvf10k" / "test" / "fake"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def random_ensemble_export(members: str, root: Path) -> Path:
    """Export a random-weight ensemble of ``arch:size,...`` to ``root/bench``; return ``root/bench``."""
    from tfdeepfake.ensemble import build_ensemble
    from tfdeepfake.export import export_model
    from tfdeepfake.models import build_model

    models = []
    for i, spec in enumerate(members.split(",")):
        arch, _, size = spec.partition(":")
        model = build_model(arch, int(size or 224))
        model.name = f"{arch}-{i}"
        models.append(model)
    model = models[0] if len(models) == 1 else build_ensemble(models, name="bench")
    return export_model(model, "bench", root=root).parent


def load_image(path: str | None) -> tuple[bytes, str]:
    if path:
        return Path(path).read_bytes(), path
    found = sorted(SHARED_FAKES.glob("*.jpg"))[:1]
    if found:
        return found[0].read_bytes(), str(found[0])
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue(), "synthetic 256x256 JPEG"


class Client:
    """One keep-alive HTTP connection sending the same ``:predict`` body."""

    def __init__(self, port: int, path: str, body: bytes) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=120)
        self.path, self.body = path, body

    def request(self) -> float:
        start = time.perf_counter()
        self.conn.request("POST", self.path, self.body, {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        payload = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
        return elapsed

    def close(self) -> None:
        self.conn.close()


def summarise(latencies: list[float], wall: float) -> dict[str, Any]:
    ms = np.asarray(latencies) * 1000.0
    return {"requests": len(latencies), "seconds": round(wall, 2),
            "throughput_rps": round(len(latencies) / wall, 2) if wall > 0 else None,
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p90_ms": round(float(np.percentile(ms, 90)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "mean_ms": round(float(ms.mean()), 1), "max_ms": round(float(ms.max()), 1)}


def sequential(client: Client, count: int, budget: float) -> dict[str, Any]:
    latencies: list[float] = []
    start = time.perf_counter()
    while len(latencies) < count and time.perf_counter() - start < budget:
        latencies.append(client.request())
    return summarise(latencies, time.perf_counter() - start)


def concurrent(port: int, path: str, body: bytes, clients: int, count: int,
               budget: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    issued = [0]
    start = time.perf_counter()

    def worker() -> None:
        client = Client(port, path, body)
        try:
            while time.perf_counter() - start < budget:
                with lock:
                    if issued[0] >= count:
                        return
                    issued[0] += 1
                try:
                    elapsed = client.request()
                except Exception as exc:  # report, keep the others going
                    with lock:
                        errors.append(str(exc))
                    return
                with lock:
                    latencies.append(elapsed)
        finally:
            client.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = summarise(latencies, time.perf_counter() - start)
    result.update(clients=clients, errors=len(errors))
    return result


def wait_ready(port: int, name: str, proc: subprocess.Popen, timeout: float = 300.0) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with code {proc.returncode}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=5)
            conn.request("GET", f"/v1/models/{name}")
            if conn.getresponse().status == 200:
                return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"the service did not answer within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", help="saved_models/NAME (default: a random-weight --members export)")
    p.add_argument("--members", default="resnet18:224,alexnet:224",
                   help="arch:size,... of the random ensemble when no --model-dir (default: %(default)s)")
    p.add_argument("--image", help="image to send (default: the first rvf10k test fake, else synthetic)")
    p.add_argument("--requests", type=int, default=100, help="sequential requests (default: %(default)s)")
    p.add_argument("--concurrent-requests", type=int, default=320, help="(default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=16, help="client threads (default: %(default)s)")
    p.add_argument("--max-seconds", type=float, default=60.0, help="time budget per phase")
    p.add_argument("--workers", type=int, default=4, help="the service's --workers")
    p.add_argument("--json", help="write the figures to this JSON file")
    args = p.parse_args(argv)

    load_before = round(os.getloadavg()[0], 2)  # other work on the machine skews the figures
    tmp = Path(tempfile.mkdtemp(prefix="tfdeepfake-bench-"))
    proc: subprocess.Popen | None = None
    try:
        model_dir = Path(args.model_dir) if args.model_dir else random_ensemble_export(args.members, tmp)
        name = model_dir.resolve().name
        info = read_export_info(latest_version(model_dir)[1])
        image, image_name = load_image(args.image)
        body = json.dumps({"instances": [{"b64": base64.b64encode(image).decode()}]}).encode()
        port = free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                          os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen(
            [sys.executable, "-m", "tfdeepfake.serve", "--model-dir", str(model_dir), "--host", HOST,
             "--port", str(port), "--workers", str(args.workers), "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL)
        startup = wait_ready(port, name, proc)
        path = f"/v1/models/{name}:predict"
        client = Client(port, path, body)
        for _ in range(3):  # warm-up
            client.request()
        seq = sequential(client, args.requests, args.max_seconds)
        client.close()
        conc = concurrent(port, path, body, args.concurrency, args.concurrent_requests, args.max_seconds)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    import tensorflow as tf

    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "load_average_1m": {"before": load_before, "after": round(os.getloadavg()[0], 2)}},
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__},
        "model": str(model_dir) if args.model_dir else f"random-weight ensemble {args.members}",
        "members": [m["name"] for m in info.get("members", [])],
        "image": image_name, "image_bytes": len(image), "service_workers": args.workers,
        "startup_s": round(startup, 1), "sequential": seq, "concurrent": conc,
    }
    print(f"{result['model']} on {result['machine']['cpu']} ({result['machine']['cores']} cores); "
          f"image {image_name} ({len(image)} bytes); service ready in {startup:.1f} s; 1-min load "
          f"average {load_before} before, {result['machine']['load_average_1m']['after']} after")
    print("| phase | clients | requests | seconds | req/s | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, r, n in (("sequential", seq, 1), ("concurrent", conc, conc["clients"])):
        print(f"| {label} | {n} | {r['requests']} | {r['seconds']} | {r['throughput_rps']} | "
              f"{r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {r['max_ms']} |")
    if conc["errors"]:
        print(f"{conc['errors']} concurrent request(s) failed")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {args.json}")
    return 1 if conc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
