"""Reading and validating small molecules.

Everything enters hybridff as an RDKit ``Mol`` with explicit hydrogens, sanitized, with
unique atom names and (where needed) a 3D conformer. Accepted inputs: RDKit molecules,
openff-toolkit ``Molecule`` objects, SMILES strings, and SDF / MOL / mol2 / SMI files.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem

from hybridff.elements import SUPPORTED_ELEMENTS, is_supported
from hybridff.exceptions import (
    HybridFFError,
    MoleculeInputError,
    OverlappingAtomsError,
    UnsupportedChemistryError,
    UnsupportedElementError,
)

logger = logging.getLogger(__name__)

MOLECULE_SUFFIXES = (".sdf", ".mol", ".mol2", ".smi")


def atom_label(mol: Chem.Mol, index: int) -> str:
    """Human-readable label of an atom for error messages: 'atom 3 (C3, C)'."""
    atom = mol.GetAtomWithIdx(index)
    name = None
    for prop in ("_hybridff_name", "_TriposAtomName"):  # mol2 names before hybridff names atoms
        if atom.HasProp(prop):
            name = atom.GetProp(prop).strip() or None
            break
    name_part = f"{name}, " if name else ""
    return f"atom {index} ({name_part}{atom.GetSymbol()})"


#: Two atoms closer than this (Angstrom) are refused as overlapping: the shortest real bond,
#: H-H in H2, is 0.74 Angstrom, and force fields and QM blow up well before atoms coincide.
MIN_ATOM_DISTANCE_ANGSTROM = 0.5

#: mol2 bond types RDKit reads (others are dropped with only a warning on stderr).
MOL2_BOND_TYPES = frozenset({"1", "2", "3", "am", "ar", "du", "un", "nc"})


def find_overlaps(xyz: Any, min_distance: float, box: Any = None) -> list[tuple[int, int, float]]:
    """Atom pairs ``(i, j, distance)`` closer than ``min_distance``, closest first.

    ``xyz`` (N, 3) and ``min_distance`` in the same length unit; ``box``: the edge lengths of an
    orthorhombic periodic box in that unit (minimum-image distances), or ``None``.
    """
    from scipy.spatial import cKDTree

    xyz = np.asarray(xyz, dtype=float).reshape(-1, 3)
    if len(xyz) < 2 or not np.isfinite(xyz).all():
        return []
    if box is not None:
        box = np.asarray(box, dtype=float)
        wrapped = xyz - np.floor(xyz / box) * box
        wrapped[wrapped >= box] = 0.0  # rounding can land exactly on the upper face
        tree = cKDTree(wrapped, boxsize=box)
    else:
        tree = cKDTree(xyz)
    pairs = tree.query_pairs(min_distance, output_type="ndarray")
    if not len(pairs):
        return []
    delta = xyz[pairs[:, 0]] - xyz[pairs[:, 1]]
    if box is not None:
        delta -= box * np.round(delta / box)
    dist = np.linalg.norm(delta, axis=1)
    order = np.argsort(dist, kind="stable")
    return [(int(pairs[k, 0]), int(pairs[k, 1]), float(dist[k])) for k in order]


def check_coordinates(
    xyz_angstrom: Any,
    atom_text: Callable[[int], str],
    where: str,
    advice: str,
    *,
    error: type[HybridFFError] = MoleculeInputError,
    overlap_error: type[HybridFFError] = OverlappingAtomsError,
    overlap_advice: str | None = None,
    box_angstrom: Any = None,
    overlaps: bool = True,
) -> None:
    """Raise for non-finite coordinates (``error``) or, with ``overlaps``, atoms closer than
    :data:`MIN_ATOM_DISTANCE_ANGSTROM` (``overlap_error``).

    The one geometry check of molecule files, QM frames and simulation positions: messages
    read ``"{where}: {atom_text(i)} ... ; {advice}"``.
    """
    xyz = np.asarray(xyz_angstrom, dtype=float)
    prefix = f"{where}: " if where else ""
    bad = np.argwhere(~np.isfinite(xyz))
    if bad.size:
        i = int(bad[0][0])
        raise error(f"{prefix}{atom_text(i)} has non-finite coordinates {xyz[i].tolist()} "
                    f"Angstrom; {advice}")
    pairs = find_overlaps(xyz, MIN_ATOM_DISTANCE_ANGSTROM, box_angstrom) if overlaps else []
    if pairs:
        i, j, d = pairs[0]
        more = f" ({len(pairs) - 1} more such pair(s))" if len(pairs) > 1 else ""
        raise overlap_error(
            f"{prefix}{atom_text(i)} and {atom_text(j)} are {d:.3f} Angstrom apart, closer than "
            f"{MIN_ATOM_DISTANCE_ANGSTROM} Angstrom: overlapping atoms{more}; "
            f"{overlap_advice or advice}")


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
        if m is None:
            said = _rdkit_errors(capture)
            raise MoleculeInputError(
                f"{path}: record {i + 1} could not be parsed (it starts at line {line}"
                + (f"; RDKit: {said}" if said else "")
                + "): a broken or truncated SDF record, or a valence RDKit rejects (RDKit "
                f"counts atoms from 0){_valence_advice(said)}; fix or re-export the file"
            )
        where = f"{path}, record {i + 1} (line {line})"
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
    if len(atoms) != n_atoms:
        raise MoleculeInputError(
            f"{where} (line {first}): declares {n_atoms} atoms, its ATOM section has {len(atoms)}; "
            f"{truncated if len(atoms) < n_atoms else 'check the counts line'}")
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
    if len(bonds) != n_bonds:
        raise MoleculeInputError(
            f"{where} (line {first}): declares {n_bonds} bonds, its BOND section has {len(bonds)}; "
            f"{truncated if len(bonds) < n_bonds else 'check the counts line'}")
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
            said = _rdkit_errors(capture)
            raise MoleculeInputError(
                f"{where}: RDKit could not build a molecule from it"
                + (f" ({said})" if said else "")
                + "; RDKit needs SYBYL atom types and bond orders that match them, hybridff "
                "also reads GAFF/GAFF2 types (antechamber -fo mol2); check the atom types and "
                "the charges, or convert the file to SDF")
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


def _names_a_file(text: str) -> bool:
    """Whether a string given as a molecule is a file name rather than a SMILES: it has a
    molecule file's suffix or names an existing path (a SMILES too long to be a file name,
    over 255 characters, is no path)."""
    if not text.strip():
        return False
    try:
        return Path(text).suffix.lower() in MOLECULE_SUFFIXES or Path(text).exists()
    except (OSError, ValueError):  # 'file name too long', embedded NUL
        return False


def _smiles_errors(capture: Any) -> str:
    """RDKit's reason for refusing a SMILES, short: where the parse failed (with the 20
    characters before it) or the valence / aromaticity complaint, without the SMILES echoed."""
    lines = [re.sub(r"^\[[0-9:]+\]\s*", "", line).rstrip()
             for line in capture.messages.splitlines()]
    out: list[str] = []
    for k, line in enumerate(lines):
        text = line.replace("SMILES Parse Error: ", "").strip()
        if (not text or set(text) <= {"~", "^"} or text.startswith("syntax error while parsing")
                or text.startswith("Failed parsing SMILES") or (k and lines[k - 1].rstrip()
                                                                 .endswith(":"))):
            continue
        if text.endswith(":") and k + 1 < len(lines):
            text = f"{text} {lines[k + 1].strip()}"
        if text not in out:
            out.append(text)
    return "; ".join(out)[:300]


def smiles_to_mol(smiles: str) -> Chem.Mol:
    """An RDKit molecule (implicit hydrogens) from a SMILES string; a clear error, with
    RDKit's reason, when it does not parse."""
    from rdkit import rdBase

    with rdBase.CaptureErrorLog() as capture:
        m = Chem.MolFromSmiles(smiles.strip()) if smiles.strip() else None
    if m is None:
        said = _smiles_errors(capture)
        shown = smiles if len(smiles) <= 80 else f"{smiles[:60]}... ({len(smiles)} characters)"
        raise MoleculeInputError(
            f"{shown!r} is neither an existing molecule file nor a SMILES RDKit can parse"
            + (f" (RDKit: {said})" if said else "")
            + "; check the file name, or the SMILES (brackets, ring closures, charges)")
    return m


def _from_object(obj: Any) -> list[tuple[Chem.Mol, str | None]]:
    if isinstance(obj, Chem.Mol):
        return [(Chem.Mol(obj), None)]
    if type(obj).__module__.startswith("openff."):
        return [(obj.to_rdkit(), None)]
    if isinstance(obj, Path):
        return _read_file(obj)
    if isinstance(obj, str):
        if _names_a_file(obj):
            return _read_file(Path(obj))
        return [(smiles_to_mol(obj), None)]
    raise MoleculeInputError(
        f"cannot read a molecule from {type(obj).__name__}; give an RDKit Mol, an openff "
        "Molecule, a SMILES string or an SDF/mol2/SMI path"
    )


def validate_molecule(mol: Chem.Mol) -> None:
    """Raise a clear error for unsupported elements, radicals, non-finite coordinates or
    overlapping atoms (closer than :data:`MIN_ATOM_DISTANCE_ANGSTROM` in a 3D conformer)."""
    for atom in mol.GetAtoms():
        if not is_supported(atom.GetAtomicNum()):
            raise UnsupportedElementError(
                f"{atom_label(mol, atom.GetIdx())}: element {atom.GetSymbol()} is not supported; "
                f"hybridff covers {', '.join(SUPPORTED_ELEMENTS)}"
            )
        if atom.GetNumRadicalElectrons():
            raise UnsupportedChemistryError(
                f"{atom_label(mol, atom.GetIdx())} has {atom.GetNumRadicalElectrons()} unpaired "
                "electron(s): radicals are not supported; add the missing hydrogens or fix the "
                "formal charges of the input"
            )
    several = mol.GetNumConformers() > 1
    for conf in mol.GetConformers():
        which = f"conformer {conf.GetId()}: " if several else ""
        pos = conf.GetPositions()
        check_coordinates(
            pos, lambda i: atom_label(mol, i), which.rstrip(": "), "fix the input structure",
            overlap_advice="fix the input structure (or give the molecule without coordinates, "
            "e.g. as SMILES, to have a conformer generated)",
            overlaps=conf.Is3D())  # 2D depictions may stack atoms; a 3D conformer is made later


def _assign_names(mol: Chem.Mol) -> None:
    """Give every atom a unique name (PDB names where present and unique, else element+count)."""
    names = []
    for atom in mol.GetAtoms():
        info = atom.GetPDBResidueInfo()
        names.append(info.GetName().strip() if info is not None else "")
    if any(not n for n in names) or len(set(names)) != len(names):
        counts: dict[str, int] = {}
        names = []
        for atom in mol.GetAtoms():
            sym = atom.GetSymbol()
            counts[sym] = counts.get(sym, 0) + 1
            names.append(f"{sym}{counts[sym]}")
    for atom, name in zip(mol.GetAtoms(), names, strict=True):
        atom.SetProp("_hybridff_name", name)


def _warn_added_hydrogens(mol: Chem.Mol, n_before: int, where: str | None) -> None:
    """Warn that hydrogens were added to a molecule that lists its own (atoms ``n_before``
    onwards are the added ones)."""
    added: dict[int, int] = {}
    for atom in mol.GetAtoms():
        if atom.GetIdx() >= n_before:
            heavy = atom.GetNeighbors()[0].GetIdx()
            added[heavy] = added.get(heavy, 0) + 1
    named = ", ".join(f"{atom_label(mol, i)}: {n} H" for i, n in sorted(added.items()))
    logger.warning(
        "%sthe input lists its hydrogens, yet %d atom(s) have fewer bonds than their neutral "
        "valence: hydrogens were added, changing the molecule: %s. If these atoms are charged "
        "(O- with one bond, N+ with four), give their charges in the file (SDF: the 'M  CHG' "
        "line); if hydrogens are missing, add them to the file",
        f"{where}: " if where else "", len(added), named)


def atom_names(mol: Chem.Mol) -> list[str]:
    """Unique atom names of a molecule prepared by :func:`load_molecule`."""
    return [a.GetProp("_hybridff_name") for a in mol.GetAtoms()]


def ensure_conformer(mol: Chem.Mol, seed: int = 0xF00D) -> Chem.Mol:
    """Add a 3D conformer (ETKDG, seeded) when the molecule has none or only a 2D one."""
    has_3d = mol.GetNumConformers() > 0 and mol.GetConformer().Is3D()
    if has_3d:
        return mol
    mol.RemoveAllConformers()
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    if AllChem.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise MoleculeInputError(
                f"could not generate a 3D conformer for {Chem.MolToSmiles(mol)}; give 3D input"
            )
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol)
    return mol


def keep_largest_fragment(mol: Chem.Mol, where: str | None = None) -> Chem.Mol:
    """The largest organic fragment of a salt or mixture (``Cl.CN``, ``CC(=O)[O-].[Na+]``),
    with a warning naming the fragments removed and the net charge kept; a molecule of one
    fragment is returned as it is.

    The choice is RDKit's ``LargestFragmentChooser`` (organic fragments first, then the most
    atoms, hydrogens included); atom properties and coordinates of the kept atoms stay.
    """
    from rdkit.Chem.MolStandardize import rdMolStandardize

    if len(Chem.GetMolFrags(mol)) < 2:
        return mol
    kept = rdMolStandardize.LargestFragmentChooser(preferOrganic=True).choose(mol)
    kept_smiles = Chem.MolToSmiles(Chem.RemoveHs(kept, sanitize=False))
    removed = [Chem.MolToSmiles(Chem.RemoveHs(f, sanitize=False))
               for f in Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)]
    removed.remove(next((r for r in removed if r == kept_smiles), removed[0]))
    total = int(Chem.GetFormalCharge(mol))
    net = int(Chem.GetFormalCharge(kept))
    organic = any(a.GetAtomicNum() == 6 for a in kept.GetAtoms())
    logger.warning(
        "%s%s has %d fragments: kept the largest%s one, %s (net charge %+d e; the input's "
        "was %+d e), removed %s; give a fragment on its own to parameterize it, and add "
        "counter-ions to a simulation box with Modeller.addSolvent(..., neutralize=True)",
        f"{where}: " if where else "", Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False)),
        len(removed) + 1, " organic" if organic else "", kept_smiles, net, total,
        ", ".join(removed))
    return kept


def prepare(mol: Chem.Mol, conformer: bool = True, where: str | None = None) -> Chem.Mol:
    """Sanitize, add explicit hydrogens (with coordinates), validate, name atoms.

    A molecule that already lists hydrogens but lacks some RDKit's valence rules expect
    (often an O- or N+ whose charge the file does not give) gets them with a warning naming
    the atoms (``where``: the file and record, for the message).
    """
    mol = Chem.Mol(mol)
    try:
        Chem.SanitizeMol(mol)
    except Exception as exc:  # RDKit raises several unrelated types here
        raise MoleculeInputError(f"RDKit could not sanitize the molecule: {exc}") from exc
    n_before = mol.GetNumAtoms()
    listed_hydrogens = any(a.GetAtomicNum() == 1 for a in mol.GetAtoms())
    mol = Chem.AddHs(mol, addCoords=mol.GetNumConformers() > 0)
    if listed_hydrogens and mol.GetNumAtoms() != n_before:
        _warn_added_hydrogens(mol, n_before, where)
    if mol.GetNumAtoms() != n_before:
        for atom in mol.GetAtoms():  # names of the input no longer unique/complete
            if atom.GetPDBResidueInfo() is not None and atom.GetIdx() >= n_before:
                atom.SetMonomerInfo(None)
    validate_molecule(mol)
    if conformer:
        mol = ensure_conformer(mol)
        validate_molecule(mol)
    _assign_names(mol)
    if not mol.HasProp("_Name") or not mol.GetProp("_Name").strip():
        mol.SetProp("_Name", "MOL")
    return mol


def load_molecules(source: Any, conformer: bool = True) -> list[Chem.Mol]:
    """Read one or more molecules from any accepted input and prepare them."""
    if isinstance(source, (list, tuple)):
        out: list[Chem.Mol] = []
        for item in source:
            out.extend(load_molecules(item, conformer=conformer))
        return out
    return [_prepared(mol, where, conformer) for mol, where in _from_object(source)]


def _prepared(mol: Chem.Mol, where: str | None, conformer: bool = True) -> Chem.Mol:
    """The largest fragment of ``mol``, prepared; errors name ``where`` (file and record)."""
    try:
        mol = keep_largest_fragment(mol, where)
        return prepare(mol, conformer=conformer, where=where)
    except MoleculeInputError as exc:
        if where is None:
            raise
        raise type(exc)(f"{where}: {exc}") from exc  # say which file and record


def load_record(text: str, kind: str, where: str, conformer: bool = True) -> Chem.Mol:
    """One record of a molecule file, read and prepared as :func:`load_molecules` would:
    ``kind`` ``"sdf"`` (the record's text, its data items kept as properties) or ``"smi"``
    (a SMILES, optionally followed by a name). ``where`` ('file, record k (line n)') starts
    every error message. Lets many-molecule work read each record on its own, so that one
    bad record fails alone."""
    from rdkit import rdBase

    with rdBase.CaptureErrorLog() as capture:
        if kind == "sdf":
            supplier = Chem.SDMolSupplier()
            supplier.SetData(text, sanitize=True, removeHs=False)
            mol = next(iter(supplier), None)
        elif kind == "smi":
            fields = text.split()
            mol = Chem.MolFromSmiles(fields[0]) if fields else None
            if mol is not None and len(fields) > 1:
                mol.SetProp("_Name", fields[1])
        else:
            raise ValueError(f"unknown record kind {kind!r}; expected 'sdf' or 'smi'")
    if mol is None:
        if kind == "smi":
            said = _smiles_errors(capture)
            raise MoleculeInputError(
                f"{where}: unparseable SMILES {text.split()[0] if text.split() else ''!r}"
                + (f" (RDKit: {said})" if said else "")
                + "; check the brackets, ring closures and charges")
        said = _rdkit_errors(capture)
        raise MoleculeInputError(
            f"{where}: the record could not be parsed" + (f" (RDKit: {said})" if said else "")
            + "; a broken or truncated SDF record, or a valence RDKit rejects (RDKit counts "
            f"atoms from 0){_valence_advice(said)}; fix or re-export it")
    return _prepared(mol, where, conformer)


def load_molecule(source: Any, conformer: bool = True) -> Chem.Mol:
    """Read exactly one molecule; error if the input holds several."""
    mols = load_molecules(source, conformer=conformer)
    if len(mols) != 1:
        raise MoleculeInputError(f"expected one molecule, found {len(mols)} in {source!r}")
    return mols[0]


def formal_charge(mol: Chem.Mol) -> int:
    """Net formal charge of a molecule (e)."""
    return int(Chem.GetFormalCharge(mol))


def canonical_smiles(mol: Chem.Mol) -> str:
    """Canonical isomeric SMILES with explicit hydrogens removed (a content key)."""
    return Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=True)

