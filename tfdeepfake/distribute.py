"""Scale-out: choose and create the ``tf.distribute`` strategy of a training run.

``train --strategy auto`` resolves (:func:`choose_strategy`, a pure function of ``TF_CONFIG`` and the
visible GPU count, so it is decided before TensorFlow starts) to

* ``multiworker``: ``tf.distribute.MultiWorkerMirroredStrategy``, configured by ``TF_CONFIG``, when it
  names more than one task;
* ``mirrored``: ``tf.distribute.MirroredStrategy`` over every local GPU (or, without GPUs, over the
  logical CPU devices, see :func:`split_cpu`), when more than one is visible;
* ``default``: the default (single-device) strategy otherwise.

:func:`get_strategy` must run before any other TensorFlow runtime call of the process: collective
ops are configured at start-up. It is memoised, so ``train --model all`` trains every model under it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
CACHE_MODES = ("auto", "memory", "disk", "none")  # see tfdeepfake.data.CachePlan

# keras-team/keras#20585 (open): model.fit under MultiWorkerMirroredStrategy fails in
# TensorFlowTrainer._maybe_symbolic_build (strategy.reduce of a nested PerReplica batch; under
# MirroredStrategy too when a replica's first batch is empty) and in
# reduce_per_replica ("auto" reduces scalar logs with axis=0). Verified on Keras 3.15.1; the
# workaround is applied only in this range (tests/test_distribute.py's xfail test tells when a release
# fixes it).
_KERAS_20585 = ((3, 10), (3, 15, 99))


@dataclass(frozen=True)
class Worker:
    """This process's place in the cluster: ``index`` of ``count`` workers; the chief writes the run."""

    index: int = 0
    count: int = 1
    chief: bool = True


def parse_tf_config(tf_config: str | None) -> dict[str, Any]:
    """``TF_CONFIG`` as a dict (``{}`` when unset or empty); a clear error when it is not JSON."""
    if not tf_config or not tf_config.strip():
        return {}
    try:
        value = json.loads(tf_config)
    except json.JSONDecodeError as exc:
        raise ValueError(f"TF_CONFIG is not valid JSON: {exc}") from exc
    if not isinstance(value, dict) or not isinstance(value.get("cluster", {}), dict):
        raise ValueError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    return value


def cluster_tasks(tf_config: str | None) -> int:
    """Training tasks (``chief`` + ``worker``) that ``TF_CONFIG`` names (0 when unset)."""
    cluster = parse_tf_config(tf_config).get("cluster", {})
    return sum(len(cluster.get(job, [])) for job in ("chief", "worker"))


def worker_of(tf_config: str | None) -> Worker:
    """This task's :class:`Worker` from ``TF_CONFIG`` (chief: task ``chief``, else worker 0)."""
    config = parse_tf_config(tf_config)
    cluster, task = config.get("cluster", {}), config.get("task", {})
    count = cluster_tasks(tf_config)
    if count <= 1:
        return Worker()
    kind, index = task.get("type"), task.get("index")
    if kind not in ("chief", "worker") or not isinstance(index, int):
        raise ValueError(f"TF_CONFIG task must be {{'type': 'chief'|'worker', 'index': N}}, got {task!r}")
    has_chief = bool(cluster.get("chief"))
    position = index if kind == "chief" or not has_chief else index + 1
    return Worker(index=position, count=count, chief=(kind == "chief") or (not has_chief and index == 0))


def choose_strategy(requested: str, tf_config: str | None, n_gpus: int) -> str:
    """``default`` / ``mirrored`` / ``multiworker`` for ``--strategy`` (no TensorFlow call).

    ``auto``: multiworker when ``TF_CONFIG`` names more than one task, mirrored with more than one
    visible GPU, else default. ``multiworker`` without such a ``TF_CONFIG`` is an error.
    """
    if requested not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {requested!r}")
    tasks = cluster_tasks(tf_config)
    if requested == "multiworker" and tasks < 2:
        raise ValueError("--strategy multiworker needs TF_CONFIG naming at least two tasks "
                         "(see README, 'Scale out')")
    if requested != "auto":
        return requested
    if tasks > 1:
        return "multiworker"
    return "mirrored" if n_gpus > 1 else "default"


def visible_gpus() -> int:
    """GPUs TensorFlow will see, judged from ``CUDA_VISIBLE_DEVICES`` and ``nvidia-smi``'s device
    files, without starting TensorFlow."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return len([d for d in os.listdir("/dev") if d.startswith("nvidia") and d[6:].isdigit()]
               ) if os.path.isdir("/dev") else 0


def loopback_cluster(n: int) -> list[str]:
    """``TF_CONFIG`` for each of ``n`` workers on free ports of 127.0.0.1 (tests, benchmarks, trying
    ``multiworker`` on one machine)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    hosts = [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    for s in socks:
        s.close()
    return [json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}})
            for i in range(n)]


def split_cpu(n: int) -> None:
    """Split the CPU into ``n`` logical devices (before TensorFlow starts), so ``mirrored`` has ``n``
    replicas on a machine without GPUs (tests and benchmarks)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)


_STRATEGY: dict[str, Any] = {}


def get_strategy(name: str) -> Any:
    """The ``tf.distribute`` strategy for a resolved name (created once per process)."""
    if name in _STRATEGY:
        return _STRATEGY[name]
    import tensorflow as tf

    if name == "multiworker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
    elif name == "default":
        strategy = tf.distribute.get_strategy()
    else:
        raise ValueError(f"unknown strategy {name!r}")
    _STRATEGY[name] = strategy
    return strategy


def needs_keras_20585_workaround(version: str | None = None) -> bool:
    """Whether this Keras is in the range where :func:`patch_keras_20585` was verified."""
    import keras

    parts = tuple(int(p) for p in (version or keras.__version__).split(".")[:3] if p.isdigit())
    return _KERAS_20585[0] <= parts <= _KERAS_20585[1]


def patch_keras_20585(model: Any, image_size: int) -> None:
    """keras-team/keras#20585 workaround for ``model`` under a multi-replica strategy.

    (The symbolic build also fails under MirroredStrategy when a first batch leaves a replica empty:
    the reduced batch adds a ``(2, ...)`` and a ``(0, ...)`` tensor.)

    ``model`` is built symbolically from the known batch spec instead of a reduced real batch, and
    ``reduce_per_replica``'s "auto" reduction averages scalar logs over every replica of the cluster
    (``axis=None``), which is what Keras does for single-worker strategies.
    """
    import keras
    import keras.src.backend.tensorflow.trainer as tf_trainer
    from keras.src import tree

    strategy = model.distribute_strategy
    spec = (keras.KerasTensor((None, image_size, image_size, 3), "float32"),
            keras.KerasTensor((None, 1), "float32"))

    def symbolic_build(iterator: Any = None, data_batch: Any = None) -> None:
        with strategy.scope():
            model._symbolic_build(data_batch=spec)

    model._maybe_symbolic_build = symbolic_build
    original = tf_trainer.reduce_per_replica
    if getattr(original, "_tfdeepfake_20585", False):
        return

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction == "auto" and tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica._tfdeepfake_20585 = True  # type: ignore[attr-defined]
    tf_trainer.reduce_per_replica = reduce_per_replica


def sync_batch_norm(model: Any) -> int:
    """Make every ``BatchNormalization`` of ``model`` use the batch statistics of all replicas
    (``synchronized=True``, read at call time): the moving statistics then stay identical on every
    worker, and the statistics are those of the global batch, as on one device. Returns the count."""
    import keras

    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.synchronized = True
    return len(layers)


def prepare_replicas(model: Any, image_size: int) -> None:
    """What a model built under a multi-replica strategy needs before ``fit`` (``train`` and ``tune``):
    synchronised batch statistics and, on the verified Keras range, the keras#20585 workaround."""
    if model.distribute_strategy.num_replicas_in_sync > 1:
        sync_batch_norm(model)
        if needs_keras_20585_workaround():
            patch_keras_20585(model, image_size)


def distributed_datasets(strategy: Any, make: Any) -> Any:
    """``make(per_replica_batch, shard, replicas)`` -> dataset, distributed with the file list sharded
    per input pipeline before decoding (``ctx.input_pipeline_id``), the per-replica batch size taken
    from the input context (``per_replica_batch(global_batch)``) and ``replicas`` the number of
    replicas the pipeline feeds in turn (so its batches can be cut to leave none of them an empty
    batch, :func:`tfdeepfake.data.replica_batch_sizes`). Under the default strategy: ``make``'s
    dataset as it is."""
    if strategy.num_replicas_in_sync == 1 and _STRATEGY.get("default") is strategy:
        return make(lambda global_batch: global_batch, None, 1)

    def dataset_fn(ctx: Any) -> Any:
        local = max(1, ctx.num_replicas_in_sync // ctx.num_input_pipelines)
        return make(ctx.get_per_replica_batch_size, (ctx.num_input_pipelines, ctx.input_pipeline_id), local)

    return strategy.distribute_datasets_from_function(dataset_fn)
