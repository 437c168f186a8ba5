"""Conformation samplers: torsion-restrained MD reaches every angle of the rotatable torsions,
the mixed sampler interleaves it with MD, all seeded and resumable, bad options refused."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from hybridff.exceptions import MoleculeInputError, UnknownNameError
from hybridff.labels import samplers, torsions
from hybridff.labels.samplers import (
    SAMPLERS,
    SamplingStart,
    mixed_frame_kinds,
    sample_conformations,
    torsion_targets_deg,
)
from hybridff.labels.torsions import (
    angle_difference_deg,
    dihedral_deg,
    rotatable_torsions,
    set_dihedrals,
)
from hybridff.training.residuals import build_mm, mm_energies_forces

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"
#: N-methylacetamide: one rotatable torsion, the amide O=C-N-C (atoms 2 1 3 4)
NMA = "CC(=O)NC"
AMIDE = (2, 1, 3, 4)
FAST = {"steps_per_frame": 400}  # 0.2 ps per frame: enough for these checks, 5x quicker


@pytest.fixture(scope="module")
def nma():
    return build_mm(NMA, charge_method="gasteiger")


@pytest.fixture(scope="module")
def paracetamol():
    return build_mm(str(EXAMPLES / "paracetamol.sdf"), charge_method="gasteiger")


def _frames(sampler: str, mm, n: int, seed: int = 0, **options) -> np.ndarray:
    """The positions of ``sampler`` run directly on ``mm``'s molecule."""
    start = SamplingStart(mm.system, mm.positions, mm.parameterized.mol, seed=seed)
    return SAMPLERS[sampler](start, n, **options).positions


def _bond_lengths(x: np.ndarray, bonds: list[tuple[int, int]]) -> np.ndarray:
    i, j = np.array(bonds).T
    return np.linalg.norm(x[..., i, :] - x[..., j, :], axis=-1)


def test_helpers_live_in_one_place() -> None:
    from hybridff import plots

    for name in ("rotatable_torsions", "check_torsion", "dihedral_deg", "angle_difference_deg"):
        assert getattr(plots, name) is getattr(torsions, name)


def test_cli_lists_every_sampler() -> None:
    from hybridff.cli.label import SAMPLER_NAMES

    assert sorted(SAMPLER_NAMES) == sorted(SAMPLERS)
    assert samplers.DEFAULT_SAMPLER in SAMPLERS


def test_set_dihedrals_is_exact_and_rigid(paracetamol) -> None:
    mol = paracetamol.parameterized.mol
    torsions = rotatable_torsions(mol)
    assert {tuple(sorted(t[1:3])) for t in torsions} == {(1, 3), (3, 4)}  # amide C-N, N-aryl
    x = paracetamol.positions
    y = set_dihedrals(x, mol, torsions, [175.0, -95.0])
    np.testing.assert_allclose([dihedral_deg(y, t) for t in torsions], [175.0, -95.0],
                               atol=1e-9)
    # only rotations about the bonds: every interatomic distance within each side is kept,
    # so all bond lengths are
    np.testing.assert_allclose(_bond_lengths(y, paracetamol.bonds),
                               _bond_lengths(x, paracetamol.bonds), atol=1e-12)


def test_torsion_sampler_covers_the_circle(nma) -> None:
    mol = nma.parameterized.mol
    assert rotatable_torsions(mol) == [AMIDE]
    n = 24
    sampled = SAMPLERS["torsion"](SamplingStart(nma.system, nma.positions, mol, seed=3), n,
                                  **FAST)
    frames = sampled.positions
    targets = torsion_targets_deg(n, 1, seed=3)[:, 0]
    # each frame says what it was turned to
    assert [info["torsion_targets_deg"] for info in sampled.info] == [f"{t:.2f}" for t in targets]
    assert {info["torsions"] for info in sampled.info} == {"2-1-3-4"}
    angles = dihedral_deg(frames, AMIDE)
    # held at the targets (thermal spread at 500 K with the default restraint: a few degrees)
    deviation = np.abs(angle_difference_deg(angles, targets))
    assert deviation.max() < 15.0 and deviation.mean() < 5.0
    # the whole circle: cis (|angle| > 150, methyls cis) and trans (|angle| < 30) amides and
    # every 60-degree sector
    assert (np.abs(angles) < 30).any() and (np.abs(angles) > 150).any()
    assert len(np.unique(np.floor((angles + 180.0) / 60.0))) == 6
    # plain MD at the same temperature stays near the trans amide it starts from
    md = _frames("md", nma, n, seed=3)
    assert np.abs(dihedral_deg(md, AMIDE)).max() < 90.0


def test_torsion_frames_are_sane(paracetamol) -> None:
    frames = _frames("torsion", paracetamol, 8, seed=1, **FAST)
    ratio = _bond_lengths(frames, paracetamol.bonds) / _bond_lengths(paracetamol.positions,
                                                                      paracetamol.bonds)
    assert 0.75 < ratio.min() and ratio.max() < 1.3
    energies, forces = mm_energies_forces(paracetamol.system, frames)
    assert np.isfinite(energies).all() and np.isfinite(forces).all()
    # thermal, not broken: within a few hundred kJ/mol of the MD frames' energies
    md_energies, _ = mm_energies_forces(
        paracetamol.system, _frames("md", paracetamol, 8, seed=1))
    assert energies.max() - md_energies.min() < 300.0
    # the input System is not changed by the restraints
    assert paracetamol.system.getNumForces() == build_mm(
        str(EXAMPLES / "paracetamol.sdf"), charge_method="gasteiger").system.getNumForces()


def test_torsion_sampler_is_seeded_and_prefix_stable(nma) -> None:
    a = _frames("torsion", nma, 4, seed=5, **FAST)
    b = _frames("torsion", nma, 2, seed=5, **FAST)
    c = _frames("torsion", nma, 2, seed=6, **FAST)
    np.testing.assert_array_equal(a[:2], b)  # frame k does not depend on how many are asked
    assert np.abs(a[:2] - c).max() > 1e-2
    np.testing.assert_array_equal(torsion_targets_deg(5, 2, 9)[:3], torsion_targets_deg(3, 2, 9))
    assert torsion_targets_deg(3, 1, -4).shape == (3, 1)  # any integer seed


@pytest.mark.parametrize(("fraction", "expected"), [
    (0.5, "mtmtmtmt"),
    (0.25, "mmmtmmmt"),
    (1.0, "tttttttt"),
    (0.0, "mmmmmmmm"),
])
def test_mixed_frame_kinds(fraction, expected) -> None:
    kinds = mixed_frame_kinds(len(expected), fraction)
    assert "".join(k[0] for k in kinds) == expected
    assert mixed_frame_kinds(3, fraction) == kinds[:3]


def test_mixed_interleaves_md_and_torsion_frames(nma) -> None:
    mol = nma.parameterized.mol
    n = 6
    sampled = sample_conformations("mixed", nma.system, nma.positions, n, mol=mol, seed=2)
    kinds = [info["frame_sampler"] for info in sampled.info]
    assert kinds == ["md", "torsion"] * 3
    assert sampled.settings == {"torsion_fraction": 0.5}
    md = _frames("md", nma, 3, seed=2)
    turned = _frames("torsion", nma, 3, seed=2)
    np.testing.assert_array_equal(sampled.positions[0::2], md)
    np.testing.assert_array_equal(sampled.positions[1::2], turned)
    targets = torsion_targets_deg(3, 1, seed=2)[:, 0]
    assert [info["torsion_targets_deg"] for info in sampled.info[1::2]] == \
        [f"{t:.2f}" for t in targets]
    assert all(info["torsions"] == "2-1-3-4" for info in sampled.info[1::2])
    assert all("torsions" not in info for info in sampled.info[0::2])
    # plain md: positions only, no extra per-frame info (label files stay as they were)
    plain = sample_conformations("md", nma.system, nma.positions, 2, mol=mol, seed=2)
    np.testing.assert_array_equal(plain.positions, md[:2])
    assert plain.info == [{}, {}] and plain.settings == {}


def test_mixed_without_rotatable_torsions_is_md() -> None:
    ethanol = build_mm("CCO", charge_method="gasteiger")
    mol = ethanol.parameterized.mol
    assert rotatable_torsions(mol) == []
    sampled = sample_conformations("mixed", ethanol.system, ethanol.positions, 3, mol=mol,
                                   seed=1)
    np.testing.assert_array_equal(sampled.positions, _frames("md", ethanol, 3, seed=1))
    assert [info["frame_sampler"] for info in sampled.info] == ["md"] * 3
    with pytest.raises(MoleculeInputError, match="no rotatable torsion.*use the md sampler"):
        _frames("torsion", ethanol, 1)


def test_bad_options_are_refused(nma, paracetamol) -> None:
    mol = nma.parameterized.mol
    args = (nma.system, nma.positions, 1)
    with pytest.raises(UnknownNameError, match="unknown sampler 'torsions'; known samplers: conformers, md, mixed, "):
        sample_conformations("torsions", *args, mol=mol)
    with pytest.raises(UnknownNameError, match="md sampler takes no option 'torsion_fraction'"):
        sample_conformations("md", *args, mol=mol, torsion_fraction=0.3)
    with pytest.raises(UnknownNameError, match="no option 'torsion_frac'; its options: "
                                               "torsion_fraction"):
        sample_conformations("mixed", *args, mol=mol, torsion_frac=0.3)
    with pytest.raises(ValueError, match="torsion_fraction must be a number from 0 to 1"):
        sample_conformations("mixed", *args, mol=mol, torsion_fraction=1.5)
    with pytest.raises(ValueError, match="needs the molecule"):
        sample_conformations("torsion", *args)
    with pytest.raises(ValueError, match="restraint_k and temperature must be > 0"):
        sample_conformations("torsion", *args, mol=mol, restraint_k=0.0)
    ring = (3, 4, 5, 6)  # paracetamol: C3-C4 lies in the benzene ring
    with pytest.raises(MoleculeInputError, match="is in a ring"):
        _frames("torsion", paracetamol, 1, torsions=[ring])
    with pytest.raises(MoleculeInputError, match="turn the same bond"):
        sample_conformations("torsion", *args, mol=mol, torsions=[AMIDE, (0, 1, 3, 4)])


def test_label_cli_options(tmp_path, capsys) -> None:
    from hybridff.cli import main

    out = str(tmp_path / "x.xyz")
    with pytest.raises(SystemExit):
        main(["label", NMA, "--n", "1", "-o", out, "--torsion-fraction", "2"])
    assert "a fraction must be 0 to 1, got 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["label", NMA, "--n", "1", "-o", out, "--sampler", "torsions"])
    assert "unknown sampler 'torsions'; known samplers: conformers, md" in capsys.readouterr().err
    code = main(["label", NMA, "--n", "1", "-o", out, "--sampler", "md",
                 "--torsion-fraction", "0.3"])
    assert code == 2
    assert "--torsion-fraction only applies to --sampler mixed" in capsys.readouterr().err


@pytest.mark.usefixtures("torch_single_thread")  # also one OpenMP thread for tblite
def test_label_resumes_with_the_files_sampler(tmp_path, caplog) -> None:
    """A file started with one sampler continues with it when --sampler is not given (so a
    file of the former default, md, stays md frame for frame); another sampler warns."""
    pytest.importorskip("tblite.interface")
    from hybridff.io.frames import read_extxyz
    from hybridff.training.workflow import label

    common = {"method": "xtb", "seed": 4, "charge_method": "gasteiger", "progress": False}
    straight, resumed = tmp_path / "straight.xyz", tmp_path / "resumed.xyz"
    assert label(NMA, straight, 3, sampler="md", **common) == 3
    assert label(NMA, resumed, 2, sampler="md", **common) == 2
    with caplog.at_level(logging.INFO):
        assert label(NMA, resumed, 3, **common) == 1
    assert "continuing with the md sampler" in caplog.text
    assert "was not made with these sampling settings" not in caplog.text
    assert resumed.read_bytes() == straight.read_bytes()

    caplog.clear()
    assert label(NMA, resumed, 4, sampler="mixed", **common) == 1
    assert "sampler md in the file, mixed now" in caplog.text
    info = read_extxyz(resumed).info
    assert [i["sampler"] for i in info] == ["md"] * 3 + ["mixed"]
    assert info[3]["frame_sampler"] == "torsion" and info[3]["torsion_fraction"] == 0.5

    # a new file gets the default sampler, mixed; continuing it keeps the fraction, whether
    # --sampler is left out or given as mixed
    mixed = tmp_path / "mixed.xyz"
    assert label(NMA, mixed, 2, sampler_options={"torsion_fraction": 1.0}, **common) == 2
    caplog.clear()
    assert label(NMA, mixed, 3, **common) == 1
    assert label(NMA, mixed, 4, sampler="mixed", **common) == 1
    assert "was not made with these sampling settings" not in caplog.text
    info = read_extxyz(mixed).info
    assert [(i["sampler"], i["frame_sampler"], i["torsion_fraction"]) for i in info] == \
        [("mixed", "torsion", 1.0)] * 4


def test_old_sampler_calls_still_return_the_frames(nma) -> None:
    """``hybridff.sampling`` (deprecated) keeps the old calls and their array results."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from hybridff import sampling

    mol = nma.parameterized.mol
    np.testing.assert_array_equal(sampling.md_conformations(nma.system, nma.positions, 2, 500.0,
                                                            seed=2), _frames("md", nma, 2, seed=2))
    old = sampling.mixed_conformations(nma.system, nma.positions, 2, 500.0, 2, mol=mol)
    np.testing.assert_array_equal(old, sample_conformations(
        "mixed", nma.system, nma.positions, 2, mol=mol, seed=2).positions)
