"""The example scripts run as a user runs them (subprocess) and write their outputs."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hybridff.cli import main
from hybridff.parameters import parameterize
from hybridff.system import create_system, energy_components

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PARACETAMOL = EXAMPLES / "data" / "paracetamol.sdf"


def run_example(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HYBRIDFF_CACHE=str(tmp_path / "cache"), OPENMM_CPU_THREADS="1")
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_solvated_ligand_md_example(tmp_path) -> None:
    out = tmp_path / "run"
    proc = run_example([str(EXAMPLES / "solvated_ligand_md.py"), str(PARACETAMOL), "--steps", "20",
                        "--report-every", "10", "--padding", "0.8", "-o", str(out)], tmp_path)
    assert "solvated system:" in proc.stdout
    for name in ("solvated.pdb", "trajectory.dcd", "log.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    with open(out / "log.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 3  # header + steps 10 and 20
    temperature = float(rows[-1][rows[0].index("Temperature (K)")])
    assert 0 < temperature < 1000


def test_energy_of_ligand_example_matches_hybridff(tmp_path) -> None:
    xml = tmp_path / "paracetamol.xml"
    assert main(["parameterize", str(PARACETAMOL), "--charges", "gasteiger", "-o", str(xml)]) == 0
    proc = run_example([str(EXAMPLES / "energy_of_ligand.py"), str(xml), str(PARACETAMOL)], tmp_path)
    table = {line.split()[0]: float(line.split()[1]) for line in proc.stdout.splitlines()[1:]
             if line.strip()}
    assert {"HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "NonbondedForce",
            "total"} <= set(table)
    assert math.isfinite(table["total"])
    # the same molecule through hybridff's own API gives the same energy
    system, _, positions = create_system(parameterize(PARACETAMOL, "gasteiger"))
    expected = energy_components(system, positions)["total"]
    assert table["total"] == pytest.approx(expected, abs=1e-3)
