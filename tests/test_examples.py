"""The example scripts run as a user runs them (subprocess) and write their outputs."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from hybridff.cli import main
from hybridff.mm.parameters import parameterize
from hybridff.mm.system import create_system, energy_components

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


# ------------------------------------------------- examples 2 and 3: the delta-learning loop


def run_shell_example(script: str, args: list[str], tmp_path: Path,
                      timeout: float = 1800) -> subprocess.CompletedProcess:
    """``bash examples/SCRIPT ARGS`` with this interpreter's ``hybridff`` and ``python`` first
    on PATH, as in an activated environment."""
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, HYBRIDFF_CACHE=str(tmp_path / "cache"), OPENMM_CPU_THREADS="1",
               PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run(["bash", str(EXAMPLES / script), *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def check_loop_outputs(work: Path, stdout: str, data: str, n_frames: int, steps: int,
                       report_rows: int, labelled: bool = True) -> dict:
    """Every stage of the loop ran and wrote what it should; returns the evaluate report.

    ``labelled``: whether the script ran ``hybridff label`` (not when it reused a label file).
    """
    from hybridff.io.frames import read_extxyz
    from hybridff.ml.modelfile import load_model

    commands = ["parameterize", "train", "evaluate", "simulate"] + (["label"] if labelled else [])
    for command in commands:
        assert f"$ hybridff {command} " in stdout, command
    # 1. parameterize: a ForceField XML with one residue template, and its JSON report
    root = ET.parse(work / "ligand.xml").getroot()
    assert root.tag == "ForceField" and len(root.findall("./Residues/Residue")) == 1
    assert len(json.loads((work / "ligand.json").read_text())["atoms"]) == len(root.find(
        "./Residues/Residue").findall("Atom"))
    # 2. labels
    frames = read_extxyz(work / data)
    assert len(frames) == n_frames
    # 3. the model file, trained on those frames
    meta = load_model(work / "model.pt").metadata
    assert meta["kind"] == "correction" and meta["n_frames"] == n_frames
    assert meta["training_set"] == data
    # 4. evaluate: MM and hybrid against QM, the correction inside OpenMM equal to the model's
    report = json.loads((work / "evaluate.json").read_text())
    for key in ("mm", "hybrid"):
        assert math.isfinite(report[key]["force_rmse_kcal_mol_A"]), key
        assert math.isfinite(report[key]["energy_rmse_kcal_mol"]), key
    assert report["ml_precision"] == "single"  # float32 network, as simulate runs it
    assert report["ml_in_openmm_matches_model_kj_mol"] < 1e-3
    # 5. simulate: the hybrid ran for all its steps, with the correction in the log
    md = work / "md"
    for name in ("trajectory.dcd", "final.pdb", "system.xml", "checkpoint.chk"):
        assert (md / name).stat().st_size > 0, name
    run = json.loads((md / "run.json").read_text())
    assert run["production"]["steps"] == steps
    assert run["ml_model"] == str((work / "model.pt").resolve())
    with open(md / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == report_rows
    for row in rows:
        assert 0 < float(row["temperature_K"]) < 1000
        assert math.isfinite(float(row["ml_energy_kJ_mol"]))
    assert "== summary" in stdout and "MM + correction" in stdout
    return report


def _require(*modules: str) -> None:
    for name in modules:
        pytest.importorskip(name)


def test_delta_learning_xtb_example_quick(tmp_path) -> None:
    """Example 2, --quick: 40 xTB frames, 100 epochs; the correction beats MM on held-out data."""
    _require("torch", "openmmtorch", "tblite.interface")
    work = tmp_path / "work"
    proc = run_shell_example("delta_learning_xtb.sh", ["--quick", "--workdir", str(work)], tmp_path)
    report = check_loop_outputs(work, proc.stdout, "train.xyz", 40, steps=500, report_rows=10)
    from hybridff.io.frames import read_extxyz
    from hybridff.ml.modelfile import load_model

    assert len(read_extxyz(work / "test.xyz")) == 20 == report["n_frames"]
    # held-out frames of two kinds: the 8 validation frames of the training trajectory and an
    # independent trajectory (another seed); measured 10.5 -> 5.3 and 12.1 -> 6.8 kcal/mol/A
    validation = load_model(work / "model.pt").metadata["metrics"]["validation"]
    assert validation["after"]["n_frames"] == 8
    assert (validation["after"]["force_rmse_kcal_mol_A"]
            < 0.8 * validation["before"]["force_rmse_kcal_mol_A"])
    mm, hybrid = report["mm"], report["hybrid"]
    assert hybrid["force_rmse_kcal_mol_A"] < 0.8 * mm["force_rmse_kcal_mol_A"]
    assert hybrid["energy_rmse_kcal_mol"] < mm["energy_rmse_kcal_mol"]


@pytest.mark.slow
def test_delta_learning_xtb_example_full(tmp_path) -> None:
    """Example 2 with its defaults: 200 training frames, 100 test frames, 150 epochs, 10 ps MD."""
    _require("torch", "openmmtorch", "tblite.interface")
    work = tmp_path / "work"
    proc = run_shell_example("delta_learning_xtb.sh", ["--workdir", str(work)], tmp_path)
    report = check_loop_outputs(work, proc.stdout, "train.xyz", 200, steps=5000, report_rows=20)
    assert report["n_frames"] == 100
    # measured: forces 11.7 -> 3.4 kcal/mol/A, energies 2.7 -> 0.8 kcal/mol
    mm, hybrid = report["mm"], report["hybrid"]
    assert hybrid["force_rmse_kcal_mol_A"] < 0.5 * mm["force_rmse_kcal_mol_A"]
    assert hybrid["energy_rmse_kcal_mol"] < 0.5 * mm["energy_rmse_kcal_mol"]


def write_methanol(path: Path) -> Path:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("CO"))
    assert AllChem.EmbedMolecule(mol, randomSeed=1) == 0
    mol.SetProp("_Name", "methanol")
    Chem.MolToMolFile(mol, str(path))
    return path


def test_delta_learning_dft_example_quick(tmp_path) -> None:
    """Example 3, --quick, honest but small: methanol, 8 B3LYP/STO-3G frames, 50 epochs."""
    _require("torch", "openmmtorch", "pyscf")
    work = tmp_path / "work"
    methanol = write_methanol(tmp_path / "methanol.sdf")
    args = ["--quick", "--molecule", str(methanol), "--basis", "sto-3g", "--threads", "1",
            "--workdir", str(work)]
    proc = run_shell_example("delta_learning_dft.sh", args, tmp_path)
    assert "$ hybridff label " in proc.stdout and "--method dft --xc b3lyp --basis sto-3g" in proc.stdout
    report = check_loop_outputs(work, proc.stdout, "labels.xyz", 8, steps=200, report_rows=4)
    from hybridff.io.frames import read_extxyz

    info = read_extxyz(work / "labels.xyz").info[0]
    assert (info["qm_method"], info["qm_xc"], info["qm_basis"]) == ("dft", "b3lyp", "sto-3g")
    assert report["frames"] == "held-out" and report["n_frames"] == 2
    assert "errors vs b3lyp/sto-3g on the 2 held-out frames" in proc.stdout


@pytest.mark.slow
def test_delta_learning_dft_example_reuses_growing_label_file(tmp_path) -> None:
    """Example 3 with its defaults on the shipped B3LYP/def2-SVP paracetamol frames (--labels):
    the file is only read, and a frame still being written is left out."""
    _require("torch", "openmmtorch")
    shipped = EXAMPLES / "data" / "paracetamol_b3lyp_def2svp.xyz"
    lines = shipped.read_text().splitlines(keepends=True)
    per_frame = int(lines[0]) + 2
    complete = len(lines) // per_frame
    # the file as another job leaves it while appending: complete frames, then half a frame
    growing = tmp_path / "growing.xyz"
    text = "".join(lines[: complete * per_frame] + lines[: per_frame // 2])
    growing.write_text(text)
    work = tmp_path / "work"
    proc = run_shell_example("delta_learning_dft.sh", ["--labels", str(growing), "--workdir", str(work)],
                             tmp_path)
    assert growing.read_text() == text
    assert "$ hybridff label " not in proc.stdout  # no DFT was run
    assert (work / "labels.xyz").read_text() == "".join(lines[: complete * per_frame])
    report = check_loop_outputs(work, proc.stdout, "labels.xyz", complete, steps=5000,
                                report_rows=20, labelled=False)
    assert report["frames"] == "held-out"
    # measured with 78 frames: forces 11.2 -> 5.4 kcal/mol/A on the 16 held-out frames
    assert report["hybrid"]["force_rmse_kcal_mol_A"] < report["mm"]["force_rmse_kcal_mol_A"]
