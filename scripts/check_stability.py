"""Summarise a `hybridff simulate` run folder as evidence of (in)stability.

Reads log.csv, start.pdb and final.pdb: the simulated time, temperature mean and standard
deviation over the production, whether every energy is finite, the potential-energy drift per
ns of a straight-line fit, the largest relative change of any solute bond length between the
start and the end (a broken molecule shows up here), and the ML ensemble disagreement.

    python scripts/check_stability.py RUN_DIR [RUN_DIR ...] [--markdown]
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np
from openmm import app, unit

WATER_AND_IONS = {"HOH", "WAT", "NA", "CL", "K"}


def solute_bond_change(start: Path, final: Path) -> float:
    """Largest |d_final / d_start - 1| over bonds of non-water, non-ion residues."""
    a, b = app.PDBFile(str(start)), app.PDBFile(str(final))
    xa = np.asarray(a.getPositions().value_in_unit(unit.nanometer))
    xb = np.asarray(b.getPositions().value_in_unit(unit.nanometer))
    worst = 0.0
    for bond in a.topology.bonds():
        if bond[0].residue.name in WATER_AND_IONS:
            continue
        i, j = bond[0].index, bond[1].index
        d0 = np.linalg.norm(xa[i] - xa[j])
        d1 = np.linalg.norm(xb[i] - xb[j])
        worst = max(worst, abs(d1 / d0 - 1.0))
    return worst


def summarise(run: Path) -> dict[str, float | int | str | bool]:
    """The numbers this script reports for one run folder."""
    with open(run / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise SystemExit(f"{run}/log.csv has no rows")
    t_ps = np.array([float(r["time_ps"]) for r in rows])
    temp = np.array([float(r["temperature_K"]) for r in rows])
    pot = np.array([float(r["potential_kJ_mol"]) for r in rows])
    finite = all(math.isfinite(float(r[k])) for r in rows
                 for k in ("potential_kJ_mol", "kinetic_kJ_mol"))
    slope = float(np.polyfit(t_ps, pot, 1)[0]) * 1000.0 if len(rows) > 2 else float("nan")
    out: dict[str, float | int | str | bool] = {
        "run": str(run),
        "time_ns": float(t_ps[-1] - t_ps[0] + (t_ps[1] - t_ps[0] if len(t_ps) > 1 else 0.0)) / 1000.0,
        "reports": len(rows),
        "finite": finite,
        "temperature_mean_K": float(temp.mean()),
        "temperature_std_K": float(temp.std()),
        "potential_trend_kJ_mol_per_ns": slope,
        "max_bond_change": solute_bond_change(run / "start.pdb", run / "final.pdb"),
        "speed_ns_day_median": float(np.median([float(r["speed_ns_day"]) for r in rows])),
    }
    std = [float(r["ensemble_std_kcal_mol"]) for r in rows if r.get("ensemble_std_kcal_mol")]
    if std:
        out["ensemble_std_mean_kcal_mol"] = float(np.mean(std))
        out["ensemble_std_max_kcal_mol"] = float(np.max(std))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    results = [summarise(r) for r in args.runs]
    if args.markdown:
        keys = list(results[0])
        print("| " + " | ".join(keys) + " |")
        print("|" + "---|" * len(keys))
        for r in results:
            print("| " + " | ".join(f"{r.get(k, ''):.4g}" if isinstance(r.get(k), float)
                                   else str(r.get(k, "")) for k in keys) + " |")
    else:
        for r in results:
            print("\n".join(f"{k:32s} {v}" for k, v in r.items()), end="\n\n")


if __name__ == "__main__":
    main()
