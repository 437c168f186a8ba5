"""The QM harmonic IR reference (hybridff.md.harmonic): normal modes and intensities against
analytic results and ASE's Vibrations/Infrared on the same QM, projected translations and
rotations, a symmetry-silent mode, band positions found in a trajectory, hybridff spectrum
--qm-reference and hybridff simulate --constraints."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hybridff import units
from hybridff.elements import atomic_masses
from hybridff.labels.qm.base import QMEngine, QMResult
from hybridff.md.harmonic import (
    HarmonicModes,
    band_positions,
    external_basis,
    harmonic_modes,
    mode_label,
    normal_modes,
)

WATER = (np.array([8, 1, 1]), np.array([[0.0, 0.0, 0.0119], [0.0, 0.0761, -0.0477],
                                        [0.0, -0.0761, -0.0477]]))
CO2 = (np.array([6, 8, 8]), np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.117], [0.0, 0.0, -0.117]]))


class SpringEngine(QMEngine):
    """A diatomic with a harmonic bond (k kJ/mol/nm^2, r0 nm) and fixed charges +q, -q."""

    name = "spring"

    def __init__(self, k: float, r0: float, q: float) -> None:
        self.k, self.r0, self.q = k, r0, q

    def compute(self, numbers, positions_nm, charge=0, multiplicity=1) -> QMResult:
        x = np.asarray(positions_nm, dtype=np.float64)
        bond = x[0] - x[1]
        r = np.linalg.norm(bond)
        f0 = -self.k * (r - self.r0) * bond / r
        masses = atomic_masses(numbers)
        com = masses @ x / masses.sum()
        dipole = self.q * (x[0] - com) - self.q * (x[1] - com)
        return QMResult(0.5 * self.k * (r - self.r0) ** 2, np.array([f0, -f0]), dipole)

    def describe(self) -> dict:
        return {"method": "spring", "level": "spring"}


def test_ir_intensity_unit() -> None:
    # N_A pi / (3 c^2) in km/mol per (e^2/Da): 974.88; per (D/Angstrom)^2/amu: 42.2561
    assert units.IR_INTENSITY_E2_PER_DA_TO_KM_PER_MOL == pytest.approx(974.88, rel=1e-4)
    e_angstrom_in_debye = units.E_ANGSTROM_TO_E_NM * units.E_NM_TO_DEBYE
    assert units.IR_INTENSITY_E2_PER_DA_TO_KM_PER_MOL / e_angstrom_in_debye**2 == \
        pytest.approx(42.2561, rel=1e-4)


def test_a_diatomic_spring_gives_its_analytic_frequency_and_intensity() -> None:
    numbers = np.array([1, 17])  # H-Cl masses
    engine = SpringEngine(k=3.107e5, r0=0.1275, q=0.2)  # HCl: 516 N/m
    start = np.array([[0.0, 0.0, 0.0], [0.01, 0.02, 0.13]])
    modes = harmonic_modes(engine, numbers, start)
    masses = atomic_masses(numbers)
    mu = masses[0] * masses[1] / masses.sum()
    expected = np.sqrt(engine.k / mu) * units.RAD_PER_PS_TO_WAVENUMBER
    assert len(modes.wavenumbers) == 1  # 3N - 5 for a linear molecule
    assert modes.wavenumbers[0] == pytest.approx(expected, rel=1e-5)
    assert modes.wavenumbers[0] == pytest.approx(2990.0, abs=15.0)  # HCl: 2991 cm^-1
    # |d mu / d Q| = q / sqrt(mu)
    assert modes.intensities[0] == pytest.approx(
        units.IR_INTENSITY_E2_PER_DA_TO_KM_PER_MOL * engine.q**2 / mu, rel=1e-5)
    # before projection the translations are 0 and the rotations nearly: a finite rotation by
    # the step h stretches the bond by h^2 / (2 r0), which gives them k h^2 / (2 r0^2), about
    # 8 cm^-1 at the default step; it shrinks with the step
    assert len(modes.external) == 5
    assert np.sort(np.abs(modes.external))[:3].max() < 1e-3
    assert np.abs(modes.external).max() < 10.0
    fine = harmonic_modes(engine, numbers, modes.positions, optimize=False, step_nm=1e-4)
    assert np.abs(fine.external).max() < 2.0
    assert fine.wavenumbers[0] == pytest.approx(expected, rel=1e-5)
    assert np.linalg.norm(modes.positions[0] - modes.positions[1]) == pytest.approx(
        engine.r0, abs=1e-5)


def test_external_basis_of_linear_and_bent_molecules() -> None:
    for (numbers, x), rank in ((CO2, 5), (WATER, 6)):
        basis = external_basis(atomic_masses(numbers), x)
        assert basis.shape == (9, rank)
        assert np.allclose(basis.T @ basis, np.eye(rank), atol=1e-12)


def test_projected_hessian_has_no_external_modes() -> None:
    # a random symmetric "Hessian" of water: the projection leaves 3N - 6 modes orthogonal to
    # the translations and rotations, whatever the Hessian holds in the external space
    numbers, x = WATER
    rng = np.random.default_rng(1)
    a = rng.normal(size=(9, 9))
    modes_out = normal_modes(a @ a.T * 1e4, numbers, x)
    wavenumbers, _, modes, external = modes_out
    assert len(wavenumbers) == 3 and len(external) == 6
    basis = external_basis(atomic_masses(numbers), x)
    assert np.abs(modes.reshape(3, -1) @ basis).max() < 1e-10


@pytest.fixture(scope="module")
def xtb_modes() -> dict[str, HarmonicModes]:
    pytest.importorskip("tblite")
    from hybridff.labels.qm import get_engine

    engine = get_engine("xtb")
    return {name: harmonic_modes(engine, *mol) for name, mol in (("water", WATER),
                                                                  ("co2", CO2))}


def _ase_infrared(modes: HarmonicModes, tmp_path) -> tuple[np.ndarray, np.ndarray]:
    ase = pytest.importorskip("ase")
    from ase.vibrations import Infrared
    from tblite.ase import TBLite

    atoms = ase.Atoms(numbers=modes.numbers, positions=modes.positions * units.NM_TO_ANGSTROM)
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    ir = Infrared(atoms, name=str(tmp_path / "ir"), delta=0.005, nfree=2)
    ir.run()
    n_ext = 9 - len(modes.wavenumbers)
    # ASE's intensities are in (D/Angstrom)^2 / amu
    e_angstrom_in_debye = units.E_ANGSTROM_TO_E_NM * units.E_NM_TO_DEBYE
    km = units.IR_INTENSITY_E2_PER_DA_TO_KM_PER_MOL / e_angstrom_in_debye**2
    return np.real(ir.get_frequencies())[n_ext:], ir.intensities[n_ext:] * km


def test_xtb_water_and_co2_agree_with_ase_vibrations(xtb_modes, tmp_path) -> None:
    for name, modes in xtb_modes.items():
        frequencies, intensities = _ase_infrared(modes, tmp_path / name)
        assert np.abs(modes.wavenumbers - frequencies).max() < 2.0, name
        assert np.allclose(modes.intensities, intensities, rtol=0.02, atol=0.05), name
        # at the optimized geometry the translations and rotations are near 0 before
        # projection (numerical noise of the finite differences)
        assert np.abs(modes.external).max() < 40.0, name
    water = xtb_modes["water"].wavenumbers
    assert 1400 < water[0] < 1700 and 3500 < water[1] < water[2] < 3800


def test_co2_symmetric_stretch_is_ir_silent(xtb_modes) -> None:
    co2 = xtb_modes["co2"]
    assert len(co2.wavenumbers) == 4  # linear: 3N - 5
    bend1, bend2, symmetric, asymmetric = co2.wavenumbers
    assert bend1 == pytest.approx(bend2, abs=0.5)  # degenerate bends
    assert co2.intensities[2] < 1e-4 * co2.intensities[3]
    assert co2.intensities[3] > 100.0  # km/mol: CO2's asymmetric stretch is strong
    orders = {(0, 1): 2.0, (0, 2): 2.0}
    assert mode_label(co2, 3, orders) == "C=O stretch"
    assert mode_label(co2, 0, orders) == "C=O bend"
    # the broadened spectrum peaks at the asymmetric stretch with the width asked for
    spectrum = co2.spectrum(fwhm=20.0)
    top = spectrum.wavenumber[np.argmax(spectrum.intensity)]
    assert abs(top - asymmetric) <= 1.0
    above = spectrum.wavenumber[spectrum.intensity >= 0.5 * spectrum.intensity.max()]
    assert above.max() - above.min() == pytest.approx(20.0, abs=2.0)


def test_band_positions_are_found_in_a_rotating_trajectory(xtb_modes) -> None:
    from scipy.spatial.transform import Rotation

    water = xtb_modes["water"]
    masses = atomic_masses(water.numbers)
    shifted = water.wavenumbers * np.array([0.95, 0.97, 1.02])
    t_ps = np.arange(6000) * 1e-3
    rng = np.random.default_rng(3)
    x = np.repeat(water.positions[None], len(t_ps), axis=0)
    for k, nu in enumerate(shifted):
        omega = nu / units.RAD_PER_PS_TO_WAVENUMBER
        amplitude = 0.02 * np.cos(omega * t_ps + rng.uniform(0, 2 * np.pi))  # nm sqrt(Da)
        x = x + amplitude[:, None, None] * (water.modes[k] / np.sqrt(masses)[:, None])
    # tumbling and drifting: each frame rotated and moved
    rotations = Rotation.from_rotvec(np.outer(t_ps, [2.0, -1.0, 0.5])).as_matrix()
    x = np.einsum("tij,tnj->tni", rotations, x) + np.outer(t_ps, [0.1, 0.0, 0.0])[:, None, :]
    found = band_positions(water, x, 1.0, [0, 1, 2])
    assert np.abs(np.array(found) - shifted).max() < 10.0


def test_spectrum_qm_reference_and_simulate_constraints_from_the_command_line(
        tmp_path, capsys) -> None:
    pytest.importorskip("mdtraj")
    pytest.importorskip("tblite")
    from hybridff.cli import main
    from hybridff.md.spectrum import run_dipoles

    run = tmp_path / "run"
    assert main(["simulate", "CCO", "-o", str(run), "--solvent", "none", "--constraints",
                 "none", "--timestep-fs", "0.5", "--steps", "4000", "--report-ps", "0.002",
                 "--equilibration-ps", "0.2", "--friction", "0.1", "--charges", "gasteiger",
                 "--threads", "1", "--no-progress"]) == 0
    summary = json.loads((run / "run.json").read_text())
    assert summary["system"]["constraints"] == "none"
    assert run_dipoles(run).constraints == 0
    capsys.readouterr()
    out = tmp_path / "ir"
    assert main(["spectrum", str(run), "-o", str(out), "--qm-reference", "CCO",
                 "--bands", "4"]) == 0
    printed = capsys.readouterr().out
    assert "QM harmonic reference (GFN2-xTB): 21 modes, 54 QM calls" in printed
    assert "RMSE vs QM" in printed
    table = json.loads((out / "bands.json").read_text())
    labels = [row["label"] for row in table["bands"]]
    assert "O-H stretch" in labels  # always in the table, however weak
    oh = table["bands"][labels.index("O-H stretch")]
    assert 3400 < oh["qm_cm-1"] < 3900 and 3300 < oh["run"] < 4000
    assert set(table["rmse_vs_qm_cm-1"]) == {"run"}
    rows = (out / "bands.csv").read_text().splitlines()
    assert rows[0] == "label,qm_cm-1,qm_intensity_km_per_mol,run_cm-1"
    assert rows[-1].startswith('"RMSE vs QM"') and len(rows) == 2 + len(labels)
    header = (out / "ir.csv").read_text().splitlines()[0]
    assert header == "wavenumber_cm-1,run_intensity,QM harmonic (GFN2-xTB)_intensity"
    record = json.loads((out / "ir.json").read_text())
    assert len(record["harmonic_reference"]["QM harmonic (GFN2-xTB), sticks"]) == 21
    # the second time the cached reference is used
    assert main(["spectrum", str(run), "-o", str(out), "--qm-reference", "CCO"]) == 0
    assert "21 modes (cached)" in capsys.readouterr().out
    # another molecule than the run's is refused, naming the option
    assert main(["spectrum", str(run), "-o", str(tmp_path / "ir2"), "--qm-reference",
                 "CCN"]) == 2
    assert "--qm-reference" in capsys.readouterr().err
    # resume keeps the run's constraints
    assert main(["simulate", "-o", str(run), "--resume", "--steps", "10", "--constraints",
                 "hbonds", "--no-progress"]) == 2
    assert "--constraints hbonds (the run's: none)" in capsys.readouterr().err
