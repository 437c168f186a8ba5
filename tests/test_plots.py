"""hybridff evaluate --plots: parity plots and relaxed torsion scans, with the numbers behind them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("openmmtorch")
pytest.importorskip("matplotlib")

from hybridff import units  # noqa: E402
from hybridff.cli import main  # noqa: E402
from hybridff.io.frames import read_extxyz, write_extxyz  # noqa: E402
from hybridff.io.molecule import load_molecule  # noqa: E402
from hybridff.plots import (  # noqa: E402
    angle_difference_deg,
    dihedral_deg,
    relaxed_scan,
    rotatable_torsions,
)
from hybridff.training.residuals import build_mm, mm_energies_forces  # noqa: E402
from hybridff.training.trainer import TrainConfig  # noqa: E402
from hybridff.training.workflow import train  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"
SDF = str(EXAMPLES / "paracetamol.sdf")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, torch_single_thread):
    """12 xTB-labelled paracetamol frames, a 3-epoch K=2 correction and an ML-only model."""
    work = tmp_path_factory.mktemp("plots")
    frames = read_extxyz(EXAMPLES / "paracetamol_gfn2xtb_train.xyz").subset(range(12))
    data = work / "d.xyz"
    write_extxyz(data, frames.numbers, frames.positions, frames.energies, frames.forces,
                 frames.info, append=False)
    config = TrainConfig(epochs=3, ensemble=2, val_fraction=0.25, hidden=(8,), progress=False)
    model, ml_only = work / "m.pt", work / "ml.pt"
    train(SDF, data, model, config, charge_method="gasteiger")
    train(SDF, data, ml_only, TrainConfig(epochs=2, hidden=(8,), progress=False),
          charge_method="gasteiger", ml_only=True)
    return work, data, model, ml_only


def _read_csv(path: Path) -> dict[str, list[str]]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return {name: [r[i] for r in rows[1:]] for i, name in enumerate(rows[0])}


def _floats(column: list[str]) -> np.ndarray:
    return np.array([float(v) for v in column])


def _check_png(path: Path) -> None:
    import matplotlib.pyplot as plt

    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = plt.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 300, (path, image.shape)
    assert image[..., :3].std() > 0.05, f"{path} is blank"
    assert path.stat().st_size < 300_000


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def test_evaluate_plots_parity_and_scan(tiny, capsys) -> None:
    work, data, model, ml_only = tiny
    out, report_path = work / "plots", work / "report.json"
    argv = ["evaluate", SDF, str(data), "--model", str(model), "--ml-only", str(ml_only),
            "--plots", str(out), "--scan-step", "60", "--json", str(report_path)]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "parity_energy.png" in stdout and "torsion_2-1-3-4.png" in stdout
    report = json.loads(report_path.read_text())
    methods = ("mm", "hybrid", "ml_only")
    for name in ("parity_energy.png", "parity_forces.png", "torsion_2-1-3-4.png",
                 "torsion_1-3-4-5.png"):
        _check_png(out / name)

    # parity data: the QM column is the label file's energies (centred), and the RMSE
    # recomputed from the written values is the report's
    labels = read_extxyz(data)
    energy = _read_csv(out / "parity_energy.csv")
    assert [int(v) for v in energy["frame"]] == list(range(len(labels)))
    qm = _floats(energy["qm_kcal_mol"])
    expected = labels.energies * units.KJ_TO_KCAL
    np.testing.assert_allclose(qm, expected - expected.mean(), atol=1e-6)
    forces = _read_csv(out / "parity_forces.csv")
    n_atoms = labels.positions.shape[1]
    assert len(forces["atom"]) == len(labels) * n_atoms * 3
    np.testing.assert_allclose(
        _floats(forces["qm_kcal_mol_A"]),
        (labels.forces * units.KJ_PER_MOL_NM_TO_KCAL_PER_MOL_ANGSTROM).ravel(), atol=1e-6)
    for key in methods:
        e = _floats(energy[f"{key}_kcal_mol"])
        assert abs(e.mean()) < 1e-6
        assert _rmse(e, qm) == pytest.approx(report[key]["energy_rmse_kcal_mol"], rel=1e-6)
        f = _floats(forces[f"{key}_kcal_mol_A"])
        assert _rmse(f, _floats(forces["qm_kcal_mol_A"])) == pytest.approx(
            report[key]["force_rmse_kcal_mol_A"], rel=1e-6)
    # MM and the hybrid differ (the correction is in the figure), and MM is MM
    assert not np.allclose(_floats(energy["mm_kcal_mol"]), _floats(energy["hybrid_kcal_mol"]))

    # torsion scans: by default one per rotatable heavy-atom bond (amide C-N, N-aryl)
    summary = json.loads((out / "plots.json").read_text())
    assert summary == report["plots"]
    scans = summary["torsion_scans"]["scans"]
    assert [s["torsion"] for s in scans] == [[2, 1, 3, 4], [1, 3, 4, 5]]
    mm = build_mm(SDF, charge_method="gasteiger")
    for scan in scans:
        torsion = tuple(scan["torsion"])
        stem = out / ("torsion_" + "-".join(map(str, torsion)))
        table = _read_csv(stem.with_suffix(".csv"))
        targets = _floats(table["target_deg"])
        np.testing.assert_array_equal(targets, [0, 60, 120, 180, 240, 300])
        # (a bespoke-MM column where the model was trained on one; this one has too few frames)
        assert set(table) == {"target_deg", "dihedral_deg", "mm_kcal_mol", "hybrid_kcal_mol",
                              "ml_only_kcal_mol", "hybrid_ensemble_std_kcal_mol"}
        spread = _floats(table["hybrid_ensemble_std_kcal_mol"])
        assert (spread >= 0).all() and spread.max() == pytest.approx(
            scan["hybrid_ensemble_std_max_kcal_mol"], rel=1e-6)
        # where the evaluated frames put this dihedral (the model's data), measured here
        frames_deg = np.array([rdkit_dihedral(x, torsion) for x in labels.positions])
        farthest = np.abs(angle_difference_deg(
            frames_deg, scan["evaluated_frames_dihedral_deg"]["mean"])).max()
        assert farthest == pytest.approx(
            scan["evaluated_frames_dihedral_deg"]["max_from_mean"], abs=1e-6)
        # the geometries written reach the target angles (measured here, independently)
        geometries = read_xyz_nm(stem.with_suffix(".xyz"))
        measured = np.array([rdkit_dihedral(x, torsion) for x in geometries])
        assert np.abs(angle_difference_deg(measured, targets)).max() < 1.0
        np.testing.assert_allclose(_floats(table["dihedral_deg"]), measured, atol=1e-3)
        # the MM column is MM's energy of those geometries, relative to the lowest
        e_mm, _ = mm_energies_forces(mm.system, geometries)
        relative = (e_mm - e_mm.min()) * units.KJ_TO_KCAL
        np.testing.assert_allclose(_floats(table["mm_kcal_mol"]), relative, atol=1e-4)
        for key in methods:
            values = _floats(table[f"{key}_kcal_mol"])
            assert values.min() == 0.0 and np.isfinite(values).all()
            assert scan["barrier_kcal_mol"][key] == pytest.approx(values.max(), abs=1e-6)
    # turning the amide bond costs more than turning the N-aryl bond (resonance), in MM
    assert scans[0]["barrier_kcal_mol"]["mm"] > 2 * scans[1]["barrier_kcal_mol"]["mm"]


def read_xyz_nm(path: Path) -> np.ndarray:
    lines = path.read_text().splitlines()
    n = int(lines[0])
    frames = [lines[k + 2:k + 2 + n] for k in range(0, len(lines), n + 2)]
    return np.array([[[float(v) for v in row.split()[1:4]] for row in f]
                     for f in frames]) * units.ANGSTROM_TO_NM


def rdkit_dihedral(positions_nm: np.ndarray, torsion: tuple[int, ...]) -> float:
    from rdkit import Chem
    from rdkit.Chem import rdMolTransforms
    from rdkit.Geometry import Point3D

    mol = Chem.RWMol()
    conf = Chem.Conformer(4)
    for k, a in enumerate(torsion):
        mol.AddAtom(Chem.Atom(6))
        conf.SetAtomPosition(k, Point3D(*positions_nm[a]))
    mol.AddConformer(conf)
    return rdMolTransforms.GetDihedralDeg(mol.GetConformer(), 0, 1, 2, 3)


def test_scan_with_qm_reference(tiny) -> None:
    """--scan-qm xtb adds GFN2-xTB energies of the scan geometries and RMSEs against them."""
    pytest.importorskip("tblite.interface")
    from hybridff.labels.qm import get_engine

    work, data, model, _ = tiny
    out = work / "plots_qm"
    assert main(["evaluate", SDF, str(data), "--model", str(model), "--plots", str(out),
                 "--torsion", "1", "3", "4", "5", "--scan-step", "90", "--scan-qm", "xtb"]) == 0
    summary = json.loads((out / "plots.json").read_text())
    (scan,) = summary["torsion_scans"]["scans"]
    assert summary["torsion_scans"]["qm"]["level"] == "GFN2-xTB"
    table = _read_csv(out / "torsion_1-3-4-5.csv")
    geometries = read_xyz_nm(out / "torsion_1-3-4-5.xyz")
    engine = get_engine("xtb")
    numbers = load_molecule(SDF).GetAtoms()
    numbers = np.array([a.GetAtomicNum() for a in numbers])
    qm = np.array([engine.compute(numbers, x).energy for x in geometries[:2]])
    # the QM column: xTB of the written geometries, relative to the scan's lowest
    written = _floats(table["qm_kcal_mol"])
    assert written.min() == 0.0
    assert written[1] - written[0] == pytest.approx((qm[1] - qm[0]) * units.KJ_TO_KCAL, abs=1e-3)
    for key in ("mm", "hybrid"):
        d = _floats(table[f"{key}_kcal_mol"]) - written
        assert scan["rmse_vs_qm_kcal_mol"][key] == pytest.approx(
            float(np.sqrt(np.mean((d - d.mean()) ** 2))), rel=1e-6)
    _check_png(out / "torsion_1-3-4-5.png")


@pytest.mark.parametrize(("torsion", "message"), [
    (["0", "1", "3", "99"], "atom index 99 is out of range; the molecule has 20 atoms"),
    (["2", "1", "3", "9"], "are not bonded; a torsion i j k l needs the bonds"),
    (["1", "3", "4", "4"], "the four atoms must be different"),
    (["3", "4", "5", "6"], "is in a ring and cannot be turned through 360 degrees"),
])
def test_bad_torsion_is_refused_before_evaluating(tmp_path, capsys, torsion, message) -> None:
    # the model file does not exist: the torsion is checked before anything is evaluated
    code = main(["evaluate", SDF, "unused.xyz", "--model", "missing.pt", "--plots",
                 str(tmp_path), "--torsion", *torsion])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Rotatable torsions: 2 1 3 4, 1 3 4 5" in err or "four atoms" in err


def test_scan_options_need_plots(capsys) -> None:
    code = main(["evaluate", SDF, "unused.xyz", "--model", "missing.pt", "--scan-step", "30"])
    assert code == 2
    assert "--scan-step only apply with --plots DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", SDF, "unused.xyz", "--model", "m.pt", "--plots", "x",
              "--scan-step", "0"])
    assert "a scan step must be 1 to 120 degrees" in capsys.readouterr().err


@pytest.mark.parametrize(("smiles", "bonds"), [
    ("CC(=O)Nc1ccc(O)cc1", {(1, 3), (3, 4)}),  # amide C-N, N-aryl; not CH3-C, not O-H
    ("CCCC", {(1, 2)}),
    ("CCO", set()),  # every bond ends at an atom with no other heavy neighbour
    ("c1ccccc1-c1ccccc1", {(5, 6)}),
    ("CC#CC", set()),  # bonds to sp carbons do not turn anything
    ("C1CCCCC1", set()),
])
def test_rotatable_torsions(smiles, bonds) -> None:
    mol = load_molecule(smiles)
    torsions = rotatable_torsions(mol)
    assert {tuple(sorted(t[1:3])) for t in torsions} == bonds
    for i, j, k, l_ in torsions:
        assert all(mol.GetAtomWithIdx(a).GetAtomicNum() > 1 for a in (i, j, k, l_))
        for a, b in ((i, j), (j, k), (k, l_)):
            assert mol.GetBondBetweenAtoms(a, b) is not None


def test_dihedral_matches_rdkit() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, 3))
    for torsion in ((0, 1, 2, 3), (3, 1, 4, 5), (5, 4, 2, 0)):
        assert dihedral_deg(x, torsion) == pytest.approx(rdkit_dihedral(x, torsion), abs=1e-9)


def test_butane_scan_is_physical() -> None:
    """Relaxed C-C-C-C scan of butane under MM: anti lowest, eclipsed cis highest, gauche in
    between and symmetric, every point at its target."""
    mm = build_mm("CCCC", charge_method="gasteiger")
    scan = relaxed_scan(mm.system, mm.positions, (0, 1, 2, 3), step_deg=60.0)
    np.testing.assert_array_equal(scan.targets_deg, [0, 60, 120, 180, 240, 300])
    assert np.abs(angle_difference_deg(scan.achieved_deg, scan.targets_deg)).max() < 0.5
    e = (scan.energies["mm"] - scan.energies["mm"].min()) * units.KJ_TO_KCAL
    assert np.argmin(e) == 3 and np.argmax(e) == 0
    assert 0.3 < e[1] < e[2] < e[0]
    assert e[1] == pytest.approx(e[5], abs=0.05) and e[2] == pytest.approx(e[4], abs=0.05)
    # the kept geometries are relaxed: MM energy of each without the restraint is what's stored
    e_check, _ = mm_energies_forces(mm.system, scan.positions)
    np.testing.assert_allclose(e_check, scan.energies["mm"], atol=1e-6)
