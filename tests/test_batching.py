"""``tfdeepfake.batching.Batcher`` without a server: merging, keys, limits, timeouts, failures."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tfdeepfake.batching import Batcher, QueueFull


class Model:
    """A fake model: output row = 10 * the item (so misrouted rows are visible); records each call."""

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None) -> None:
        self.calls: list[tuple[object, list]] = []
        self.delay, self.gate = delay, gate
        self.lock = threading.Lock()

    def __call__(self, key, items):
        if self.gate is not None:
            self.gate.wait(10)
        time.sleep(self.delay)
        values = np.asarray(items, dtype=np.float64).reshape(len(items), -1)
        if np.any(values < 0):
            raise ValueError(f"negative item in {values.ravel().tolist()}")
        with self.lock:
            self.calls.append((key, values.ravel().tolist()))
        return {"out": 10 * values[:, 0], "key": np.asarray([str(key)] * len(items))}


def test_concurrent_tasks_merge_into_few_calls_and_each_gets_its_rows():
    gate = threading.Event()
    model = Model(gate=gate)
    batcher = Batcher(model, max_batch_size=8)
    try:
        futures = [batcher.submit("k", [i, i + 0.5]) for i in range(0, 20, 2)]  # 10 tasks of 2 items
        gate.set()
        results = [f.result(10) for f in futures]
    finally:
        batcher.close()
    for i, out in zip(range(0, 20, 2), results, strict=True):
        np.testing.assert_array_equal(out["out"], [10 * i, 10 * (i + 0.5)])
    sizes = [len(items) for _, items in model.calls]
    assert sum(sizes) == 20 and max(sizes) <= 8
    assert len(model.calls) <= 4  # first call alone (the gate), then full batches of 8, 8 and the rest
    assert sorted(batcher.batch_sizes.elements()) == sorted(sizes)


def test_tasks_of_different_keys_never_share_a_call():
    gate = threading.Event()
    model = Model(gate=gate)
    batcher = Batcher(model, max_batch_size=16)
    try:
        futures = [(key, batcher.submit(key, [n])) for n, key in enumerate("ababbaab")]
        gate.set()
        for key, future in futures:
            assert set(future.result(10)["key"]) == {key}
    finally:
        batcher.close()
    for key, items in model.calls:
        expected = {n for n, k in enumerate("ababbaab") if k == key}
        assert set(items) <= expected


def test_arrays_are_stacked_and_split_back():
    batcher = Batcher(lambda key, x: {"sum": x.reshape(len(x), -1).sum(axis=1)}, max_batch_size=8)
    arrays = [np.full((n, 2, 2, 3), n, np.uint8) for n in (1, 3, 2)]
    try:
        with ThreadPoolExecutor(3) as pool:
            outs = list(pool.map(lambda a: batcher(a.shape[1:], a), arrays))
    finally:
        batcher.close()
    for a, out in zip(arrays, outs, strict=True):
        np.testing.assert_array_equal(out["sum"], np.full(len(a), 12 * a[0, 0, 0, 0]))


def test_a_task_over_the_batch_size_runs_alone_unsplit():
    model = Model()
    batcher = Batcher(model, max_batch_size=4)
    try:
        out = batcher("k", list(range(7)))
    finally:
        batcher.close()
    np.testing.assert_array_equal(out["out"], 10 * np.arange(7))
    assert [len(items) for _, items in model.calls] == [7]


def test_timeout_waits_for_more_tasks_and_zero_does_not():
    model = Model()
    batcher = Batcher(model, max_batch_size=8, batch_timeout_micros=300_000)
    try:
        start = time.monotonic()
        first = batcher.submit("k", [1])
        time.sleep(0.05)
        second = batcher.submit("k", [2])
        first.result(10), second.result(10)
        waited = time.monotonic() - start
    finally:
        batcher.close()
    assert [items for _, items in model.calls] == [[1.0, 2.0]]  # merged although 50 ms apart
    assert 0.25 < waited < 5

    model = Model()
    batcher = Batcher(model, max_batch_size=8, batch_timeout_micros=0)
    try:
        start = time.monotonic()
        batcher("k", [1])
        assert time.monotonic() - start < 0.25
    finally:
        batcher.close()

    model = Model()  # a full batch does not wait for the timeout
    batcher = Batcher(model, max_batch_size=2, batch_timeout_micros=5_000_000)
    try:
        start = time.monotonic()
        futures = [batcher.submit("k", [i]) for i in range(2)]
        [f.result(10) for f in futures]
        assert time.monotonic() - start < 2
    finally:
        batcher.close()


def test_a_failing_task_fails_alone():
    gate = threading.Event()
    model = Model(gate=gate)
    batcher = Batcher(model, max_batch_size=8)
    try:
        futures = [batcher.submit("k", [v]) for v in (1, 2, -3, 4, 5)]
        gate.set()
        for v, future in zip((1, 2, -3, 4, 5), futures, strict=True):
            if v < 0:
                with pytest.raises(ValueError, match="negative item in \\[-3.0\\]"):
                    future.result(10)
            else:
                assert future.result(10)["out"].tolist() == [10 * v]
    finally:
        batcher.close()


def test_queue_is_bounded():
    gate = threading.Event()
    batcher = Batcher(Model(gate=gate), max_batch_size=2, max_enqueued_items=3)
    try:
        running = batcher.submit("k", [0, 0])  # taken by the thread, blocked at the gate
        for _ in range(100):
            if running.running():
                break
            time.sleep(0.01)
        queued = [batcher.submit("k", [1, 1]), batcher.submit("k", [2])]
        with pytest.raises(QueueFull, match="3 images are already queued"):
            batcher.submit("k", [3])
        gate.set()
        assert [f.result(10)["out"].tolist() for f in queued] == [[10, 10], [20]]
        assert batcher("k", [3])["out"].tolist() == [30]  # room again
    finally:
        batcher.close()


def test_close_fails_queued_tasks_and_bad_settings_are_refused():
    gate = threading.Event()
    batcher = Batcher(Model(gate=gate), max_batch_size=1)
    running = batcher.submit("k", [1])
    while not running.running():
        time.sleep(0.01)
    queued = batcher.submit("k", [2])
    threading.Timer(0.2, gate.set).start()
    batcher.close()
    assert running.result(10)["out"].tolist() == [10]
    with pytest.raises(RuntimeError, match="shutting down"):
        queued.result(10)
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit("k", [1])
    for bad in ({"max_batch_size": 0}, {"batch_timeout_micros": -1}, {"num_batch_threads": 0}):
        with pytest.raises(ValueError):
            Batcher(Model(), **bad)
