"""Held-out error of GAFF2 and of the bespoke MM without and with cross terms (issue 21).

    python scripts/bespoke_cross_terms.py MOLECULE TRAIN.xyz TEST.xyz [TEST.xyz ...]
        [--charges METHOD]

Refits MOLECULE's bonded terms on TRAIN (``hybridff fit``'s route: hybridff.mm.bespoke.
fit_bespoke, default options but for ``cross_terms``), builds each MM as ``hybridff simulate``
does (the drop-in XML through OpenMM's ForceField) and prints, per file, the force RMSE
(kcal/mol/Å) and energy RMSE (kcal/mol, each model's mean offset removed) against the file's
QM labels, as Markdown table rows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from hybridff.io.frames import read_extxyz
from hybridff.mm.bespoke import fit_bespoke
from hybridff.mm.refit import RefitOptions
from hybridff.training.residuals import build_mm, mm_energies_forces
from hybridff.units import KCAL_TO_KJ

#: kJ/mol/nm -> kcal/mol/Å
FORCE_TO_KCAL_A = 0.1 / KCAL_TO_KJ


def rmse(frames, system) -> tuple[float, float]:
    """(force RMSE kcal/mol/Å, energy RMSE kcal/mol with the mean offset removed)."""
    e, f = mm_energies_forces(system, frames.positions)
    de = frames.energies - e
    de = de - de.mean()
    return (float(np.sqrt(np.mean((frames.forces - f) ** 2))) * FORCE_TO_KCAL_A,
            float(np.sqrt(np.mean(de**2))) / KCAL_TO_KJ)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("molecule")
    parser.add_argument("train")
    parser.add_argument("tests", nargs="+")
    parser.add_argument("--charges", default=None, help="charge method (default: hybridff's)")
    args = parser.parse_args()
    gaff2 = build_mm(args.molecule, charge_method=args.charges, cache=False)
    train = read_extxyz(args.train, gaff2.numbers, bonds=gaff2.bonds)
    systems = {"GAFF2": gaff2.system}
    for label, cross in (("bespoke, no cross terms", False), ("bespoke + cross terms", True)):
        start = time.perf_counter()
        record = fit_bespoke(gaff2, train.positions, train.energies, train.forces,
                             RefitOptions(cross_terms=cross))
        m = record["metrics"]
        print(f"{label}: fit {time.perf_counter() - start:.1f} s on {len(train.energies)} frames, "
              f"{m['parameters']:.0f} parameters, cross groups {m.get('cross_groups', 0):.0f} "
              f"(shrunk {m.get('cross_groups_shrunk', 0):.0f})", flush=True)
        systems[label] = build_mm(args.molecule, charge_method=args.charges, refit=record,
                                  cache=False).system
    print("| frames | " + " | ".join(f"{k} F / E" for k in systems) + " |")
    print("|---" * (len(systems) + 1) + "|")
    for path in [args.train, *args.tests]:
        frames = read_extxyz(path, gaff2.numbers, bonds=gaff2.bonds)
        cells = [rmse(frames, system) for system in systems.values()]
        print(f"| {Path(path).stem} ({len(frames.energies)}) | "
              + " | ".join(f"{f:.2f} / {e:.2f}" for f, e in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
