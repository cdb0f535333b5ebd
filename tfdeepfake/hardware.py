"""The machine: what its CPU can do fast (for ``--precision auto``) and the environment facts a result
records (:func:`versions`, :func:`cpu_name`).

``resolve_precision("auto")`` is ``"mixed_bfloat16"`` on CPUs with native bfloat16 arithmetic (x86
``avx512_bf16`` or ``amx_bf16``; Arm ``bf16``), where TensorFlow's oneDNN kernels then run convolutions and
matrix multiplications about twice as fast as in float32 (``BENCHMARKS.md``, issue #5), else ``"float32"``
(bfloat16 without hardware support is emulated and slower). Any other value is returned unchanged.
No TensorFlow import: cheap to call from argument parsing.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tfdeepfake import __version__

AUTO = "auto"
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
"""``/proc/cpuinfo`` flags of native bf16 arithmetic (x86 AVX-512 BF16 / AMX-BF16; Arm ``bf16``)."""

_CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU feature flags (``flags`` on x86, ``Features`` on Arm) from ``/proc/cpuinfo``.

    ``cpuinfo`` is the file's text (read from ``/proc/cpuinfo`` when ``None``); empty when unreadable
    (no ``/proc``: macOS, Windows).
    """
    if cpuinfo is None:
        try:
            cpuinfo = _CPUINFO.read_text(errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.lower().split())
    return frozenset()


def has_native_bf16(flags: Iterable[str] | None = None) -> bool:
    """Whether the CPU has native bf16 arithmetic (any of :data:`BF16_FLAGS`)."""
    return bool(BF16_FLAGS & set(cpu_flags() if flags is None else flags))


def resolve_precision(value: str, flags: Iterable[str] | None = None) -> str:
    """``"auto"`` -> ``"mixed_bfloat16"`` on CPUs with native bf16, else ``"float32"``.

    Any of :data:`PRECISIONS` is returned as is; anything else raises ``ValueError``. ``flags``
    overrides the detected CPU flags (tests).
    """
    if value == AUTO:
        return "mixed_bfloat16" if has_native_bf16(flags) else "float32"
    if value not in PRECISIONS:
        raise ValueError(f"precision must be 'auto' or one of {PRECISIONS}; got {value!r}")
    return value


INFERENCE_ENV = {"TF_ONEDNN_ASSUME_FROZEN_WEIGHTS": "1"}
"""Environment for processes that never change weights (serve, predict): oneDNN keeps its reordered copy
of the weights between calls instead of reordering them on every call (AlexNet inference +4 % here,
``BENCHMARKS.md``). Wrong for training, so it is never set globally."""


def set_inference_env() -> bool:
    """Apply :data:`INFERENCE_ENV` (values already in the environment win) if TensorFlow is not yet
    imported; return whether it could (TensorFlow reads these variables once, at import)."""
    if "tensorflow" in sys.modules:
        return False
    for key, value in INFERENCE_ENV.items():
        os.environ.setdefault(key, value)
    return True


@contextmanager
def precision_policy(value: str) -> Iterator[str]:
    """Set Keras' global dtype policy to ``resolve_precision(value)`` for the block, then restore the
    previous one, so training in bf16 does not leak into models built afterwards in the same process
    (a notebook, MTCNN). Yields the policy's name."""
    import keras

    previous = keras.mixed_precision.global_policy()
    name = resolve_precision(value)
    keras.mixed_precision.set_global_policy(name)
    try:
        yield name
    finally:
        keras.mixed_precision.set_global_policy(previous)


def versions() -> dict[str, str]:
    """Versions of the libraries a result depends on."""
    import keras
    import numpy
    import sklearn
    import tensorflow as tf

    return {
        "tfdeepfake": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
        "processor": cpu_name(),
    }


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` reports."""
    try:
        for line in _CPUINFO.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
