"""Multiple time stepping (``MDOptions.mts``, ``hybridff simulate --mts K``): OpenMM's
MTSLangevinIntegrator with the ML correction in the outer step and the MM forces in K inner
steps; the groups are right, the correction is applied (energy is conserved without
friction), and the sampled potential energy agrees with single-step dynamics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openmm
import pytest
from openmm import unit

from hybridff.cli import main
from hybridff.exceptions import SimulationError
from hybridff.md.options import MAX_MTS, MDOptions
from hybridff.md.prepare import prepare_system
from hybridff.md.run import make_integrator, mts_groups

torch = pytest.importorskip("torch")
pytest.importorskip("openmmtorch")

ROOT = Path(__file__).resolve().parents[1]
SCALE = 0.3  # weights of the random correction
PARACETAMOL = ROOT / "examples" / "data" / "paracetamol.sdf"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """A small random correction on H, C, N, O whose energy varies by a few kJ/mol along
    thermal motion (enough that leaving it out of the dynamics shows in the energy)."""
    from hybridff.ml.descriptors import DescriptorSpec
    from hybridff.ml.model import EnsembleModel
    from hybridff.ml.modelfile import build_metadata, save_model

    gen = torch.Generator().manual_seed(3)
    spec = DescriptorSpec(elements=(1, 6, 7, 8))
    model = EnsembleModel(spec, hidden=(16,), n_models=1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * SCALE)
    return save_model(tmp_path_factory.mktemp("mts") / "model.pt", model, build_metadata(model, spec))


@pytest.fixture(scope="module")
def prepared(model_path, torch_single_thread):
    return prepare_system(PARACETAMOL, solvent="none", model=model_path, cache=False,
                          charge_method="gasteiger")


_MINIMIZED: dict[int, object] = {}


def _context(prepared, integrator) -> openmm.Context:
    """A Context at the minimized structure (minimized once per System) with 300 K velocities."""
    context = openmm.Context(prepared.system, integrator, openmm.Platform.getPlatformByName("CPU"),
                             {"Threads": "1"})
    key = id(prepared.system)
    if key not in _MINIMIZED:
        context.setPositions(prepared.positions)
        openmm.LocalEnergyMinimizer.minimize(context, 1.0, 100)
        _MINIMIZED[key] = context.getState(getPositions=True).getPositions()
    context.setPositions(_MINIMIZED[key])
    context.setVelocitiesToTemperature(300 * unit.kelvin, 11)
    return context


def _energies(context: openmm.Context) -> tuple[float, float]:
    state = context.getState(getEnergy=True)
    return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole))


# --------------------------------------------------------------------------- the integrator


def test_mts_integrator_has_the_correction_in_the_outer_step(prepared) -> None:
    ml = prepared.ml_force_group
    others = sorted({f.getForceGroup() for f in prepared.system.getForces()} - {ml})
    assert others == [0, 1, 2, 3, 5]  # bonds, angles, torsions, nonbonded, CM motion
    assert mts_groups(prepared.system, ml, 3) == [(ml, 1)] + [(g, 3) for g in others]
    options = MDOptions(timestep_fs=3.0, mts=3)
    assert options.mm_timestep_fs == pytest.approx(1.0)
    integrator = make_integrator(prepared.system, options, ml)
    assert isinstance(integrator, openmm.MTSLangevinIntegrator)
    assert integrator.getStepSize().value_in_unit(unit.femtosecond) == pytest.approx(3.0)
    kicks = [integrator.getComputationStep(i)[2] for i in range(integrator.getNumComputations())]
    kicks = [k for k in kicks if "*f" in k]
    # the correction: a half kick of the whole step before and after; each MM group: a half
    # kick of a third of the step before and after each of the three inner steps
    assert kicks.count(f"v+0.5*(dt/1)*f{ml}/m") == 2
    for g in others:
        assert kicks.count(f"v+0.5*(dt/3)*f{g}/m") == 6
    assert len(kicks) == 2 + 6 * len(others)
    plain = make_integrator(prepared.system, MDOptions(timestep_fs=2.0), ml)
    assert isinstance(plain, openmm.LangevinMiddleIntegrator)


def test_bad_mts_settings_are_refused(prepared, tmp_path, capsys) -> None:
    for bad in (0, -1, 1.5, True, MAX_MTS + 1):
        with pytest.raises(SimulationError, match="mts"):
            MDOptions(mts=bad).check()
    with pytest.raises(SimulationError, match=r"MM time step 6 fs \(time step 12 fs / mts 2\)"):
        MDOptions(timestep_fs=12.0, mts=2).check()
    mm_only = prepare_system(PARACETAMOL, solvent="none", cache=False, charge_method="gasteiger")
    with pytest.raises(SimulationError, match="has none: add a model"):
        make_integrator(mm_only.system, MDOptions(timestep_fs=4.0, mts=2), None)
    out = str(tmp_path / "run")
    assert main(["simulate", str(PARACETAMOL), "-o", out, "--solvent", "none", "--mts", "2",
                 "--steps", "10"]) == 2
    assert "--mts 2 evaluates the ML correction every 2 MM steps, but no --model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main(["simulate", str(PARACETAMOL), "-o", out, "--mts", "0"])
    assert refused.value.code == 2
    assert f"argument --mts: an MTS factor must be 1 to {MAX_MTS}, got 0" in capsys.readouterr().err
    assert main(["simulate", str(PARACETAMOL), "-o", out, "--solvent", "none", "--mts", "3",
                 "--model", str(prepared.model_path), "--steps", "10"]) == 2
    assert "--steps 10 is not a multiple of --mts 3" in capsys.readouterr().err


# --------------------------------------------------------------------------- the dynamics


def test_mts_without_friction_conserves_energy(prepared) -> None:
    """Friction 0 makes MTSLangevinIntegrator velocity-Verlet RESPA: total energy is conserved
    only if the correction's force is applied with its energy (leaving its group out of the
    integrator, the energy wanders ten times more)."""
    ml = prepared.ml_force_group

    def total_energy_spread(groups: list[tuple[int, int]]) -> float:
        integrator = openmm.MTSLangevinIntegrator(300 * unit.kelvin, 0.0 / unit.picosecond,
                                                  2.0 * unit.femtosecond, groups)
        context = _context(prepared, integrator)
        totals = []
        for _ in range(50):
            integrator.step(10)
            totals.append(sum(_energies(context)))
        return float(np.ptp(totals))

    right = total_energy_spread(mts_groups(prepared.system, ml, 2))
    without_correction = total_energy_spread([(g, k) for g, k in mts_groups(prepared.system, ml, 2)
                                              if g != ml])
    assert right < 2.0  # kJ/mol over 1 ps (500 outer steps of 2 fs, MM at 1 fs)
    assert without_correction > 10 * right


def _replica_means(prepared, options: MDOptions, seeds: range, ps: float) -> np.ndarray:
    """Mean potential and ML energies (kJ/mol) of independent Langevin runs, one per seed
    (0.1 ps equilibration, then a sample every 20 fs for ``ps``)."""
    ml = prepared.ml_force_group
    means = []
    for seed in seeds:
        integrator = make_integrator(prepared.system, options, ml)
        integrator.setRandomNumberSeed(seed)
        context = _context(prepared, integrator)
        context.setVelocitiesToTemperature(300 * unit.kelvin, seed)
        integrator.step(int(round(100 / options.timestep_fs)))
        rows = []
        for _ in range(int(round(ps * 50))):
            integrator.step(int(round(20 / options.timestep_fs)))
            e_ml = context.getState(getEnergy=True, groups={ml}).getPotentialEnergy()
            rows.append((_energies(context)[0], e_ml.value_in_unit(unit.kilojoule_per_mole)))
        means.append(np.mean(rows, axis=0))
    return np.array(means)


def _agree(replicas: int, ps: float, prepared) -> None:
    """Langevin 300 K, 1/ps: the mean potential energy and mean ML energy with the correction
    every 2 MM steps (1 fs) agree with single-step dynamics at 1 fs within 4 combined
    standard errors, each from the spread of independent runs (block averages of one run
    underestimate it: conformational changes are slower than the blocks)."""
    single = _replica_means(prepared, MDOptions(timestep_fs=1.0), range(100, 100 + replicas), ps)
    mts = _replica_means(prepared, MDOptions(timestep_fs=2.0, mts=2), range(200, 200 + replicas), ps)
    assert np.isfinite(mts).all()
    error = np.hypot(single.std(axis=0, ddof=1), mts.std(axis=0, ddof=1)) / np.sqrt(replicas)
    difference = np.abs(mts.mean(axis=0) - single.mean(axis=0))
    print(f"potential, ML energy: single {single.mean(axis=0)}, MTS {mts.mean(axis=0)}, "
          f"combined standard error {error} kJ/mol")
    assert np.all(difference < 4 * error), (difference, error)
    assert error[0] < 10.0  # kJ/mol: against a thermal spread of the potential of about 10


def test_mts_samples_the_same_energies_short(prepared) -> None:
    _agree(3, 0.3, prepared)


@pytest.mark.slow
def test_mts_samples_the_same_energies(prepared) -> None:
    _agree(6, 4.0, prepared)


def test_cli_mts_run_and_resume(prepared, tmp_path, capsys) -> None:
    """``simulate --mts 2``: the run's integrator is MTS with the MM Forces in one group,
    its step is 2 x --timestep-fs, its energies are finite, and it resumes with its own
    settings."""
    import json

    from hybridff.md.outputs import OUTPUTS
    from hybridff.md.reporters import BLOWUP_ENERGY_KJ_MOL

    out = tmp_path / "run"
    assert main(["simulate", str(PARACETAMOL), "-o", str(out), "--solvent", "none",
                 "--model", str(prepared.model_path), "--charges", "gasteiger", "--mts", "2",
                 "--timestep-fs", "1", "--steps", "40", "--report-ps", "0.01",
                 "--equilibration-ps", "0.01", "--minimize-iterations", "50", "--threads", "1",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "done: 20 steps of 2 fs, the correction once and the MM 2 times each (4e-05 ns)" in printed
    summary = json.loads((out / OUTPUTS["summary"]).read_text())
    assert summary["integrator"] == "MTSLangevinIntegrator"
    assert summary["options"]["mts"] == 2 and summary["options"]["timestep_fs"] == 2.0
    ml = summary["ml_force_group"]
    assert summary["mts_groups"] == [[ml, 1], [0, 2]]
    integrator = openmm.XmlSerializer.deserialize((out / OUTPUTS["integrator"]).read_text())
    assert integrator.getStepSize().value_in_unit(unit.femtosecond) == pytest.approx(2.0)
    rows = (out / OUTPUTS["log"]).read_text().splitlines()
    assert len(rows) == 1 + 4  # a row every 10 fs = 5 steps, 20 steps
    potentials = [float(r.split(",")[2]) for r in rows[1:]]
    assert all(np.isfinite(potentials)) and max(map(abs, potentials)) < BLOWUP_ENERGY_KJ_MOL
    assert main(["simulate", "-o", str(out), "--resume", "--steps", "10", "--threads", "1",
                 "--timestep-fs", "1", "--mts", "2", "--no-progress"]) == 0
    assert "5 more steps (now at step 25)" in capsys.readouterr().out
    assert main(["simulate", "-o", str(out), "--resume", "--steps", "10", "--mts", "3",
                 "--no-progress"]) == 2
    assert "--mts 3 (the run's: 2)" in capsys.readouterr().err
