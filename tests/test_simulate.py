"""``hybridff simulate`` and :mod:`hybridff.md` (prepare, run, resume): outputs, PME set-up, serialization,
restart from the checkpoint, neutralizing ions, ML correction with ensemble monitor, errors."""

from __future__ import annotations

import csv
import json
import logging
import math
import struct
from pathlib import Path

import numpy as np
import openmm
import pytest
from openmm import app, unit
from rdkit import Chem

from hybridff.cli import main
from hybridff.exceptions import MoleculeInputError, SimulationError, UnknownNameError
from hybridff.md.options import MDOptions
from hybridff.md.outputs import OUTPUTS, load_system_xml
from hybridff.md.prepare import check_positions, prepare_system
from hybridff.md.reporters import degrees_of_freedom
from hybridff.md.resume import resume_md
from hybridff.md.run import run_md
from hybridff.mm.system import is_ml_force

ROOT = Path(__file__).resolve().parents[1]
PARACETAMOL = ROOT / "examples" / "data" / "paracetamol.sdf"
SMALL_BOX = 2.4  # nm: just above 2 x the 1.0 nm cutoff; a few hundred waters


def read_log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def dcd_frames(path: Path) -> int:
    """Number of frames in a DCD file's header (NSET, bytes 8-12)."""
    return struct.unpack("<i", path.read_bytes()[8:12])[0]


def energy(system: openmm.System, positions, box=None, platform: str = "CPU") -> float:
    props = {"Threads": "1"} if platform == "CPU" else {}
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName(platform), props)
    if box is not None:
        ctx.setPeriodicBoxVectors(*box)
    ctx.setPositions(positions)
    return ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def quick(steps: int, **kw) -> MDOptions:
    base = dict(steps=steps, report_every=50, equilibration_steps=50, minimize_iterations=100,
                threads=1, seed=7)
    base.update(kw)
    return MDOptions(**base)


@pytest.fixture(scope="module")
def solvated_run(tmp_path_factory):
    """A ~50-step NPT run of paracetamol in a small TIP3P box (PME), shared by several tests."""
    out = tmp_path_factory.mktemp("solvated")
    prepared = prepare_system(PARACETAMOL, solvent="tip3p", box_nm=SMALL_BOX, cache=False)
    summary = run_md(prepared, out, quick(50, report_every=25, equilibration_steps=0,
                                          minimize_iterations=50), progress=False)
    return prepared, out, summary


# --------------------------------------------------------------------------- runs and outputs


def test_cli_vacuum_run_writes_all_outputs(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(["simulate", str(PARACETAMOL), "--solvent", "none", "--steps", "300",
                 "--report-ps", "0.1", "--equilibration-ps", "0.1", "--minimize-iterations", "100",
                 "--threads", "1", "--no-progress", "-o", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "vacuum (NoCutoff)" in printed and "ns/day" in printed
    for name in OUTPUTS.values():
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    rows = read_log(out / "log.csv")
    assert [int(r["step"]) for r in rows] == list(range(50, 301, 50))
    assert float(rows[-1]["time_ps"]) == pytest.approx(0.6)
    for r in rows:
        assert math.isfinite(float(r["potential_kJ_mol"]))
        assert 0 < float(r["temperature_K"]) < 1000
        assert float(r["speed_ns_day"]) > 0
        assert "volume_nm3" not in r
    assert dcd_frames(out / "trajectory.dcd") == 6
    summary = json.loads((out / "run.json").read_text())
    assert summary["solvent"] == "none" and summary["atoms"] == 20
    assert summary["production"]["steps"] == 300 and summary["production"]["ns_per_day"] > 0
    system = load_system_xml(out / "system.xml")
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    assert nb.getNonbondedMethod() == openmm.NonbondedForce.NoCutoff
    assert not system.usesPeriodicBoundaryConditions()
    assert app.PDBFile(str(out / "final.pdb")).topology.getNumAtoms() == 20


def test_solvated_pme_run(solvated_run) -> None:
    prepared, out, summary = solvated_run
    system = prepared.system
    assert system.usesPeriodicBoundaryConditions()
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    assert nb.getNonbondedMethod() == openmm.NonbondedForce.PME
    assert nb.getCutoffDistance().value_in_unit(unit.nanometer) == pytest.approx(1.0)
    assert nb.getUseSwitchingFunction()
    assert nb.getSwitchingDistance().value_in_unit(unit.nanometer) == pytest.approx(0.9)
    assert nb.getUseDispersionCorrection()
    assert any(isinstance(f, openmm.MonteCarloBarostat) for f in system.getForces())
    waters = sum(1 for r in prepared.topology.residues() if r.name == "HOH")
    assert waters > 300 and prepared.info["waters"] == waters
    assert prepared.info["na"] == prepared.info["cl"] >= 1  # 0.15 M NaCl, neutral solute
    rows = read_log(out / "log.csv")
    assert [int(r["step"]) for r in rows] == [25, 50]
    for r in rows:
        assert 0.85 < float(r["density_g_mL"]) < 1.15
        assert float(r["volume_nm3"]) == pytest.approx(SMALL_BOX**3, rel=0.1)
    assert dcd_frames(out / "trajectory.dcd") == 2
    assert summary["production"]["ns_per_day"] > 0


@pytest.mark.parametrize("which", ["vacuum", "solvated"])
def test_system_xml_round_trip_same_energy(which, solvated_run, tmp_path) -> None:
    if which == "solvated":
        prepared, out, _ = solvated_run
    else:
        prepared = prepare_system(PARACETAMOL, solvent="none", cache=False)
        out = tmp_path
        run_md(prepared, out, quick(10, report_every=10), progress=False)
    reloaded = load_system_xml(out / "system.xml")
    assert reloaded.getNumParticles() == prepared.system.getNumParticles()
    assert [type(f).__name__ for f in reloaded.getForces()] == \
        [type(f).__name__ for f in prepared.system.getForces()]
    state = openmm.XmlSerializer.deserialize((out / "state.xml").read_text())
    box = state.getPeriodicBoxVectors() if prepared.periodic else None
    e_original = energy(prepared.system, state.getPositions(), box)
    e_reloaded = energy(reloaded, state.getPositions(), box)
    assert math.isfinite(e_original)
    # Every parameter survives the file exactly; the energies then agree to the noise of
    # the CPU platform's single-precision PME (its FFT plan may differ between Contexts).
    assert openmm.XmlSerializer.serialize(reloaded) == \
        openmm.XmlSerializer.serialize(prepared.system)
    assert e_reloaded == pytest.approx(e_original, rel=1e-7, abs=1e-6)


def test_restart_from_checkpoint_continues_the_same_trajectory(tmp_path) -> None:
    """40 steps + resume 20 steps == 60 uninterrupted steps (Reference platform, same seed)."""
    opts = dict(report_every=10, equilibration_steps=10, minimize_iterations=20, platform="Reference")
    prepared = prepare_system(PARACETAMOL, solvent="none", cache=False)
    run_md(prepared, tmp_path / "once", quick(60, **opts), progress=False)
    prepared = prepare_system(PARACETAMOL, solvent="none", cache=False)
    run_md(prepared, tmp_path / "twice", quick(40, **opts), progress=False)

    at_40 = openmm.XmlSerializer.deserialize((tmp_path / "twice" / "state.xml").read_text())
    summary = resume_md(tmp_path / "twice", 20, progress=False)
    assert summary["total_steps"] == 60 and summary["resumed"][0]["from_step"] == 40

    once = openmm.XmlSerializer.deserialize((tmp_path / "once" / "state.xml").read_text())
    twice = openmm.XmlSerializer.deserialize((tmp_path / "twice" / "state.xml").read_text())
    x_once = once.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    x_twice = twice.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    x_40 = at_40.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    assert np.abs(x_twice - x_40).max() > 1e-4  # it did move on from the checkpoint
    np.testing.assert_allclose(x_twice, x_once, atol=1e-10)
    np.testing.assert_allclose(twice.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond),
                               once.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond),
                               atol=1e-10)
    assert twice.getTime().value_in_unit(unit.picosecond) == pytest.approx(0.12)
    rows = read_log(tmp_path / "twice" / "log.csv")
    assert [int(r["step"]) for r in rows] == list(range(10, 61, 10))
    assert rows[-1] == read_log(tmp_path / "once" / "log.csv")[-1] | {"speed_ns_day": rows[-1]["speed_ns_day"]}
    assert dcd_frames(tmp_path / "twice" / "trajectory.dcd") == 6


def test_cli_resume(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = ["simulate", "--solvent", "none", "--steps", "20", "--report-ps", "0.02",
            "--equilibration-ps", "0", "--minimize-iterations", "10", "--threads", "1",
            "--no-progress", "-o", str(out)]
    assert main(args[:1] + [str(PARACETAMOL)] + args[1:]) == 0
    assert main(["simulate", "--resume", "--steps", "20", "--threads", "1", "--no-progress",
                 "-o", str(out)]) == 0
    assert "now at step 40" in capsys.readouterr().out
    assert int(read_log(out / "log.csv")[-1]["step"]) == 40


# --------------------------------------------------------------------------- set-up details


@pytest.mark.parametrize(("smiles", "charge"), [("CC(=O)[O-]", -1), ("C[NH3+]", 1)])
def test_charged_ligand_is_neutralized_with_ions(smiles, charge) -> None:
    prepared = prepare_system(smiles, solvent="tip3p", box_nm=SMALL_BOX, ionic_strength_molar=0.0,
                              cache=False)
    info = prepared.info
    assert info["solute_charge"] == charge
    assert info["na"] - info["cl"] == -charge
    assert info["na"] + info["cl"] == 1  # no salt asked for: the counter-ion only
    total = 0.0
    nb = next(f for f in prepared.system.getForces() if isinstance(f, openmm.NonbondedForce))
    for i in range(nb.getNumParticles()):
        total += nb.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge)
    assert abs(total) < 1e-6
    solute_q = sum(nb.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge)
                   for i in prepared.solute_atoms)
    assert solute_q == pytest.approx(charge, abs=1e-6)


def test_degrees_of_freedom_counts_constraints_and_cm_remover() -> None:
    prepared = prepare_system(PARACETAMOL, solvent="none", cache=False)
    system = prepared.system
    n_h = sum(1 for a in prepared.topology.atoms() if a.element.symbol == "H")
    assert system.getNumConstraints() == n_h  # HBonds
    assert degrees_of_freedom(system) == 3 * 20 - n_h - 3


def test_ml_correction_with_ensemble_monitor(tmp_path, caplog) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("openmmtorch")
    from hybridff.ml.descriptors import DescriptorSpec
    from hybridff.ml.model import EnsembleModel
    from hybridff.ml.modelfile import build_metadata, save_model

    threads = torch.get_num_threads()
    gen = torch.Generator().manual_seed(1)
    model = EnsembleModel(DescriptorSpec(elements=(1, 6, 8)), hidden=(8,), n_models=3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.05)
    path = save_model(tmp_path / "model.pt", model, build_metadata(model, DescriptorSpec(elements=(1, 6, 8))))
    try:
        prepared = prepare_system("CCO", solvent="none", model=path, cache=False)
        assert prepared.ml_force_group is not None
        assert sum(is_ml_force(f) for f in prepared.system.getForces()) == 1
        with caplog.at_level(logging.WARNING, logger="hybridff.md.reporters"):
            summary = run_md(prepared, tmp_path / "run",
                             quick(20, report_every=10, timestep_fs=1.0, equilibration_steps=0,
                                   minimize_iterations=10, disagreement_threshold_kcal=1e-12),
                             progress=False)
    finally:
        torch.set_num_threads(threads)
    rows = read_log(tmp_path / "run" / "log.csv")
    assert len(rows) == 2
    stds = [float(r["ensemble_std_kcal_mol"]) for r in rows]
    assert all(s > 0 for s in stds)
    assert all(math.isfinite(float(r["ml_energy_kJ_mol"])) and float(r["ml_energy_kJ_mol"]) != 0
               for r in rows)
    dis = summary["ensemble_disagreement_kcal_mol"]
    assert dis["exceeded"] and dis["max"] == pytest.approx(max(stds), rel=1e-3)
    assert "exceeds the trained range" in caplog.text
    # openmm-torch 1.10 crashes deserializing a TorchForce: refused with a message, not a crash
    with pytest.raises(SimulationError, match="TorchForce"):
        load_system_xml(tmp_path / "run" / "system.xml")
    try:
        torch.set_num_threads(1)
        assert prepared.info["ml_precision"] == "single"  # the default, recorded in run.json
        system = load_system_xml(tmp_path / "run" / "system.xml", model=path,
                                 topology=prepared.topology, atoms=prepared.solute_atoms,
                                 precision="single")
        ml = [f for f in system.getForces() if is_ml_force(f)]
        assert len(ml) == 1 and ml[0].getForceGroup() == prepared.ml_force_group
        state = openmm.XmlSerializer.deserialize((tmp_path / "run" / "state.xml").read_text())
        assert energy(system, state.getPositions()) == pytest.approx(
            energy(prepared.system, state.getPositions()), rel=1e-9, abs=1e-6)
        summary = resume_md(tmp_path / "run", 10, threads=1, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert summary["total_steps"] == 30
    assert float(read_log(tmp_path / "run" / "log.csv")[-1]["ensemble_std_kcal_mol"]) > 0


# --------------------------------------------------------------------------- errors


def test_missing_file_is_a_clear_error(tmp_path, capsys) -> None:
    with pytest.raises(MoleculeInputError, match="does not exist"):
        prepare_system(tmp_path / "nope.sdf", solvent="none", cache=False)
    code = main(["simulate", str(tmp_path / "nope.sdf"), "-o", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert "hybridff simulate: error" in err and "nope.sdf" in err and "does not exist" in err
    assert "Traceback" not in err


def test_nan_coordinates_are_a_clear_error(tmp_path) -> None:
    mol = Chem.AddHs(Chem.MolFromSmiles("CO"))
    conf = Chem.Conformer(mol.GetNumAtoms())
    for i in range(mol.GetNumAtoms()):
        conf.SetAtomPosition(i, (0.1 * i, 0.0, float("nan") if i == 1 else 0.0))
    conf.Set3D(True)
    mol.AddConformer(conf)
    with pytest.raises(MoleculeInputError, match=r"atom 1 .*non-finite"):
        prepare_system(mol, solvent="none", cache=False)
    # an SDF with a 'nan' coordinate: RDKit refuses the record; the error names the file
    sdf = tmp_path / "nan.sdf"
    sdf.write_text(PARACETAMOL.read_text().replace(PARACETAMOL.read_text().splitlines()[4][:10],
                                                   "       nan", 1))
    with pytest.raises(MoleculeInputError, match="nan.sdf"):
        prepare_system(sdf, solvent="none", cache=False)
    # positions that turn NaN later (e.g. from the user's own array) name the atom
    top = app.Topology()
    res = top.addResidue("LIG", top.addChain())
    for name in ("C1", "O1"):
        top.addAtom(name, app.Element.getBySymbol(name[0]), res)
    with pytest.raises(MoleculeInputError, match=r"atom 1 \(O1, O, residue LIG 1\) has non-finite"):
        check_positions(np.array([[0.0, 0, 0], [np.nan, 0, 0]]), top, "starting positions")


def test_bad_settings_are_refused() -> None:
    with pytest.raises(SimulationError, match="twice the 1.0 nm cutoff"):
        prepare_system("CCO", solvent="tip3p", box_nm=1.8, cache=False)
    with pytest.raises(UnknownNameError, match="known: tip3p, none"):
        prepare_system("CCO", solvent="spce", cache=False)
    prepared = prepare_system("CCO", solvent="none", cache=False)
    with pytest.raises(UnknownNameError, match="available: .*CPU"):
        run_md(prepared, "/tmp/unused-hybridff-run", quick(10, platform="NoSuchGPU"), progress=False)
    with pytest.raises(SimulationError, match="time step 10.0 fs"):
        quick(10, timestep_fs=10.0).check()


def test_resume_needs_a_run_folder(tmp_path) -> None:
    with pytest.raises(SimulationError, match="missing run.json"):
        resume_md(tmp_path, 10, progress=False)


def test_blow_up_is_reported_with_what_to_do(tmp_path) -> None:
    """A NaN/inf energy is caught before MD, with advice. (Atoms on top of each other are
    refused earlier, at set-up: tests/test_bad_input.py::test_overlapping_atoms.)"""
    prepared = prepare_system("CCO", solvent="none", cache=False)
    infinite = openmm.CustomExternalForce("1/(x-x)")  # an infinite energy, as after a blow-up
    infinite.addParticle(0, [])
    prepared.system.addForce(infinite)
    with pytest.raises(SimulationError, match="became inf kJ/mol at the starting structure: the "
                                              "system blew up; use a smaller time step"):
        run_md(prepared, tmp_path, quick(10, minimize_iterations=0), progress=False)


def test_blow_up_during_dynamics_is_reported(tmp_path) -> None:
    """A force that throws an atom away (as an extrapolating correction can) ends in a
    SimulationError during equilibration, not a raw OpenMM traceback or a log of 1e18 energies."""
    prepared = prepare_system("CCO", solvent="none", cache=False)
    repulsive = openmm.CustomExternalForce("-1e6*(x^2+y^2+z^2)")
    repulsive.addParticle(0, [])
    prepared.system.addForce(repulsive)
    with pytest.raises(SimulationError, match="during (equilibration|minimization).*blew up.*ML "
                                              "correction"):
        run_md(prepared, tmp_path, quick(400, minimize_iterations=0), progress=False)


# --------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_default_box_npt_temperature_and_density(tmp_path) -> None:
    """3 nm box, 10 ps: temperature near 300 K and water density near 1 g/mL."""
    prepared = prepare_system(PARACETAMOL, solvent="tip3p", box_nm=3.0, cache=False)
    run_md(prepared, tmp_path, MDOptions(steps=5000, report_every=250, equilibration_steps=2500,
                                         minimize_iterations=500, threads=2), progress=False)
    rows = read_log(tmp_path / "log.csv")
    temps = [float(r["temperature_K"]) for r in rows]
    dens = [float(r["density_g_mL"]) for r in rows]
    assert abs(np.mean(temps) - 300) < 15
    assert 0.95 < np.mean(dens) < 1.05
