"""Forces of every force group of hybridff Systems equal central finite differences of the energy.

Reference platform (double precision throughout). For each group: the analytic force on a random
atom, projected on a random unit direction, against -(E(x + h d) - E(x - h d)) / 2h with
h = 1e-5 nm, computed from that group's energy alone.

Tolerance. The central difference errs by h^2/6 * E''' (truncation) plus ~eps |E| / h
(rounding): with |E''' | <~ 1e7 kJ/mol/nm^3 for the stiffest bonds that is ~2e-4 kJ/mol/nm,
and rounding is ~1e-16 * 3.4e4 / 1e-5 ~ 3e-7 kJ/mol/nm even for the solvated box. Forces here
are 1-1000 kJ/mol/nm, so 1e-4 relative (with an absolute floor of 1e-3 kJ/mol/nm) is met by a
correct gradient with margin, while a wrong one (a missed switching derivative, a sign, a
factor) errs by far more. Measured worst relative errors are ~1e-7 (see the report).
"""

from __future__ import annotations

import numpy as np
import openmm
import pytest
from conftest import parameterized, solvated
from openmm import unit

from hybridff.mm.system import FORCE_GROUPS, build_system, create_system

STEP_NM = 1e-5
REL_TOL, ABS_TOL = 1e-4, 1e-3
N_CHECKS = 6
#: ibuprofen: 33 atoms over ~1.2 nm, so its atom pairs fill the switching region of short cutoffs
VACUUM_SMILES = "CC(C)Cc1ccc(cc1)C(C)C(=O)O"
PME_SMILES = "CC(=O)Nc1ccc(O)cc1"
PME_BOX_NM = 3.0
ENERGY_GROUPS = {FORCE_GROUPS[n]: n for n in
                 ("HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce",
                  "NonbondedForce")}


def fd_check(system: openmm.System, positions_nm: np.ndarray, group: int, atoms: np.ndarray,
             box=None, seed: int = 0) -> list[tuple[int, float, float]]:
    """(atom, analytic, finite-difference) directional force of ``group`` at random atoms."""
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    if box is not None:
        ctx.setPeriodicBoxVectors(*box)
    rng = np.random.default_rng(seed)
    ctx.setPositions(positions_nm * unit.nanometer)
    forces = ctx.getState(getForces=True, groups={group}).getForces(asNumpy=True).value_in_unit(
        unit.kilojoule_per_mole / unit.nanometer)

    def energy(pos: np.ndarray) -> float:
        ctx.setPositions(pos * unit.nanometer)
        return ctx.getState(getEnergy=True, groups={group}).getPotentialEnergy().value_in_unit(
            unit.kilojoule_per_mole)

    out = []
    for atom in rng.choice(atoms, size=min(N_CHECKS, len(atoms)), replace=False):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        plus, minus = positions_nm.copy(), positions_nm.copy()
        plus[atom] += STEP_NM * direction
        minus[atom] -= STEP_NM * direction
        numeric = -(energy(plus) - energy(minus)) / (2 * STEP_NM)
        out.append((int(atom), float(forces[atom] @ direction), numeric))
    return out


def assert_fd(results: list[tuple[int, float, float]], what: str) -> float:
    """Assert every check is within tolerance; return the worst relative error."""
    worst, lines = 0.0, []
    for atom, analytic, numeric in results:
        err = abs(analytic - numeric)
        rel = err / max(abs(numeric), ABS_TOL / REL_TOL)
        worst = max(worst, rel)
        lines.append(f"atom {atom:5d} analytic {analytic:16.8f} fd {numeric:16.8f} rel {rel:.2e}")
        if err > max(ABS_TOL, REL_TOL * abs(numeric)):
            lines[-1] += "  <-- FAIL"
    assert all(not line.endswith("FAIL") for line in lines), f"{what}\n" + "\n".join(lines)
    assert any(abs(n) > 1.0 for _, _, n in results), f"{what}: forces too small to test\n" + \
        "\n".join(lines)
    print(f"{what}: worst relative FD error {worst:.1e}")  # shown with pytest -s
    return worst


def distorted(pos: np.ndarray, seed: int = 7, scale: float = 0.01) -> np.ndarray:
    return pos + np.random.default_rng(seed).normal(0.0, scale, pos.shape)


VACUUM_SETTINGS = {
    "NoCutoff": dict(nonbonded_method="NoCutoff"),
    "CutoffNonPeriodic-1.0-switch0.9": dict(nonbonded_method="CutoffNonPeriodic"),
    # a short cutoff puts many of ibuprofen's pairs inside the switching region
    "CutoffNonPeriodic-0.6-switch0.4": dict(nonbonded_method="CutoffNonPeriodic", cutoff=0.6,
                                            switch_distance=0.4),
}


@pytest.mark.parametrize("group", sorted(ENERGY_GROUPS), ids=lambda g: ENERGY_GROUPS[g])
@pytest.mark.parametrize("setting", sorted(VACUUM_SETTINGS))
def test_vacuum_forces_match_finite_differences(setting: str, group: int) -> None:
    pm = parameterized(VACUUM_SMILES)
    system, _, pos = create_system(pm, **VACUUM_SETTINGS[setting])
    pos_nm = distorted(np.asarray(pos.value_in_unit(unit.nanometer)))
    assert {f.getForceGroup() for f in system.getForces()} >= set(ENERGY_GROUPS)
    if setting.endswith("switch0.4") and ENERGY_GROUPS[group] == "NonbondedForce":
        d = np.linalg.norm(pos_nm[:, None] - pos_nm[None], axis=-1)
        assert np.count_nonzero((d > 0.4) & (d < 0.6)) > 20, "switching region not exercised"
    results = fd_check(system, pos_nm, group, np.arange(len(pos_nm)), seed=group)
    assert_fd(results, f"{setting} {ENERGY_GROUPS[group]}")


@pytest.mark.parametrize("group", sorted(ENERGY_GROUPS), ids=lambda g: ENERGY_GROUPS[g])
def test_pme_forces_match_finite_differences(group: int) -> None:
    """Ligand in TIP3P, PME 1.0 nm, switch 0.9 nm: ligand atoms and water atoms."""
    sol = solvated(PME_SMILES, PME_BOX_NM)
    system = build_system(sol.forcefield, sol.topology, "PME", 1.0, 0.9,
                          ewald_error_tolerance=5e-4, remove_cmmotion=False)
    n_ligand = sol.pm.mol.GetNumAtoms()
    rng = np.random.default_rng(3)
    if ENERGY_GROUPS[group] == "NonbondedForce":
        waters = rng.choice(np.arange(n_ligand, len(sol.positions_nm)), size=3, replace=False)
        atoms = np.concatenate([rng.choice(n_ligand, size=3, replace=False), waters])
    else:
        atoms = np.arange(n_ligand)
    # move the ligand off its optimized geometry so that bonded forces are not ~0
    pos = sol.positions_nm.copy()
    pos[:n_ligand] = distorted(pos[:n_ligand])
    results = fd_check(system, pos, group, atoms, box=sol.box_vectors, seed=group)
    assert_fd(results, f"PME {ENERGY_GROUPS[group]}")
