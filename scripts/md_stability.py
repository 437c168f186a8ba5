"""Stability summary of a ``hybridff simulate`` run folder: temperature (mean and spread), the
potential energy's trend, and each bond's length along the trajectory (the largest excursion
from its mean, in Angstrom and in standard deviations).

    python scripts/md_stability.py RUN_DIR
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import mdtraj as md
import numpy as np


def main(run: Path) -> None:
    with open(run / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    time_ps = np.array([float(r["time_ps"]) for r in rows])
    temperature = np.array([float(r["temperature_K"]) for r in rows])
    potential = np.array([float(r["potential_kJ_mol"]) for r in rows])
    half = len(potential) // 2
    trend = np.polyfit(time_ps, potential, 1)[0] * 100.0
    print(f"{len(rows)} reports over {time_ps[-1]:.0f} ps; temperature {temperature.mean():.1f} "
          f"+- {temperature.std():.1f} K; potential energy, halves {potential[:half].mean():.2f} / "
          f"{potential[half:].mean():.2f} kJ/mol, trend {trend:+.3f} kJ/mol per 100 ps")
    traj = md.load_dcd(str(run / "trajectory.dcd"), top=str(run / "start.pdb"))
    bonds = [(a, b) for a, b in traj.topology.bonds]
    lengths = md.compute_distances(traj, [[a.index, b.index] for a, b in bonds]) * 10.0
    excursion = np.abs(lengths - lengths.mean(0)).max(0)
    sigmas = excursion / np.maximum(lengths.std(0), 1e-12)
    worst = int(np.argmax(excursion))
    a, b = bonds[worst]
    print(f"{traj.n_frames} frames, {len(bonds)} bonds: largest excursion {excursion[worst]:.3f} A "
          f"({a.name}-{b.name}, {lengths[:, worst].min():.3f}-{lengths[:, worst].max():.3f} A); "
          f"every bond within {sigmas.max():.1f} standard deviations of its mean")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
