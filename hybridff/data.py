"""Labelled conformations on disk: extended XYZ read/write with ASE.

Files follow the ASE convention: positions in Angstrom, the energy in eV as ``energy`` in the
comment line, forces in eV/Angstrom as the per-atom ``forces`` column. In memory
(:class:`LabelledFrames`) everything is in hybridff's internal units: nm, kJ/mol, kJ/mol/nm.
The atom order of every frame must be the molecule's (elements per index are checked).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybridff import units
from hybridff.elements import SYMBOL
from hybridff.exceptions import DataFormatError, OptionalDependencyError


@dataclass
class LabelledFrames:
    """Frames of one molecule: positions (F, N, 3) nm, energies (F,) kJ/mol, forces kJ/mol/nm."""

    numbers: np.ndarray
    positions: np.ndarray
    energies: np.ndarray
    forces: np.ndarray
    info: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def subset(self, index: Sequence[int] | np.ndarray) -> LabelledFrames:
        """The frames at ``index``, in that order."""
        idx = np.asarray(index, dtype=int)
        info = [self.info[i] for i in idx] if self.info else []
        return LabelledFrames(self.numbers.copy(), self.positions[idx], self.energies[idx],
                              self.forces[idx], info)


def _ase():
    try:
        import ase
        import ase.io
        from ase.calculators.singlepoint import SinglePointCalculator
    except ImportError as exc:
        raise OptionalDependencyError(
            "reading and writing extxyz label files needs ASE: pip install ase"
        ) from exc
    return ase, SinglePointCalculator


def _symbols(numbers: Sequence[int]) -> str:
    return " ".join(SYMBOL.get(int(z), str(z)) for z in numbers)


def check_atom_order(numbers: np.ndarray, expected: Sequence[int], where: str) -> None:
    """Raise a :class:`DataFormatError` naming the first index whose element differs."""
    expected = np.asarray(expected, dtype=int)
    if len(numbers) != len(expected):
        raise DataFormatError(
            f"{where}: {len(numbers)} atoms, but the molecule has {len(expected)}"
        )
    bad = np.nonzero(np.asarray(numbers, dtype=int) != expected)[0]
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(
            f"{where}: atom {i} is {SYMBOL.get(int(numbers[i]), numbers[i])} but the molecule's "
            f"atom {i} is {SYMBOL.get(int(expected[i]), expected[i])}; frames must list atoms in "
            f"the molecule's order ({_symbols(expected)})"
        )


def write_extxyz(
    path: str | os.PathLike,
    numbers: Sequence[int],
    positions_nm: np.ndarray,
    energies_kj: Sequence[float],
    forces_kj_nm: np.ndarray,
    info: Sequence[dict[str, Any]] | None = None,
    append: bool = True,
) -> None:
    """Write frames (internal units in, ASE units on disk); ``append`` adds to an existing file.

    Each call writes the whole batch to a temporary file and appends it in one ``write``,
    flushed and fsync'ed, so an interrupted labelling run leaves complete frames only.
    """
    ase, spc = _ase()
    positions_nm = np.asarray(positions_nm, dtype=np.float64).reshape(-1, len(numbers), 3)
    forces_kj_nm = np.asarray(forces_kj_nm, dtype=np.float64).reshape(positions_nm.shape)
    frames = []
    for k in range(positions_nm.shape[0]):
        atoms = ase.Atoms(numbers=list(numbers), positions=positions_nm[k] * units.NM_TO_ANGSTROM)
        for key, value in (info[k] if info else {}).items():
            atoms.info[key] = value
        atoms.calc = spc(
            atoms,
            energy=float(energies_kj[k]) * units.KJ_PER_MOL_TO_EV,
            forces=forces_kj_nm[k] / units.EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM,
        )
        frames.append(atoms)
    import io

    buffer = io.StringIO()
    ase.io.write(buffer, frames, format="extxyz")
    path = Path(path)
    with open(path, "a" if append else "w") as handle:
        handle.write(buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())


def read_extxyz(path: str | os.PathLike, numbers: Sequence[int] | None = None) -> LabelledFrames:
    """Read labelled frames; ``numbers`` (the molecule's atomic numbers) checks the atom order.

    A frame without an energy or forces is a :class:`DataFormatError` naming the frame.
    """
    ase, _ = _ase()
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"label file {str(path)!r} does not exist")
    try:
        frames = ase.io.read(str(path), index=":", format="extxyz")
    except Exception as exc:  # ASE raises many types for malformed text
        raise DataFormatError(f"{path}: not a readable extxyz file ({exc})") from exc
    if not frames:
        raise DataFormatError(f"{path}: no frames")
    reference = np.asarray(numbers if numbers is not None else frames[0].numbers, dtype=int)
    pos, ene, frc, info = [], [], [], []
    for k, atoms in enumerate(frames):
        where = f"{path}, frame {k}"
        check_atom_order(atoms.numbers, reference, where)
        results = atoms.calc.results if atoms.calc is not None else {}
        energy = results.get("energy", atoms.info.get("energy"))
        forces = results.get("forces", atoms.arrays.get("forces"))
        if energy is None:
            raise DataFormatError(f"{where}: no energy (expected 'energy=' in the comment line)")
        if forces is None:
            raise DataFormatError(f"{where}: no forces (expected a 'forces:R:3' column)")
        pos.append(atoms.positions * units.ANGSTROM_TO_NM)
        ene.append(float(energy) * units.EV_TO_KJ_PER_MOL)
        frc.append(np.asarray(forces, dtype=np.float64) * units.EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM)
        info.append(dict(atoms.info))
    return LabelledFrames(
        numbers=reference,
        positions=np.array(pos),
        energies=np.array(ene),
        forces=np.array(frc),
        info=info,
    )


def count_frames(path: str | os.PathLike) -> int:
    """Number of frames in an extxyz file (0 when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return 0
    return len(read_extxyz(path))


def file_sha256(path: str | os.PathLike) -> str:
    """SHA256 of a file's bytes (the training-set hash stored in model files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
