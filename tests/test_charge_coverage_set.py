"""The generated chemistry-coverage set for the charge model's labels
(hybridff.charges.model.coverage)."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
from rdkit import Chem

from hybridff.charges.model import coverage as cov
from hybridff.elements import SUPPORTED_ATOMIC_NUMBERS


@pytest.fixture(scope="module")
def molecules() -> list[tuple[str, str]]:
    return cov.coverage_molecules()


def _centre(template: str) -> Chem.Mol:
    """The template with every slot any atom, as a SMARTS query on explicit-H molecules (H
    counts in brackets dropped: a slot filled with H adds to them)."""
    smarts = re.sub(r"\[([A-Za-z]+)H\d?", r"[\1", template.format(*["*"] * cov._slots(template)))
    query = Chem.MolFromSmarts(smarts)
    assert query is not None, template
    return query


def test_deterministic_and_unique(molecules):
    assert cov.coverage_molecules() == molecules
    ids = [i for i, _ in molecules]
    smiles = [s for _, s in molecules]
    assert len(set(ids)) == len(ids) and len(set(smiles)) == len(smiles)


def test_every_template_covered_and_molecules_valid(molecules):
    by_template: dict[str, list[str]] = defaultdict(list)
    for mol_id, smi in molecules:
        by_template[mol_id[len("COV-"):].rsplit("-", 1)[0]].append(smi)
    names = [name for name, _ in cov.TEMPLATES]
    assert len(set(names)) == len(names)
    assert set(by_template) == set(names)
    for name, template in cov.TEMPLATES:
        found = by_template[name]
        assert 15 <= len(found) <= 30, (name, len(found))
        centre = _centre(template)
        for smi in found:
            mol = Chem.MolFromSmiles(smi)
            assert mol is not None and Chem.MolToSmiles(mol) == smi
            assert 2 <= mol.GetNumHeavyAtoms() <= 22 and abs(Chem.GetFormalCharge(mol)) <= 2
            assert all(a.GetAtomicNum() in SUPPORTED_ATOMIC_NUMBERS for a in mol.GetAtoms())
            assert not any(a.GetNumRadicalElectrons() for a in mol.GetAtoms())
            # the template's centre is there (a substituent's ring digits never close the
            # template's ring, and no substituent swallows the centre)
            assert Chem.AddHs(mol).HasSubstructMatch(centre), (name, smi)


def test_filters():
    ok = Chem.MolFromSmiles
    assert cov._ok(ok("CC(=O)OI(OC(C)=O)c1ccccc1"), 22, 0)
    assert not cov._ok(ok("CC[IH]c1ccccc1"), 22, 0)  # H on iodine
    assert not cov._ok(ok("CN(C)Cl"), 22, 0)  # halogen on N
    assert not cov._ok(ok("COOC"), 22, 0)  # O-O not from the template
    assert cov._ok(ok("COOC"), 22, 1)
    assert not cov._ok(ok("C" * 23), 22, 0)
    assert not cov._ok(ok("[O-]P(=O)([O-])OP(=O)([O-])[O-]"), 22, 0)  # charge -4
