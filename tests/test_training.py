"""Delta-learning end to end: xTB labels of MM-sampled frames, a real fit, NVE of the hybrid."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tblite.interface")
pytest.importorskip("openmmtorch")

import openmm  # noqa: E402
from openmm import unit  # noqa: E402

from hybridff.io.frames import LabelledFrames  # noqa: E402
from hybridff.labels.qm import get_engine  # noqa: E402
from hybridff.ml.backend import add_ml_correction  # noqa: E402
from hybridff.ml.modelfile import ModelFile, build_metadata  # noqa: E402
from hybridff.sampling import md_conformations  # noqa: E402
from hybridff.training.residuals import build_mm, residuals  # noqa: E402
from hybridff.training.trainer import TrainConfig, split_indices, train_correction  # noqa: E402

#: NVE threshold: |linear drift| of the total energy, kJ/mol per ps per degree of freedom
DRIFT_LIMIT = 0.05


pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def ethanol_fit():
    """160 xTB-labelled MM MD frames of ethanol (500 K) and a correction trained on 120 of them.

    With 80 frames (60 trained on) the held-out ratio depended on the split: 0.34 with the
    first charge model and 0.73 after the charge model fine-tuned on standard AM1-BCC (the
    20 validation frames then disagreed with the 60); with 160 frames it is 0.30, 0.30 and
    0.44 for seeds 0, 1 and 2."""
    mm = build_mm("CCO")
    frames = md_conformations(mm.system, mm.positions, 160, temperature=500.0,
                              interval_steps=100, seed=7)
    engine = get_engine("xtb")
    labels = [engine.compute(mm.numbers, x) for x in frames]
    data = LabelledFrames(mm.numbers, frames, np.array([r.energy for r in labels]),
                          np.array([r.forces for r in labels]))
    d_e, d_f, _, _ = residuals(data, mm)
    config = TrainConfig(epochs=60, val_fraction=0.25, patience=60, seed=0, progress=False,
                         batch_size=10)
    result = train_correction(mm.numbers, frames, d_e, d_f, config)
    return mm, data, result


def test_fit_lowers_held_out_force_error(ethanol_fit) -> None:
    _, _, result = ethanol_fit
    held_out = result.metrics["validation"]
    before = held_out["before"]["force_rmse_kcal_mol_A"]  # MM alone vs xTB
    after = held_out["after"]["force_rmse_kcal_mol_A"]  # hybrid vs xTB
    print(f"held-out force RMSE MM {before:.2f} -> hybrid {after:.2f} kcal/mol/A")
    assert held_out["after"]["n_frames"] == 40
    assert after < 0.7 * before
    assert held_out["after"]["energy_rmse_kcal_mol"] < held_out["before"]["energy_rmse_kcal_mol"]


def test_split_is_seeded_and_disjoint() -> None:
    a_train, a_val = split_indices(50, 0.2, seed=3)
    b_train, b_val = split_indices(50, 0.2, seed=3)
    np.testing.assert_array_equal(a_val, b_val)
    assert len(a_val) == 10 and not set(a_train) & set(a_val)
    assert set(a_train) | set(a_val) == set(range(50))


def test_hybrid_nve_energy_drift(ethanol_fit) -> None:
    """Velocity Verlet on MM + TorchForce: total energy has no systematic drift."""
    mm, data, result = ethanol_fit
    system = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(mm.system))
    model = ModelFile(torch.jit.script(result.model), build_metadata(result.model, result.spec))
    add_ml_correction(system, mm.topology, model)
    dt_ps = 0.0005
    integrator = openmm.VerletIntegrator(dt_ps * unit.picosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(data.positions[0])
    context.setVelocitiesToTemperature(300 * unit.kelvin, 11)
    times, totals = [], []
    for block in range(40):
        integrator.step(25)
        state = context.getState(getEnergy=True)
        total = (state.getPotentialEnergy() + state.getKineticEnergy()).value_in_unit(
            unit.kilojoule_per_mole)
        times.append((block + 1) * 25 * dt_ps)
        totals.append(total)
    totals = np.array(totals)
    slope = np.polyfit(times, totals, 1)[0]
    n_dof = 3 * system.getNumParticles()
    print(f"NVE {len(times) * 25} steps of {dt_ps * 1000} fs: drift {slope:.4f} kJ/mol/ps, "
          f"fluctuation {totals.std():.4f} kJ/mol")
    assert np.isfinite(totals).all()
    assert abs(slope) / n_dof < DRIFT_LIMIT
    assert totals.std() < 1.0  # kJ/mol: bounded fluctuation (Verlet, 0.5 fs)


def test_md_sampling_is_seeded() -> None:
    mm = build_mm("CCO")
    a = md_conformations(mm.system, mm.positions, 3, interval_steps=20, equilibration_steps=50, seed=4)
    b = md_conformations(mm.system, mm.positions, 3, interval_steps=20, equilibration_steps=50, seed=4)
    c = md_conformations(mm.system, mm.positions, 3, interval_steps=20, equilibration_steps=50, seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.shape == (3, 9, 3)


def test_normal_mode_sampling_amplitudes() -> None:
    """Displacements along normal modes: seeded, and their MM energy is about kT/2 per mode."""
    from hybridff.labels.samplers import (
        MOLAR_GAS_CONSTANT,
        SamplingStart,
        normal_mode_conformations,
        normal_modes,
    )
    from hybridff.training.residuals import mm_energies_forces

    mm = build_mm("CCO")
    x0, omega2, modes = normal_modes(mm.system, mm.positions)
    assert len(omega2) == 3 * 9 - 6 and (omega2 > 0).all()
    start = SamplingStart(mm.system, mm.positions, temperature=20.0, seed=1)
    frames = normal_mode_conformations(start, 200).positions
    again = normal_mode_conformations(start, 200).positions
    np.testing.assert_array_equal(frames, again)
    e0, _ = mm_energies_forces(mm.system, x0[None])
    energies, _ = mm_energies_forces(mm.system, frames)
    mean_excess = float(np.mean(energies - e0[0]))
    expected = 0.5 * MOLAR_GAS_CONSTANT * 20.0 * len(omega2)  # equipartition (harmonic at 20 K)
    assert 0.6 * expected < mean_excess < 1.6 * expected, (mean_excess, expected)


@pytest.mark.slow
def test_paracetamol_shipped_labels_hybrid_beats_mm_on_test_trajectory(tmp_path) -> None:
    """Train on the shipped 240 GFN2-xTB frames, evaluate on the independent 100-frame file."""
    from pathlib import Path

    from hybridff.training.workflow import evaluate, train

    data = Path(__file__).resolve().parents[1] / "examples" / "data"
    model = tmp_path / "m.pt"
    config = TrainConfig(epochs=150, patience=40, val_fraction=0.2, seed=0, progress=False)
    train(data / "paracetamol.sdf", data / "paracetamol_gfn2xtb_train.xyz", model, config)
    report = evaluate(data / "paracetamol.sdf", data / "paracetamol_gfn2xtb_test.xyz", model)
    mm, hybrid = report["mm"], report["hybrid"]
    print(f"test trajectory: MM F {mm['force_rmse_kcal_mol_A']:.2f}, hybrid F "
          f"{hybrid['force_rmse_kcal_mol_A']:.2f} kcal/mol/A; E {mm['energy_rmse_kcal_mol']:.2f}"
          f" -> {hybrid['energy_rmse_kcal_mol']:.2f} kcal/mol")
    assert hybrid["force_rmse_kcal_mol_A"] < 0.4 * mm["force_rmse_kcal_mol_A"]
    assert hybrid["energy_rmse_kcal_mol"] < 0.4 * mm["energy_rmse_kcal_mol"]
    assert report["ml_precision"] == "single"  # float32 network, as simulate runs it
    assert report["ml_in_openmm_matches_model_kj_mol"] < 1e-3


def test_jacobian_and_direct_training_agree(ethanol_fit) -> None:
    """Precomputed descriptor Jacobians and autograd through the descriptor train identically."""
    mm, data, _ = ethanol_fit
    frames = data.subset(range(20))
    results = []
    for budget in (2000.0, 0.0):  # 0 MB: no precomputation
        config = TrainConfig(epochs=3, val_fraction=0.25, seed=1, progress=False,
                             jacobian_memory_mb=budget, batch_size=5)
        res = train_correction(mm.numbers, frames.positions, frames.energies, frames.forces, config)
        results.append(res.metrics["validation"]["after"])
    for key in ("energy_rmse_kcal_mol", "force_rmse_kcal_mol_A"):
        assert results[0][key] == pytest.approx(results[1][key], rel=1e-6)


def test_ensemble_records_the_disagreement_range_the_md_monitor_uses(ethanol_fit) -> None:
    """An ensemble stores the largest member energy spread over its frames, in the definition
    the MD monitor computes, so `hybridff simulate` warns outside the trained range."""
    from hybridff.md.reporters import EnsembleMonitor, trained_disagreement_kcal

    mm, data, _ = ethanol_fit
    frames = data.subset(range(24))
    config = TrainConfig(epochs=3, val_fraction=0.25, seed=2, progress=False, batch_size=6,
                         ensemble=2)
    res = train_correction(mm.numbers, frames.positions, frames.energies, frames.forces, config)
    limit = res.metrics["disagreement"]["energy_std_max_kcal_mol"]
    assert limit > 0
    assert trained_disagreement_kcal({"metrics": res.metrics}) == limit

    class Model:  # what EnsembleMonitor reads of a loaded model file
        module, elements, metadata = res.model, list(res.spec.elements), {"metrics": res.metrics}

    monitor = EnsembleMonitor(Model(), mm.topology, list(range(len(mm.numbers))))
    assert monitor.threshold == limit
    context = openmm.Context(mm.system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    seen = []
    for x in frames.positions:
        context.setPositions(x * unit.nanometer)
        seen.append(monitor(context.getState(getPositions=True), periodic=False))
    assert max(seen) == pytest.approx(limit, rel=1e-6)


def test_trained_model_bounds_atom_energies_near_their_training_range(ethanol_fit) -> None:
    """Training ends by setting each element's atom-energy bound from its range on the frames;
    the metrics record it, and no training frame is touched by the bound."""
    _, data, result = ethanol_fit
    model = result.model
    species = torch.tensor([list(result.spec.elements).index(int(z)) for z in data.numbers])
    bounds = result.metrics["atom_energy_bounds_kj_mol"]
    assert len(bounds) == len(model.members)
    assert sorted(bounds[0]) == sorted(str(z) for z in set(data.numbers.tolist()))
    with torch.no_grad():
        feats = model.features(torch.tensor(data.positions), species)
        for member, recorded in zip(model.members, bounds, strict=True):
            assert bool(member.bounded)
            atom_e = member.atom_energies(feats, species)
            for index, z in enumerate(result.spec.elements):
                low, high, width = recorded[str(z)]
                values = atom_e[:, species == index]
                assert low < float(values.min()) and float(values.max()) < high and width > 0


def test_default_schedule_gives_small_sets_more_epochs() -> None:
    """Epochs follow from the optimizer-step budget unless given; patience is a fifth of them."""
    config = TrainConfig()  # batch 16, 6000 steps, at least 200 epochs
    assert config.schedule(59) == (1500, 300)  # 4 steps per epoch (the last batch of 11)
    assert config.schedule(17) == (6000, 1200)  # a batch of 16; the single frame left is skipped
    assert config.schedule(10_000) == (200, 40)  # large sets: the floor of 200 epochs
    assert TrainConfig(epochs=60, patience=7).schedule(59) == (60, 7)
    assert TrainConfig(epochs=60).schedule(59) == (60, 12)
    with pytest.raises(ValueError, match="patience"):
        TrainConfig(patience=0)


def test_train_cli_defaults_are_the_trainer_defaults() -> None:
    """`hybridff train` states its defaults without importing torch; they must not drift."""
    import argparse

    from hybridff.cli import train as train_cli

    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(["CCO", "data.xyz", "-o", "model.pt"])
    assert train_cli.config_from_args(args) == TrainConfig()
