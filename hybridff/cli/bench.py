"""Run the benchmark scripts in benchmarks/ (each in its own process, one after the other) and
print their tables, the measured ratios and the machine they ran on. --quick gives each a
small size (seconds to a few minutes); --only picks benchmarks by name (e.g. parameterize,
charges, hybrid); --list shows the known names. Ratios are measured within one run of one
script, so they compare like with like on the machine at hand."""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from hybridff.exceptions import UnknownNameError

#: Arguments that make each known benchmark small under --quick; a script that accepts
#: ``--quick`` itself gets that instead, and an unknown one runs with its own defaults.
QUICK_ARGS: dict[str, list[str]] = {
    "parameterize": ["--n", "3"],
    "charges": ["--n", "3", "--single-point"],
    "hybrid": ["--steps", "200"],
}
#: Lines of a benchmark's output repeated in the summary.
_SUMMARY = re.compile(r"ratio|speed-?up|ns/day|slower|faster", re.IGNORECASE)


def default_directory() -> Path:
    """``benchmarks/`` next to the package (a source checkout or editable install)."""
    return Path(__file__).resolve().parents[2] / "benchmarks"


def discover(directory: Path) -> dict[str, Path]:
    """name -> script for every ``bench_NAME.py`` in ``directory``."""
    return {p.stem[len("bench_"):]: p for p in sorted(directory.glob("bench_*.py"))}


def select(known: dict[str, Path], only: list[str] | None) -> dict[str, Path]:
    """The benchmarks named in ``only`` (comma- or space-separated; all when empty)."""
    if not only:
        return dict(known)
    names = [n for item in only for n in item.split(",") if n]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UnknownNameError(
            f"unknown benchmark {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(known) or '(none found)'}")
    return {n: known[n] for n in names}


def quick_arguments(name: str, script: Path) -> list[str]:
    """Arguments for a --quick run of ``script``."""
    if re.search(r"""["']--quick["']""", script.read_text()):
        return ["--quick"]
    return list(QUICK_ARGS.get(name, []))


def machine_details() -> list[str]:
    """Lines describing the CPU, GPU and software stack."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = ""
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines()
                      if x.startswith("MemTotal")).split()[1])
        memory = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    lines = [f"machine: {cpu}, {cores} usable of {os.cpu_count()} CPUs{memory}; "
             f"{platform.system()} {platform.release()}"]
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if gpu.returncode == 0 and gpu.stdout.strip():
            lines.append("gpu: " + "; ".join(gpu.stdout.strip().splitlines()))
    except (OSError, subprocess.TimeoutExpired):
        pass
    versions = [f"python {platform.python_version()}"]
    for module in ("hybridff", "openmm", "torch", "rdkit"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except Exception:  # an optional package missing or broken: just leave it out
            continue
    try:
        import openmm

        names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
        versions.append(f"OpenMM platforms {'/'.join(names)}")
    except ImportError:
        pass
    lines.append("software: " + ", ".join(versions))
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (a few molecules / steps) for a fast check")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only these benchmarks (repeat or comma-separate)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--directory", type=Path, default=None,
                        help="folder of bench_*.py scripts (default: the checkout's benchmarks/)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per benchmark before it is stopped (default: none)")


def run(args: argparse.Namespace) -> int:
    directory = args.directory or default_directory()
    known = discover(directory)
    if not known:
        raise UnknownNameError(f"no bench_*.py scripts in {directory}; run from a source checkout "
                               "or pass --directory")
    if args.list:
        for name, script in known.items():
            doc = script.read_text().split('"""')
            first = doc[1].strip().splitlines()[0] if len(doc) > 2 else ""
            print(f"{name:14s} {first}")
        return 0
    chosen = select(known, args.only)
    print("\n".join(machine_details()), flush=True)
    results: list[tuple[str, int, float, list[str]]] = []
    for name, script in chosen.items():
        extra = quick_arguments(name, script) if args.quick else []
        command = [sys.executable, str(script), *extra]
        print(f"\n=== {name}: {' '.join([Path(command[0]).name, *command[1:]])}", flush=True)
        t0 = time.perf_counter()
        lines: list[str] = []
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, cwd=directory.parent)
        timer = threading.Timer(args.timeout, proc.kill) if args.timeout else None
        if timer is not None:
            timer.start()
        for line in proc.stdout or []:  # stream: the tables appear as they are printed
            print(line, end="", flush=True)
            lines.append(line.rstrip())
        code = proc.wait()
        if timer is not None:
            timer.cancel()
        results.append((name, code, time.perf_counter() - t0, [x for x in lines if _SUMMARY.search(x)]))
    print("\n=== summary")
    for name, code, seconds, summary in results:
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"{name}: {status}, {seconds:.1f} s")
        for line in summary:
            print(f"  {line.strip()}")
    return 0 if all(code == 0 for _, code, _, _ in results) else 1
