"""The ``hybridff`` command line: one module per sub-command, each with ``add_parser`` and ``run``.

A sub-command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args)``
returning an exit code. Modules are imported only when their command runs, so ``--help`` is
fast and a missing optional dependency only affects its own command.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
import traceback
from contextlib import AbstractContextManager
from typing import NoReturn

from hybridff import __version__
from hybridff.cli.argtypes import number_in
from hybridff.exceptions import HybridFFError
from hybridff.threads import THREAD_VARIABLES, environment_defaults

__all__ = ["COMMANDS", "build_parser", "error_message", "main", "number_in"]

#: name -> (module, one-line help); the order is the order ``--help`` shows.
COMMANDS: dict[str, tuple[str, str]] = {
    "parameterize": ("hybridff.cli.parameterize", "write an OpenMM ForceField XML for molecules"),
    "charges": ("hybridff.cli.charges", "compute partial charges (ml, am1bcc, gasteiger, file)"),
    "label": ("hybridff.cli.label", "sample conformations and compute QM energies/forces"),
    "fit": ("hybridff.cli.fit", "refit a molecule's bonded terms to its QM frames (bespoke MM XML)"),
    "train": ("hybridff.cli.train", "train the ML correction on QM-minus-MM residuals"),
    "evaluate": ("hybridff.cli.evaluate", "compare MM and hybrid against QM on labelled frames"),
    "simulate": ("hybridff.cli.simulate", "run MM or hybrid molecular dynamics"),
    "spectrum": ("hybridff.cli.spectrum", "IR spectrum of a vacuum MD run from its dipole time series"),
    "bench": ("hybridff.cli.bench", "run the benchmarks and print measured ratios"),
}


def _available() -> dict[str, tuple[str, str]]:
    return {
        name: spec
        for name, spec in COMMANDS.items()
        if importlib.util.find_spec(spec[0]) is not None
    }


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``hybridff CMD: error: ...``, exit 2),
    with a pointer to ``-h`` instead of the full usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (imports each sub-command module to add its options)."""
    parser = _Parser(
        prog="hybridff",
        description="hybridff: GAFF2-class force field + learned ML correction for OpenMM.",
    )
    parser.add_argument("--version", action="version", version=f"hybridff {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in _available().items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(p)
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="debug logging, and the traceback of an error")
        p.set_defaults(_module=module)
    return parser


def limit_threads(argv: list[str]) -> AbstractContextManager[None]:
    """A command's ``--threads N`` as the OpenMP/BLAS variables (:data:`THREAD_VARIABLES`),
    for the length of a ``with`` block: entered before any library that reads them is loaded
    (building the parser already loads numpy); variables the user set are left alone, and
    the environment is as it was after the block."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", default=None)
    known, _ = pre.parse_known_args(argv)
    try:  # a bad value is refused by the command's own parser, with its message
        threads = None if known.threads is None else int(known.threads)
    except ValueError:
        threads = None
    if threads is None and argv[:1] == ["label"]:
        from hybridff.cli.label import DEFAULT_THREADS

        threads = DEFAULT_THREADS
    values = {name: str(threads) for name in THREAD_VARIABLES} if threads and threads > 0 else {}
    return environment_defaults(values)


#: what to do about an OSError, by errno
_OS_ADVICE = {
    errno.ENOENT: "check the path",
    errno.EACCES: "choose a location you can read and write, or fix its permissions",
    errno.EPERM: "choose a location you can read and write, or fix its permissions",
    errno.EROFS: "the file system is read-only: choose another location",
    errno.ENOSPC: "the disk is full: free space or choose another location",
    errno.EDQUOT: "the disk quota is used up: free space or choose another location",
    errno.EISDIR: "give a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.ENAMETOOLONG: "use a shorter name",
    errno.EEXIST: "move it away or choose another name",
}


def _first_line(text: str) -> tuple[str, bool]:
    """The first non-empty line of ``text`` and whether more followed (C++ stack traces ...)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[0] if lines else ""), len(lines) > 1


def error_message(exc: BaseException) -> str | None:
    """The one-line message of an error the command line reports without a traceback: the
    package's own errors as they are; OSError, ValueError and OpenMM's exception with what was
    wrong, where and what to do. ``None`` for anything else (a bug: keep its traceback)."""
    if isinstance(exc, HybridFFError):
        return str(exc)
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else ""
        if exc.filename2 is not None:
            where = f"{where} -> {exc.filename2}"
        what = exc.strerror or _first_line(str(exc))[0] or type(exc).__name__
        advice = _OS_ADVICE.get(exc.errno or -1, "check the path and the disk")
        return f"{where + ': ' if where else ''}{what}; {advice}"
    openmm = sys.modules.get("openmm")
    if isinstance(exc, ValueError) or (
            openmm is not None and isinstance(exc, getattr(openmm, "OpenMMException", ()))):
        line, more = _first_line(str(exc))
        source = "OpenMM" if not isinstance(exc, ValueError) else type(exc).__name__
        return (f"{line or type(exc).__name__} ({source}{'; first line of its message' if more else ''}); "
                "check the input files and options (-v shows where it came from)")
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hybridff`` command."""
    with limit_threads(sys.argv[1:] if argv is None else argv):
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 1
    try:
        return int(args._module.run(args) or 0)
    except Exception as exc:
        message = error_message(exc)
        if message is None:
            raise
        if args.verbose:
            traceback.print_exc()
        print(f"hybridff {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
