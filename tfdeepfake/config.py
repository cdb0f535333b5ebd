"""Run configuration: one dataclass holding every training flag, saved as ``config.json`` in each run."""

from __future__ import annotations

import dataclasses
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OPTIMIZERS = ("sgd", "adam", "adamw")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
DEMO_IMAGE_SIZE = 64
DEFAULT_IMAGE_SIZE = 224
DEMO_EPOCHS = 12
DEFAULT_EPOCHS = 30


@dataclass
class TrainConfig:
    """Every flag of ``python -m tfdeepfake.train``.

    ``data=None`` means the built-in synthetic demo dataset; ``image_size=None`` means 224 px for real
    data (as the original project) and 64 px for the demo data; ``epochs=None`` means 30 epochs for real
    data and 12 for the demo data (early stopping may end a run sooner).
    """

    model: str = "xception"
    data: str | None = None
    test_data: list[str] = field(default_factory=list)
    image_size: int | None = None
    batch_size: int = 32
    epochs: int | None = None
    optimizer: str = "sgd"
    lr: float = 0.01
    l2: float = 1e-4
    dropout: float = 0.5
    patience: int = 5
    seed: int = 1337
    out: str | None = None
    precision: str = "auto"
    jit_compile: bool = False
    resume: bool = False
    balance: bool = True
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    augment_flip: bool = True
    augment_jpeg: bool = True
    augment_blur: bool = True
    vit_size: str = "tiny"
    time_limit_minutes: float | None = None

    def validate(self) -> TrainConfig:
        """Raise ``ValueError`` naming the first field that is out of range."""
        checks = [
            (self.optimizer in OPTIMIZERS, "optimizer", f"one of {OPTIMIZERS}"),
            (self.precision in (*PRECISIONS, "auto"), "precision", f"'auto' or one of {PRECISIONS}"),
            (self.image_size is None or self.image_size >= 16, "image_size", ">= 16"),
            (self.batch_size >= 1, "batch_size", ">= 1"),
            (self.epochs is None or self.epochs >= 1, "epochs", ">= 1"),
            (self.lr > 0, "lr", "> 0"),
            (self.l2 >= 0, "l2", ">= 0"),
            (0 <= self.dropout < 1, "dropout", "in [0, 1)"),
            (self.patience >= 0, "patience", ">= 0"),
            (0 <= self.val_fraction < 1, "val_fraction", "in [0, 1)"),
            (0 <= self.test_fraction < 1, "test_fraction", "in [0, 1)"),
            (self.val_fraction + self.test_fraction < 1, "val_fraction + test_fraction", "< 1"),
            (self.time_limit_minutes is None or self.time_limit_minutes > 0, "time_limit_minutes", "> 0"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise ValueError(f"config field {name!r} must be {expected}, got {getattr(self, name, None)!r}")
        return self

    @property
    def resolved_image_size(self) -> int:
        if self.image_size is not None:
            return self.image_size
        return DEMO_IMAGE_SIZE if self.data is None else DEFAULT_IMAGE_SIZE

    @property
    def resolved_epochs(self) -> int:
        if self.epochs is not None:
            return self.epochs
        return DEMO_EPOCHS if self.data is None else DEFAULT_EPOCHS

    @property
    def resolved_precision(self) -> str:
        """The Keras dtype policy: ``"auto"`` is bf16 on CPUs with native bf16 (``tfdeepfake.hardware``)."""
        from tfdeepfake.hardware import resolve_precision

        return resolve_precision(self.precision)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> Path:
        """Write the config plus library versions as JSON."""
        path = Path(path)
        payload = {**self.to_dict(), "image_size_resolved": self.resolved_image_size,
                   "epochs_resolved": self.resolved_epochs,
                   "precision_resolved": self.resolved_precision, "versions": versions()}
        path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring keys that are not fields (versions, derived values)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names - {"versions", "image_size_resolved", "epochs_resolved",
                                         "precision_resolved"}
        if unknown:
            raise ValueError(f"unknown config field(s): {sorted(unknown)}")
        return cls(**{k: v for k, v in values.items() if k in names}).validate()

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read config {path}: {exc}") from exc
        return cls.from_dict(values)


def versions() -> dict[str, str]:
    """Versions of the libraries a result depends on."""
    import keras
    import numpy
    import sklearn
    import tensorflow as tf

    import tfdeepfake

    return {
        "tfdeepfake": tfdeepfake.__version__,
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
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
