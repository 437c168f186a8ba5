"""Molecule files read into RDKit molecules, each with where it came from: SDF/MOL (with
RDKit's own errors made readable), mol2 (its layout checked; GAFF-typed mol2 read from the
atom types) and SMI."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from rdkit import Chem

from hybridff.exceptions import (
    MoleculeInputError,
)

logger = logging.getLogger(__name__)


MOLECULE_SUFFIXES = (".sdf", ".mol", ".mol2", ".smi")


#: mol2 bond types RDKit reads (others are dropped with only a warning on stderr).
MOL2_BOND_TYPES = frozenset({"1", "2", "3", "am", "ar", "du", "un", "nc"})


#: lines of RDKit's C++ invariant reports that say nothing to a user (banners, the source
#: file and expression, the stack trace that follows "Stacktrace:")
_RDKIT_NOISE = re.compile(r"^(\*{3,}|-{3,}|Violation occurred|Failed Expression|"
                          r"Pre-condition Violation|Post-condition Violation|Invariant Violation|"
                          r"Range Error|\d+# )")


def _rdkit_errors(capture: Any) -> str:
    """RDKit's own error lines (without timestamps, C++ file names or stack traces), joined;
    '' when it said nothing."""
    lines: list[str] = []
    for line in capture.messages.splitlines():
        text = re.sub(r"^\[[0-9:]+\]\s*", "", line).strip()
        text = re.sub(r"^(ERROR|WARNING):\s*", "", text)
        if text.startswith("Stacktrace"):
            break
        if (text and text not in lines and not _RDKIT_NOISE.match(text)
                and "moving to the beginning of the next" not in text):
            lines.append(text)
    return "; ".join(lines)[:300]


def _valence_advice(said: str) -> str:
    """Advice for RDKit's 'Explicit valence for atom # i N, 4, ...': a charged atom (N+ with
    four bonds) whose charge the file does not give."""
    found = re.search(r"valence for atom # ?(\d+) (\w+)", said)
    if not found:
        return ""
    return (f"; atom {found.group(1)} ({found.group(2)}) has more bonds than its neutral "
            "valence: if it is charged (e.g. N+ with four bonds), give its charge in the file "
            "(SDF: the 'M  CHG' line or the atom block's charge field)")


#: what to do about an SDF record RDKit refused
SDF_ADVICE = ("a broken or truncated SDF record, or a valence RDKit rejects (RDKit counts atoms "
              "from 0); fix or re-export it")


def rdkit_refused(where: str, capture: Any, advice: str) -> MoleculeInputError:
    """The error for a record RDKit could not build a molecule from: ``where`` it is, RDKit's
    own words from ``capture`` (an ``rdBase.CaptureErrorLog``), advice on a valence RDKit
    named, then ``advice``."""
    said = _rdkit_errors(capture)
    return MoleculeInputError(f"{where}: RDKit could not build a molecule from it"
                              + (f" ({said})" if said else "") + f"{_valence_advice(said)}; "
                              + advice)


def _read_sdf(path: Path) -> list[tuple[Chem.Mol, str]]:
    from rdkit import rdBase

    # first line of each record (1-based), for messages
    starts = [1]
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if line.strip() == "$$$$":
            starts.append(lineno + 1)
    supplier = Chem.SDMolSupplier(str(path), removeHs=False, sanitize=True)
    out: list[tuple[Chem.Mol, str]] = []
    records = iter(supplier)
    i = 0
    while True:
        with rdBase.CaptureErrorLog() as capture:
            try:
                m = next(records)
            except StopIteration:
                break
        line = starts[i] if i < len(starts) else "?"
        where = f"{path}, record {i + 1} (line {line})"
        if m is None:
            raise rdkit_refused(where, capture, SDF_ADVICE)
        out.append((m, where))
        i += 1
    if not out:
        raise MoleculeInputError(f"{path}: no molecule records found (empty or not an SDF file)")
    return out


def _check_mol2_record(path: Path, record: int, lines: list[str], first: int,
                       last_record: bool) -> tuple[int, int]:
    """Check one mol2 record's layout; return its declared (atoms, bonds).

    ``lines``: the record's lines, ``first``: the file line number of ``lines[0]``.
    """
    where = f"{path}, record {record}"

    def fail(k: int, what: str) -> MoleculeInputError:
        return MoleculeInputError(f"{where}, line {first + k}: {what}; fix or re-export the file")

    if len(lines) < 3:
        raise MoleculeInputError(
            f"{where} (line {first}): the file ends inside the MOLECULE header: truncated; "
            "re-export it from the program that wrote it")
    counts = lines[2].split()
    try:
        n_atoms = int(counts[0])
        n_bonds = int(counts[1]) if len(counts) > 1 else 0
    except (ValueError, IndexError):
        raise fail(2, f"expected the counts line 'atoms bonds ...', found {lines[2].strip()!r}") from None
    sections: dict[str, int] = {}
    for k, line in enumerate(lines):
        if line.strip().upper().startswith("@<TRIPOS>"):
            sections.setdefault(line.strip().upper()[9:], k)

    def body(name: str) -> list[tuple[int, list[str]]]:
        if name not in sections:
            return []
        rows = []
        for k in range(sections[name] + 1, len(lines)):
            if lines[k].strip().startswith("@<TRIPOS>"):
                break
            if lines[k].strip() and not lines[k].lstrip().startswith("#"):
                rows.append((k, lines[k].split()))
        return rows

    truncated = (f"the file ends at line {first + len(lines) - 1}: truncated; re-export it from "
                 "the program that wrote it" if last_record else "check the counts line")

    def check_count(section: str, found: int, declared: int) -> None:
        """``section`` (ATOM or BOND) has as many rows as the counts line declares."""
        if found != declared:
            raise MoleculeInputError(
                f"{where} (line {first}): declares {declared} {section.lower()}s, its {section} "
                f"section has {found}; "
                f"{truncated if found < declared else 'check the counts line'}")

    atoms = body("ATOM")
    if "ATOM" not in sections:
        raise MoleculeInputError(f"{where} (line {first}): no @<TRIPOS>ATOM section; {truncated}")
    for a, (k, fields) in enumerate(atoms):
        try:
            int(fields[0])
            [float(v) for v in fields[2:5]]
            ok = len(fields) >= 6
        except (ValueError, IndexError):
            ok = False
        if not ok:
            raise fail(k, f"atom {a} (mol2 atom id {a + 1}): expected 'id name x y z type ...', "
                          f"found {lines[k].strip()!r}")
    check_count("ATOM", len(atoms), n_atoms)
    bonds = body("BOND")
    if n_bonds and "BOND" not in sections:
        raise MoleculeInputError(
            f"{where} (line {first}): declares {n_bonds} bonds but has no @<TRIPOS>BOND section; "
            f"{truncated}")
    for k, fields in bonds:
        try:
            ends = [int(fields[1]), int(fields[2])]
            ok = len(fields) >= 4 and all(1 <= e <= n_atoms for e in ends)
        except (ValueError, IndexError):
            ok = False
        if not ok:
            raise fail(k, f"expected a bond 'id atom1 atom2 type' between atoms 1..{n_atoms}, "
                          f"found {lines[k].strip()!r}")
        if fields[3].lower() not in MOL2_BOND_TYPES:
            raise fail(k, f"bond type {fields[3]!r} is not one RDKit reads "
                          f"({', '.join(sorted(MOL2_BOND_TYPES))}); the bond would be lost")
    check_count("BOND", len(bonds), n_bonds)
    return n_atoms, n_bonds


#: GAFF/GAFF2 atom types whose element is not their first letter (all others: h*, c*, n*,
#: o*, s*, p*, f, i are H, C, N, O, S, P, F, I)
_GAFF_TWO_LETTER_ELEMENTS = {"cl": "Cl", "br": "Br"}


_GAFF_FIRST_LETTER_ELEMENTS = {"h": "H", "c": "C", "n": "N", "o": "O", "s": "S", "p": "P",
                               "f": "F", "i": "I"}


def gaff_element(atom_type: str) -> str | None:
    """Element symbol of a GAFF/GAFF2 atom type (``ca`` -> C, ``cl`` -> Cl, ``n4`` -> N,
    ``hn`` -> H); None for a string that is not one."""
    t = atom_type.strip()
    if not t or not t[0].islower() or "." in t:
        return None
    if t[:2] in _GAFF_TWO_LETTER_ELEMENTS:
        return _GAFF_TWO_LETTER_ELEMENTS[t[:2]]
    return _GAFF_FIRST_LETTER_ELEMENTS.get(t[0])


def _mol2_rows(block: list[str], section: str) -> list[tuple[int, list[str]]]:
    """(index in ``block``, fields) of the data lines of one @<TRIPOS> section."""
    rows: list[tuple[int, list[str]]] = []
    inside = False
    for k, line in enumerate(block):
        text = line.strip()
        if text.upper().startswith("@<TRIPOS>"):
            inside = text.upper() == f"@<TRIPOS>{section}"
            continue
        if inside and text and not text.startswith("#"):
            rows.append((k, text.split()))
    return rows


def _is_gaff_typed(block: list[str]) -> bool:
    """Whether a mol2 record carries GAFF/GAFF2 (lower-case, antechamber) atom types rather
    than SYBYL ones (``C.ar``, ``N.am``, ``Cl``)."""
    types = [fields[5] for _, fields in _mol2_rows(block, "ATOM")]
    return bool(types) and all(t[0].islower() and "." not in t for t in types)


def _read_gaff_mol2_record(block: list[str], first: int, where: str) -> Chem.Mol:
    """One GAFF-typed mol2 record (antechamber's ``-fo mol2 -at gaff2``) as an RDKit Mol.

    Elements come from the atom types, connectivity from the BOND section; bond orders and
    formal charges are perceived from the connectivity (RDKit's ``DetermineBondOrders``)
    with the net charge the charge column sums to, because antechamber's bond types do not
    say where a charge sits (a carboxylate's C-O bonds are both written as single). The
    charge column is kept as ``_TriposPartialCharge`` for ``--charges file``.
    """
    from rdkit import rdBase
    from rdkit.Chem import rdDetermineBonds
    from rdkit.Geometry import Point3D

    header = [line.strip() for line in block[1:5]] + ["", "", "", ""]
    charge_type = header[3].upper()
    atoms = _mol2_rows(block, "ATOM")
    rw = Chem.RWMol()
    conf = Chem.Conformer(len(atoms))
    charges: list[float] = []
    for i, (k, fields) in enumerate(atoms):
        element = gaff_element(fields[5])
        if element is None:
            raise MoleculeInputError(
                f"{where}, line {first + k}: atom {i} ({fields[1]}) has the atom type "
                f"{fields[5]!r}, not a GAFF/GAFF2 type; give every atom a GAFF2 type (antechamber "
                "-at gaff2) or a SYBYL type, or convert the file to SDF")
        atom = Chem.Atom(element)
        atom.SetNoImplicit(True)  # a GAFF-typed file lists every hydrogen
        atom.SetProp("_TriposAtomName", fields[1])
        atom.SetProp("_TriposAtomType", fields[5])
        if charge_type != "NO_CHARGES" and len(fields) >= 9:
            try:
                charges.append(float(fields[8]))
            except ValueError:
                raise MoleculeInputError(
                    f"{where}, line {first + k}: atom {i} ({fields[1]}): charge {fields[8]!r} is "
                    "not a number; fix or re-export the file") from None
            atom.SetDoubleProp("_TriposPartialCharge", charges[-1])
        rw.AddAtom(atom)
        conf.SetAtomPosition(i, Point3D(*(float(v) for v in fields[2:5])))
    for _, fields in _mol2_rows(block, "BOND"):
        rw.AddBond(int(fields[1]) - 1, int(fields[2]) - 1, Chem.BondType.SINGLE)
    conf.Set3D(True)
    rw.AddConformer(conf, assignId=True)
    bare = rw.GetMol()
    has_charges = len(charges) == len(atoms) and any(charges)
    column = round(sum(charges)) if has_charges else None
    tried = list(dict.fromkeys(([column] if column is not None else []) + [0, 1, -1, 2, -2, 3, -3]))
    for net in tried:
        mol = Chem.Mol(bare)
        try:
            with rdBase.CaptureErrorLog():
                rdDetermineBonds.DetermineBondOrders(mol, charge=net, maxIterations=200_000)
        except Exception:  # RDKit: ValueError / RuntimeError when no assignment fits
            continue
        break
    else:
        raise MoleculeInputError(
            f"{where}: no bond orders and formal charges fit the bonds of this GAFF-typed mol2 "
            f"(net charges {', '.join(f'{q:+d}' for q in tried)} tried); check that every "
            "hydrogen is listed and every bond is in the BOND section, or convert the file to SDF")
    if column is not None and net != column:
        logger.warning("%s: the charge column totals %+.4f e but the structure's net charge is "
                       "%+d e; --charges file will refuse these charges", where, sum(charges), net)
    mol.SetProp("_Name", header[0] or "MOL")
    mol.SetProp("_TriposChargeType", charge_type or "NO_CHARGES")
    return mol


def _read_mol2(path: Path) -> list[tuple[Chem.Mol, str]]:
    from rdkit import rdBase

    lines = path.read_text(errors="replace").splitlines()
    starts = [k for k, line in enumerate(lines)
              if line.strip().upper().startswith("@<TRIPOS>MOLECULE")]
    if not starts:
        raise MoleculeInputError(f"{path}: no @<TRIPOS>MOLECULE record (empty or not a mol2 file)")
    out: list[tuple[Chem.Mol, str]] = []
    for r, start in enumerate(starts):
        end = starts[r + 1] if r + 1 < len(starts) else len(lines)
        block = lines[start:end]
        n_atoms, n_bonds = _check_mol2_record(path, r + 1, block, start + 1, r + 1 == len(starts))
        where = f"{path}, record {r + 1} (line {start + 1})"
        if _is_gaff_typed(block):
            out.append((_read_gaff_mol2_record(block, start + 1, where), where))
            continue
        with rdBase.CaptureErrorLog() as capture:
            m = Chem.MolFromMol2Block("\n".join(block) + "\n", removeHs=False, sanitize=True)
        if m is None:
            raise rdkit_refused(
                where, capture, "RDKit needs SYBYL atom types and bond orders that match them, "
                "hybridff also reads GAFF/GAFF2 types (antechamber -fo mol2); check the atom "
                "types and the charges, or convert the file to SDF")
        if m.GetNumAtoms() != n_atoms or m.GetNumBonds() != n_bonds:
            raise MoleculeInputError(
                f"{where}: declares {n_atoms} atoms and {n_bonds} bonds, RDKit read "
                f"{m.GetNumAtoms()} and {m.GetNumBonds()}; convert the file to SDF")
        out.append((m, where))
    return out


def _read_file(path: Path) -> list[tuple[Chem.Mol, str]]:
    """Molecules of a file, each with where it came from ('file, record k (line n)')."""
    if not path.exists():
        raise MoleculeInputError(f"molecule file {str(path)!r} does not exist")
    if path.is_dir():
        raise MoleculeInputError(
            f"{path} is a folder, not a molecule file; give an SDF, MOL, mol2 or SMI file in it "
            "(or a SMILES string)")
    suffix = path.suffix.lower()
    try:
        empty = not path.read_bytes().strip()
    except OSError as exc:
        raise MoleculeInputError(f"{path}: cannot read the file ({exc.strerror}); check its "
                                 "permissions") from None
    if empty:
        raise MoleculeInputError(f"{path}: the file is empty; give a file with at least one "
                                 "molecule (or a SMILES string)")
    if suffix in (".sdf", ".mol"):
        return _read_sdf(path)
    if suffix == ".mol2":
        return _read_mol2(path)
    if suffix == ".smi":
        mols = []
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            m = Chem.MolFromSmiles(fields[0])
            if m is None:
                raise MoleculeInputError(f"{path}:{lineno}: unparseable SMILES {fields[0]!r}")
            if len(fields) > 1:
                m.SetProp("_Name", fields[1])
            mols.append((m, f"{path}:{lineno}"))
        if not mols:
            raise MoleculeInputError(f"{path}: no SMILES found")
        return mols
    raise MoleculeInputError(
        f"{path}: unknown molecule format {suffix!r}; use one of {', '.join(MOLECULE_SUFFIXES)}"
    )
