"""Every unit conversion in hybridff.units, checked against independent sources (ASE, OpenMM)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from openmm import Vec3, unit

from hybridff import units

ase_units = pytest.importorskip("ase.units")


def test_energy_conversions_against_ase():
    # ASE's units are in eV and Angstrom; kJ/mol = 1 / ase.kJ * mol
    kj_per_mol_in_ev = ase_units.kJ / ase_units.mol
    assert units.EV_TO_KJ_PER_MOL == pytest.approx(1.0 / kj_per_mol_in_ev, rel=1e-6)
    assert units.HARTREE_TO_KJ_PER_MOL == pytest.approx(ase_units.Hartree / kj_per_mol_in_ev, rel=1e-6)
    assert units.KCAL_TO_KJ == pytest.approx((ase_units.kcal / ase_units.mol) / kj_per_mol_in_ev, rel=1e-9)


def test_length_and_force_conversions_against_ase():
    assert units.BOHR_TO_ANGSTROM == pytest.approx(ase_units.Bohr, rel=1e-6)
    assert units.BOHR_TO_NM == pytest.approx(ase_units.Bohr / 10, rel=1e-6)
    kj_per_mol_in_ev = ase_units.kJ / ase_units.mol
    # 1 eV/A in kJ/mol/nm
    assert units.EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM == pytest.approx(10.0 / kj_per_mol_in_ev, rel=1e-6)
    assert units.HARTREE_PER_BOHR_TO_KJ_PER_MOL_NM == pytest.approx(
        ase_units.Hartree / ase_units.Bohr * 10.0 / kj_per_mol_in_ev, rel=1e-6)
    assert units.KJ_PER_MOL_NM_TO_KCAL_PER_MOL_ANGSTROM == pytest.approx(1 / 41.84, rel=1e-12)


def test_conversions_against_openmm_units():
    e = (1.0 * unit.hartree * unit.AVOGADRO_CONSTANT_NA).value_in_unit(unit.kilojoule_per_mole)
    assert units.HARTREE_TO_KJ_PER_MOL == pytest.approx(e, rel=1e-6)
    assert units.BOHR_TO_NM == pytest.approx((1.0 * unit.bohr).value_in_unit(unit.nanometer), rel=1e-6)
    # (openmm.unit's debye is defined with older constants, 1.6e-4 off: ASE's is CODATA)
    assert units.DEBYE_TO_E_NM == pytest.approx(ase_units.Debye / 10, rel=1e-6)


def test_amber_parameter_conversions():
    # Amber E = k (r - r0)^2 in kcal/mol/A^2; OpenMM E = k'/2 (r - r0)^2 in kJ/mol/nm^2
    k_amber, dr_a = 300.0, 0.05
    e_amber_kj = k_amber * dr_a**2 * 4.184
    k_omm = units.amber_bond_k_to_openmm(k_amber)
    assert 0.5 * k_omm * (dr_a / 10) ** 2 == pytest.approx(e_amber_kj, rel=1e-12)
    k_angle, dtheta = 50.0, 0.1
    assert 0.5 * units.amber_angle_k_to_openmm(k_angle) * dtheta**2 == pytest.approx(
        k_angle * dtheta**2 * 4.184, rel=1e-12)
    # R* = rmin/2: the LJ minimum of 4 eps ((s/r)^12 - (s/r)^6) is at r = 2^(1/6) sigma = 2 R*
    rstar = 1.9069
    sigma = units.rmin_half_to_sigma_nm(rstar)
    assert 2 ** (1 / 6) * sigma == pytest.approx(2 * rstar / 10, rel=1e-12)


def test_strip_positions_and_lengths():
    pos = [Vec3(1, 2, 3), Vec3(4, 5, 6)] * unit.angstrom
    arr = units.strip_positions(pos)
    np.testing.assert_allclose(arr, [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    assert units.length_in_nm(9 * unit.angstrom) == pytest.approx(0.9)
    assert units.length_in_nm(0.9) == pytest.approx(0.9)
    assert math.isclose(units.NM_TO_ANGSTROM * units.ANGSTROM_TO_NM, 1.0)
