"""Making the charge model's AM1-BCC labels: sources, jobs, one molecule's label, the run.

Molecules come from RDKit's NCI set, its WEHI screening set, or the generated coverage set
(:mod:`hybridff.charges.model.coverage`), cleaned and expanded into protonation variants
(:mod:`hybridff.charges.model.variants`). Each gets a seeded ETKDG conformer, MMFF94-relaxed
(:func:`hybridff.io.molecule.prepare`), and AM1-BCC charges from antechamber/sqm (on that
conformer, or with the AM1 geometry relaxation of the standard recipe). Results are appended
to a JSONL file (resumable: finished and failed keys are skipped on restart; failures,
timeouts included, are recorded with the error); every record names its recipe
(:data:`RECIPES`). ``scripts/make_charge_labels.py`` is the command line.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import rdkit.RDConfig
from rdkit import Chem

from hybridff.charges.labels import indexed_smiles
from hybridff.charges.model.coverage import coverage_molecules
from hybridff.charges.model.variants import clean, has_rare_chemistry, variants
from hybridff.exceptions import DataFormatError, InvalidOptionError

NCI_FILE = os.path.join(rdkit.RDConfig.RDDataDir, "NCI/first_5K.smi")
#: the WEHI screening set shipped with RDKit's PAINS test data (10,000 drug-like molecules)
WEHI_FILE = os.path.join(rdkit.RDConfig.RDDataDir, "Pains/test_data/wehi_mols.csv")
#: the ``recipe`` field of the records, by ``--optimize``: single point on the MMFF conformer, or
#: the standard recipe (sqm's default AM1 relaxation first, as ``antechamber -c bcc`` runs it).
#: Records without the field were all made by the single-point recipe.
RECIPES = {False: "am1bcc-single-point", True: "am1bcc-standard"}

#: label sources (see :func:`build_jobs`)
SOURCES = ("nci", "wehi", "wehi-all", "coverage")


def read_nci(path: str = NCI_FILE) -> Iterator[tuple[str, str]]:
    """(id, SMILES) of the NCI file."""
    with open(path) as fh:
        for line in fh:
            fields = line.split()
            if len(fields) >= 2:
                yield fields[1], fields[0]


def read_wehi(path: str = WEHI_FILE) -> Iterator[tuple[str, str]]:
    """(id, SMILES) of the WEHI file (CSV: "SMILES","WEHI-nnnnnnn")."""
    with open(path, encoding="utf-8-sig") as fh:
        for line in fh:
            fields = [f.strip().strip('"') for f in line.strip().split(",")]
            if len(fields) >= 2 and fields[0]:
                yield fields[1], fields[0]


def build_jobs(max_heavy: int, source: str = "nci") -> list[tuple[int, str, str]]:
    """(heavy atoms, key, SMILES) of every molecule variant, smallest first.

    ``source`` "nci": every molecule of the NCI file (keys ``NCI<id>:<variant>``); "wehi": the
    molecules of the WEHI file with rare chemistry (:func:`has_rare_chemistry`; keys
    ``WEHI-<id>:<variant>``); "wehi-all": every molecule of the WEHI file (same keys, so the
    rare-chemistry labels already made are not redone), with aromatic bases protonated as well
    (variant ``arcation``); "coverage": the generated chemistry-coverage set
    (:mod:`hybridff.charges.model.coverage`; keys ``COV-<template>-<hash>:<variant>``).
    """
    if source not in SOURCES:
        raise InvalidOptionError(f"unknown source {source!r}; expected one of {SOURCES}")
    jobs = []
    seen: set[str] = set()
    entries = {"nci": read_nci, "coverage": coverage_molecules}.get(source, read_wehi)()
    for mol_id, smi in entries:
        mol = clean(smi, max_heavy)
        if mol is None or (source == "wehi" and not has_rare_chemistry(mol)):
            continue
        prefix = f"NCI{mol_id}" if source == "nci" else mol_id
        for name, v in variants(mol, aromatic_bases=source == "wehi-all").items():
            can = Chem.MolToSmiles(v)
            if can in seen or v.GetNumHeavyAtoms() > max_heavy:  # armethyl adds an atom
                continue
            seen.add(can)
            jobs.append((v.GetNumHeavyAtoms(), f"{prefix}:{name}", can))
    jobs.sort(key=lambda j: (j[0], j[1]))
    return jobs


class _Timeout(Exception):
    pass


def _alarm(signum, frame):  # noqa: ARG001
    raise _Timeout()


#: whether this process is a pool worker made a child subreaper by :func:`_worker_init`
_REAPER = False


def _worker_init() -> None:
    """Pool worker set-up: become a child subreaper (Linux), so that the sqm a timed-out
    antechamber leaves running is re-parented here and :func:`_end_strays` can end it."""
    global _REAPER
    try:
        import ctypes

        _REAPER = ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        _REAPER = False


def _end_strays() -> None:
    """Kill and reap every process left below this pool worker (an orphaned sqm after a
    timeout keeps running otherwise, for hours with the AM1 relaxation)."""
    if not _REAPER:
        return
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    below, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier} - below
        below |= frontier
    for pid in below:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                time.sleep(0.05)
        except ChildProcessError:
            break


def label_one(smiles: str, timeout: float, optimize: bool) -> dict:
    """AM1-BCC charges of one molecule; the returned record has smiles (explicit H) + charges."""
    from hybridff.charges import assign_charges
    from hybridff.io.molecule import prepare

    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(timeout) + 5)  # conformer generation too; antechamber has its own timeout
    try:
        mol = prepare(Chem.MolFromSmiles(smiles))
        q = assign_charges(mol, "am1bcc", timeout=timeout, optimize=optimize)
    finally:
        signal.alarm(0)
    smi, order = indexed_smiles(mol)
    return {"smiles": smi, "charges": [round(float(q[i]), 4) for i in order]}


def _job(job: tuple[str, int, str, float, bool]) -> dict:
    """Label one (key, heavy atoms, SMILES, timeout, optimize) job; failures become records."""
    key, heavy, smi, timeout, optimize = job
    recipe = RECIPES[bool(optimize)]
    t0 = time.perf_counter()
    try:
        rec = label_one(smi, timeout, optimize)
    except Exception as exc:  # record every failure (timeouts too), keep going
        _end_strays()
        error = "timeout" if isinstance(exc, _Timeout) else f"{type(exc).__name__}: {str(exc)[-300:]}"
        return {"key": key, "input": smi, "recipe": recipe, "error": error,
                "seconds": round(time.perf_counter() - t0, 2)}
    return {"key": key, "heavy": heavy, "seconds": round(time.perf_counter() - t0, 2),
            "recipe": recipe, **rec}


def _json_records(*paths: Path) -> Iterator[dict]:
    """The JSON objects of the lines of JSONL files (missing files and lines that do not parse,
    such as one cut by a kill, are skipped)."""
    for path in paths:
        if path.exists():
            with open(path) as fh:
                for line in fh:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if isinstance(rec, dict):
                        yield rec


def done_keys(*paths: Path) -> set[str]:
    """Keys already present in result/failure JSONL files (a key on a cut line is redone)."""
    return {rec["key"] for rec in _json_records(*paths) if "key" in rec}


def recipes_in(*paths: Path) -> set[str]:
    """The recipes of the records in JSONL files (a record without one: single point)."""
    return {rec.get("recipe", RECIPES[False]) for rec in _json_records(*paths)}


def pack(src: Path, dest: Path) -> int:
    """Write the compressed, compact label file shipped with hybridff; returns the count."""
    if not src.exists():
        raise DataFormatError(f"{src} does not exist: give the label run's JSONL file as --out")
    if len(mixed := recipes_in(src)) > 1:
        raise DataFormatError(f"{src} mixes the recipes {sorted(mixed)}; not packed")
    records = {rec["key"]: {"key": rec["key"], "smiles": rec["smiles"], "charges": rec["charges"]}
               for rec in _json_records(src)}
    tmp = dest.with_suffix(".tmp")
    with gzip.GzipFile(tmp, "wb", mtime=0) as gz:
        for key in sorted(records):
            gz.write((json.dumps(records[key], separators=(",", ":")) + "\n").encode())
    tmp.replace(dest)
    return len(records)


def failures_path(out: Path) -> Path:
    """The failures file that goes with a label file (``NAME.failures.jsonl``)."""
    return out.with_name(out.stem + ".failures.jsonl")


def order_jobs(jobs: list[tuple[int, str, str]], skip: set[str], order: str = "size",
               seed: int = 0, first: list[Chem.Mol] | None = None, charged_first: bool = False,
               limit: int | None = None) -> list[tuple[int, str, str]]:
    """The jobs still to do (keys not in ``skip``), in labelling order: by size (as built) or a
    seeded shuffle (``order="random"``, the same on every resume); then molecules matching one
    of the ``first`` SMARTS patterns before the rest, then (``charged_first``) the charged
    variants before the molecules as given, smallest first; the first ``limit`` of them."""
    if order == "random":
        jobs = list(jobs)
        random.Random(seed).shuffle(jobs)
    jobs = [j for j in jobs if j[1] not in skip]
    if first:
        def matches_first(job: tuple[int, str, str]) -> bool:
            mol = Chem.MolFromSmiles(job[2])  # parsed once per job, not once per pattern
            return any(mol.HasSubstructMatch(pattern) for pattern in first)

        jobs.sort(key=lambda j: not matches_first(j))
    if charged_first:
        jobs.sort(key=lambda j: (j[1].endswith(":input"), j[0], j[1]))
    return jobs[:limit] if limit else jobs


def run_jobs(jobs: list[tuple[int, str, str]], out: Path, timeout: float, optimize: bool,
             workers: int = 1) -> tuple[int, int]:
    """Label ``jobs`` on ``workers`` processes, appending each record to ``out`` (failures to
    :func:`failures_path`) as it arrives; returns (labelled, failed)."""
    from tqdm import tqdm

    n_ok = n_fail = 0
    work = [(key, heavy, smi, timeout, optimize) for heavy, key, smi in jobs]
    with open(out, "a") as good, open(failures_path(out), "a") as bad, \
            multiprocessing.Pool(max(1, workers), initializer=_worker_init) as pool:
        bar = tqdm(pool.imap_unordered(_job, work), total=len(work), mininterval=10, file=sys.stdout)
        for rec in bar:
            if "error" in rec:
                n_fail += 1
                bad.write(json.dumps(rec) + "\n")
                bad.flush()
                continue
            n_ok += 1
            good.write(json.dumps(rec) + "\n")
            good.flush()
            bar.set_postfix(ok=n_ok, failed=n_fail, heavy=rec["heavy"], refresh=False)
    return n_ok, n_fail
