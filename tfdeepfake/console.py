"""Progress lines for long-running steps (training, the experiment): a ``Log`` is any ``str -> None``."""

from __future__ import annotations

from collections.abc import Callable

Log = Callable[[str], None]
"""Where a step writes its progress lines (``print_line`` by default; a list's ``append`` in tests)."""


def print_line(message: str) -> None:
    """Print ``message`` and flush at once (lines show up live in logs and captured notebook output)."""
    print(message, flush=True)
