"""Run configuration: one dataclass holding every training flag, saved as ``config.json`` in each run."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfdeepfake import models
from tfdeepfake.distribute import CACHE_MODES, STRATEGIES
from tfdeepfake.hardware import AUTO, PRECISIONS, resolve_precision, versions
from tfdeepfake.hardware import cpu_name as cpu_name  # noqa: F401  (re-exported for the benchmarks)
from tfdeepfake.models.common import MIN_IMAGE_SIZE
from tfdeepfake.models.representations import REPRESENTATIONS
from tfdeepfake.recipe import LR_SCHEDULES

OPTIMIZERS = ("sgd", "adam", "adamw")
ADAMW_WEIGHT_DECAY = 0.004
"""AdamW's decoupled weight decay when ``weight_decay`` is not set (Keras's own default)."""
MONITORS = ("val_loss", "val_accuracy")
"""What early stopping (and, with ``keep_weights="best"``, the saved model) follows."""
KEEP_WEIGHTS = ("best", "last")
"""Which weights a run keeps: the best epoch by ``monitor``, or the last epoch trained (the original's)."""
DEMO_IMAGE_SIZE = 64
DEFAULT_IMAGE_SIZE = 224
DEMO_EPOCHS = 12
DEFAULT_EPOCHS = 30


@dataclass
class TrainConfig:
    """Every flag of ``python -m tfdeepfake.train``.

    ``data=None`` means the built-in synthetic demo dataset; ``image_size=None`` means 224 px for real
    data (as the original project) and 64 px for the demo data; ``epochs=None`` means 30 epochs for real
    data and 12 for the demo data (early stopping may end a run sooner); ``dropout=None`` means the
    architecture's own rate (the original's: 0.5 for AlexNet, none for VGG13 and Xception).
    ``monitor`` is what early stopping follows (``val_accuracy`` as the original, or ``val_loss``);
    ``keep_weights`` whether the run keeps its best epoch by ``monitor`` or its last one (the
    original's); ``max_per_class`` caps the images per class before the split (seeded sample).
    ``seed`` seeds the weights, augmentation and dropout, and the split unless ``split_seed`` is set:
    runs with another ``seed`` but the same ``split_seed`` share their validation split (an ensemble of
    them is chosen and thresholded on it).
    ``model_options`` are the options the model's builder declares
    (``tfdeepfake.models.model_options``, e.g. ``{"size": "small"}`` for ``vit``); with ``model="all"``
    each model gets the ones it declares.
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
    weight_decay: float | None = None  # adamw's decoupled decay; None: ADAMW_WEIGHT_DECAY
    dropout: float | None = None
    patience: int = 5
    monitor: str = "val_loss"
    keep_weights: str = "best"
    max_per_class: int | None = None
    seed: int = 1337
    split_seed: int | None = None  # None: seed
    fold: int | None = None  # train without this fold of the training split (data.hold_out_fold)
    folds: int = 2  # how many folds --fold cuts the training split into
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
    augment_crop: bool = False
    augment_shift: float = 0.0  # random translation, up to this fraction of the side
    augment_erase: float = 0.0  # probability of random erasing (a rectangle replaced by noise)
    augment_subpixel: float = 0.0  # random translation by up to this many input pixels, below one
    model_options: dict[str, Any] = field(default_factory=dict)
    time_limit_minutes: float | None = None
    # input representation and recipe (#11; see tfdeepfake.models.representations, tfdeepfake.recipe)
    input: str = "rgb"
    lr_schedule: str = "constant"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    mixup: float = 0.0  # mixup's Beta(alpha, alpha); 0 = off (tfdeepfake.data.mix_batch)
    ema: float = 0.0  # EMA momentum of the weights; 0 = off
    sam: float = 0.0  # sharpness-aware steps of this radius; 0 = off (tfdeepfake.optim.use_sam)
    tta_flip: bool = False
    teacher: str | None = None  # a model whose P(fake) enters the training targets (tfdeepfake.distill)
    distill: float = 0.5  # the teacher's weight in those targets
    cross_fit: bool = False  # the teacher's members score only the training images they left out
    init_from: str | None = None  # a run folder or .keras file whose weights start this run
    # scale out (#12): tf.distribute strategy; cache of decoded train/val images (auto: memory when
    # they fit cache_budget_gb, None = half the available memory, else files in cache_dir or the run)
    strategy: str = "auto"
    cache: str = "auto"
    cache_dir: str | None = None
    cache_budget_gb: float | None = None
    keep_cache: bool = False

    def validate(self) -> TrainConfig:
        """Raise :class:`tfdeepfake.cli.UsageError` (a ``ValueError``) naming the first field of the
        wrong type or out of range, its value and what is expected; never another exception type."""
        from tfdeepfake import cli

        def field_(field_name: str) -> str:
            return f"config field {field_name!r}"

        number, choice = cli.number, cli.choice
        choice(field_("model"), self.model, (*models.registered_names(), "all"))
        choice(field_("optimizer"), self.optimizer, OPTIMIZERS)
        choice(field_("precision"), self.precision, (AUTO, *PRECISIONS))
        cli.text(field_("data"), self.data, optional=True)
        cli.text(field_("out"), self.out, optional=True)
        cli.text(field_("init_from"), self.init_from, optional=True)
        cli.text(field_("teacher"), self.teacher, optional=True)
        number(field_("distill"), self.distill, low=0, high=1, low_open=True)
        if self.cross_fit is True and not self.teacher:
            raise cli.UsageError("config field 'cross_fit': true needs 'teacher' (--teacher ENSEMBLE whose "
                                 "members were trained with --fold 1..N --folds N)")
        if not isinstance(self.test_data, list | tuple):
            raise cli.usage_error(field_("test_data"), self.test_data, "a list of folders")
        for folder in self.test_data:
            cli.text(field_("test_data"), folder)
        number(field_("image_size"), self.image_size, low=MIN_IMAGE_SIZE, integer=True, optional=True)
        number(field_("batch_size"), self.batch_size, low=1, integer=True)
        number(field_("epochs"), self.epochs, low=0, integer=True, optional=True)
        if self.epochs == 0 and not self.init_from:
            raise cli.UsageError("config field 'epochs': got 0, which scores a model without training it, "
                                 "so it needs 'init_from' (--init-from RUN: the weights to score)")
        number(field_("lr"), self.lr, low=0, low_open=True)
        number(field_("l2"), self.l2, low=0)
        number(field_("weight_decay"), self.weight_decay, low=0, optional=True)
        if self.weight_decay is not None and self.optimizer != "adamw":
            raise cli.usage_error(field_("weight_decay"), self.weight_decay,
                                  "it only with optimizer 'adamw' (decoupled weight decay; sgd and adam "
                                  "regularise through 'l2')")
        number(field_("dropout"), self.dropout, low=0, high=1, high_open=True, optional=True)
        number(field_("patience"), self.patience, low=0, integer=True)
        choice(field_("monitor"), self.monitor, MONITORS)
        choice(field_("keep_weights"), self.keep_weights, KEEP_WEIGHTS)
        number(field_("max_per_class"), self.max_per_class, low=1, integer=True, optional=True)
        number(field_("seed"), self.seed, low=0, high=2**32 - 1, integer=True)
        number(field_("split_seed"), self.split_seed, low=0, high=2**32 - 1, integer=True, optional=True)
        number(field_("folds"), self.folds, low=2, integer=True)
        number(field_("fold"), self.fold, low=1, high=self.folds, integer=True, optional=True)
        number(field_("val_fraction"), self.val_fraction, low=0, high=1, high_open=True)
        number(field_("test_fraction"), self.test_fraction, low=0, high=1, high_open=True)
        total = self.val_fraction + self.test_fraction
        if total >= 1:
            raise cli.UsageError(f"config fields 'val_fraction' + 'test_fraction': got {self.val_fraction:g} + "
                                 f"{self.test_fraction:g} = {total:g}, expected a sum < 1 (some images "
                                 "must be left for training)")
        number(field_("time_limit_minutes"), self.time_limit_minutes, low=0, low_open=True, optional=True)
        choice(field_("input"), self.input, REPRESENTATIONS)
        choice(field_("lr_schedule"), self.lr_schedule, LR_SCHEDULES)
        number(field_("warmup_epochs"), self.warmup_epochs, low=0, high=self.resolved_epochs or None,
               high_open=True)  # no bound without training (epochs 0)
        number(field_("label_smoothing"), self.label_smoothing, low=0, high=1, high_open=True)
        number(field_("mixup"), self.mixup, low=0)
        number(field_("ema"), self.ema, low=0, high=1, high_open=True)
        number(field_("sam"), self.sam, low=0)
        number(field_("augment_shift"), self.augment_shift, low=0, high=0.5, high_open=True)
        number(field_("augment_erase"), self.augment_erase, low=0, high=1)
        number(field_("augment_subpixel"), self.augment_subpixel, low=0, high=1, high_open=True)
        choice(field_("strategy"), self.strategy, STRATEGIES)
        choice(field_("cache"), self.cache, CACHE_MODES)
        cli.text(field_("cache_dir"), self.cache_dir, optional=True)
        number(field_("cache_budget_gb"), self.cache_budget_gb, low=0, optional=True)
        for flag in ("jit_compile", "resume", "balance", "augment_flip", "augment_jpeg", "augment_blur",
                     "augment_crop",
                     "tta_flip", "keep_cache", "cross_fit"):
            if not isinstance(getattr(self, flag), bool):
                raise cli.usage_error(field_(flag), getattr(self, flag), "true or false")
        if not isinstance(self.model_options, dict) or not all(isinstance(k, str) for k in self.model_options):
            raise cli.usage_error(field_("model_options"), self.model_options,
                                  "a mapping of option name -> value")
        if self.model != "all":
            models.check_model_options(self.model, self.model_options)
        else:
            unknown = sorted(set(self.model_options) - declared_options("all"))
            if unknown:
                raise ValueError(f"config field 'model_options': no model declares {unknown}")
            for name in self.model_names():
                models.check_model_options(name, self.for_model(name).model_options)
        return self

    @property
    def resolved_weight_decay(self) -> float:
        """AdamW's decoupled decay: ``weight_decay``, else :data:`ADAMW_WEIGHT_DECAY`."""
        return ADAMW_WEIGHT_DECAY if self.weight_decay is None else self.weight_decay

    @property
    def resolved_split_seed(self) -> int:
        """The seed of the split (and of the balancing and ``max_per_class`` samples)."""
        return self.seed if self.split_seed is None else self.split_seed

    @property
    def seed_label(self) -> str:
        """``"seed 7"``; with another split seed ``"seed 7, split seed 1337"``."""
        split = "" if self.resolved_split_seed == self.seed else f", split seed {self.split_seed}"
        return f"seed {self.seed}{split}"

    @property
    def optimizer_label(self) -> str:
        """``"adam (lr 0.001)"``; AdamW with its weight decay: ``"adamw (lr 0.001, weight decay 0.05)"``."""
        decay = f", weight decay {self.resolved_weight_decay:g}" if self.optimizer == "adamw" else ""
        return f"{self.optimizer} (lr {self.lr}{decay})"

    def model_kwargs(self) -> dict[str, Any]:
        """``build_model`` arguments besides size, l2 and dropout: the input representation, flip
        averaging (any model) and the builder's own options."""
        return {"representation": self.input, "tta_flip": self.tta_flip, **self.model_options}

    def model_names(self) -> tuple[str, ...]:
        """The architectures this config trains: every registered one for ``model="all"``."""
        return models.MODEL_NAMES if self.model == "all" else (self.model,)

    def for_model(self, name: str, **changes: Any) -> TrainConfig:
        """A copy for model ``name`` (and ``changes``) keeping only the options ``name`` declares."""
        options = {k: v for k, v in self.model_options.items() if k in declared_options(name)}
        return dataclasses.replace(self, model=name, model_options=options, **changes)

    @property
    def dropout_label(self) -> str:
        """The dropout as reports print it."""
        return "each model's own" if self.dropout is None else str(self.dropout)

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
        """Build from a dict, ignoring keys that are not fields (versions, derived values).

        An older config's ``vit_size`` becomes ``model_options["size"]`` of a ``vit`` config (other
        models ignore it, as they did).
        """
        from tfdeepfake.cli import usage_error

        if not isinstance(values, dict):
            raise usage_error("config", values, "a JSON object of field -> value")
        values = dict(values)
        vit_size = values.pop("vit_size", None)
        if vit_size is not None and values.get("model", cls.model) in ("vit", "all"):
            values["model_options"] = {"size": vit_size, **(values.get("model_options") or {})}
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


def declared_options(model: str) -> set[str]:
    """The option names model ``model`` declares (for ``"all"``: declared by any model)."""
    names = models.MODEL_NAMES if model == "all" else (model,)
    return {key for name in names for key in models.model_options(name)}
