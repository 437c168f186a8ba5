"""Options shared by the commands that take many molecules (``parameterize``, ``charges``):
``-o FOLDER/`` for one output file per molecule, ``--workers`` / ``--scheduler`` to run them
on Dask, ``--retry-failed``, ``--no-progress``; the work itself is :mod:`hybridff.batch`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from hybridff.cli.argtypes import output_file, output_problem, positive
from hybridff.exceptions import InvalidOptionError


class OutputFolder(type(Path())):  # type: ignore[misc]
    """An output path given as a folder (one file per molecule)."""


def output_target(text: str) -> Path:
    """An argparse ``type``: an output folder (``OutputFolder``) when the text ends with
    ``/``, else an output file (:func:`~hybridff.cli.argtypes.output_file`); either must be
    writable or creatable."""
    if not text.endswith(("/", os.sep)):
        return output_file(text)
    problem = output_problem(Path(text), folder=True)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return OutputFolder(text)


def add_batch_arguments(
    parser: argparse.ArgumentParser, progress: bool = True, *,
    work: str = "with -o FOLDER/: process the molecules",
    tasks: str = "one task per molecule",
    retry: str = ("with -o FOLDER/: process again the molecules recorded in "
                  "FOLDER/failures.jsonl (by default a later run skips them)"),
) -> None:
    """``--workers`` / ``--scheduler``, ``--retry-failed`` and (``progress``) ``--no-progress``,
    for every command that runs tasks on Dask; their help says what runs there (``work``,
    ``tasks``) and what ``--retry-failed`` does (``retry``)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive("a worker count", integer=True), default=None,
                       metavar="N", help=f"{work} on a local Dask cluster of N worker "
                       f"processes ({tasks})")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help=f"{work} on the running Dask cluster whose scheduler is at "
                       "ADDRESS (e.g. tcp://10.0.0.5:8786); see docs/scale-out.md")
    parser.add_argument("--retry-failed", action="store_true", help=retry)
    if progress:
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def is_batch(args: argparse.Namespace) -> bool:
    """Whether the command writes one file per molecule (``-o`` is a folder); refuses
    ``--workers`` / ``--scheduler`` / ``--retry-failed`` with a single output file."""
    if isinstance(args.output, OutputFolder):
        return True
    if args.workers is not None or args.scheduler is not None or args.retry_failed:
        raise InvalidOptionError(
            "--workers, --scheduler and --retry-failed write one file per molecule: give -o a "
            "folder, e.g. -o out/")
    return False


def run_batch_command(args: argparse.Namespace, source: Any, job: Any) -> int:
    """Run ``job`` on every molecule of ``source`` into the folder ``args.output`` and print
    the summary; exit code 0 when every molecule has its file, else 1."""
    from hybridff.batch import run_batch

    summary = run_batch(source, args.output, job, workers=args.workers,
                        scheduler=args.scheduler, retry_failed=args.retry_failed,
                        progress=not args.no_progress)
    print(summary.line())
    return 0 if summary.complete else 1


def resolved(path: str) -> str:
    """``path`` made absolute when it names an existing file (Dask workers may run in another
    folder); other text (a shipped file's name) as it is."""
    return str(Path(path).resolve()) if Path(path).is_file() else path
