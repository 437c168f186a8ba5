"""Parameterization time per molecule: hybridff (typing + gasteiger + analogy) vs antechamber typing.

Not a test: run ``python benchmarks/bench_parameterize.py [--n 50] [--seed 0]``. Molecules are a
seeded pick from RDKit's NCI ``first_5K.smi`` restricted to H C N O F P S Cl Br I, single
fragment, neutral, 5-40 heavy atoms. Both routes start from the same prepared molecule (with
hydrogens and a 3D conformer; preparation is not timed) and run in the same process, one after
the other per molecule, so the ratio is measured under the same load.

- hybridff: ``parameterize(mol, "gasteiger")`` (own typer when ``hybridff.mm.atomtyping`` exists,
  otherwise antechamber's types are passed in and the typing is not in the hybridff time; the
  header says which). Note it runs parmchk2 once per molecule (terms by analogy).
- antechamber: ``antechamber -at gaff2`` with no ``-c`` (this AmberTools refuses ``-c none``) on an SDF, one subprocess per molecule
  (typing alone: no charges, no parmchk2).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rdkit import Chem, RDConfig, RDLogger

ALLOWED = {1, 6, 7, 8, 9, 15, 16, 17, 35, 53}


def pick_molecules(n: int, seed: int) -> list[tuple[str, str]]:
    """(name, SMILES) of ``n`` seeded NCI molecules within the element and size limits."""
    RDLogger.DisableLog("rdApp.*")  # the NCI file has many valence errors; they are skipped
    path = Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
    candidates = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if not fields:
            continue
        mol = Chem.MolFromSmiles(fields[0])
        if mol is None or len(Chem.GetMolFrags(mol)) != 1 or Chem.GetFormalCharge(mol) != 0:
            continue
        if not 5 <= mol.GetNumHeavyAtoms() <= 40:
            continue
        if any(a.GetAtomicNum() not in ALLOWED or a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
            continue
        candidates.append((fields[1] if len(fields) > 1 else f"nci{len(candidates)}", fields[0]))
    random.Random(seed).shuffle(candidates)
    return candidates[: 3 * n]  # spares for molecules that a route refuses


def time_antechamber(mol: Chem.Mol, workdir: Path) -> float:
    from hybridff.mm.ambertools import run_program

    sdf = workdir / "in.sdf"
    writer = Chem.SDWriter(str(sdf))
    writer.SetKekulize(True)
    writer.write(mol)
    writer.close()
    t0 = time.perf_counter()
    run_program("antechamber", ["-i", "in.sdf", "-fi", "sdf", "-o", "out.mol2", "-fo", "mol2",
                                "-at", "gaff2", "-nc", str(Chem.GetFormalCharge(mol)),
                                "-pf", "y", "-dr", "no"], cwd=workdir)
    return time.perf_counter() - t0


def antechamber_type_list(workdir: Path) -> list[str]:
    types, in_atoms = [], False
    for line in (workdir / "out.mol2").read_text().splitlines():
        if line.startswith("@<TRIPOS>"):
            in_atoms = line.strip() == "@<TRIPOS>ATOM"
        elif in_atoms and line.strip():
            types.append(line.split()[5])
    return types


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="number of molecules (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import openmm
    import rdkit

    import hybridff
    from hybridff.io.molecule import load_molecule
    from hybridff.mm.parameters import parameterize

    try:
        from hybridff.mm.atomtyping import assign_atom_types  # noqa: F401

        own_typer = True
    except ImportError:
        own_typer = False

    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
          f"affinity={len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}")
    print(f"python {platform.python_version()}  hybridff {hybridff.__version__}  rdkit "
          f"{rdkit.__version__}  openmm {openmm.__version__}")
    print(f"hybridff typing: {'own typer (hybridff.mm.atomtyping)' if own_typer else 'antechamber types passed in (typer absent; typing not timed)'}")

    # warm-up: imports, force-field tables, first subprocess
    warm = load_molecule("CCO")
    with tempfile.TemporaryDirectory() as tmp:
        time_antechamber(warm, Path(tmp))
        parameterize(warm, "gasteiger", atom_types=None if own_typer else
                     antechamber_type_list(Path(tmp)))

    rows, failures = [], []
    for name, smiles in pick_molecules(args.n, args.seed):
        if len(rows) >= args.n:
            break
        mol = load_molecule(smiles)
        with tempfile.TemporaryDirectory(prefix="hybridff-bench-") as tmp:
            try:
                t_ac = time_antechamber(mol, Path(tmp))
                types = None if own_typer else antechamber_type_list(Path(tmp))
                t0 = time.perf_counter()
                parameterize(mol, "gasteiger", atom_types=types)
                t_hff = time.perf_counter() - t0
            except Exception as exc:  # report and go on: a benchmark, not a test
                failures.append(f"{name} {smiles}: {type(exc).__name__}: {str(exc)[:120]}")
                continue
        rows.append((name, mol.GetNumAtoms(), t_hff, t_ac))

    print(f"\n{'molecule':>10s} {'atoms':>5s} {'hybridff s':>11s} {'antech. s':>10s} {'ratio':>7s}")
    for name, n_atoms, t_hff, t_ac in rows:
        print(f"{name:>10s} {n_atoms:5d} {t_hff:11.4f} {t_ac:10.4f} {t_hff / t_ac:7.2f}")
    if not rows:
        print("no molecule completed")
        return 1
    hff = [r[2] for r in rows]
    ac = [r[3] for r in rows]
    print(f"\n{len(rows)} molecules; median hybridff {statistics.median(hff):.4f} s, median "
          f"antechamber {statistics.median(ac):.4f} s; total hybridff {sum(hff):.2f} s, "
          f"antechamber {sum(ac):.2f} s")
    print(f"ratio hybridff/antechamber: median per molecule "
          f"{statistics.median(h / a for h, a in zip(hff, ac, strict=True)):.2f}, "
          f"of totals {sum(hff) / sum(ac):.2f}")
    if failures:
        print(f"\n{len(failures)} skipped (a route refused the molecule):")
        for line in failures:
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
