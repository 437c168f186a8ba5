"""GAFF2 atom typing from SMARTS rules that reproduce antechamber's ``-at gaff2`` types.

The rules live in a ``<HybridFFAtomTyping>`` element of a force-field XML file, by default the
shipped ``hybridff-gaff2.xml`` (package data ``hybridff.forcefields``, the one file the package
reads; the build script of the repository writes it from the commented rule source). Typing
has three steps:

1. perception on a private copy of the molecule: Kekule bonds, and antechamber-like ring
   classes (pure aromatic six-membered rings = AR1; other planar conjugated rings = AR2/AR3)
   exposed to SMARTS as isotope labels ``[1*]`` / ``[2*]`` and (AR1 only) as aromatic flags;
2. ordered first-match SMARTS rules, one GAFF2 type per atom;
3. conjugated pairs (cc/cd, ce/cf, nc/nd, ...): each connected system of pair atoms is labelled
   so that double/triple bonds join different labels and single bonds equal ones.
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from rdkit import Chem

from hybridff.exceptions import AtomTypingError, ForceFieldNotFoundError, InvalidOptionError
from hybridff.io.molecule import atom_label
from hybridff.mm.forcefield_files import forcefield_path
from hybridff.mm.signature import DEFAULT_PAIR_ORDER, PAIR_ORDERS

TYPING_TAG = "HybridFFAtomTyping"

#: isotope labels used for antechamber's ring classes during matching
LABEL_AR1 = 1
LABEL_PLANAR = 2


_MACRO = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class TypingRule:
    """One SMARTS rule: the first atom of ``smarts`` gets ``atom_type``."""

    atom_type: str
    smarts: str
    query: Chem.Mol


def _default_xml() -> Path:
    """The shipped force-field file, which carries the typing rules."""
    return forcefield_path()


def find_typing_element(path: str | Path) -> ET.Element:
    """The first ``<HybridFFAtomTyping>`` element anywhere in an XML file."""
    if not Path(path).is_file():
        raise ForceFieldNotFoundError(f"typing rules file {str(path)!r} does not exist")
    try:
        root = ET.parse(str(path)).getroot()
    except ET.ParseError as exc:
        raise AtomTypingError(f"{path}: not well-formed XML ({exc})") from exc
    elem = root if root.tag == TYPING_TAG else root.find(f".//{TYPING_TAG}")
    if elem is None:
        raise AtomTypingError(
            f"{path}: no <{TYPING_TAG}> element; give a force-field file that carries typing "
            "rules (e.g. hybridff-gaff2.xml)"
        )
    return elem


class AtomTyper:
    """Assigns GAFF2 atom types with ordered SMARTS rules plus conjugated-pair labelling."""

    def __init__(
        self,
        rules: list[TypingRule],
        pairs: dict[str, str],
        source: str = "",
        pair_order: str = DEFAULT_PAIR_ORDER,
    ) -> None:
        if pair_order not in PAIR_ORDERS:
            raise InvalidOptionError(f"pair_order must be one of {PAIR_ORDERS}, not {pair_order!r}")
        self.rules = rules
        self.pairs = dict(pairs)  # first label -> second label
        self.source = source
        self.pair_order = pair_order

    @classmethod
    def from_xml(cls, path: str | Path | None = None, pair_order: str = DEFAULT_PAIR_ORDER) -> AtomTyper:
        """Read and compile the typing rules of a force-field XML file.

        ``pair_order``: ``"canonical"`` (default) makes every label independent of atom order;
        ``"index"`` labels conjugated pairs as antechamber does, which depends on the atom
        order for the cc/cd choice (and, since GAFF2 fits cc- and cd- terms apart, for the
        parameters).
        """
        path = Path(path) if path is not None else _default_xml()
        elem = find_typing_element(path)
        macros = {m.get("name"): (m.text or "").strip() for m in elem.iter("Macro")}

        def lookup(match: re.Match[str]) -> str:
            if match.group(1) not in macros:
                raise AtomTypingError(f"{path}: unknown macro {{{match.group(1)}}}")
            return macros[match.group(1)]

        def expand(smarts: str) -> str:
            for _ in range(10):  # macros may refer to macros
                new = _MACRO.sub(lookup, smarts)
                if new == smarts:
                    return new
                smarts = new
            return smarts

        rules = []
        for node in elem.iter("Type"):
            name, raw = node.get("name"), node.get("smarts")
            if not name or not raw:
                raise AtomTypingError(f"{path}: <Type> needs 'name' and 'smarts' attributes")
            smarts = expand(raw)
            query = Chem.MolFromSmarts(smarts)
            if query is None:
                raise AtomTypingError(f"{path}: rule {name!r} has invalid SMARTS {smarts!r}")
            rules.append(TypingRule(name, smarts, query))
        pairs = {p.get("first"): p.get("second") for p in elem.iter("Pair")}
        return cls(rules, pairs, source=str(path), pair_order=pair_order)

    # -- perception --------------------------------------------------------------------------

    @staticmethod
    def perceive(mol: Chem.Mol) -> tuple[Chem.Mol, list[float]]:
        """Copy of ``mol`` prepared for matching, and its Kekule bond orders by bond index.

        In the copy, ring classes are isotope labels (1: AR1, 2: other planar ring) and the
        bonds of AR1 rings are aromatic (SMARTS ``:``); every other bond keeps its Kekule
        order, so ``-`` and ``=`` mean non-aromatic single and double bonds.
        """
        work = Chem.Mol(mol)
        for atom in work.GetAtoms():
            atom.SetIsotope(0)
            atom.SetNoImplicit(True)
        Chem.Kekulize(work, clearAromaticFlags=True)
        kekule = [b.GetBondTypeAsDouble() for b in work.GetBonds()]
        mdl = Chem.Mol(work)
        Chem.SetAromaticity(mdl, Chem.AromaticityModel.AROMATICITY_MDL)
        label = [0] * work.GetNumAtoms()
        ar1_bonds: set[int] = set()
        for ring in Chem.GetSymmSSSR(work):
            ring = list(ring)
            bonds = _ring_bonds(work, ring)
            if len(ring) == 6 and all(mdl.GetBondWithIdx(b).GetIsAromatic() for b in bonds):
                cls = LABEL_AR1
                ar1_bonds.update(bonds)
            elif all(_planar_ring_atom(work.GetAtomWithIdx(i)) for i in ring):
                cls = LABEL_PLANAR
            else:
                continue
            for i in ring:
                if label[i] == 0 or cls < label[i]:
                    label[i] = cls
        for atom in work.GetAtoms():
            atom.SetIsotope(label[atom.GetIdx()])
            atom.SetIsAromatic(label[atom.GetIdx()] == LABEL_AR1)
        for b in ar1_bonds:
            bond = work.GetBondWithIdx(b)
            bond.SetBondType(Chem.BondType.AROMATIC)
            bond.SetIsAromatic(True)
        work.UpdatePropertyCache(strict=False)
        return work, kekule

    # -- typing ------------------------------------------------------------------------------

    def first_match_types(self, work: Chem.Mol) -> list[str | None]:
        """Types from the ordered rules (pair atoms get their first label); None: no match."""
        types: list[str | None] = [None] * work.GetNumAtoms()
        left = work.GetNumAtoms()
        for rule in self.rules:
            if not left:
                break
            for match in work.GetSubstructMatches(rule.query, uniquify=False, maxMatches=100000):
                i = match[0]
                if types[i] is None:
                    types[i] = rule.atom_type
                    left -= 1
        return types

    def assign(self, mol: Chem.Mol) -> list[str]:
        """One GAFF2 type per atom of ``mol`` (explicit hydrogens, as from ``prepare``)."""
        for atom in mol.GetAtoms():
            if atom.GetNumImplicitHs() and not atom.GetNoImplicit():
                raise AtomTypingError(
                    f"{atom_label(mol, atom.GetIdx())} has implicit hydrogens; add explicit "
                    "hydrogens first (hybridff.io.molecule.prepare or Chem.AddHs)"
                )
        work, kekule = self.perceive(mol)
        types = self.first_match_types(work)
        for i, t in enumerate(types):
            if t is None:
                atom = mol.GetAtomWithIdx(i)
                raise AtomTypingError(
                    f"no GAFF2 typing rule matches {atom_label(mol, i)}: element "
                    f"{atom.GetSymbol()}, {atom.GetDegree()} neighbours, formal charge "
                    f"{atom.GetFormalCharge():+d}, aromatic={atom.GetIsAromatic()}; check its "
                    "valence and formal charge (hydrogens present?), or add a rule for this "
                    f"environment to the <{TYPING_TAG}> element of {self.source}"
                )
        return self.label_pairs(work, [t for t in types if t is not None], kekule)

    def label_pairs(self, work: Chem.Mol, types: list[str], kekule: list[float]) -> list[str]:
        """Turn first labels of conjugated pairs into first/second labels (GAFF convention).

        Each connected system of pair atoms is walked depth first; the first atom keeps the
        first label, and a neighbour gets the other label across a double/triple bond and the
        same label across a single bond (where a ring makes that impossible, the first
        assignment wins). With ``pair_order="index"`` (antechamber's behaviour) walks start at
        the lowest atom index and visit neighbours by increasing index, so the cc/cd choice
        follows the atom order as antechamber's does; with ``"canonical"`` RDKit's canonical
        ranks replace indices and the labels are fully independent of atom order.
        """
        types = list(types)
        pair_atoms = [i for i, t in enumerate(types) if t in self.pairs]
        if not pair_atoms:
            return types
        if self.pair_order == "canonical":
            rank = list(Chem.CanonicalRankAtoms(work, breakTies=True))
        else:
            rank = list(range(work.GetNumAtoms()))
        in_pair = set(pair_atoms)
        nbrs: dict[int, list[tuple[int, bool]]] = {}
        for i in pair_atoms:
            lst = []
            for bond in work.GetAtomWithIdx(i).GetBonds():
                j = bond.GetOtherAtomIdx(i)
                if j in in_pair:
                    lst.append((j, kekule[bond.GetIdx()] >= 2.0))
            nbrs[i] = sorted(lst, key=lambda jm: rank[jm[0]])
        second: dict[int, bool] = {}
        for start in sorted(pair_atoms, key=lambda i: rank[i]):
            if start in second:
                continue
            second[start] = False
            stack = [(start, iter(nbrs[start]))]
            while stack:
                i, it = stack[-1]
                for j, multiple in it:
                    if j not in second:
                        second[j] = second[i] != multiple
                        stack.append((j, iter(nbrs[j])))
                        break
                else:
                    stack.pop()
        for i, flip in second.items():
            if flip:
                types[i] = self.pairs[types[i]]
        return types


def _ring_bonds(mol: Chem.Mol, ring: list[int]) -> list[int]:
    n = len(ring)
    return [mol.GetBondBetweenAtoms(ring[k], ring[(k + 1) % n]).GetIdx() for k in range(n)]


def _planar_ring_atom(atom: Chem.Atom) -> bool:
    """sp2-like ring atom (antechamber's planar-ring test, approximately)."""
    z, deg = atom.GetAtomicNum(), atom.GetDegree()
    if z == 6:
        return deg in (2, 3)
    if z in (7, 15):
        return deg in (2, 3)
    if z in (8, 16):
        return deg == 2
    return False


@functools.lru_cache(maxsize=8)
def _typer(path: str, mtime_ns: int, pair_order: str) -> AtomTyper:  # noqa: ARG001 - key
    return AtomTyper.from_xml(path, pair_order=pair_order)


def typer_for(xml_path: str | Path | None = None, pair_order: str = DEFAULT_PAIR_ORDER
              ) -> AtomTyper:
    """The compiled rules of ``xml_path`` (default: shipped force field), read once per file
    version: a few are kept, keyed by resolved path and modification time."""
    path = Path(xml_path) if xml_path is not None else _default_xml()
    try:
        mtime_ns = path.stat().st_mtime_ns
    except OSError:
        mtime_ns = 0  # from_xml says what is wrong with the path
    return _typer(str(path.resolve()), mtime_ns, pair_order)


def assign_atom_types(
    mol: Chem.Mol, xml_path: str | Path | None = None, pair_order: str = DEFAULT_PAIR_ORDER
) -> list[str]:
    """GAFF2 types of ``mol`` with the rules of ``xml_path`` (default: shipped force field)."""
    return typer_for(xml_path, pair_order).assign(mol)
