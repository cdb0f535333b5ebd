"""The model registry: builders by name, and the options each builder declares.

A builder is ``builder(image_size=224, *, l2=1e-4, dropout=0.5, **options) -> keras.Model``, registered
with :func:`register_model`. Its *options* are its other keyword-only parameters (e.g. the ViT's
``size``/``patch_size``, VGG's ``batch_norm``): declared by the signature itself, with their defaults and
type hints, so a new option reaches ``TrainConfig.model_options`` and ``train --model-option KEY=VALUE``
without editing either.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

ModelBuilder = Callable[..., Any]
"""``builder(image_size, *, l2, dropout, **options) -> keras.Model``."""

COMMON_ARGUMENTS = ("image_size", "l2", "dropout")
"""Arguments every builder takes; everything else keyword-only is an option."""

_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering ``builder(image_size=224, *, l2=1e-4, dropout=0.5, **options)`` as ``name``."""

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ValueError(
                f"Model {name!r} is already registered (by {_REGISTRY[name].__module__})."
            )
        _REGISTRY[name] = builder
        return builder

    return decorator


def registered_names() -> tuple[str, ...]:
    """Names registered so far, in registration order."""
    return tuple(_REGISTRY)


def get_builder(name: str) -> ModelBuilder:
    """The builder registered as ``name``; ``ValueError`` listing the valid names otherwise."""
    if not isinstance(name, str) or name not in _REGISTRY:
        valid = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"Unknown model name {name!r}. Valid names: {valid}.")
    return _REGISTRY[name]


def model_options(name: str) -> dict[str, inspect.Parameter]:
    """``{option: parameter}`` declared by the builder of ``name`` (its keyword-only parameters other
    than :data:`COMMON_ARGUMENTS`), with defaults and evaluated type hints."""
    builder = get_builder(name)
    return {p.name: p.replace(annotation=_evaluated(p.annotation, builder))
            for p in inspect.signature(builder).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in COMMON_ARGUMENTS}


def _evaluated(annotation: Any, builder: ModelBuilder) -> Any:
    """A string type hint (``from __future__ import annotations``) evaluated in the builder's module;
    left unchecked (``empty``) when it names something that module does not define."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, getattr(builder, "__globals__", {}))
    except Exception:
        return inspect.Parameter.empty


def _accepts(annotation: Any, value: Any) -> bool:
    """Whether ``value`` fits a simple type hint (``int``, ``float``, ``str``, ``bool``, unions, None)."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(_accepts(a, value) for a in typing.get_args(annotation))
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True  # a hint too rich to check here: the builder checks the value


def check_model_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` checked against what the builder of ``name`` declares (names and types).

    Raises ``ValueError`` naming the option and listing the declared ones; values are checked in
    full (ranges, choices) by the builder itself.
    """
    declared = model_options(name)
    if not isinstance(options, Mapping):
        raise ValueError(f"model_options must be a mapping of option -> value; got {options!r}")
    for key, value in options.items():
        if key not in declared:
            valid = ", ".join(declared) or "none"
            raise ValueError(f"model {name!r} has no option {key!r} (its options: {valid})")
        hint = declared[key].annotation
        if not _accepts(hint, value):
            raise ValueError(f"model option {key!r} of {name!r} must be {_hint_text(hint)}; "
                             f"got {value!r}")
    return dict(options)


def _hint_text(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)


def parse_option(text: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> ``(key, value)``; VALUE is read as JSON (``8``, ``0.1``, ``true``, ``null``)
    and otherwise kept as a string (``size=small``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"a model option must look like KEY=VALUE; got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value
