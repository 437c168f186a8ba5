"""The ``hybridff`` command line: one module per sub-command, each with ``add_parser`` and ``run``.

A sub-command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args)``
returning an exit code. Modules are imported only when their command runs, so ``--help`` is
fast and a missing optional dependency only affects its own command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable

from hybridff import __version__
from hybridff.exceptions import HybridFFError

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


def number_in(low: float, high: float, what: str, unit: str = "") -> Callable[[str], float]:
    """An argparse ``type`` accepting a number from ``low`` to ``high`` (``what``: its name in
    the error, e.g. "a fraction"; ``unit`` follows the bounds, e.g. " degrees")."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} is a number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be {low:g} to {high:g}{unit}, got {text}")
        return value

    return parse


def _available() -> dict[str, tuple[str, str]]:
    return {
        name: spec
        for name, spec in COMMANDS.items()
        if importlib.util.find_spec(spec[0]) is not None
    }


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (imports each sub-command module to add its options)."""
    parser = argparse.ArgumentParser(
        prog="hybridff",
        description="hybridff: GAFF2-class force field + learned ML correction for OpenMM.",
    )
    parser.add_argument("--version", action="version", version=f"hybridff {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in _available().items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


#: thread-count variables of the OpenMP / BLAS libraries that QM engines and torch load
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads(argv: list[str]) -> None:
    """Apply a command's ``--threads N`` to the OpenMP/BLAS variables before any library
    that reads them is loaded (building the parser already loads numpy); variables the user
    set are left alone."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int, default=None)
    known, _ = pre.parse_known_args(argv)
    threads = known.threads
    if threads is None and argv[:1] == ["label"]:
        from hybridff.cli.label import DEFAULT_THREADS

        threads = DEFAULT_THREADS
    if threads is not None and threads > 0:
        for name in THREAD_VARIABLES:
            os.environ.setdefault(name, str(threads))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hybridff`` command."""
    limit_threads(sys.argv[1:] if argv is None else argv)
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
    except HybridFFError as exc:
        print(f"hybridff {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
