"""Merge concurrent inference requests into one model call, as TensorFlow Serving's batching does.

A :class:`Batcher` keeps a bounded FIFO of *tasks* (one per request: a key and ``n`` items). Tasks merge
only with tasks of the same key (for the service: the signature and, for pixel arrays, the image shape,
since ``serving_default`` takes one size per call). ``num_batch_threads`` threads each take the oldest
task plus the queued tasks of its key that still fit in ``max_batch_size`` items; while that batch is not
full they wait for more, up to ``batch_timeout_micros`` after the oldest task arrived (0, the default as in
TF Serving: no waiting; requests that arrive while the model is busy form the next batch). The batch's
items are concatenated, run through ``run(key, items)`` once and each task gets its own rows of the
outputs. A task with more than ``max_batch_size`` items runs alone (never split). When a merged call
fails, each of its tasks is run again alone, so a bad request fails only itself. ``submit`` raises
:class:`QueueFull` when the queued items would exceed ``max_enqueued_items``.

Results are :class:`concurrent.futures.Future` objects (``asyncio.wrap_future`` awaits them).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Items = Sequence[Any] | np.ndarray
RunFn = Callable[[Hashable, Items], Mapping[str, np.ndarray]]


class QueueFull(RuntimeError):
    """The batcher's queue holds its maximum number of items; retry later."""


@dataclass
class _Task:
    key: Hashable
    items: Items
    size: int
    arrived: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)


def concat(parts: Sequence[Items]) -> Items:
    """The items of several tasks as one batch (arrays stacked on axis 0, sequences joined)."""
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts, axis=0)
    return [item for part in parts for item in part]


class Batcher:
    """Queue + batching threads around ``run(key, items) -> {output: array with one row per item}``."""

    def __init__(self, run: RunFn, *, max_batch_size: int = 32, batch_timeout_micros: int = 0,
                 num_batch_threads: int = 1, max_enqueued_items: int | None = None) -> None:
        if max_batch_size < 1 or batch_timeout_micros < 0 or num_batch_threads < 1:
            raise ValueError("max_batch_size and num_batch_threads must be >= 1 and "
                             "batch_timeout_micros >= 0")
        self.run, self.max_batch_size = run, int(max_batch_size)
        self.timeout = batch_timeout_micros / 1e6
        self.max_enqueued_items = int(max_enqueued_items or 64 * max_batch_size)
        self._queue: deque[_Task] = deque()
        self._queued = 0
        self._closed = False
        self._cond = threading.Condition()
        self.batch_sizes: Counter[int] = Counter()  # model calls by items per call (tests, /api/info)
        self._threads = [threading.Thread(target=self._loop, name=f"batcher-{i}", daemon=True)
                         for i in range(num_batch_threads)]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------------------------------- client side
    def submit(self, key: Hashable, items: Items) -> Future:
        """Queue one request's ``items`` (a non-empty sequence or array); its future gets its outputs."""
        size = len(items)
        if size < 1:
            raise ValueError("a task needs at least one item")
        task = _Task(key, items, size)
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            if self._queued + size > self.max_enqueued_items:
                raise QueueFull(f"{self._queued} images are already queued (limit "
                                f"{self.max_enqueued_items}); retry later")
            self._queue.append(task)
            self._queued += size
            self._cond.notify()
        return task.future

    def __call__(self, key: Hashable, items: Items) -> dict[str, np.ndarray]:
        """``submit`` and wait for the outputs (raises the task's exception)."""
        return self.submit(key, items).result()

    def close(self) -> None:
        """Stop the threads; tasks still queued fail with ``RuntimeError``."""
        with self._cond:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._queued = 0
            self._cond.notify_all()
        for task in pending:
            task.future.set_exception(RuntimeError("the service is shutting down"))
        for thread in self._threads:
            thread.join(timeout=30)

    # --------------------------------------------------------------------------------------- workers
    def _gather(self) -> tuple[list[_Task], int]:
        """The oldest task and the queued tasks of its key that fit beside it (FIFO order)."""
        first = self._queue[0]
        batch, total = [first], first.size
        for task in list(self._queue)[1:]:
            if total >= self.max_batch_size:
                break
            if task.key == first.key and total + task.size <= self.max_batch_size:
                batch.append(task)
                total += task.size
        return batch, total

    def _take(self) -> list[_Task] | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                if not self._queue:
                    self._cond.wait()
                    continue
                batch, total = self._gather()
                wait = batch[0].arrived + self.timeout - time.monotonic()
                if total >= self.max_batch_size or wait <= 0:
                    for task in batch:
                        self._queue.remove(task)
                    self._queued -= total
                    return batch
                self._cond.wait(wait)

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            self._process(batch)

    def _process(self, batch: list[_Task]) -> None:
        batch = [t for t in batch if t.future.set_running_or_notify_cancel()]
        if not batch:
            return
        try:
            self._count(sum(t.size for t in batch))
            outputs = self.run(batch[0].key, concat([t.items for t in batch]))
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request(s)
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            for task in batch:  # one bad request must not fail the others: each alone
                self._run_alone(task)
            return
        start = 0
        for task in batch:
            task.future.set_result({k: v[start:start + task.size] for k, v in outputs.items()})
            start += task.size

    def _count(self, size: int) -> None:
        with self._cond:
            self.batch_sizes[size] += 1

    def _run_alone(self, task: _Task) -> None:
        try:
            self._count(task.size)
            task.future.set_result(dict(self.run(task.key, task.items)))
        except Exception as exc:  # noqa: BLE001
            task.future.set_exception(exc)
