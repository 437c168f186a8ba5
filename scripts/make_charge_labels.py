"""Make AM1-BCC charge labels for the ML charge model from RDKit's NCI set.

Molecules: ``rdkit/Data/NCI/first_5K.smi``; largest fragment; elements H C N O F P S Cl Br I;
no radicals; at most ``--max-heavy`` heavy atoms. Protonation variants are made by rules so the
model sees charged molecules: carboxylic / sulfonic / phosphonic acids -> anions, basic
aliphatic amines and amidines/guanidines -> cations, both at once -> zwitterions (each variant
charged at one site per group kind, at most two sites, so totals stay within -2..+2).

Each molecule gets a seeded ETKDG conformer, MMFF94-relaxed (:func:`hybridff.io.molecule.prepare`),
and AM1-BCC charges from antechamber/sqm (by default on that conformer, without the AM1
geometry relaxation: ``--optimize`` for the full recipe, what ``antechamber -c bcc`` does by
default). Results are appended to a JSONL file (resumable: finished and failed keys are skipped
on restart; failures, timeouts included, are recorded with the error). Every record names its
recipe (:data:`RECIPES`); a run, resume or pack refuses a file holding the other recipe's records.
Smallest molecules go first so that a run cut short still covers the most molecules.

    nohup nice -n 10 python scripts/make_charge_labels.py --optimize --timeout 300 \
        --source wehi-all --out labels_standard/am1bcc_standard_wehi-all.jsonl > run.log 2>&1 &

    nice -n 10 python scripts/make_charge_labels.py --out labels/am1bcc_labels.jsonl --workers 2
    python scripts/make_charge_labels.py --out labels/am1bcc_labels.jsonl --pack \
        hybridff/resources/am1bcc_labels.jsonl.gz

Packed records: ``{"key", "smiles", "charges"}``; ``smiles`` has explicit hydrogens and its
atom order is the order of ``charges`` (parse it with ``removeHs=False``).
"""

from __future__ import annotations

import argparse
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
from rdkit import Chem, RDLogger
from rdkit.Chem.MolStandardize import rdMolStandardize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from charge_coverage_set import coverage_molecules  # noqa: E402

from hybridff.elements import SUPPORTED_ATOMIC_NUMBERS  # noqa: E402

NCI_FILE = os.path.join(rdkit.RDConfig.RDDataDir, "NCI/first_5K.smi")
#: the WEHI screening set shipped with RDKit's PAINS test data (10,000 drug-like molecules)
WEHI_FILE = os.path.join(rdkit.RDConfig.RDDataDir, "Pains/test_data/wehi_mols.csv")
#: ``--source wehi`` takes only molecules with chemistry that is rare in the NCI labels: P, I,
#: Br, or S other than thioether/thione/sulfonyl (sulfoxides, sulfinyl, ...)
RARE_ELEMENTS = ("P", "I", "Br")
COMMON_SULFUR = ((2, 2), (1, 2), (4, 6))  # (degree, total valence) of S that is well covered

#: acid groups: SMARTS whose first atom is the acidic O-H oxygen to deprotonate
ACID_SMARTS = (
    "[OX2H1][CX3]=[OX1]",  # carboxylic acid
    "[OX2H1][SX4](=[OX1])=[OX1]",  # sulfonic acid
    "[OX2H1][PX4]=[OX1]",  # phosphonic/phosphoric acid (first O-H)
)
#: base groups: SMARTS whose first atom is the nitrogen to protonate
BASE_SMARTS = (
    # aliphatic amine: sp3 N, only C/H neighbours, no aromatic, carbonyl, imine, vinyl or nitrile C
    "[NX3;H2,H1,H0;+0;!$(N[a]);!$(N[#6]=[#6,#7,#8,#16]);!$(N[#6]#*);!$(N[!#6;!#1])]",
    # amidine / guanidine: protonate the imine N
    "[NX2;H1,H0;+0;!$(N[a]);!$(N[!#6;!#1])]=[CX3;!a]([#7X3;!$(N[#6]=[#8,#16])])",
)
#: the ``recipe`` field of the records, by ``--optimize``: single point on the MMFF conformer, or
#: the standard recipe (sqm's default AM1 relaxation first, as ``antechamber -c bcc`` runs it).
#: Records without the field were all made by the single-point recipe.
RECIPES = {False: "am1bcc-single-point", True: "am1bcc-standard"}

#: label sources (see :func:`build_jobs`)
SOURCES = ("nci", "wehi", "wehi-all", "coverage")

#: aromatic bases, most basic kind first: SMARTS whose first atom is the ring N to protonate
#: (``wehi-all`` only, variants ``arcation`` and ``armethyl``, so that charged aromatic rings
#: are learned too)
AROMATIC_BASE_SMARTS = (
    "[nX2;+0]:[c,n]-[NX3;H2,H1,H0;+0;!$(N[#6]=[#8,#16]);!$(N[!#6;!#1])]",  # 2-aminopyridine-like
    "[nX2;+0;r5]:[c,n]:[nX3;r5]",  # imidazole-like
    "[nX2;+0;r6]",  # pyridine-like
)
#: weak acids, most acidic kind first: SMARTS whose first atom carries the H to remove
#: (``wehi-all`` only, variant ``weakanion``, so that anions other than the oxyacids' are
#: learned too: tetrazolates, sulfonamide and imide anions, enolates, phenolates, thiolates)
WEAK_ACID_SMARTS = (
    "[nX3H1;r5]:[n]:[n]:[n,c]",  # tetrazole / 1,2,3-triazole N-H
    "[NX3H1]([SX4](=[OX1])=[OX1])[CX3]=[OX1]",  # acyl sulfonamide
    "[OX2H1][CX3]=[CX3][CX3]=[OX1]",  # vinylogous acid (enol of a 1,3-dicarbonyl)
    "[OX2H1][NX3][CX3]=[OX1]",  # hydroxamic acid
    "[#7X3H1]([#6]=[OX1])[#6]=[OX1]",  # imide (also uracil-like ring N-H)
    "[NX3;H1,H2][SX4](=[OX1])=[OX1]",  # sulfonamide
    "[OX2H1]c",  # phenol
    "[SX2H1]",  # thiol
)
ACID_PATTERNS = [Chem.MolFromSmarts(s) for s in ACID_SMARTS]
WEAK_ACID_PATTERNS = [Chem.MolFromSmarts(s) for s in WEAK_ACID_SMARTS]
AROMATIC_BASE_PATTERNS = [Chem.MolFromSmarts(s) for s in AROMATIC_BASE_SMARTS]
BASE_PATTERNS = [Chem.MolFromSmarts(s) for s in BASE_SMARTS]


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


def has_rare_chemistry(mol: Chem.Mol) -> bool:
    """Whether ``mol`` has an atom of a rare element or an uncommon sulfur."""
    for atom in mol.GetAtoms():
        if atom.GetSymbol() in RARE_ELEMENTS:
            return True
        if atom.GetSymbol() == "S" and (atom.GetDegree(), atom.GetTotalValence()) not in COMMON_SULFUR:
            return True
    return False


def clean(smiles: str, max_heavy: int) -> Chem.Mol | None:
    """Largest fragment, supported elements, closed shell, size cap; None when rejected."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    mol = rdMolStandardize.LargestFragmentChooser().choose(mol)
    if mol.GetNumHeavyAtoms() > max_heavy or mol.GetNumHeavyAtoms() < 2:
        return None
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() not in SUPPORTED_ATOMIC_NUMBERS or atom.GetNumRadicalElectrons():
            return None
        if atom.GetIsotope():
            atom.SetIsotope(0)
    return mol


def _matches(mol: Chem.Mol, patterns: list[Chem.Mol], limit: int) -> list[int]:
    """Indices of the first atoms of pattern matches (distinct, in atom order), at most ``limit``."""
    found: list[int] = []
    for pattern in patterns:
        for match in mol.GetSubstructMatches(pattern):
            if match[0] not in found:
                found.append(match[0])
    return sorted(found)[:limit]


def _sanitized(rw: Chem.RWMol) -> Chem.Mol | None:
    """The edited molecule, sanitized and re-read from canonical SMILES (None if invalid)."""
    out = rw.GetMol()
    try:
        Chem.SanitizeMol(out)
    except Exception:  # a rule produced an impossible valence: skip the variant
        return None
    return Chem.MolFromSmiles(Chem.MolToSmiles(out))


def _charged(mol: Chem.Mol, acids: list[int], bases: list[int]) -> Chem.Mol | None:
    """``mol`` with one H removed from each acid atom and one added to each base atom."""
    rw = Chem.RWMol(mol)
    for i in acids:
        atom = rw.GetAtomWithIdx(i)
        atom.SetFormalCharge(-1)
        atom.SetNumExplicitHs(atom.GetTotalNumHs() - 1)
        atom.SetNoImplicit(True)
    for i in bases:
        atom = rw.GetAtomWithIdx(i)
        atom.SetFormalCharge(+1)
        atom.SetNumExplicitHs(atom.GetTotalNumHs() + 1)
        atom.SetNoImplicit(True)
    return _sanitized(rw)


def _methylated(mol: Chem.Mol, i: int) -> Chem.Mol | None:
    """``mol`` with a methyl group on atom ``i``, which becomes a cation (None if invalid,
    e.g. an N that already has three neighbours)."""
    rw = Chem.RWMol(mol)
    c = rw.AddAtom(Chem.Atom(6))
    rw.AddBond(i, c, Chem.BondType.SINGLE)
    rw.GetAtomWithIdx(i).SetFormalCharge(+1)
    return _sanitized(rw)


def _first_match(mol: Chem.Mol, patterns: list[Chem.Mol]) -> int | None:
    """The first atom of a match of the earliest pattern that matches (first in atom order)."""
    for pattern in patterns:
        found = sorted(match[0] for match in mol.GetSubstructMatches(pattern))
        if found:
            return found[0]
    return None


def variants(mol: Chem.Mol, aromatic_bases: bool = False) -> dict[str, Chem.Mol]:
    """The molecule as given plus rule-based protonation states (name -> molecule).

    ``aromatic_bases`` adds ``arcation``, one aromatic ring N protonated (pyridinium,
    imidazolium, ...; :data:`AROMATIC_BASE_SMARTS`), ``armethyl``, the same N methylated
    (N-alkyl heteroaromatic cations, which have no N-H), and ``weakanion``, one weak acid
    deprotonated (:data:`WEAK_ACID_SMARTS`) when the molecule has none of the stronger acids
    of :data:`ACID_SMARTS`.
    """
    out = {"input": mol}
    if Chem.GetFormalCharge(mol) != 0:
        return out
    if aromatic_bases:
        ring_n = _first_match(mol, AROMATIC_BASE_PATTERNS)
        if ring_n is not None:
            v = _charged(mol, [], [ring_n])
            if v is not None:
                out["arcation"] = v
    acids = _matches(mol, ACID_PATTERNS, 2)
    bases = _matches(mol, BASE_PATTERNS, 2)
    candidates = {}
    if acids:
        candidates["anion"] = (acids[:1], [])
    if bases:
        candidates["cation"] = ([], bases[:1])
    if acids and bases:
        candidates["zwitterion"] = (acids[:1], bases[:1])
    if len(acids) > 1:
        candidates["dianion"] = (acids[:2], [])
    if len(bases) > 1:
        candidates["dication"] = ([], bases[:2])
    for name, (a, b) in candidates.items():
        v = _charged(mol, a, b)
        if v is not None:
            out[name] = v
    if aromatic_bases:  # added after the others, so the variants labelled before keep their keys
        weak_acid = None if acids else _first_match(mol, WEAK_ACID_PATTERNS)
        for name, v in (("armethyl", None if ring_n is None else _methylated(mol, ring_n)),
                        ("weakanion", None if weak_acid is None else _charged(mol, [weak_acid], []))):
            if v is not None:
                out[name] = v
    return out


def indexed_smiles(mol: Chem.Mol) -> tuple[str, list[int]]:
    """SMILES with explicit H atoms, and the atom indices of ``mol`` in the SMILES' atom order."""
    smi = Chem.MolToSmiles(mol, allHsExplicit=False, canonical=True)
    order = list(mol.GetPropsAsDict(includePrivate=True, includeComputed=True)["_smilesAtomOutputOrder"])
    return smi, order


def build_jobs(max_heavy: int, source: str = "nci") -> list[tuple[int, str, str]]:
    """(heavy atoms, key, SMILES) of every molecule variant, smallest first.

    ``source`` "nci": every molecule of the NCI file (keys ``NCI<id>:<variant>``); "wehi": the
    molecules of the WEHI file with rare chemistry (:func:`has_rare_chemistry`; keys
    ``WEHI-<id>:<variant>``); "wehi-all": every molecule of the WEHI file (same keys, so the
    rare-chemistry labels already made are not redone), with aromatic bases protonated as well
    (variant ``arcation``); "coverage": the generated chemistry-coverage set
    (:mod:`charge_coverage_set`; keys ``COV-<template>-<hash>:<variant>``).
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
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


def done_keys(*paths: Path) -> set[str]:
    """Keys already present in result/failure JSONL files."""
    keys: set[str] = set()
    for path in paths:
        if path.exists():
            with open(path) as fh:
                for line in fh:
                    try:
                        keys.add(json.loads(line)["key"])
                    except (json.JSONDecodeError, KeyError):
                        continue  # a line cut by a kill; the key is redone
    return keys


def recipes_in(*paths: Path) -> set[str]:
    """The recipes of the records in JSONL files (a record without one: single point)."""
    found: set[str] = set()
    for path in paths:
        if path.exists():
            with open(path) as fh:
                for line in fh:
                    try:
                        found.add(json.loads(line).get("recipe", RECIPES[False]))
                    except (json.JSONDecodeError, AttributeError):
                        continue
    return found


def pack(src: Path, dest: Path) -> int:
    """Write the compressed, compact label file shipped with hybridff; returns the count."""
    if len(mixed := recipes_in(src)) > 1:
        raise SystemExit(f"{src} mixes the recipes {sorted(mixed)}; not packed")
    records = {}
    with open(src) as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            records[rec["key"]] = {"key": rec["key"], "smiles": rec["smiles"], "charges": rec["charges"]}
    tmp = dest.with_suffix(".tmp")
    with gzip.GzipFile(tmp, "wb", mtime=0) as gz:
        for key in sorted(records):
            gz.write((json.dumps(records[key], separators=(",", ":")) + "\n").encode())
    tmp.replace(dest)
    return len(records)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("labels/am1bcc_labels.jsonl"))
    parser.add_argument("--max-heavy", type=int, default=40)
    parser.add_argument("--limit", type=int, default=None,
                        help="only the first N jobs still to do (smallest first)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per molecule")
    parser.add_argument("--optimize", action="store_true", help="AM1 geometry relaxation in sqm")
    parser.add_argument("--source", choices=SOURCES, default="nci",
                        help="nci: RDKit's NCI first_5K set; wehi: rare chemistry (P, I, Br, unusual "
                             "S) from RDKit's WEHI PAINS test set; wehi-all: every WEHI molecule; "
                             "coverage: generated small molecules for bonding situations those sets "
                             "lack (scripts/charge_coverage_set.py); add them to the same --out file")
    parser.add_argument("--charged-first", action="store_true",
                        help="label the charged protonation variants before the molecules as given "
                             "(smallest first within each), so a run cut short covers them")
    parser.add_argument("--order", choices=("size", "random"), default="size",
                        help="size: smallest first; random: a seeded shuffle, so a run cut short "
                             "is a sample of every size (the same order on every resume)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed for --order random")
    parser.add_argument("--first", action="append", default=[], metavar="SMARTS",
                        help="label molecules matching this SMARTS pattern first (repeatable; "
                             "the order above is kept within each part): chemistry the model "
                             "gets wrong, e.g. '[SX4](=O)=O' for sulfonyl groups")
    parser.add_argument("--workers", type=int, default=1,
                        help="molecules labelled in parallel (one sqm process each)")
    parser.add_argument("--pack", type=Path, default=None, help="only write the packed .jsonl.gz")
    args = parser.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    if args.pack:
        n = pack(args.out, args.pack)
        print(f"packed {n} labelled molecules into {args.pack}")
        return 0

    from tqdm import tqdm

    args.out.parent.mkdir(parents=True, exist_ok=True)
    failures = args.out.with_name(args.out.stem + ".failures.jsonl")
    other = recipes_in(args.out, failures) - {RECIPES[args.optimize]}
    if other:
        parser.error(f"{args.out} (or its failures file) holds {sorted(other)} records, this run "
                     f"makes {RECIPES[args.optimize]!r} ones: use another --out, or {'drop' if args.optimize else 'add'} --optimize")
    skip = done_keys(args.out, failures)
    jobs = build_jobs(args.max_heavy, args.source)
    if args.order == "random":
        random.Random(args.seed).shuffle(jobs)
    jobs = [j for j in jobs if j[1] not in skip]
    if args.first:
        patterns = [Chem.MolFromSmarts(text) for text in args.first]
        for text, pattern in zip(args.first, patterns, strict=True):
            if pattern is None:
                parser.error(f"--first {text!r} is not a valid SMARTS pattern")
        def matches_first(job: tuple[int, str, str]) -> bool:
            mol = Chem.MolFromSmiles(job[2])  # parsed once per job, not once per pattern
            return any(mol.HasSubstructMatch(pattern) for pattern in patterns)

        jobs.sort(key=lambda j: not matches_first(j))
    if args.charged_first:
        jobs.sort(key=lambda j: (j[1].endswith(":input"), j[0], j[1]))
    jobs = jobs[: args.limit] if args.limit else jobs
    print(f"recipe {RECIPES[args.optimize]}, timeout {args.timeout:g} s per molecule: "
          f"{len(skip)} done before, {len(jobs)} to do", flush=True)
    n_ok = n_fail = 0
    work = [(key, heavy, smi, args.timeout, args.optimize) for heavy, key, smi in jobs]
    with open(args.out, "a") as out, open(failures, "a") as bad, \
            multiprocessing.Pool(max(1, args.workers), initializer=_worker_init) as pool:
        bar = tqdm(pool.imap_unordered(_job, work), total=len(work), mininterval=10, file=sys.stdout)
        for rec in bar:
            if "error" in rec:
                n_fail += 1
                bad.write(json.dumps(rec) + "\n")
                bad.flush()
                continue
            n_ok += 1
            out.write(json.dumps(rec) + "\n")
            out.flush()
            bar.set_postfix(ok=n_ok, failed=n_fail, heavy=rec["heavy"], refresh=False)
    print(f"finished: {n_ok} labelled, {n_fail} failed (see {failures})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
