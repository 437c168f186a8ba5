"""Argument types of the ``hybridff`` commands: numbers in their valid range, lists of widths,
names of a registry (plugins included), output files and folders that can be written. Each
is an ``argparse`` ``type=`` callable, so a bad value is refused before any work, in
argparse's one line (``hybridff CMD: error: argument --OPTION: ...``, exit 2)."""

from __future__ import annotations

import argparse
import importlib
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from hybridff.exceptions import UnknownNameError


def _bounds_text(low: float | None, high: float | None, low_open: bool, unit: str) -> str:
    """'0 to 1 nm', 'above 0 fs', '1 or more', 'above 0 and at most 5 fs'."""
    if low is not None and high is not None:
        if low_open:
            return f"above {low:g} and at most {high:g}{unit}"
        return f"{low:g} to {high:g}{unit}"
    if low is not None:
        return f"above {low:g}{unit}" if low_open else f"{low:g}{unit} or more"
    return f"at most {high:g}{unit}"


def number_in(low: float | None, high: float | None, what: str, unit: str = "", *,
              integer: bool = False, low_open: bool = False,
              hint: Callable[[float], str | None] | None = None) -> Callable[[str], float]:
    """An argparse ``type``: a finite number from ``low`` to ``high`` (``None``: no bound;
    ``low_open``: ``low`` itself excluded). ``what`` names it in the error ("a time step"),
    ``unit`` follows the bounds (" fs"), ``integer`` wants a whole number, ``hint(value)`` may
    add advice to the refusal (e.g. the value in the unit the user probably meant)."""

    def parse(text: str) -> float:
        try:
            value: float = int(text) if integer else float(text)
        except ValueError:
            kind = "a whole number" if integer else "a number"
            raise argparse.ArgumentTypeError(f"{what} is {kind}, got {text!r}") from None
        ok = math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value <= high
        if not ok:
            extra = hint(value) if hint is not None and math.isfinite(value) else None
            raise argparse.ArgumentTypeError(
                f"{what} must be {_bounds_text(low, high, low_open, unit)}, got {text}"
                + (f"; {extra}" if extra else ""))
        return value

    return parse


def positive(what: str, unit: str = "", *, integer: bool = False) -> Callable[[str], float]:
    """A number above 0 (a whole number from 1 with ``integer``)."""
    if integer:
        return number_in(1, None, what, unit, integer=True)
    return number_in(0.0, None, what, unit, low_open=True)


def non_negative(what: str, unit: str = "", *, integer: bool = False) -> Callable[[str], float]:
    """A number from 0 up."""
    return number_in(0, None, what, unit, integer=integer)


def registered(registry: str) -> Callable[[str], str]:
    """A name of the :class:`~hybridff.registry.Registry` at ``"module:attr"``: a built-in one
    or one another package adds through the registry's entry-point group. The registry's
    module is imported when a value is parsed, not when the parser is built (so ``--help``
    stays light); an unknown name is refused with the registry's own message, which lists
    the known names."""
    module_name, _, attr = registry.partition(":")

    def parse(text: str) -> str:
        names = getattr(importlib.import_module(module_name), attr)
        if text not in names:  # membership loads nothing, not even a plugin
            try:
                names[text]
            except UnknownNameError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return parse


def int_list(what: str, example: str) -> Callable[[str], tuple[int, ...]]:
    """Comma-separated whole numbers, each 1 or more (e.g. layer widths ``64,64``)."""

    def parse(text: str) -> tuple[int, ...]:
        parts = [p.strip() for p in text.split(",")]
        try:
            values = tuple(int(p) for p in parts)
        except ValueError:
            values = ()
        if not values or min(values) < 1:
            raise argparse.ArgumentTypeError(
                f"{what} are whole numbers of 1 or more separated by commas, e.g. {example}; "
                f"got {text!r}")
        return values

    return parse


def _unwritable(folder: Path) -> str | None:
    """Why no file can be created in the existing ``folder`` (None: it can).

    Tries it (a temporary file, removed at once): permission bits alone do not tell, e.g.
    for root, on a read-only mount or in /proc."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied"
    try:
        fd, name = tempfile.mkstemp(prefix=".hybridff-write-test.", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(name)
    return None


def output_problem(path: Path, folder: bool = False) -> str | None:
    """Why ``path`` cannot be written as an output file (``folder``: an output folder), or None.

    Missing parent folders are fine when they can be created (the writers create them)."""
    what = "folder" if folder else "file"
    if path.exists():
        if folder and not path.is_dir():
            return f"{path} is a file, not a folder; give a folder name"
        if not folder and path.is_dir():
            return f"{path} is a folder; give a file name"
        target = path if folder else path.parent
        why = _unwritable(target)
        if why:
            return f"cannot write the {what} {path}: {target} is not writable ({why}); choose " \
                   "a location you can write to"
        return None
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"cannot create the {what} {path}: {ancestor} is a file, not a folder; choose " \
               "another location"
    why = _unwritable(ancestor)
    if why:
        return f"cannot create the {what} {path}: {ancestor} is not writable ({why}); choose " \
               "a location you can write to"
    return None


def output_file(text: str) -> Path:
    """An argparse ``type``: an output file whose folder exists or can be created, writable."""
    path = Path(text)
    problem = output_problem(path)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return path


def output_folder(text: str) -> Path:
    """An argparse ``type``: an output folder that exists (writable) or can be created."""
    path = Path(text)
    problem = output_problem(path, folder=True)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return path
