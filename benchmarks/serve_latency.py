"""Latency and throughput of ``python -m tfdeepfake.serve`` on loopback, batching on and off side by side.

Starts two services on 127.0.0.1 (free ports) serving the same export: one with request batching (the
default flags, or ``--serve-args``) and one with ``--no-batching`` (each request runs on its own, the service
as it was before batching). Then, for each client count of ``--clients`` (default 1, 4, 16, 64), sends
``:predict`` requests holding one base64 JPEG each (cycling through the same ``--images``) from that many
client threads with keep-alive connections, to the unbatched service and then to the batched one. Each
phase stops after ``--requests`` requests or ``--max-seconds`` seconds, whichever comes first. Prints a
table and the batched/unbatched ratios; ``--json`` writes every figure.

    python benchmarks/serve_latency.py --model-dir saved_models/NAME --json bench.json
    python benchmarks/serve_latency.py --members resnet18:64,alexnet:64   # random-weight ensemble

Without ``--model-dir`` a random-weight ensemble of ``--members`` is exported to a temporary folder
(the same compute as a trained one, but meaningless scores).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from tfdeepfake.export import latest_version, read_export_info  # noqa: E402
from tfdeepfake.hardware import cpu_name  # noqa: E402

SHARED_TEST = ROOT.parent / "shared" / "data" / "rvf10k" / "test"
HOST = "127.0.0.1"
MODES = {"unbatched": ["--no-batching"], "batched": []}


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


def load_images(paths: list[str] | None, count: int) -> tuple[list[bytes], str]:
    """The images sent (cycled): ``paths``, else the first rvf10k test fakes and reals, else synthetic."""
    if paths:
        return [Path(p).read_bytes() for p in paths], ", ".join(paths)
    found = []
    for label in ("fake", "real"):
        found += sorted((SHARED_TEST / label).glob("*.jpg"))[: (count + 1) // 2]
    if found:
        return [p.read_bytes() for p in found], f"{len(found)} rvf10k test JPEGs (fake and real)"
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(count):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(buf, "JPEG")
        blobs.append(buf.getvalue())
    return blobs, f"{count} synthetic 256x256 JPEGs"


class Client:
    """One keep-alive HTTP connection sending ``:predict`` bodies."""

    def __init__(self, port: int, path: str) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=120)
        self.path = path

    def request(self, body: bytes) -> float:
        start = time.perf_counter()
        self.conn.request("POST", self.path, body, {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        payload = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
        return elapsed

    def close(self) -> None:
        self.conn.close()


def summarise(latencies: list[float], wall: float) -> dict[str, Any]:
    if not latencies:
        return {"requests": 0, "seconds": round(wall, 2), "throughput_rps": 0.0}
    ms = np.asarray(latencies) * 1000.0
    return {"requests": len(latencies), "seconds": round(wall, 2),
            "throughput_rps": round(len(latencies) / wall, 2) if wall > 0 else None,
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p90_ms": round(float(np.percentile(ms, 90)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "mean_ms": round(float(ms.mean()), 1), "max_ms": round(float(ms.max()), 1)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by process ``pid`` (all its threads; Linux ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def run_clients(port: int, path: str, bodies: list[bytes], clients: int, count: int,
                budget: float, pid: int | None = None) -> dict[str, Any]:
    """``clients`` threads sending ``bodies`` in turn until ``count`` requests or ``budget`` seconds."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    issued = [0]
    start = time.perf_counter()

    def worker() -> None:
        client = Client(port, path)
        try:
            while time.perf_counter() - start < budget:
                with lock:
                    if issued[0] >= count:
                        return
                    body = bodies[issued[0] % len(bodies)]
                    issued[0] += 1
                try:
                    elapsed = client.request(body)
                except Exception as exc:  # report, keep the others going
                    with lock:
                        errors.append(str(exc))
                    return
                with lock:
                    latencies.append(elapsed)
        finally:
            client.close()

    cpu_before = cpu_seconds(pid) if pid else float("nan")
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = summarise(latencies, time.perf_counter() - start)
    cpu = (cpu_seconds(pid) - cpu_before) if pid else float("nan")
    # the service's CPU time per request: its cost, whatever else the machine runs meanwhile
    result["service_cpu_ms_per_request"] = (round(1000 * cpu / len(latencies), 2)
                                            if latencies and cpu == cpu else None)
    result.update(clients=clients, errors=len(errors), first_error=errors[0] if errors else None)
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


@contextmanager
def services(model_dir: Path, flags: dict[str, list[str]]):
    """One ``python -m tfdeepfake.serve`` subprocess per mode on a free loopback port, started together;
    yields ``{mode: (port, startup_s, pid)}``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                      os.environ.get("PYTHONPATH")]))}
    procs: dict[str, tuple[int, subprocess.Popen]] = {}
    try:
        for mode, extra in flags.items():
            port = free_port()
            procs[mode] = port, subprocess.Popen(
                [sys.executable, "-m", "tfdeepfake.serve", "--model-dir", str(model_dir), "--host", HOST,
                 "--port", str(port), "--log-level", "warning", *extra], env=env, stdout=subprocess.DEVNULL)
        start = time.perf_counter()
        ready = {}
        for mode, (port, proc) in procs.items():
            wait_ready(port, model_dir.resolve().name, proc)
            ready[mode] = port, time.perf_counter() - start, proc.pid
        yield ready
    finally:
        for _, proc in procs.values():
            proc.terminate()
        for _, proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def ratios(phases: dict[str, dict[int, dict[str, Any]]]) -> dict[str, dict[str, float | None]]:
    """Per client count: batched/unbatched requests/s and p50 latency."""
    out = {}
    for clients, off in phases["unbatched"].items():
        on = phases["batched"][clients]
        rps = on["throughput_rps"] / off["throughput_rps"] if off.get("throughput_rps") else None
        p50 = on["p50_ms"] / off["p50_ms"] if off.get("p50_ms") and on.get("p50_ms") else None
        cpu = (on["service_cpu_ms_per_request"] / off["service_cpu_ms_per_request"]
               if on.get("service_cpu_ms_per_request") and off.get("service_cpu_ms_per_request") else None)
        out[str(clients)] = {"throughput": None if rps is None else round(rps, 2),
                             "p50": None if p50 is None else round(p50, 3),
                             "cpu_per_request": None if cpu is None else round(cpu, 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", help="saved_models/NAME (default: a random-weight --members export)")
    p.add_argument("--members", default="resnet18:224,alexnet:224",
                   help="arch:size,... of the random ensemble when no --model-dir (default: %(default)s)")
    p.add_argument("--images", nargs="+", help="images to send in turn (default: 8 rvf10k test JPEGs)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64],
                   help="concurrent client counts (default: %(default)s)")
    p.add_argument("--requests", type=int, default=400, help="requests per phase (default: %(default)s)")
    p.add_argument("--max-seconds", type=float, default=30.0, help="time budget per phase")
    p.add_argument("--warmup", type=int, default=5, help="requests before each phase (default: %(default)s)")
    p.add_argument("--serve-args", default="", help="extra flags for both services, e.g. '--workers 4'")
    p.add_argument("--batched-args", default="", help="extra flags for the batched service only")
    p.add_argument("--json", help="write the figures to this JSON file")
    args = p.parse_args(argv)

    load_before = round(os.getloadavg()[0], 2)  # other work on the machine skews the figures
    tmp = Path(tempfile.mkdtemp(prefix="tfdeepfake-bench-"))
    phases: dict[str, dict[int, dict[str, Any]]] = {mode: {} for mode in MODES}
    try:
        model_dir = Path(args.model_dir) if args.model_dir else random_ensemble_export(args.members, tmp)
        name = model_dir.resolve().name
        info = read_export_info(latest_version(model_dir)[1])
        images, image_names = load_images(args.images, 8)
        bodies = [json.dumps({"instances": [{"b64": base64.b64encode(b).decode()}]}).encode()
                  for b in images]
        path = f"/v1/models/{name}:predict"
        common = shlex.split(args.serve_args)
        flags = {"unbatched": common + MODES["unbatched"],
                 "batched": common + MODES["batched"] + shlex.split(args.batched_args)}
        with services(model_dir, flags) as ready:  # both up at once; only the one measured is busy
            ports = {mode: port for mode, (port, _, _) in ready.items()}
            startup = {mode: seconds for mode, (_, seconds, _) in ready.items()}
            pids = {mode: pid for mode, (_, _, pid) in ready.items()}
            for clients in args.clients:
                for mode in MODES:  # side by side: the machine's state is the same for both
                    run_clients(ports[mode], path, bodies, 1, args.warmup, args.max_seconds)
                    phases[mode][clients] = run_clients(ports[mode], path, bodies, clients,
                                                        args.requests, args.max_seconds, pids[mode])
                    r = phases[mode][clients]
                    print(f"  {mode:9s} {clients:3d} clients: {r['requests']} requests, "
                          f"{r['throughput_rps']} req/s, p50 {r.get('p50_ms')} ms, service CPU "
                          f"{r['service_cpu_ms_per_request']} ms/request", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    import tensorflow as tf

    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "load_average_1m": {"before": load_before, "after": round(os.getloadavg()[0], 2)}},
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__},
        "model": str(model_dir) if args.model_dir else f"random-weight ensemble {args.members}",
        "members": [m["name"] for m in info.get("members", [])],
        "member_sizes": [m.get("image_size") for m in info.get("members", [])],
        "images": image_names, "image_bytes": [len(b) for b in images],
        "service_flags": flags, "startup_s": {k: round(v, 1) for k, v in startup.items()},
        "requests_per_phase": args.requests, "max_seconds": args.max_seconds,
        "phases": {mode: {str(c): r for c, r in by.items()} for mode, by in phases.items()},
        "batched_over_unbatched": ratios(phases),
    }
    print(f"{result['model']} on {result['machine']['cpu']} ({result['machine']['cores']} cores); "
          f"{image_names}; 1-min load average {load_before} before, "
          f"{result['machine']['load_average_1m']['after']} after")
    print("| clients | service | requests | seconds | req/s | p50 ms | p90 ms | p99 ms | CPU ms/req | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for clients in args.clients:
        for mode in MODES:
            r = phases[mode][clients]
            print(f"| {clients} | {mode} | {r['requests']} | {r['seconds']} | {r['throughput_rps']} | "
                  f"{r.get('p50_ms')} | {r.get('p90_ms')} | {r.get('p99_ms')} | "
                  f"{r['service_cpu_ms_per_request']} | {r['errors']} |")
    for clients, ratio in result["batched_over_unbatched"].items():
        print(f"{clients} client(s): batched/unbatched requests/s {ratio['throughput']}x, "
              f"p50 {ratio['p50']}x, service CPU per request {ratio['cpu_per_request']}x")
    errors = sum(r["errors"] for by in phases.values() for r in by.values())
    if errors:
        print(f"{errors} request(s) failed; first: "
              f"{next(r['first_error'] for by in phases.values() for r in by.values() if r['errors'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
