"""What every command line shares: checks run on flags, paths and config fields before any work, and the
wrapper that turns a user error into one line and exit code 2.

Each check raises :class:`UsageError` (a ``ValueError``) whose one-line message names the flag or field,
the value given and what is expected. :func:`run_cli` prints ``error: MESSAGE`` on stderr and exits 2
for it and for the ``ValueError`` / ``OSError`` a command raises later on bad input (a model file that
does not load, a folder without images); ``--debug`` (:func:`add_debug_flag`) shows the traceback
instead. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

USER_ERRORS = (ValueError, OSError)
_MAX_SHOWN = 120  # characters of a value quoted in a message


class UsageError(ValueError):
    """A flag, path or config value that cannot work; the message says which, its value and what is
    expected."""


def show(value: Any) -> str:
    """A value as quoted in a message (``repr``, shortened)."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def usage_error(name: str, value: Any, expected: str) -> UsageError:
    """``NAME: got VALUE, expected EXPECTED`` (``name``: a flag such as ``--csv`` or a config field)."""
    return UsageError(f"{name + ': ' if name else ''}got {show(value)}, expected {expected}")


# ---------------------------------------------------------------------------------------------
# Numbers and choices
# ---------------------------------------------------------------------------------------------

def number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, integer: bool = False,
           optional: bool = False) -> Any:
    """Check that ``value`` is a finite number (an ``int`` when ``integer``) within the bounds
    (``low_open``/``high_open``: the bound itself excluded); ``None`` passes when ``optional``.
    Returns ``value``."""
    if value is None and optional:
        return value
    kind = "an integer" if integer else "a number"
    lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
    hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
    bounds = " and ".join(b for b in (lo, hi) if b)
    expected = f"{kind} {bounds}".strip() + (" (or null)" if optional else "")
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not math.isfinite(value):
        raise usage_error(name, value, expected)
    if low is not None and (value < low or (low_open and value == low)):
        raise usage_error(name, value, expected)
    if high is not None and (value > high or (high_open and value == high)):
        raise usage_error(name, value, expected)
    return value


def probability(name: str, value: Any, *, optional: bool = True) -> Any:
    """A threshold or probability: a finite number in [0, 1] (``None`` passes when ``optional``)."""
    return number(name, value, low=0.0, high=1.0, optional=optional)


def choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` must be one of ``choices``."""
    options = tuple(choices)
    if not isinstance(value, str | int | float | type(None)) or value not in options:
        raise usage_error(name, value, f"one of {', '.join(map(str, options))}")
    return value


def text(name: str, value: Any, *, optional: bool = False) -> Any:
    """A non-empty string (``None`` passes when ``optional``)."""
    if value is None and optional:
        return value
    if not isinstance(value, str) or not value.strip():
        raise usage_error(name, value, "a non-empty string" + (" (or null)" if optional else ""))
    return value


# argparse ``type=`` converters built on the checks (argparse reports their message as the flag's).

def _argtype(check: Callable[[str, Any], Any], convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            value = convert(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a {convert.__name__}") from None
        try:
            return check("", value)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


positive_int = _argtype(lambda n, v: number(n, v, low=1, integer=True), int)
non_negative_int = _argtype(lambda n, v: number(n, v, low=0, integer=True), int)
positive_float = _argtype(lambda n, v: number(n, v, low=0.0, low_open=True), float)
threshold = _argtype(lambda n, v: probability(n, v, optional=False), float)
port = _argtype(lambda n, v: number(n, v, low=0, high=65535, integer=True), int)


# ---------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------

def _path(name: str, value: Any) -> Path:
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise usage_error(name, value, "a path")
    try:
        return Path(value).expanduser()
    except RuntimeError:  # "~user" of a user that does not exist
        raise usage_error(name, value, "a path (its ~user is unknown)") from None


def _os_errors_named(check: Callable[..., Any]) -> Callable[..., Any]:
    """A path check whose ``OSError`` (a name too long, a loop of links) becomes a ``UsageError``."""
    import functools

    @functools.wraps(check)
    def wrapped(name: str, value: Any, **kwargs: Any) -> Any:
        try:
            return check(name, value, **kwargs)
        except OSError as exc:
            raise usage_error(name, value, f"a usable path ({exc.strerror or exc})") from None
    return wrapped


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_creatable(name: str, value: Any, path: Path) -> None:
    """``path`` (absent) can be created: its nearest existing ancestor is a folder we can write in."""
    ancestor = _nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise usage_error(name, value, f"a path that can be created ({ancestor} is a file)")
    try:  # os.access says yes to root even on /proc or a read-only mount: try it
        fd, probe = tempfile.mkstemp(dir=ancestor, prefix=".tfdeepfake-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise usage_error(name, value, f"a writable location ({ancestor}: {exc.strerror or exc})") from None


@_os_errors_named
def output_file(name: str, value: Any, *, optional: bool = True) -> Path | None:
    """A file to write: not a folder, an existing file writable, else creatable (folders made later)."""
    if value is None and optional:
        return None
    path = _path(name, value)
    if path.is_dir():
        raise usage_error(name, value, "a file to write, not a folder")
    if path.exists():
        if not path.is_file():
            raise usage_error(name, value, "a regular file to write")
        try:
            with path.open("ab"):
                pass
        except OSError as exc:
            raise usage_error(name, value, f"a writable file ({exc.strerror or exc})") from None
    else:
        _check_creatable(name, value, path)
    return path


@_os_errors_named
def output_dir(name: str, value: Any, *, optional: bool = True) -> Path | None:
    """A folder to write into: an existing folder we can write in, or one that can be created."""
    if value is None and optional:
        return None
    path = _path(name, value)
    if path.exists() and not path.is_dir():
        raise usage_error(name, value, "a folder to write into, not a file")
    if path.is_dir():
        _check_creatable(name, value, path / "probe")
    else:
        _check_creatable(name, value, path)
    return path


@_os_errors_named
def input_dir(name: str, value: Any, *, optional: bool = True) -> Path | None:
    """An existing folder to read."""
    if value is None and optional:
        return None
    path = _path(name, value)
    if not path.exists():
        raise usage_error(name, value, "an existing folder (not found)")
    if not path.is_dir():
        raise usage_error(name, value, "a folder, not a file")
    if not os.access(path, os.R_OK | os.X_OK):
        raise usage_error(name, value, "a readable folder")
    return path


@_os_errors_named
def input_path(name: str, value: Any) -> Path:
    """An existing file or folder to read."""
    path = _path(name, value)
    if not path.exists():
        raise usage_error(name, value, "an existing file or folder (not found)")
    return path


# ---------------------------------------------------------------------------------------------
# Running a command
# ---------------------------------------------------------------------------------------------

def add_debug_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of one line")
    return parser


def given_options(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> dict[str, str]:
    """The options given on the command line (not left at their defaults): ``{dest: "--flag"}``."""
    unset = object()
    actions = [a for a in parser._actions if a.dest != argparse.SUPPRESS and a.option_strings]
    probe = argparse.Namespace(**{a.dest: unset for a in actions})
    args = parser.parse_args(sys.argv[1:] if argv is None else argv, namespace=probe)
    return {a.dest: a.option_strings[-1] for a in actions if getattr(args, a.dest) is not unset}


def one_line(message: Any) -> str:
    """A message on one line (multi-line errors, such as TensorFlow's, joined with ' | ')."""
    return " | ".join(line.strip() for line in str(message).splitlines() if line.strip())


def run_cli(main: Callable[[list[str]], int], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; a user error (``ValueError``/``OSError``) becomes ``error: MESSAGE`` on one
    line on stderr and ``SystemExit(2)``, or its traceback with ``--debug``."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(args)
    except USER_ERRORS as exc:
        if "--debug" in args:
            raise
        print(f"error: {one_line(exc) or type(exc).__name__}", file=sys.stderr)
        raise SystemExit(2) from None
