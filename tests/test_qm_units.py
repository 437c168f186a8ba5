"""QM drivers: units converted at the driver, checked against tblite's raw output and ase.units."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hybridff import units
from hybridff.exceptions import UnknownNameError
from hybridff.labels.qm import ENGINES, get_engine

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


# ------------------------------------------------------------- label files in the wrong unit

EXAMPLE_DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
PARACETAMOL = EXAMPLE_DATA / "paracetamol.sdf"


@pytest.fixture(scope="module")
def paracetamol_labels():
    """GAFF2 MM of paracetamol and the first 20 frames of its shipped GFN2-xTB test labels."""
    from hybridff.io.frames import read_extxyz
    from hybridff.training.residuals import build_mm

    mm = build_mm(PARACETAMOL, charge_method="gasteiger")
    frames = read_extxyz(EXAMPLE_DATA / "paracetamol_gfn2xtb_test.xyz", mm.numbers, bonds=mm.bonds)
    return mm, frames.subset(range(20))


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLE_DATA.glob("*.xyz")))
def test_shipped_xtb_and_dft_labels_pass_the_unit_check(name) -> None:
    from hybridff.io.frames import read_extxyz
    from hybridff.training.label_units import check_label_units
    from hybridff.training.residuals import build_mm

    mm = build_mm(PARACETAMOL, charge_method="gasteiger")
    frames = read_extxyz(EXAMPLE_DATA / name, mm.numbers, bonds=mm.bonds)
    scale = check_label_units(mm.system, frames, name)  # passes: no error raised
    assert scale.n_frames == 20
    if "displaced" in name:
        # normal-mode displaced frames stretch bonds far: GAFF2's stiff harmonic bonds give MM
        # forces 1.7x QM's there (measured: force ratio 0.60, cosine 0.75, energy spread ratio
        # 0.44), all far from any unit factor (Hartree 0.02-0.04, kcal/mol 23, kJ/mol 97-950)
        assert 0.5 < scale.force_rms_ratio < 1.25 and scale.force_cosine > 0.6
        assert 0.3 < scale.energy_std_ratio < 2.0
    else:
        assert 0.8 < scale.force_rms_ratio < 1.25 and scale.force_cosine > 0.8
        assert 0.5 < scale.energy_std_ratio < 2.0


@pytest.mark.parametrize("energy_unit, force_unit, factors", [
    ("Hartree", "Hartree/Bohr", ("27.2114", "51.4221")),
    ("kcal/mol", "kcal/mol/Angstrom", ("0.0433641", "0.0433641")),
    ("kJ/mol", "kJ/mol/nm", ("0.0103643", "0.00103643")),
])
def test_labels_in_another_unit_are_refused_naming_it(energy_unit, force_unit, factors,
                                                       paracetamol_labels) -> None:
    from dataclasses import replace

    from hybridff.exceptions import DataFormatError
    from hybridff.training.label_units import (
        ENERGY_UNITS_IN_EV,
        FORCE_UNITS_IN_EV_PER_ANGSTROM,
        check_label_units,
    )

    mm, frames = paracetamol_labels
    # the numbers a file in these units holds, read as eV and eV/Angstrom
    wrong = replace(frames, energies=frames.energies / ENERGY_UNITS_IN_EV[energy_unit],
                    forces=frames.forces / FORCE_UNITS_IN_EV_PER_ANGSTROM[force_unit])
    with pytest.raises(DataFormatError) as err:
        check_label_units(mm.system, wrong, "labels.xyz")
    text = str(err.value)
    assert text.startswith("labels.xyz: the RMS of the QM forces is ")
    assert (f"they look like {force_unit} where eV/Angstrom is expected; multiply the forces by "
            f"{factors[1]} (1 {force_unit} in eV/Angstrom)") in text
    assert "the spread (standard deviation) of the QM energies is" in text
    assert (f"they look like {energy_unit} where eV is expected; multiply the energies by "
            f"{factors[0]} (1 {energy_unit} in eV)") in text
    assert text.endswith("and write the file again (label files are read in eV and "
                         "eV/Angstrom, ASE's units)")
    # energies alone in the wrong unit are caught too
    energies_only = replace(frames, energies=frames.energies / ENERGY_UNITS_IN_EV[energy_unit])
    with pytest.raises(DataFormatError, match=rf"QM energies .* look like {energy_unit} where eV"):
        check_label_units(mm.system, energies_only, "labels.xyz")


def test_gradients_given_as_forces_are_refused(paracetamol_labels) -> None:
    from dataclasses import replace

    from hybridff.exceptions import DataFormatError
    from hybridff.training.label_units import check_label_units

    mm, frames = paracetamol_labels
    with pytest.raises(DataFormatError,
                       match=r"labels\.xyz: the QM forces point against the MM forces \(cosine "
                             r"-0\.\d+ over the first 20 frame\(s\); .*energy gradients, not forces; "
                             r"negate them"):
        check_label_units(mm.system, replace(frames, forces=-frames.forces), "labels.xyz")


def test_a_factor_no_unit_explains_only_warns(paracetamol_labels, caplog) -> None:
    from dataclasses import replace

    from hybridff.training.label_units import check_label_units

    mm, frames = paracetamol_labels
    scale = check_label_units(mm.system, replace(frames, forces=frames.forces * 8.0), "odd.xyz")
    assert scale.force_rms_ratio == pytest.approx(8.0 * check_label_units(
        mm.system, frames, "odd.xyz").force_rms_ratio)
    assert "odd.xyz: the RMS of the QM forces is" in caplog.text
    assert "a factor that matches no common unit" in caplog.text


def test_train_refuses_hartree_labels_before_training(paracetamol_labels, tmp_path, capsys) -> None:
    pytest.importorskip("torch")
    from hybridff.cli import main
    from hybridff.io.frames import write_extxyz
    from hybridff.training.label_units import ENERGY_UNITS_IN_EV, FORCE_UNITS_IN_EV_PER_ANGSTROM

    mm, frames = paracetamol_labels
    data, model = tmp_path / "hartree.xyz", tmp_path / "m.pt"
    write_extxyz(data, frames.numbers, frames.positions,
                 frames.energies / ENERGY_UNITS_IN_EV["Hartree"],
                 frames.forces / FORCE_UNITS_IN_EV_PER_ANGSTROM["Hartree/Bohr"], append=False)
    code = main(["train", str(PARACETAMOL), str(data), "-o", str(model), "--epochs", "1",
                 "--charges", "gasteiger", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"hybridff train: error: {data}: the RMS of the QM forces is" in err
    assert "they look like Hartree/Bohr where eV/Angstrom is expected" in err
    assert not model.exists()
