"""Geometry-dependent charges q(X) and the dipole surface: symmetry, exact totals, recovery of
known charges, QM dipoles in label files, model files, train/evaluate from the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hybridff import units  # noqa: E402
from hybridff.elements import atomic_masses, centre_of_mass  # noqa: E402
from hybridff.ml.descriptors import DescriptorSpec  # noqa: E402
from hybridff.ml.dipole import (  # noqa: E402
    ChargeEquilibrationModel,
    fixed_charge_dipoles,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")

#: ethanol, a conformer from RDKit (nm): C C O H H H H H H
ETHANOL_Z = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1])


def _ethanol() -> np.ndarray:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(mol, randomSeed=7)
    assert [a.GetAtomicNum() for a in mol.GetAtoms()] == ETHANOL_Z.tolist()
    return mol.GetConformer().GetPositions() * units.ANGSTROM_TO_NM


def _random_model(seed: int = 0) -> tuple[ChargeEquilibrationModel, torch.Tensor]:
    """A model with random (not zero) weights: every atom's chi and J depend on geometry."""
    elements = (1, 6, 8)
    torch.manual_seed(seed)
    model = ChargeEquilibrationModel(DescriptorSpec(elements=elements, cutoff=0.5))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    species = torch.tensor([elements.index(int(z)) for z in ETHANOL_Z])
    return model, species


def _frames(n: int, seed: int = 0, amplitude: float = 0.01) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return _ethanol()[None] + rng.normal(scale=amplitude, size=(n, len(ETHANOL_Z), 3))


def _rotation(seed: int) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.random(random_state=seed).as_matrix()


def _dipoles(model, species, x: np.ndarray, total: float = 0.0) -> np.ndarray:
    masses = torch.as_tensor(atomic_masses(ETHANOL_Z))
    with torch.no_grad():
        return model.dipoles(torch.as_tensor(x), species, total, masses).numpy()


# ------------------------------------------------------------------------------ symmetry


@pytest.mark.parametrize("total", [0.0, 1.0, -1.0])
def test_rotating_and_translating_a_frame_rotates_the_dipole(total) -> None:
    model, species = _random_model()
    x = _frames(3, seed=1)
    with torch.no_grad():
        q = model(torch.as_tensor(x), species, total).numpy()
    rot = _rotation(3)
    moved = x @ rot.T + np.array([0.7, -1.3, 2.1])
    with torch.no_grad():
        q_moved = model(torch.as_tensor(moved), species, total).numpy()
    np.testing.assert_allclose(q_moved, q, atol=1e-12)
    assert np.abs(q).max() > 0.01  # not trivially zero charges
    # the dipole about the centre of mass rotates with the frame, whatever the total charge
    np.testing.assert_allclose(_dipoles(model, species, moved, total),
                               _dipoles(model, species, x, total) @ rot.T, atol=1e-12)


def test_permuting_same_element_atoms_changes_nothing() -> None:
    model, species = _random_model(seed=4)
    x = _frames(2, seed=5)
    perm = np.arange(len(ETHANOL_Z))
    perm[[3, 5, 8]] = [8, 3, 5]  # three hydrogens, one on O
    perm[[0, 1]] = [1, 0]  # the two carbons
    assert (ETHANOL_Z[perm] == ETHANOL_Z).all()
    with torch.no_grad():
        q = model(torch.as_tensor(x), species, 0.0).numpy()
        q_perm = model(torch.as_tensor(x[:, perm]), species, 0.0).numpy()
    np.testing.assert_allclose(q_perm, q[:, perm], atol=1e-12)
    np.testing.assert_allclose(_dipoles(model, species, x[:, perm]), _dipoles(model, species, x),
                               atol=1e-12)


@pytest.mark.parametrize("total", [0, 1, -1, 2])
def test_totals_are_exact_for_neutral_cationic_and_anionic_molecules(total) -> None:
    model, species = _random_model(seed=2)
    x = _frames(50, seed=6, amplitude=0.02)
    with torch.no_grad():
        q = model(torch.as_tensor(x), species, float(total)).numpy()
    assert np.abs(q.sum(axis=1) - total).max() < 1e-12
    # a charged molecule's dipole about its centre of mass ignores where the molecule is
    np.testing.assert_allclose(_dipoles(model, species, x + 5.0, total),
                               _dipoles(model, species, x, total), atol=1e-11)


def test_a_neutral_molecules_dipole_does_not_depend_on_the_origin() -> None:
    q = np.array([-0.2, 0.1, -0.6, 0.1, 0.1, 0.05, 0.05, 0.0, 0.4])
    assert abs(q.sum()) < 1e-12
    x = _frames(2, seed=9)
    about_origin = np.einsum("i,fij->fj", q, x)
    np.testing.assert_allclose(fixed_charge_dipoles(q, ETHANOL_Z, x), about_origin, atol=1e-14)


# ------------------------------------------------------------------------------ training


def test_known_fixed_charges_are_recovered_from_their_dipoles() -> None:
    """Water: one free charge (the total fixes O, symmetry the two H): fully identifiable."""
    from hybridff.training.dipoles import DipoleConfig, train_dipole_model

    z = np.array([8, 1, 1])
    truth = np.array([-0.82, 0.41, 0.41])
    rng = np.random.default_rng(1)
    angle = np.radians(rng.uniform(95, 115, 80))
    r1, r2 = rng.uniform(0.092, 0.102, (2, 80))
    x = np.zeros((80, 3, 3))
    x[:, 1, 0] = r1
    x[:, 2, 0], x[:, 2, 1] = r2 * np.cos(angle), r2 * np.sin(angle)
    x = np.einsum("fij,fkj->fik", x, np.array([_rotation(k) for k in range(80)]))
    dipoles = fixed_charge_dipoles(truth, z, x)
    config = DipoleConfig(steps=300, patience=300, charge_weight=0.0, progress=False,
                          learning_rate=2e-2, hidden=(8,))
    result = train_dipole_model(z, x, dipoles, 0, np.zeros(3), config)
    assert result.metrics["validation"]["model"]["dipole_rmse_debye"] < 0.02
    species = torch.tensor([result.spec.elements.index(int(v)) for v in z])
    with torch.no_grad():
        q = result.model(torch.as_tensor(x), species, 0.0).numpy()
    np.testing.assert_allclose(q, np.broadcast_to(truth, q.shape), atol=0.01)


def test_the_dipole_surface_of_known_charges_is_recovered_on_new_conformers() -> None:
    """Ethanol: dipoles cannot fix every charge of a molecule (moving charge inside a rigid
    group can leave every dipole unchanged), but the dipole surface itself is learned."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from hybridff.training.dipoles import DipoleConfig, train_dipole_model

    truth = np.array([-0.18, 0.15, -0.65, 0.06, 0.06, 0.06, 0.04, 0.04, 0.42])
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    ids = AllChem.EmbedMultipleConfs(mol, numConfs=60, randomSeed=3)
    x = np.array([mol.GetConformer(i).GetPositions() @ _rotation(i).T for i in ids]) * 0.1
    dipoles = fixed_charge_dipoles(truth, ETHANOL_Z, x)
    config = DipoleConfig(steps=400, patience=400, charge_weight=0.0, progress=False,
                          learning_rate=1e-2, val_fraction=0.2)
    result = train_dipole_model(ETHANOL_Z, x, dipoles, 0, np.zeros(len(truth)), config)
    val = result.metrics["validation"]
    assert val["fixed_charges"]["dipole_rmse_debye"] > 1.0  # zero charges: the whole dipole
    assert val["model"]["dipole_rmse_debye"] < 0.15


def test_reference_dipoles_move_a_charged_molecules_origin_to_the_centre_of_mass() -> None:
    from hybridff.exceptions import DataFormatError
    from hybridff.io.frames import LabelledFrames
    from hybridff.training.dipoles import reference_dipoles

    x = _frames(2, seed=3)
    about_com = np.array([[0.01, 0.02, 0.03], [0.0, -0.01, 0.02]])
    com = centre_of_mass(ETHANOL_Z, x)
    frames = LabelledFrames(ETHANOL_Z, x, np.zeros(2), np.zeros_like(x),
                            info=[{"dipole_origin": "origin"}, {"dipole_origin": "centre_of_mass"}],
                            dipoles=np.array([about_com[0] + com[0], about_com[1]]))
    np.testing.assert_allclose(reference_dipoles(frames, 1, "f.xyz"), about_com, atol=1e-14)
    frames.info[1] = {}
    with pytest.raises(DataFormatError, match=r"f.xyz, frame 1: the molecule has charge \+1"):
        reference_dipoles(frames, 1, "f.xyz")
    frames.dipoles = None
    with pytest.raises(DataFormatError, match="no frame carries a dipole"):
        reference_dipoles(frames, 0, "f.xyz")


# ------------------------------------------------------------------------------ QM and files


def test_xtb_dipoles_are_about_the_centre_of_mass_and_survive_the_label_file(tmp_path) -> None:
    pytest.importorskip("tblite.interface")
    from hybridff.io.frames import read_extxyz, write_extxyz
    from hybridff.labels.qm import get_engine

    engine = get_engine("xtb")
    x = _ethanol()
    neutral = engine.compute(ETHANOL_Z, x)
    assert 1.0 < np.linalg.norm(neutral.dipole) * units.E_NM_TO_DEBYE < 2.5  # ethanol: ~1.7 D
    # protonated ethanol: the cation's dipole is the same wherever the molecule sits
    z = np.append(ETHANOL_Z, 1)
    o, h = x[2], x[8]
    cation = np.vstack([x, o + 0.097 * np.cross(h - o, x[1] - o) / np.linalg.norm(
        np.cross(h - o, x[1] - o))])
    a = engine.compute(z, cation, charge=1)
    b = engine.compute(z, cation @ _rotation(1).T + 3.0, charge=1)
    np.testing.assert_allclose(b.dipole, a.dipole @ _rotation(1).T, atol=1e-5)
    path = tmp_path / "d.xyz"
    write_extxyz(path, ETHANOL_Z, x[None], [neutral.energy], neutral.forces[None],
                 dipoles_e_nm=neutral.dipole[None])
    text = path.read_text()
    assert "dipole_origin=centre_of_mass" in text and 'dipole="' in text
    back = read_extxyz(path)
    np.testing.assert_allclose(back.dipoles[0], neutral.dipole, rtol=1e-7)
    # a file line in e*Angstrom
    written = [float(v) for v in text.split('dipole="')[1].split('"')[0].split()]
    np.testing.assert_allclose(written, neutral.dipole * 10.0, rtol=1e-7)


def test_model_files_round_trip_standalone_and_inside_a_correction(tmp_path) -> None:
    from hybridff.exceptions import DataFormatError
    from hybridff.ml.dipole import (
        EMBEDDED_NAME,
        dipole_archive,
        has_dipole_model,
        load_dipole_model,
        save_dipole_model,
    )
    from hybridff.ml.model import EnsembleModel
    from hybridff.ml.modelfile import build_metadata, load_model, save_model

    model, species = _random_model(seed=8)
    meta = {"elements": [1, 6, 8], "descriptor": {}, "total_charge": 0}
    x = _frames(4, seed=2)
    with torch.no_grad():
        expected = model(torch.as_tensor(x), species, 0.0).numpy()
    alone = save_dipole_model(tmp_path / "dip.pt", model, meta)
    loaded = load_dipole_model(alone)
    assert loaded.metadata["kind"] == "dipole"
    np.testing.assert_allclose(loaded.charges(ETHANOL_Z, x), expected, atol=1e-14)

    spec = DescriptorSpec(elements=(1, 6, 8))
    correction = EnsembleModel(spec)
    plain = save_model(tmp_path / "plain.pt", correction, build_metadata(correction, spec))
    assert not has_dipole_model(plain)
    with pytest.raises(DataFormatError, match="holds no dipole model; train one"):
        load_dipole_model(plain)
    both = save_model(tmp_path / "both.pt", correction, build_metadata(correction, spec),
                      extra_files={EMBEDDED_NAME: dipole_archive(model, meta)})
    assert has_dipole_model(both)
    assert load_model(both).metadata["ensemble_size"] == 1  # still a correction model file
    np.testing.assert_allclose(load_dipole_model(both).charges(ETHANOL_Z, x), expected,
                               atol=1e-14)
    np.testing.assert_allclose(load_dipole_model(both).dipoles(ETHANOL_Z, x),
                               _dipoles(model, species, x), atol=1e-14)
    with pytest.raises(DataFormatError, match=r"covers elements \[1, 6, 8\], not \[7\]"):
        loaded.charges(np.array([7, 1, 1, 1]), np.zeros((1, 4, 3)))


def test_train_dipoles_and_evaluate_from_the_command_line(tmp_path, capsys) -> None:
    pytest.importorskip("tblite.interface")
    pytest.importorskip("openmmtorch")
    from hybridff.cli import main
    from hybridff.ml.dipole import load_dipole_model
    from hybridff.ml.modelfile import load_model
    from hybridff.plots import write_dipole_parity
    from hybridff.training.workflow import evaluate, evaluate_frames

    data = tmp_path / "d.xyz"
    assert main(["label", "CCO", "--n", "12", "-o", str(data), "--seed", "4",
                 "--sampler", "md", "--no-progress"]) == 0
    assert "dipole=" in data.read_text()
    alone = tmp_path / "dip.pt"
    assert main(["train", "CCO", str(data), "-o", str(alone), "--dipoles-only",
                 "--dipole-steps", "60", "--no-progress"]) == 0
    assert "dipole RMSE" in capsys.readouterr().out
    assert load_dipole_model(alone).metadata["n_frames"] == 12
    model = tmp_path / "m.pt"
    assert main(["train", "CCO", str(data), "-o", str(model), "--epochs", "2", "--dipoles",
                 "--dipole-steps", "60", "--val-fraction", "0.25", "--no-refit",
                 "--no-progress"]) == 0
    meta = load_model(model).metadata
    dipole_meta = load_dipole_model(model).metadata
    assert dipole_meta["validation_frames"] == meta["validation_frames"]
    assert set(meta["dipole_model"]["metrics"]["validation"]) >= {"model", "fixed_charges"}
    report_path = tmp_path / "r.json"
    assert main(["evaluate", "CCO", str(data), "--model", str(model), "--json",
                 str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "dipole fixed MM charges" in out and "dipole q(X) model" in out
    report = json.loads(report_path.read_text())["dipole"]
    assert report["frames_with_dipole"] == 12
    assert report["fixed_charges"]["dipole_rmse_debye"] > 0
    evaluated = evaluate_frames("CCO", data, model)
    assert evaluated.report["dipole"] == report  # the report evaluate returns, with the frames
    with pytest.warns(DeprecationWarning, match="evaluate_frames"):  # the old flag, still served
        old_report, old_frames = evaluate("CCO", data, model, return_frames=True)
    assert old_report["dipole"] == report and old_frames.dipoles is not None
    summary = write_dipole_parity(evaluated.dipoles, tmp_path, "d.xyz")
    assert (tmp_path / "parity_dipoles.png").stat().st_size > 0
    rows = (tmp_path / "parity_dipoles.csv").read_text().splitlines()
    assert rows[0] == "frame,component,qm_debye,fixed_charges_debye,dipole_model_debye"
    assert len(rows) == 1 + 12 * 3
    assert summary["dipole_rmse_debye"]["dipole_model"] == pytest.approx(
        report["dipole_model"]["dipole_rmse_debye"], rel=1e-9)
    # the dipole options need --dipoles
    assert main(["train", "CCO", str(data), "-o", str(model), "--dipole-steps", "5"]) == 2
    assert "only apply with --dipoles" in capsys.readouterr().err


def test_unit_conversions_of_moments_and_wavenumbers() -> None:
    ase_units = pytest.importorskip("ase.units")
    assert units.E_BOHR_TO_E_NM == pytest.approx(ase_units.Bohr / 10, rel=1e-6)
    assert units.E_NM_TO_DEBYE * units.DEBYE_TO_E_NM == pytest.approx(1.0, rel=1e-14)
    # 1 e*Angstrom is 4.8032 D
    assert units.E_ANGSTROM_TO_E_NM * units.E_NM_TO_DEBYE == pytest.approx(
        1.0 / ase_units.Debye, rel=1e-6)
    assert units.E_NM_TO_E_ANGSTROM * units.E_ANGSTROM_TO_E_NM == 1.0
    # 1 THz (2 pi rad/ps) is 33.3564 cm^-1; ASE: 1 cm^-1 as energy, h c / cm
    assert units.RAD_PER_PS_TO_WAVENUMBER * 2 * np.pi == pytest.approx(33.35641, rel=1e-6)
    hz_per_invcm = ase_units.invcm / (ase_units._hplanck / ase_units._e)
    assert 2 * np.pi * units.RAD_PER_PS_TO_WAVENUMBER == pytest.approx(
        1e12 / hz_per_invcm, rel=1e-6)
    # second radiation constant c2 = h c / k = 1.438777 cm K
    assert units.WAVENUMBER_TO_KELVIN == pytest.approx(1.438777, rel=1e-6)


# ------------------------------------------------------------------------------ IR spectra


def test_the_spectrum_of_a_harmonic_dipole_peaks_at_its_frequency() -> None:
    from hybridff.md.spectrum import ir_spectrum, quantum_correction

    rng = np.random.default_rng(0)
    t_ps = np.arange(8000) * 1e-3  # 8 ps, a frame every fs
    peaks = {}
    for nu in (1712.0, 3405.0):
        omega = nu / units.RAD_PER_PS_TO_WAVENUMBER  # rad/ps
        m = np.stack([0.01 * np.cos(omega * t_ps), 0.004 * np.sin(omega * t_ps + 0.3),
                      np.zeros_like(t_ps)], axis=1) + rng.normal(scale=2e-5, size=(len(t_ps), 3))
        spectrum = ir_spectrum(m, 1.0, 300.0)
        peaks[nu] = spectrum.peaks()
        assert len(peaks[nu]) == 1
        assert abs(peaks[nu][0][0] - nu) < 0.25 * spectrum.info["resolution_cm-1"]
    # the correction factor: 1 at low frequency, h c nu / k T far above it
    q = quantum_correction(np.array([0.0, 1.0, 3000.0]), 300.0)
    assert q[0] == 1.0 and q[1] == pytest.approx(1.0, abs=3e-3)
    assert q[2] == pytest.approx(units.WAVENUMBER_TO_KELVIN * 3000.0 / 300.0, rel=1e-6)
    # two bands of equal dipole amplitude: the derivative weighs the faster one nu^2 more
    omega1, omega2 = 1000.0 / units.RAD_PER_PS_TO_WAVENUMBER, 2000.0 / units.RAD_PER_PS_TO_WAVENUMBER
    m = np.zeros((len(t_ps), 3))
    m[:, 0] = 0.01 * np.cos(omega1 * t_ps)
    m[:, 1] = 0.01 * np.cos(omega2 * t_ps)
    classical = ir_spectrum(m, 2.0, 300.0, quantum=False)
    heights = dict(classical.peaks())
    (nu1, h1), (nu2, h2) = sorted(heights.items())
    assert h2 / h1 == pytest.approx(4.0, rel=0.03)


def test_spectrum_of_a_vacuum_run_from_the_command_line(tmp_path, capsys) -> None:
    pytest.importorskip("mdtraj")
    from hybridff.cli import main
    from hybridff.md.options import MDOptions
    from hybridff.md.prepare import prepare_system
    from hybridff.md.run import run_md
    from hybridff.md.spectrum import run_dipoles

    prepared = prepare_system("CCO", solvent="none", constraints=None, charge_method="gasteiger")
    run = tmp_path / "run"
    run_md(prepared, run, MDOptions(steps=4000, timestep_fs=0.5, report_every=4,
                                    equilibration_steps=400, friction_per_ps=0.1, threads=1),
           progress=False)
    series = run_dipoles(run)
    assert series.dipoles.shape == (1000, 3) and series.dt_fs == 2.0
    assert series.source.startswith("fixed charges")
    assert 0.5 < np.median(np.linalg.norm(series.dipoles, axis=1)) * units.E_NM_TO_DEBYE < 4
    out = tmp_path / "ir"
    assert main(["spectrum", str(run), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "strongest bands" in printed and "fixed charges" in printed
    summary = json.loads((out / "ir.json").read_text())
    bands = [nu for nu, _ in summary["spectra"]["run"]["strongest_bands_cm-1"]]
    assert any(3300 < nu < 4000 for nu in bands)  # the O-H stretch (unconstrained)
    header = (out / "ir.csv").read_text().splitlines()[0]
    assert header == "wavenumber_cm-1,run_intensity"
    assert (out / "ir.png").stat().st_size > 0
    # a run that samples too coarsely is refused with the option that fixes it
    coarse = tmp_path / "coarse"
    run_md(prepared, coarse, MDOptions(steps=400, timestep_fs=0.5, report_every=20,
                                       equilibration_steps=0, threads=1), progress=False)
    assert main(["spectrum", str(coarse), "-o", str(out)]) == 2
    assert "--report-ps 0.002" in capsys.readouterr().err
