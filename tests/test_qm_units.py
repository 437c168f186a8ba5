"""QM drivers: units converted at the driver, checked against tblite's raw output and ase.units."""

from __future__ import annotations

import numpy as np
import pytest

from hybridff import units
from hybridff.exceptions import UnknownNameError
from hybridff.qm import ENGINES, get_engine

ase_units = pytest.importorskip("ase.units")

WATER_Z = np.array([8, 1, 1])
WATER_NM = np.array([[0.0, 0.0, 0.0], [0.0957, 0.0, 0.0], [-0.0240, 0.0927, 0.0]])


def test_constants_against_ase() -> None:
    kj_mol = ase_units.kJ / ase_units.mol  # in eV
    assert units.HARTREE_TO_KJ_PER_MOL == pytest.approx(ase_units.Hartree / kj_mol, rel=1e-8)
    assert units.BOHR_TO_NM == pytest.approx(ase_units.Bohr / 10.0, rel=1e-8)
    assert units.EV_TO_KJ_PER_MOL == pytest.approx(1.0 / kj_mol, rel=1e-8)
    assert units.EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM == pytest.approx(10.0 / kj_mol, rel=1e-8)
    assert units.HARTREE_PER_BOHR_TO_KJ_PER_MOL_NM == pytest.approx(
        (ase_units.Hartree / ase_units.Bohr) * 10.0 / kj_mol, rel=1e-8
    )
    kcal_mol = ase_units.kcal / ase_units.mol
    assert units.KJ_PER_MOL_NM_TO_KCAL_PER_MOL_ANGSTROM == pytest.approx(
        kj_mol / kcal_mol / 10.0, rel=1e-8
    )


def test_xtb_driver_units_against_raw_tblite() -> None:
    interface = pytest.importorskip("tblite.interface")
    calc = interface.Calculator("GFN2-xTB", WATER_Z, WATER_NM / units.BOHR_TO_NM)
    calc.set("verbosity", 0)
    raw = calc.singlepoint()
    e_hartree = raw.get("energy")
    grad = raw.get("gradient")
    result = get_engine("xtb").compute(WATER_Z, WATER_NM)
    assert result.energy == pytest.approx(e_hartree * ase_units.Hartree / (ase_units.kJ / ase_units.mol), rel=1e-9)
    expected = -grad * (ase_units.Hartree / ase_units.Bohr) * 10.0 / (ase_units.kJ / ase_units.mol)
    np.testing.assert_allclose(result.forces, expected, rtol=1e-8, atol=1e-8)
    assert np.abs(result.forces.sum(axis=0)).max() < 1e-6  # no net force in vacuum


def test_xtb_forces_are_minus_energy_gradient_in_nm() -> None:
    pytest.importorskip("tblite.interface")
    engine = get_engine("xtb")
    forces = engine.compute(WATER_Z, WATER_NM).forces
    h = 1e-5  # nm
    for i, k in ((0, 0), (1, 1), (2, 0)):
        plus, minus = WATER_NM.copy(), WATER_NM.copy()
        plus[i, k] += h
        minus[i, k] -= h
        numeric = -(engine.compute(WATER_Z, plus).energy - engine.compute(WATER_Z, minus).energy) / (2 * h)
        assert forces[i, k] == pytest.approx(numeric, rel=1e-4, abs=1e-2)


def test_dft_driver_units_against_raw_pyscf() -> None:
    pytest.importorskip("pyscf")
    engine = get_engine("dft", xc="lda", basis="sto-3g", warm_start=False)
    e_h, grad = engine.raw(WATER_Z, WATER_NM / units.BOHR_TO_NM)
    result = engine.compute(WATER_Z, WATER_NM)
    assert result.energy == pytest.approx(e_h * ase_units.Hartree / (ase_units.kJ / ase_units.mol), rel=1e-9)
    np.testing.assert_allclose(
        result.forces, -grad * (ase_units.Hartree / ase_units.Bohr) * 10.0 / (ase_units.kJ / ase_units.mol),
        rtol=1e-7, atol=1e-6,
    )


def test_unknown_engine_lists_known() -> None:
    with pytest.raises(UnknownNameError, match="known methods: dft, xtb"):
        get_engine("mp2")
    assert set(ENGINES) == {"xtb", "dft"}


def test_dft_warm_start_gives_the_cold_start_result() -> None:
    """Starting the SCF from the previous conformation's density changes nothing converged."""
    pytest.importorskip("pyscf")
    moved = WATER_NM.copy()
    moved[1] += np.array([0.004, -0.003, 0.002])
    warm = get_engine("dft", xc="lda", basis="sto-3g", conv_tol=1e-11)
    warm.compute(WATER_Z, WATER_NM)
    assert warm._last_density is not None
    e_warm, g_warm = warm.raw(WATER_Z, moved / units.BOHR_TO_NM)
    cold = get_engine("dft", xc="lda", basis="sto-3g", conv_tol=1e-11, warm_start=False)
    e_cold, g_cold = cold.raw(WATER_Z, moved / units.BOHR_TO_NM)
    assert cold._last_density is None
    assert e_warm == pytest.approx(e_cold, abs=1e-9)
    np.testing.assert_allclose(g_warm, g_cold, atol=1e-6)
    # a different molecule (other elements) never reuses the stored density
    e_ion, _ = warm.raw(WATER_Z[:2], WATER_NM[:2] / units.BOHR_TO_NM, multiplicity=2)
    assert np.isfinite(e_ion)
