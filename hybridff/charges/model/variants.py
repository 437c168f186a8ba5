"""Which molecules the charge model's AM1-BCC labels are made for: cleaning, and rule-based
protonation variants so the model sees charged molecules.

Carboxylic / sulfonic / phosphonic acids -> anions, basic aliphatic amines and
amidines/guanidines -> cations, both at once -> zwitterions (each variant charged at one site
per group kind, at most two sites, so totals stay within -2..+2); optionally one aromatic ring
N protonated or methylated, and one weak acid deprotonated.
"""

from __future__ import annotations

from rdkit import Chem
from rdkit.Chem.MolStandardize import rdMolStandardize

from hybridff.elements import SUPPORTED_ATOMIC_NUMBERS

#: ``--source wehi`` takes only molecules with chemistry that is rare in the NCI labels: P, I,
#: Br, or S other than thioether/thione/sulfonyl (sulfoxides, sulfinyl, ...)
RARE_ELEMENTS = ("P", "I", "Br")
COMMON_SULFUR = ((2, 2), (1, 2), (4, 6))  # (degree, total valence) of S that is well covered

#: acid groups: SMARTS whose first atom is the acidic O-H oxygen to deprotonate
ACID_SMARTS = (
    "[OX2H1][CX3]=[OX1]",  # carboxylic acid
    "[OX2H1][SX4](=[OX1])=[OX1]",  # sulfonic acid
    "[OX2H1][PX4]=[OX1]",  # phosphonic/phosphoric acid (first O-H)
)
#: base groups: SMARTS whose first atom is the nitrogen to protonate
BASE_SMARTS = (
    # aliphatic amine: sp3 N, only C/H neighbours, no aromatic, carbonyl, imine, vinyl or nitrile C
    "[NX3;H2,H1,H0;+0;!$(N[a]);!$(N[#6]=[#6,#7,#8,#16]);!$(N[#6]#*);!$(N[!#6;!#1])]",
    # amidine / guanidine: protonate the imine N
    "[NX2;H1,H0;+0;!$(N[a]);!$(N[!#6;!#1])]=[CX3;!a]([#7X3;!$(N[#6]=[#8,#16])])",
)
#: aromatic bases, most basic kind first: SMARTS whose first atom is the ring N to protonate
#: (``wehi-all`` only, variants ``arcation`` and ``armethyl``, so that charged aromatic rings
#: are learned too)
AROMATIC_BASE_SMARTS = (
    "[nX2;+0]:[c,n]-[NX3;H2,H1,H0;+0;!$(N[#6]=[#8,#16]);!$(N[!#6;!#1])]",  # 2-aminopyridine-like
    "[nX2;+0;r5]:[c,n]:[nX3;r5]",  # imidazole-like
    "[nX2;+0;r6]",  # pyridine-like
)
#: weak acids, most acidic kind first: SMARTS whose first atom carries the H to remove
#: (``wehi-all`` only, variant ``weakanion``, so that anions other than the oxyacids' are
#: learned too: tetrazolates, sulfonamide and imide anions, enolates, phenolates, thiolates)
WEAK_ACID_SMARTS = (
    "[nX3H1;r5]:[n]:[n]:[n,c]",  # tetrazole / 1,2,3-triazole N-H
    "[NX3H1]([SX4](=[OX1])=[OX1])[CX3]=[OX1]",  # acyl sulfonamide
    "[OX2H1][CX3]=[CX3][CX3]=[OX1]",  # vinylogous acid (enol of a 1,3-dicarbonyl)
    "[OX2H1][NX3][CX3]=[OX1]",  # hydroxamic acid
    "[#7X3H1]([#6]=[OX1])[#6]=[OX1]",  # imide (also uracil-like ring N-H)
    "[NX3;H1,H2][SX4](=[OX1])=[OX1]",  # sulfonamide
    "[OX2H1]c",  # phenol
    "[SX2H1]",  # thiol
)
ACID_PATTERNS = [Chem.MolFromSmarts(s) for s in ACID_SMARTS]
WEAK_ACID_PATTERNS = [Chem.MolFromSmarts(s) for s in WEAK_ACID_SMARTS]
AROMATIC_BASE_PATTERNS = [Chem.MolFromSmarts(s) for s in AROMATIC_BASE_SMARTS]
BASE_PATTERNS = [Chem.MolFromSmarts(s) for s in BASE_SMARTS]


def has_rare_chemistry(mol: Chem.Mol) -> bool:
    """Whether ``mol`` has an atom of a rare element or an uncommon sulfur."""
    for atom in mol.GetAtoms():
        if atom.GetSymbol() in RARE_ELEMENTS:
            return True
        if atom.GetSymbol() == "S" and (atom.GetDegree(), atom.GetTotalValence()) not in COMMON_SULFUR:
            return True
    return False


def clean(smiles: str, max_heavy: int) -> Chem.Mol | None:
    """Largest fragment, supported elements, closed shell, size cap; None when rejected."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    mol = rdMolStandardize.LargestFragmentChooser().choose(mol)
    if mol.GetNumHeavyAtoms() > max_heavy or mol.GetNumHeavyAtoms() < 2:
        return None
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() not in SUPPORTED_ATOMIC_NUMBERS or atom.GetNumRadicalElectrons():
            return None
        if atom.GetIsotope():
            atom.SetIsotope(0)
    return mol


def _matches(mol: Chem.Mol, patterns: list[Chem.Mol], limit: int) -> list[int]:
    """Indices of the first atoms of pattern matches (distinct, in atom order), at most ``limit``."""
    found: list[int] = []
    for pattern in patterns:
        for match in mol.GetSubstructMatches(pattern):
            if match[0] not in found:
                found.append(match[0])
    return sorted(found)[:limit]


def _sanitized(rw: Chem.RWMol) -> Chem.Mol | None:
    """The edited molecule, sanitized and re-read from canonical SMILES (None if invalid)."""
    out = rw.GetMol()
    try:
        Chem.SanitizeMol(out)
    except Exception:  # a rule produced an impossible valence: skip the variant
        return None
    return Chem.MolFromSmiles(Chem.MolToSmiles(out))


def _charged(mol: Chem.Mol, acids: list[int], bases: list[int]) -> Chem.Mol | None:
    """``mol`` with one H removed from each acid atom and one added to each base atom."""
    rw = Chem.RWMol(mol)
    for i in acids:
        atom = rw.GetAtomWithIdx(i)
        atom.SetFormalCharge(-1)
        atom.SetNumExplicitHs(atom.GetTotalNumHs() - 1)
        atom.SetNoImplicit(True)
    for i in bases:
        atom = rw.GetAtomWithIdx(i)
        atom.SetFormalCharge(+1)
        atom.SetNumExplicitHs(atom.GetTotalNumHs() + 1)
        atom.SetNoImplicit(True)
    return _sanitized(rw)


def _methylated(mol: Chem.Mol, i: int) -> Chem.Mol | None:
    """``mol`` with a methyl group on atom ``i``, which becomes a cation (None if invalid,
    e.g. an N that already has three neighbours)."""
    rw = Chem.RWMol(mol)
    c = rw.AddAtom(Chem.Atom(6))
    rw.AddBond(i, c, Chem.BondType.SINGLE)
    rw.GetAtomWithIdx(i).SetFormalCharge(+1)
    return _sanitized(rw)


def _first_match(mol: Chem.Mol, patterns: list[Chem.Mol]) -> int | None:
    """The first atom of a match of the earliest pattern that matches (first in atom order)."""
    for pattern in patterns:
        found = sorted(match[0] for match in mol.GetSubstructMatches(pattern))
        if found:
            return found[0]
    return None


def variants(mol: Chem.Mol, aromatic_bases: bool = False) -> dict[str, Chem.Mol]:
    """The molecule as given plus rule-based protonation states (name -> molecule).

    ``aromatic_bases`` adds ``arcation``, one aromatic ring N protonated (pyridinium,
    imidazolium, ...; :data:`AROMATIC_BASE_SMARTS`), ``armethyl``, the same N methylated
    (N-alkyl heteroaromatic cations, which have no N-H), and ``weakanion``, one weak acid
    deprotonated (:data:`WEAK_ACID_SMARTS`) when the molecule has none of the stronger acids
    of :data:`ACID_SMARTS`.
    """
    out = {"input": mol}
    if Chem.GetFormalCharge(mol) != 0:
        return out
    if aromatic_bases:
        ring_n = _first_match(mol, AROMATIC_BASE_PATTERNS)
        if ring_n is not None:
            v = _charged(mol, [], [ring_n])
            if v is not None:
                out["arcation"] = v
    acids = _matches(mol, ACID_PATTERNS, 2)
    bases = _matches(mol, BASE_PATTERNS, 2)
    candidates = {}
    if acids:
        candidates["anion"] = (acids[:1], [])
    if bases:
        candidates["cation"] = ([], bases[:1])
    if acids and bases:
        candidates["zwitterion"] = (acids[:1], bases[:1])
    if len(acids) > 1:
        candidates["dianion"] = (acids[:2], [])
    if len(bases) > 1:
        candidates["dication"] = ([], bases[:2])
    for name, (a, b) in candidates.items():
        v = _charged(mol, a, b)
        if v is not None:
            out[name] = v
    if aromatic_bases:  # added after the others, so the variants labelled before keep their keys
        weak_acid = None if acids else _first_match(mol, WEAK_ACID_PATTERNS)
        for name, v in (("armethyl", None if ring_n is None else _methylated(mol, ring_n)),
                        ("weakanion", None if weak_acid is None else _charged(mol, [weak_acid], []))):
            if v is not None:
                out[name] = v
    return out
