"""Labelled conformations on disk: extended XYZ read/write with ASE.

Files follow the ASE convention: positions in Angstrom, the energy in eV as ``energy`` in the
comment line, forces in eV/Angstrom as the per-atom ``forces`` column. In memory
(:class:`LabelledFrames`) everything is in hybridff's internal units: nm, kJ/mol, kJ/mol/nm.
The atom order of every frame must be the molecule's (elements per index are checked, and
with the molecule's bonds also the bond lengths of the first frame). Damaged files give a
:class:`~hybridff.exceptions.DataFormatError` naming the line or frame; an incomplete last
frame (a labelling run interrupted while appending) is dropped with a warning, and cut off
before the next append. The checks against the molecule live in
:mod:`hybridff.io.frame_checks` (re-exported here).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybridff import units
from hybridff.exceptions import DataFormatError, OptionalDependencyError
from hybridff.io.files import atomic_write_text
from hybridff.io.frame_checks import (  # noqa: F401  (re-exported: hybridff.data's names)
    MAX_BOND_STRETCH,
    _symbols,
    check_atom_order,
    check_bond_lengths,
    check_frame_geometry,
    element_symbol,
)
from hybridff.io.frame_checks import element_symbol as _symbol  # noqa: F401  (the old name)

logger = logging.getLogger(__name__)


@dataclass
class LabelledFrames:
    """Frames of one molecule: positions (F, N, 3) nm, energies (F,) kJ/mol, forces kJ/mol/nm."""

    numbers: np.ndarray
    positions: np.ndarray
    energies: np.ndarray
    forces: np.ndarray
    info: list[dict[str, Any]] = field(default_factory=list)
    #: QM dipole moments (F, 3) in e*nm as the file gives them (origin: each frame's
    #: ``dipole_origin`` info, hybridff writes the centre of mass); NaN rows for frames
    #: without one; None when no frame has one
    dipoles: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def subset(self, index: Sequence[int] | np.ndarray) -> LabelledFrames:
        """The frames at ``index``, in that order."""
        idx = np.asarray(index, dtype=int)
        info = [self.info[i] for i in idx] if self.info else []
        dipoles = None if self.dipoles is None else self.dipoles[idx]
        return LabelledFrames(self.numbers.copy(), self.positions[idx], self.energies[idx],
                              self.forces[idx], info, dipoles)


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


# --------------------------------------------------------------------------- file layout


@dataclass
class _Layout:
    """Where the complete frames of an extxyz text are, and what follows them."""

    starts: list[int]  # 0-based line index of each complete frame's atom-count line
    complete_chars: int  # length of the text holding exactly the complete frames
    tail: str | None  # description of an incomplete last frame (an interrupted write)
    tail_line: int = 0  # 1-based line where that incomplete frame starts


def _columns(comment: str) -> int | None:
    """Number of columns the comment line's ``Properties=`` declares (None: not given)."""
    import re

    match = re.search(r"Properties=(\"?)([^\s\"]+)\1", comment)
    if not match:
        return None
    parts = match.group(2).split(":")
    try:
        return sum(int(n) for n in parts[2::3])
    except ValueError:
        return None


def _scan(text: str, path: Path) -> _Layout:
    """Check the frame layout of an extxyz text; an incomplete last frame is reported, not
    raised: appends write whole frames, so only an interrupted write leaves one."""
    lines = text.split("\n")
    ends_cleanly = text.endswith("\n") or not text
    if text.endswith("\n"):
        lines.pop()  # the empty string after the final newline
    n_lines = len(lines)
    starts: list[int] = []
    offset = 0  # characters up to the end of the last complete frame
    i = 0
    tail, tail_line = None, 0
    while i < n_lines:
        frame = len(starts)
        if not lines[i].strip():
            if all(not line.strip() for line in lines[i:]):
                break
            raise DataFormatError(
                f"{path}:{i + 1}: a blank line where frame {frame} should start (its atom "
                "count); remove the blank line")
        if not ends_cleanly and i == n_lines - 1:
            tail = f"frame {frame} (line {i + 1}) stops inside its atom-count line"
            tail_line = i + 1
            break
        try:
            n_atoms = int(lines[i].strip())
        except ValueError:
            raise DataFormatError(
                f"{path}:{i + 1}: expected the atom count of frame {frame}, found "
                f"{lines[i].strip()[:60]!r}: the file is damaged here (or is not extxyz); "
                "repair or delete the damaged frame") from None
        if n_atoms < 1:
            raise DataFormatError(f"{path}:{i + 1}: frame {frame} declares {n_atoms} atoms; "
                                  "repair or delete this frame")
        last = i + 1 + n_atoms  # line index of the frame's last atom line
        if last >= n_lines or (not ends_cleanly and last == n_lines - 1):
            available = n_lines - (i + 2) - (0 if ends_cleanly else 1)  # the last line is cut
            have = max(0, min(available, n_atoms))
            tail = (f"frame {frame} (line {i + 1}) is incomplete: the file ends after {have} of "
                    f"its {n_atoms} atom lines")
            tail_line = i + 1
            break
        expected = _columns(lines[i + 1])
        for a in range(n_atoms):
            k = i + 2 + a
            found = len(lines[k].split())
            if found < 4 or (expected is not None and found != expected):
                need = (f"the Properties of the comment line declare {expected}" if expected
                        else "at least 4 are needed")
                raise DataFormatError(
                    f"{path}:{k + 1}: frame {frame}, atom {a}: {found} columns, but {need}: "
                    f"the file is damaged here; repair or delete frame {frame} (lines {i + 1}-"
                    f"{last + 1})")
        starts.append(i)
        offset += sum(len(line) + 1 for line in lines[i:last + 1])
        i = last + 1
    return _Layout(starts, offset, tail, tail_line)


def _tail_message(path: Path, layout: _Layout) -> str:
    return (f"{path}: {layout.tail} (an interrupted write); ignoring it. Re-running "
            "'hybridff label' with the same arguments replaces it; otherwise delete the file "
            f"from line {layout.tail_line} on")


def _ends_with_a_complete_frame(path: Path, window: int = 1 << 16) -> bool:
    """Whether ``path`` ends right after a complete frame, read from its end only.

    The last line that is a bare number is the last frame's atom count (atom lines have at
    least four columns, ASE's comment lines a ``Properties`` key): the frame is complete when
    exactly a comment line and that many atom lines follow, the last one ended by a newline.
    ``False`` whenever that is not certain, so the whole file is checked then."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        while True:
            handle.seek(max(0, size - window))
            tail = handle.read()
            if not tail.endswith(b"\n"):
                return False
            lines = tail[:-1].split(b"\n")[(1 if window < size else 0):]  # the first may be cut
            for after, line in enumerate(reversed(lines)):
                if line.strip().isdigit():
                    comment = lines[len(lines) - after] if after else b""
                    return (after > 0 and not comment.strip().isdigit()
                            and int(line) == after - 1)
            if window >= size:
                return False
            window *= 16


def _trim_incomplete_tail(path: Path) -> None:
    """Cut an incomplete last frame (an interrupted write) off ``path`` before appending.

    Decided from the file itself: a file that ends with a complete frame (every append writes
    whole frames, so only an interrupted one leaves less) is left as it is without reading it
    all; otherwise its whole layout is checked (a damaged file is refused) and what follows
    the last complete frame is cut off."""
    if _ends_with_a_complete_frame(path):
        return
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not a text (extxyz) file ({exc}); refusing to append "
                              "to it") from exc
    layout = _scan(text, path)
    if layout.tail is None and layout.complete_chars == len(text):
        return
    keep = len(text[: layout.complete_chars].encode("utf-8"))
    if layout.tail is not None:
        logger.warning("%s: %s (an interrupted write); removing it before appending", path,
                       layout.tail)
    with open(path, "r+b") as handle:
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())


def write_extxyz(
    path: str | os.PathLike,
    numbers: Sequence[int],
    positions_nm: np.ndarray,
    energies_kj: Sequence[float],
    forces_kj_nm: np.ndarray,
    info: Sequence[dict[str, Any]] | None = None,
    append: bool = True,
    dipoles_e_nm: np.ndarray | None = None,
) -> None:
    """Write frames (internal units in, ASE units on disk); ``append`` adds to an existing file.

    ``dipoles_e_nm`` (F, 3): QM dipole moments, written as ``dipole`` in e*Angstrom (ASE's
    key) with ``dipole_origin`` (:data:`hybridff.elements.DIPOLE_ORIGIN`) unless ``info``
    names another origin.

    Appending writes the whole batch in one ``write``, flushed and fsync'ed, after cutting off
    an incomplete last frame an interrupted run may have left (with a warning), so the file
    holds complete frames only. A new file (``append=False``) is written atomically.
    """
    ase, spc = _ase()
    positions_nm = np.asarray(positions_nm, dtype=np.float64).reshape(-1, len(numbers), 3)
    forces_kj_nm = np.asarray(forces_kj_nm, dtype=np.float64).reshape(positions_nm.shape)
    frames = []
    for k in range(positions_nm.shape[0]):
        atoms = ase.Atoms(numbers=list(numbers), positions=positions_nm[k] * units.NM_TO_ANGSTROM)
        for key, value in (info[k] if info else {}).items():
            atoms.info[key] = value
        moments = {}
        if dipoles_e_nm is not None:
            from hybridff.elements import DIPOLE_ORIGIN

            moments["dipole"] = (np.asarray(dipoles_e_nm[k], dtype=np.float64)
                                 * units.E_NM_TO_E_ANGSTROM)
            atoms.info.setdefault("dipole_origin", DIPOLE_ORIGIN)
        atoms.calc = spc(
            atoms,
            energy=float(energies_kj[k]) * units.KJ_PER_MOL_TO_EV,
            forces=forces_kj_nm[k] / units.EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM,
            **moments,
        )
        frames.append(atoms)
    import io

    buffer = io.StringIO()
    ase.io.write(buffer, frames, format="extxyz")
    path = Path(path)
    if not append or not path.exists():
        atomic_write_text(path, buffer.getvalue())
    else:
        _trim_incomplete_tail(path)
        with open(path, "a") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())


def _parse_frames(ase: Any, text: str, layout: _Layout, path: Path) -> list[Any]:
    """ASE's frames of the complete part of the text; a failure names the frame and lines."""
    import io

    try:
        return ase.io.read(io.StringIO(text[: layout.complete_chars]), index=":",
                           format="extxyz")
    except Exception:  # ASE raises many types for malformed text: find the frame, then say
        pass
    lines = text.split("\n")
    for k, first in enumerate(layout.starts):
        last = first + 2 + int(lines[first].strip())  # one past the frame's last line
        chunk = "\n".join(lines[first:last]) + "\n"
        try:
            ase.io.read(io.StringIO(chunk), index=":", format="extxyz")
        except Exception as exc:
            raise DataFormatError(
                f"{path}:{first + 1}-{last}, frame {k}: not readable as extxyz "
                f"({type(exc).__name__}: {exc}); repair or delete this frame") from exc
    raise DataFormatError(f"{path}: not a readable extxyz file; check it with ase.io.read")


def read_extxyz(path: str | os.PathLike, numbers: Sequence[int] | None = None,
                bonds: Sequence[tuple[int, int]] | None = None) -> LabelledFrames:
    """Read labelled frames.

    ``numbers`` (the molecule's atomic numbers) checks the atom order element by element.
    ``bonds`` (the molecule's bonded atom pairs) checks the frames as geometries of that
    molecule: no bond of the first frame far longer than a bond (atoms of the same element
    in another order) and no overlapping atoms in any frame. A frame without an energy or
    forces, or with a non-finite value, is a :class:`DataFormatError` naming the frame (and
    atom); an incomplete last frame (an interrupted append) is dropped with a warning.
    """
    ase, _ = _ase()
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"label file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not a text (extxyz) file ({exc})") from exc
    layout = _scan(text, path)
    if layout.tail is not None:
        logger.warning(_tail_message(path, layout))
    if not layout.starts:
        raise DataFormatError(f"{path}: no complete frames")
    frames = _parse_frames(ase, text, layout, path)
    reference = np.asarray(numbers if numbers is not None else frames[0].numbers, dtype=int)
    pos, ene, frc, info, dip = [], [], [], [], []
    for k, atoms in enumerate(frames):
        where = f"{path}:{layout.starts[k] + 1}, frame {k}"
        check_atom_order(atoms.numbers, reference, where)
        results = atoms.calc.results if atoms.calc is not None else {}
        energy = results.get("energy", atoms.info.get("energy"))
        forces = results.get("forces", atoms.arrays.get("forces"))
        if energy is None:
            raise DataFormatError(f"{where}: no energy (expected 'energy=' in the comment line)")
        if forces is None:
            raise DataFormatError(f"{where}: no forces (expected a 'forces:R:3' column)")
        check_frame_geometry(atoms.positions * units.ANGSTROM_TO_NM, reference, where,
                             overlaps=bonds is not None)
        if not np.isfinite(float(energy)):
            raise DataFormatError(f"{where}: the energy is {energy}; remove or recompute this frame")
        forces = np.asarray(forces, dtype=np.float64)
        bad = np.argwhere(~np.isfinite(forces))
        if bad.size:
            i = int(bad[0][0])
            raise DataFormatError(
                f"{where}: the force on atom {i} ({element_symbol(reference[i])}) is "
                f"{forces[i].tolist()}; remove or recompute this frame")
        if k == 0 and bonds is not None:
            check_bond_lengths(atoms.positions * units.ANGSTROM_TO_NM, reference, bonds, where)
        pos.append(atoms.positions * units.ANGSTROM_TO_NM)
        ene.append(float(energy) * units.EV_TO_KJ_PER_MOL)
        frc.append(forces * units.EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM)
        info.append(dict(atoms.info))
        dip.append(_dipole(results.get("dipole", atoms.info.get("dipole")), where))
    have = [d is not None for d in dip]
    dipoles = None
    if any(have):
        if not all(have):
            logger.warning("%s: %d of %d frames carry no dipole moment; dipole fits and "
                           "reports use the others", path, have.count(False), len(have))
        dipoles = np.array([d if d is not None else np.full(3, np.nan) for d in dip])
    return LabelledFrames(
        numbers=reference,
        positions=np.array(pos),
        energies=np.array(ene),
        forces=np.array(frc),
        info=info,
        dipoles=dipoles,
    )


def _dipole(value: Any, where: str) -> np.ndarray | None:
    """A frame's ``dipole`` (e*Angstrom, ASE's key) as e*nm; None when it has none."""
    if value is None:
        return None
    try:
        dipole = np.asarray(value, dtype=np.float64).reshape(3)
    except (TypeError, ValueError):
        raise DataFormatError(f"{where}: the dipole {value!r} is not three numbers "
                              "(e*Angstrom, as dipole=\"x y z\" in the comment line); fix or "
                              "remove it") from None
    if not np.isfinite(dipole).all():
        raise DataFormatError(f"{where}: the dipole is {dipole.tolist()}; remove or recompute "
                              "this frame")
    return dipole * units.E_ANGSTROM_TO_E_NM


def reorder_frames(path: str | os.PathLike, order: Sequence[int]) -> None:
    """Rewrite ``path`` atomically with its complete frames in ``order`` (a permutation of
    their positions in the file); each frame's text is kept byte for byte."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    layout = _scan(text, path)
    order = [int(k) for k in order]
    if sorted(order) != list(range(len(layout.starts))):
        raise ValueError(f"{path}: order must be a permutation of its {len(layout.starts)} "
                         f"complete frames, got {len(order)} positions")
    line_starts = [0, *(i + 1 for i, c in enumerate(text) if c == "\n")]
    bounds = [*(line_starts[s] for s in layout.starts), layout.complete_chars]
    blocks = [text[bounds[k]:bounds[k + 1]] for k in range(len(layout.starts))]
    atomic_write_text(path, "".join(blocks[k] for k in order))


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
