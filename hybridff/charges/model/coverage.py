"""A chemistry-coverage set for the ML charge model's training labels.

RDKit's NCI and WEHI sets hold few or no examples of many valid bonding situations of the
supported elements (H C N O F P S Cl Br I): phosphines, phosphonium ions, phosphoranes,
phosphorus ylides, sulfonium ions, sulfoximines, SF5 groups, hypervalent iodine, iodonium ions,
diazo compounds, isocyanides, oxonium ions, ... A model that never saw them extrapolates. This
module enumerates small molecules that put each such *centre* (a SMILES template with numbered
slots) next to a pool of common substituents, so every centre is seen in many surroundings.

The centres are chosen by chemistry class (one list per element, below), not copied from any
test molecule. (The gap itself showed on the NCI test set: its worst molecule was a
five-coordinate P, an atom kind no label source held; docs/charges.md says so next to the
numbers.)
The enumeration is deterministic: for each template, seeded random draws of substituents are
sanitized and deduplicated until ``per_template`` molecules are found (or the draws run out).
``scripts/make_charge_labels.py --source coverage`` labels them (keys
``COV-<template>-<hash>:<variant>``; :func:`hybridff.charges.model.labelling.build_jobs`).
"""

from __future__ import annotations

import hashlib
import random
import string

from rdkit import Chem

#: substituents, written as SMILES branches (their first atom bonds to the slot)
SUBSTITUENTS = (
    "[H]", "C", "CC", "C(C)C", "C(C)(C)C", "C1CC1", "C1CCCCC1", "C=C", "C#C", "CC=O",
    "c1ccccc1", "c1ccc(C)cc1", "c1ccc(OC)cc1", "c1ccc([N+](=O)[O-])cc1", "c1ccncc1", "c1ccco1",
    "c1cccs1", "c1ncc[nH]1", "OC", "Oc1ccccc1", "O", "N(C)C", "NC(C)=O", "CCN", "F", "Cl", "Br",
    "SC", "C(=O)C", "C(=O)OC", "C#N", "C(F)(F)F", "CO", "CC(=O)[O-]",
)

#: (name, template): ``{0}``, ``{1}``, ... are slots filled from :data:`SUBSTITUENTS`; ring
#: closures in templates use %10 and up, so they never clash with a substituent's ring digits.
#: Left out on purpose: six-coordinate fluorophosphate anions (R-PF5-), on which AM1-BCC puts
#: -2 to -3.8 e on P, labels too far from any physical picture to learn from.
TEMPLATES = (
    # phosphorus
    ("phosphine", "P({0})({1}){2}"),
    ("phosphine-oxide", "O=P({0})({1}){2}"),
    ("phosphine-sulfide", "S=P({0})({1}){2}"),
    ("phosphonium", "[P+]({0})({1})({2}){3}"),
    ("phosphorane", "P({0})({1})({2})({3}){4}"),
    ("phosphorus-ylide", "{0}C({1})=P({2})({3}){4}"),
    ("phosphaalkene", "{0}P=C({1}){2}"),
    ("h-phosphonate", "O=[PH]({0}){1}"),
    ("phosphate-anion", "[O-]P(=O)({0}){1}"),
    # sulfur
    ("sulfide", "S({0}){1}"),
    ("disulfide", "S({0})S{1}"),
    ("sulfoxide", "O=S({0}){1}"),
    ("sulfone", "O=S(=O)({0}){1}"),
    ("sulfonium", "[S+]({0})({1}){2}"),
    ("sulfoximine", "O=S(=N{0})({1}){2}"),
    ("sulfilimine", "S(=N{0})({1}){2}"),
    ("sulfenamide", "S({0})N({1}){2}"),
    ("sulfinate-anion", "[O-]S(=O){0}"),
    ("sulfonate-anion", "[O-]S(=O)(=O){0}"),
    ("thiolate", "[S-]{0}"),
    ("thione", "S=C({0}){1}"),
    ("thiocyanate", "{0}SC#N"),
    ("isothiocyanate", "{0}N=C=S"),
    ("pentafluorosulfanyl", "FS(F)(F)(F)(F){0}"),
    ("sulfurane", "FS(F)({0}){1}"),
    ("sulfite-sulfate", "O=S(O{0})O{1}"),
    ("sulfonyl-imide-anion", "[N-]({0})S(=O)(=O){1}"),
    # nitrogen
    ("amine", "N({0})({1}){2}"),
    ("ammonium", "[N+]({0})({1})({2}){3}"),
    ("amine-oxide", "[O-][N+]({0})({1}){2}"),
    ("nitro", "[O-][N+](=O){0}"),
    ("nitroso", "O=N{0}"),
    ("nitrone", "[O-][N+]({0})=C({1}){2}"),
    ("azide", "[N-]=[N+]=N{0}"),
    ("diazo", "[N-]=[N+]=C({0}){1}"),
    ("diazonium", "N#[N+]{0}"),
    ("isocyanide", "[C-]#[N+]{0}"),
    ("imine", "N({0})=C({1}){2}"),
    ("iminium", "[N+]({0})({1})=C({2}){3}"),
    ("oxime", "ON=C({0}){1}"),
    ("hydrazine", "N({0})({1})N({2}){3}"),
    ("azo", "N({0})=N{1}"),
    ("azoxy", "[O-][N+]({0})=N{1}"),
    ("nitrate-ester", "[O-][N+](=O)O{0}"),
    ("carbodiimide", "N({0})=C=N{1}"),
    ("isocyanate", "O=C=N{0}"),
    ("amidate-anion", "[N-]({0})C(=O){1}"),
    ("pyridine-n-oxide", "[O-][n+]%10ccc({0})cc%10"),
    ("pyridinium", "c%10cc({1})c[n+]({0})c%10"),
    ("imidazolium", "c%10c[n+]({0})cn%10{1}"),
    ("amidinium", "NC(=[NH2+]){0}"),
    ("guanidinium", "NC(=[NH2+])N({0}){1}"),
    ("tetrazolate", "c%10({0})nn[n-]n%10"),
    # oxygen
    ("ether", "O({0}){1}"),
    ("alkoxide", "[O-]{0}"),
    ("carboxylate", "[O-]C(=O){0}"),
    ("peroxide", "O({0})O{1}"),
    ("carbonyl", "O=C({0}){1}"),
    ("ester", "O=C(O{0}){1}"),
    ("carbonate", "O=C(O{0})O{1}"),
    ("urea-carbamate", "O=C(N({0}){1}){2}"),
    ("hydroxamic", "O=C(NO{0}){1}"),
    ("anhydride", "O=C({0})OC(=O){1}"),
    ("oxonium", "[O+]({0})({1}){2}"),
    # halogens
    ("iodide", "I{0}"),
    ("iodonium", "[I+]({0}){1}"),
    ("iodane", "{0}I(O{1})O{2}"),
    ("iodane-dihalide", "{0}I(Cl)Cl"),
    ("imide", "O=C%10CCC(=O)N%10{0}"),
    # carbon
    ("tropylium", "c%10ccc[c+]({0})cc%10"),
    ("cyclopentadienide", "[c-]%10({0})cccc%10"),
    ("stabilized-carbanion", "[C-]({0})(C(=O){1})C(=O){2}"),
    ("allene", "C({0})=C=C{1}"),
    ("ketene", "O=C=C({0}){1}"),
    ("alkyne", "C(#C{0}){1}"),
    ("nitrile", "N#C{0}"),
)


def _slots(template: str) -> int:
    """Number of ``{n}`` slots in a template."""
    return sum(1 for _, field, _, _ in string.Formatter().parse(template) if field is not None)


def _oo_bonds(mol: Chem.Mol) -> int:
    """Number of O-O bonds."""
    return sum(1 for b in mol.GetBonds()
               if b.GetBeginAtom().GetSymbol() == b.GetEndAtom().GetSymbol() == "O")


def _ok(mol: Chem.Mol, max_heavy: int, max_oo: int) -> bool:
    """Size and charge caps; closed shell; F, Cl, Br only on C, P, S or I (no N-F, O-Cl, ...);
    no H on iodine; no O-O bond but those of the template (``max_oo``)."""
    if _oo_bonds(mol) > max_oo:
        return False
    if not 2 <= mol.GetNumHeavyAtoms() <= max_heavy or abs(Chem.GetFormalCharge(mol)) > 2:
        return False
    for atom in mol.GetAtoms():
        if atom.GetNumRadicalElectrons():
            return False
        if atom.GetSymbol() == "I" and atom.GetTotalNumHs():
            return False  # H-I only as hydrogen iodide, which is not a molecule worth learning
        if atom.GetSymbol() in ("F", "Cl", "Br") and any(
                n.GetSymbol() not in ("C", "P", "S", "I") for n in atom.GetNeighbors()):
            return False
    return True


def coverage_molecules(per_template: int = 30, max_heavy: int = 22, seed: int = 11,
                       tries: int = 60) -> list[tuple[str, str]]:
    """(id, canonical SMILES) of the coverage set: up to ``per_template`` distinct molecules per
    template from seeded random substituent draws (``tries`` draws per wanted molecule), each
    with at most ``max_heavy`` heavy atoms; ids ``COV-<template>-<SHA-1 of the SMILES, 10 hex>``
    (so a label keeps its key when the enumeration changes elsewhere)."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, template in TEMPLATES:
        rng = random.Random(f"{seed}:{name}")
        n_slots = _slots(template)
        max_oo = _oo_bonds(Chem.MolFromSmiles(template.format(*["C"] * n_slots)))
        found: set[str] = set()
        for _ in range(tries * per_template):
            if len(found) >= per_template:
                break
            combo = [rng.choice(SUBSTITUENTS) for _ in range(n_slots)]
            mol = Chem.MolFromSmiles(template.format(*combo))
            if mol is None or not _ok(mol, max_heavy, max_oo):
                continue
            can = Chem.MolToSmiles(mol)
            if can not in seen:
                found.add(can)
        for can in sorted(found):
            seen.add(can)
            out.append((f"COV-{name}-{hashlib.sha1(can.encode()).hexdigest()[:10]}", can))
    return out
