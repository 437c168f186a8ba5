"""Dipole check: ML and AM1-BCC charge dipoles against QM dipoles (pyscf), same conformer.

    python scripts/charge_dipole_check.py [--n 5] [--min-heavy 7] [--write-docs]

Molecules: the ``--n`` smallest neutral molecules with at least ``--min-heavy`` heavy atoms
of the shipped charge model's test set (never trained on), smallest first, then by key. Each
gets the seeded ETKDG + MMFF94 conformer of the label recipe (:func:`hybridff.io.molecule.prepare`);
on that one conformer: the ML charges, AM1-BCC charges (antechamber/sqm, single point as in
the labels) and the QM dipole at HF/6-31G* (the level RESP and AM1-BCC were built to mimic)
and B3LYP/def2-SVP (the project's DFT level). Point-charge dipoles are about the centre of
mass (neutral molecules: the origin does not matter). Prints a table; ``--write-docs`` puts it
into docs/charges.md between the dipole markers. QM results can be cached (``--cache``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem, RDLogger

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybridff.charges import assign_charges  # noqa: E402
from hybridff.charges.labels import mol_from_label_smiles  # noqa: E402
from hybridff.charges.model.file import DEFAULT_LABELS, DEFAULT_MODEL  # noqa: E402
from hybridff.charges.model.metrics import point_charge_dipole  # noqa: E402
from hybridff.io.molecule import prepare  # noqa: E402

DOCS = ROOT / "docs" / "charges.md"
BEGIN, END = "<!-- dipole:begin -->", "<!-- dipole:end -->"
#: (name, pyscf method, basis) of the QM references
QM_LEVELS = (("HF/6-31G*", "hf", "6-31g*"), ("B3LYP/def2-SVP", "b3lyp", "def2-svp"))


def pick_molecules(n: int, min_heavy: int) -> list[dict]:
    """The n smallest neutral test-set label records with at least min_heavy heavy atoms."""
    test_keys = set(torch.load(DEFAULT_MODEL, map_location="cpu", weights_only=True)["metadata"]["test_keys"])
    found = []
    with gzip.open(DEFAULT_LABELS, "rt") as fh:
        for rec in map(json.loads, fh):
            if rec["key"] not in test_keys:
                continue
            mol = mol_from_label_smiles(rec["smiles"])
            if Chem.GetFormalCharge(mol) == 0 and mol.GetNumHeavyAtoms() >= min_heavy:
                found.append((mol.GetNumHeavyAtoms(), rec["key"], rec))
    return [rec for _, _, rec in sorted(found, key=lambda t: t[:2])[:n]]


def qm_dipole(mol: Chem.Mol, method: str, basis: str) -> np.ndarray:
    """Dipole (Debye) of the SCF density at ``method``/``basis`` on the conformer (pyscf)."""
    try:
        from pyscf import dft, gto, scf
    except ImportError as exc:  # pragma: no cover - optional
        raise SystemExit("the dipole check needs pyscf: pip install pyscf") from exc
    pos = mol.GetConformer().GetPositions()
    atoms = [(a.GetSymbol(), tuple(p)) for a, p in zip(mol.GetAtoms(), pos, strict=True)]
    m = gto.M(atom=atoms, basis=basis, unit="Angstrom", charge=Chem.GetFormalCharge(mol),
              spin=0, verbose=0)
    if method == "hf":
        mf = scf.RHF(m)
    else:
        mf = dft.RKS(m)
        mf.xc = method
    mf = mf.density_fit()
    mf.kernel()
    if not mf.converged:
        raise RuntimeError(f"SCF ({method}/{basis}) did not converge")
    return np.asarray(mf.dip_moment(unit="Debye", verbose=0))


def main(argv: list[str] | None = None) -> int:
    """Run the check and print (or write) the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=5)
    p.add_argument("--min-heavy", type=int, default=7)
    p.add_argument("--cache", type=Path, default=None, help="JSON file of QM dipoles to reuse")
    p.add_argument("--qm-only", action="store_true", help="only compute QM dipoles into --cache")
    p.add_argument("--write-docs", action="store_true", help="put the table into docs/charges.md")
    args = p.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cache = json.loads(args.cache.read_text()) if args.cache and args.cache.exists() else {}
    rows = []
    for rec in pick_molecules(args.n, args.min_heavy):
        mol = prepare(mol_from_label_smiles(rec["smiles"]))
        mu = {}
        if not args.qm_only:
            mu["ML"] = point_charge_dipole(mol, assign_charges(mol, "ml"))
            mu["AM1-BCC"] = point_charge_dipole(mol, assign_charges(mol, "am1bcc", optimize=False))
        for name, method, basis in QM_LEVELS:
            key = f"{rec['key']}|{name}|{Chem.MolToSmiles(mol)}"
            if key not in cache:
                t0 = time.perf_counter()
                cache[key] = qm_dipole(mol, method, basis).tolist()
                print(f"{rec['key']} {name}: {time.perf_counter() - t0:.0f} s", flush=True)
            mu[name] = np.asarray(cache[key])
        rows.append((rec["key"], Chem.MolToSmiles(Chem.RemoveHs(mol)), mu))
        if args.cache:
            args.cache.write_text(json.dumps(cache, indent=1))
    if args.qm_only:
        return 0
    hf, b3 = QM_LEVELS[0][0], QM_LEVELS[1][0]
    lines = [
        f"| molecule | mu {hf} | mu {b3} | mu AM1-BCC | mu ML | "
        f"dmu ML-AM1BCC | dmu AM1BCC-HF | dmu ML-HF |",
        "|---|---|---|---|---|---|---|---|",
    ]
    diffs = {"ml_am1": [], "am1_hf": [], "ml_hf": []}
    for key, smi, mu in rows:
        d = (np.linalg.norm(mu["ML"] - mu["AM1-BCC"]), np.linalg.norm(mu["AM1-BCC"] - mu[hf]),
             np.linalg.norm(mu["ML"] - mu[hf]))
        for k, v in zip(diffs, d, strict=True):
            diffs[k].append(v)
        lines.append(f"| {key} `{smi}` | {np.linalg.norm(mu[hf]):.2f} | {np.linalg.norm(mu[b3]):.2f} | "
                     f"{np.linalg.norm(mu['AM1-BCC']):.2f} | {np.linalg.norm(mu['ML']):.2f} | "
                     f"{d[0]:.2f} | {d[1]:.2f} | {d[2]:.2f} |")
    lines.append(f"| mean | | | | | {np.mean(diffs['ml_am1']):.2f} | {np.mean(diffs['am1_hf']):.2f} | "
                 f"{np.mean(diffs['ml_hf']):.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.write_docs:
        text = DOCS.read_text()
        block = (f"{BEGIN}\n`python scripts/charge_dipole_check.py --n {args.n} --min-heavy "
                 f"{args.min_heavy}` (Debye; the {len(rows)} smallest neutral test-set molecules with "
                 f"at least {args.min_heavy} heavy atoms; one seeded MMFF94 conformer each, all "
                 f"dipoles on it; AM1-BCC single point as in the labels; QM with density fitting; mu: "
                 f"magnitude, dmu: magnitude of the vector difference):"
                 f"\n\n{table}\n{END}")
        if BEGIN in text and END in text:
            text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
        else:
            text = text.rstrip("\n") + "\n\n## Dipoles against QM\n\n" + block + "\n"
        DOCS.write_text(text)
        print(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
