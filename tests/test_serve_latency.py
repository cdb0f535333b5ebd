"""``benchmarks/serve_latency.py`` end to end with the tiny test export: both services, every phase, ratios."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import helpers_models as hm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is not installed with the package
    sys.path.insert(0, str(ROOT))

from benchmarks import serve_latency  # noqa: E402


def test_batched_and_unbatched_side_by_side(tmp_path):
    image = tmp_path / "face.png"
    image.write_bytes(hm.encode(hm.random_image(40, 40, 1)))
    out = tmp_path / "bench.json"
    code = serve_latency.main(["--model-dir", str(hm.exported().parent), "--images", str(image),
                               "--clients", "1", "3", "--requests", "6", "--warmup", "1",
                               "--max-seconds", "60", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["service_flags"] == {"unbatched": ["--no-batching"], "batched": []}
    for mode in ("unbatched", "batched"):
        for clients in ("1", "3"):
            phase = result["phases"][mode][clients]
            assert phase["requests"] == 6 and phase["errors"] == 0 and phase["clients"] == int(clients)
            assert 0 < phase["p50_ms"] <= phase["p99_ms"] and phase["service_cpu_ms_per_request"] > 0
    assert set(result["batched_over_unbatched"]["3"]) == {"throughput", "p50", "cpu_per_request"}
    ratio = result["batched_over_unbatched"]["3"]["throughput"]
    assert ratio == round(result["phases"]["batched"]["3"]["throughput_rps"]
                          / result["phases"]["unbatched"]["3"]["throughput_rps"], 2)
