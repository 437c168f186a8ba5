"""extxyz label files: round trip in internal units, atom-order and missing-label errors."""

from __future__ import annotations

import numpy as np
import pytest

from hybridff import units
from hybridff.exceptions import DataFormatError
from hybridff.io.frames import file_sha256, read_extxyz, write_extxyz

pytest.importorskip("ase")

Z = np.array([6, 8, 1, 1])


def _frames(n: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    pos = rng.normal(scale=0.1, size=(n, 4, 3))
    ene = rng.normal(scale=1e5, size=n) - 3e5
    frc = rng.normal(scale=500.0, size=(n, 4, 3))
    return pos, ene, frc


def test_round_trip_internal_units(tmp_path) -> None:
    pos, ene, frc = _frames()
    path = tmp_path / "d.xyz"
    write_extxyz(path, Z, pos, ene, frc, info=[{"seed": 1}] * 3)
    data = read_extxyz(path, Z)
    assert len(data) == 3
    np.testing.assert_allclose(data.positions, pos, atol=1e-9)  # 1e-8 Angstrom precision
    np.testing.assert_allclose(data.energies, ene, rtol=1e-12)
    np.testing.assert_allclose(data.forces, frc, atol=1e-5)
    assert data.info[0]["seed"] == 1


def test_file_units_are_ev_and_angstrom(tmp_path) -> None:
    ase_io = pytest.importorskip("ase.io")
    pos, ene, frc = _frames(1)
    path = tmp_path / "d.xyz"
    write_extxyz(path, Z, pos, ene, frc)
    atoms = ase_io.read(path)
    np.testing.assert_allclose(atoms.positions, pos[0] * 10.0, atol=1e-7)
    assert atoms.get_potential_energy() == pytest.approx(ene[0] / units.EV_TO_KJ_PER_MOL)
    np.testing.assert_allclose(
        atoms.get_forces(), frc[0] / units.EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM, atol=1e-7
    )


def test_append_continues_file(tmp_path) -> None:
    pos, ene, frc = _frames(4)
    path = tmp_path / "d.xyz"
    write_extxyz(path, Z, pos[:2], ene[:2], frc[:2])
    h1 = file_sha256(path)
    write_extxyz(path, Z, pos[2:], ene[2:], frc[2:])
    data = read_extxyz(path, Z)
    np.testing.assert_allclose(data.energies, ene, rtol=1e-12)
    assert file_sha256(path) != h1


def test_atom_order_mismatch_names_atom(tmp_path) -> None:
    pos, ene, frc = _frames(1)
    path = tmp_path / "d.xyz"
    write_extxyz(path, [6, 1, 8, 1], pos, ene, frc)
    with pytest.raises(DataFormatError, match=r"frame 0: atom 1 is H but the molecule's atom 1 is O"):
        read_extxyz(path, Z)
    with pytest.raises(DataFormatError, match="4 atoms, but the molecule has 5"):
        read_extxyz(path, [6, 8, 1, 1, 1])


def test_missing_forces_or_energy(tmp_path) -> None:
    path = tmp_path / "noforces.xyz"
    path.write_text("2\nenergy=-1.0 pbc=\"F F F\"\nH 0 0 0\nH 0 0 0.74\n")
    with pytest.raises(DataFormatError, match="frame 0: no forces"):
        read_extxyz(path)
    path2 = tmp_path / "noenergy.xyz"
    path2.write_text(
        "2\nProperties=species:S:1:pos:R:3:forces:R:3 pbc=\"F F F\"\n"
        "H 0 0 0 0 0 1\nH 0 0 0.74 0 0 -1\n"
    )
    with pytest.raises(DataFormatError, match="frame 0: no energy"):
        read_extxyz(path2)
    with pytest.raises(DataFormatError, match="does not exist"):
        read_extxyz(tmp_path / "missing.xyz")


@pytest.mark.parametrize("window", [64, 1 << 16])
def test_the_end_of_the_file_says_whether_its_last_frame_is_complete(window, tmp_path) -> None:
    """Every byte prefix of a label file: the check read from the file's end (any window:
    64 bytes makes it widen its read) is true exactly at a frame boundary."""
    from hybridff.io.frames import _ends_with_a_complete_frame

    pos, ene, frc = _frames(3)
    full = tmp_path / "full.xyz"
    write_extxyz(full, Z, pos, ene, frc, info=[{"frame": k} for k in range(3)])
    data = full.read_bytes()
    lines = data.splitlines(keepends=True)
    boundaries = {sum(len(line) for line in lines[:k * (len(Z) + 2)]) for k in range(1, 4)}
    cut = tmp_path / "cut.xyz"
    for n in range(1, len(data) + 1):
        cut.write_bytes(data[:n])
        assert _ends_with_a_complete_frame(cut, window) == (n in boundaries), n


def test_a_cut_made_between_appends_is_removed_by_the_next(tmp_path) -> None:
    """Nothing is remembered between appends: a file cut after the last append (another
    process, a copy interrupted) still loses its incomplete frame before the next one."""
    pos, ene, frc = _frames(4)
    path = tmp_path / "d.xyz"
    write_extxyz(path, Z, pos[:2], ene[:2], frc[:2])
    write_extxyz(path, Z, pos[2:3], ene[2:3], frc[2:3])
    path.write_bytes(path.read_bytes()[:-40])  # frame 2 cut inside its last atom line
    write_extxyz(path, Z, pos[3:], ene[3:], frc[3:])
    data = read_extxyz(path, Z)
    np.testing.assert_allclose(data.energies, ene[[0, 1, 3]], rtol=1e-12)
