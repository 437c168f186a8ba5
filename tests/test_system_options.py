"""The System carries what was asked: nonbonded method, cutoff, switching, dispersion correction,
1-4 scaling, exclusions, one force group per term, every expected Force, checks and warnings."""

from __future__ import annotations

import math
import warnings

import numpy as np
import openmm
import pytest
from conftest import parameterized
from openmm import app, unit

from hybridff.mm.parameters import ParameterizedMolecule
from hybridff.mm.system import FORCE_GROUPS, build_system, create_system, energy_components

BOX = [openmm.Vec3(3.0, 0, 0), openmm.Vec3(0, 3.0, 0), openmm.Vec3(0, 0, 3.0)]
EXPECTED_FORCES = {"HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce",
                   "NonbondedForce"}
METHODS = {"NoCutoff": openmm.NonbondedForce.NoCutoff,
           "CutoffNonPeriodic": openmm.NonbondedForce.CutoffNonPeriodic,
           "PME": openmm.NonbondedForce.PME}


def nonbonded(system: openmm.System) -> openmm.NonbondedForce:
    """The one NonbondedForce (keep ``system`` alive while using it: SWIG does not)."""
    forces = [f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)]
    assert len(forces) == 1, f"expected one NonbondedForce, found {len(forces)}"
    return forces[0]


def make(pm: ParameterizedMolecule, method: str, **kw) -> openmm.System:
    box = BOX if method == "PME" else None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a neutral molecule must not warn
        system, _, _ = create_system(pm, method, box_vectors=box, **kw)
    return system


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_cutoff_switch_dispersion_defaults(paracetamol, method: str) -> None:
    system = make(paracetamol, method)
    nb = nonbonded(system)
    assert nb.getNonbondedMethod() == METHODS[method]
    if method == "NoCutoff":
        assert not nb.getUseDispersionCorrection()
        return
    assert nb.getCutoffDistance().value_in_unit(unit.nanometer) == pytest.approx(1.0, abs=1e-12)
    assert nb.getUseSwitchingFunction()
    assert nb.getSwitchingDistance().value_in_unit(unit.nanometer) == pytest.approx(0.9, abs=1e-12)
    if method == "PME":
        assert nb.getUseDispersionCorrection()
        assert nb.getEwaldErrorTolerance() == pytest.approx(5e-4)


def test_cutoff_and_switch_configurable(paracetamol) -> None:
    system = make(paracetamol, "PME", cutoff=1.2 * unit.nanometer,
                  switch_distance=8.0 * unit.angstrom, ewald_error_tolerance=1e-5)
    nb = nonbonded(system)
    assert nb.getCutoffDistance().value_in_unit(unit.nanometer) == pytest.approx(1.2)
    assert nb.getSwitchingDistance().value_in_unit(unit.nanometer) == pytest.approx(0.8)
    assert nb.getEwaldErrorTolerance() == pytest.approx(1e-5)
    system_off = make(paracetamol, "PME", switch_distance=None, dispersion_correction=False)
    off = nonbonded(system_off)
    assert not off.getUseSwitchingFunction()
    assert not off.getUseDispersionCorrection()


@pytest.mark.parametrize("switch", [1.0, 1.1])
def test_switch_not_below_cutoff_raises_quoting_both(paracetamol, switch: float) -> None:
    with pytest.raises(ValueError) as err:
        create_system(paracetamol, "CutoffNonPeriodic", cutoff=1.0, switch_distance=switch)
    assert str(switch) in str(err.value) and "1.0" in str(err.value)


def test_unknown_method_lists_known(paracetamol) -> None:
    with pytest.raises(ValueError, match="PME"):
        create_system(paracetamol, "PMEE")


def test_one_four_scaling_and_exclusions(paracetamol) -> None:
    """1-2 and 1-3 pairs excluded; 1-4 pairs: chargeProd qi qj / 1.2, epsilon sqrt(ei ej) / 2."""
    system = make(paracetamol, "NoCutoff")
    nb = nonbonded(system)
    mol = paracetamol.mol
    dist = Chem_distance_matrix(mol)
    exceptions = {}
    for k in range(nb.getNumExceptions()):
        i, j, qq, sig, eps = nb.getExceptionParameters(k)
        exceptions[frozenset((i, j))] = (qq.value_in_unit(unit.elementary_charge**2),
                                         sig.value_in_unit(unit.nanometer),
                                         eps.value_in_unit(unit.kilojoule_per_mole))
    n = mol.GetNumAtoms()
    pairs_by_distance = {d: {frozenset((i, j)) for i in range(n) for j in range(i + 1, n)
                             if dist[i, j] == d} for d in (1, 2, 3)}
    assert set(exceptions) == pairs_by_distance[1] | pairs_by_distance[2] | pairs_by_distance[3]
    for pair in pairs_by_distance[1] | pairs_by_distance[2]:
        qq, _, eps = exceptions[pair]
        assert qq == 0.0 and eps == 0.0, f"pair {sorted(pair)} is not excluded"
    checked = 0
    for pair in pairs_by_distance[3]:
        i, j = sorted(pair)
        qi, si, ei = (p._value for p in nb.getParticleParameters(i))
        qj, sj, ej = (p._value for p in nb.getParticleParameters(j))
        qq, sig, eps = exceptions[pair]
        assert qq == pytest.approx(qi * qj / 1.2, rel=1e-12, abs=1e-15)
        assert eps == pytest.approx(math.sqrt(ei * ej) / 2.0, rel=1e-12, abs=1e-15)
        assert sig == pytest.approx((si + sj) / 2.0, rel=1e-12)
        checked += abs(qq) > 1e-6 and eps > 0
    assert checked > 5


def Chem_distance_matrix(mol) -> np.ndarray:  # noqa: N802 (RDKit's name)
    from rdkit import Chem

    return Chem.GetDistanceMatrix(mol)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_force_present_in_its_own_group(paracetamol, method: str) -> None:
    """Guards silent drops: each expected Force exactly once, in its FORCE_GROUPS group."""
    system = make(paracetamol, method)
    names = [type(f).__name__ for f in system.getForces()]
    assert EXPECTED_FORCES <= set(names), f"missing {EXPECTED_FORCES - set(names)}"
    for name in EXPECTED_FORCES:
        assert names.count(name) == 1
    groups = {type(f).__name__: f.getForceGroup() for f in system.getForces()}
    for name in EXPECTED_FORCES:
        assert groups[name] == FORCE_GROUPS[name]
    assert len({groups[n] for n in EXPECTED_FORCES}) == len(EXPECTED_FORCES)
    counts = {type(f).__name__: f for f in system.getForces()}
    n = paracetamol.mol.GetNumAtoms()
    assert system.getNumParticles() == n
    assert counts["HarmonicBondForce"].getNumBonds() == paracetamol.mol.GetNumBonds()
    assert counts["HarmonicAngleForce"].getNumAngles() > 0
    assert counts["PeriodicTorsionForce"].getNumTorsions() > 0


def test_group_energies_sum_to_total(paracetamol) -> None:
    system, _, pos = create_system(paracetamol, "CutoffNonPeriodic")
    e = energy_components(system, pos)
    parts = sum(v for k, v in e.items() if k != "total")
    assert parts == pytest.approx(e["total"], rel=1e-10, abs=1e-8)


def test_net_charged_pme_warns_with_the_charge() -> None:
    acetate = parameterized("CC(=O)[O-]")
    with pytest.warns(UserWarning, match=r"net charge of -1\.0000 e"):
        create_system(acetate, "PME", box_vectors=BOX)


def test_serialization_round_trip_same_energy(paracetamol) -> None:
    system, _, pos = create_system(paracetamol, "PME", box_vectors=BOX)
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    e1 = energy_components(system, pos, box_vectors=BOX)
    e2 = energy_components(copy, pos, box_vectors=BOX)
    assert e1 == e2  # same parameters, same platform, same order: bitwise equal
    assert {f.getForceGroup() for f in copy.getForces()} == \
        {f.getForceGroup() for f in system.getForces()}


def test_build_system_from_plain_forcefield_topology(paracetamol) -> None:
    """build_system on a Topology keeps the options (the route users of ForceField take)."""
    from hybridff.mm.system import make_forcefield, molecules_topology

    top, _ = molecules_topology([paracetamol])
    top.setPeriodicBoxVectors(BOX)
    system = build_system(make_forcefield([paracetamol]), top, app.PME, 0.9 * unit.nanometer,
                          0.75 * unit.nanometer)
    nb = nonbonded(system)
    assert nb.getCutoffDistance().value_in_unit(unit.nanometer) == pytest.approx(0.9)
    assert nb.getSwitchingDistance().value_in_unit(unit.nanometer) == pytest.approx(0.75)
    assert nb.getUseDispersionCorrection()
