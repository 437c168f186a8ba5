"""The labelling logic behind scripts/make_charge_labels.py (hybridff.charges.model.labelling):
job order, packing, the label SMILES' atom order."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from rdkit import Chem

from hybridff.charges.labels import indexed_smiles, mol_from_label_smiles, read_labels
from hybridff.charges.model.labelling import RECIPES, failures_path, order_jobs, pack
from hybridff.exceptions import DataFormatError

JOBS = [(2, "A:input", "CO"), (3, "B:anion", "CC(=O)[O-]"), (3, "C:input", "CCS"),
        (4, "D:input", "CS(C)(=O)=O"), (5, "E:cation", "CCCC[NH3+]")]


def test_order_jobs():
    keys = [k for _, k, _ in order_jobs(JOBS, skip={"A:input"})]
    assert keys == ["B:anion", "C:input", "D:input", "E:cation"]  # as built, done ones skipped
    sulfonyl = [Chem.MolFromSmarts("[SX4](=O)=O"), Chem.MolFromSmarts("[SX2]")]
    keys = [k for _, k, _ in order_jobs(JOBS, set(), first=sulfonyl)]
    assert keys == ["C:input", "D:input", "A:input", "B:anion", "E:cation"]  # order kept within
    keys = [k for _, k, _ in order_jobs(JOBS, set(), charged_first=True, limit=3)]
    assert keys == ["B:anion", "E:cation", "A:input"]
    shuffled = order_jobs(JOBS, set(), order="random", seed=3)
    assert sorted(shuffled) == sorted(JOBS) and shuffled == order_jobs(JOBS, set(), "random", 3)
    # a resume skips the done keys but keeps the order of the rest
    assert order_jobs(JOBS, {"C:input"}, "random", 3) == [j for j in shuffled if j[1] != "C:input"]


def test_pack_keeps_one_record_per_key_and_refuses_mixed_recipes(tmp_path):
    raw = tmp_path / "run.jsonl"
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)[O-]"))
    smiles, order = indexed_smiles(mol)
    charges = [round(0.1 * i, 4) for i in range(mol.GetNumAtoms())]
    rows = [{"key": "X:anion", "smiles": smiles, "charges": charges, "recipe": RECIPES[False]},
            {"key": "X:anion", "smiles": smiles, "charges": charges[::-1], "recipe": RECIPES[False]}]
    raw.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"cut by a ki')
    packed = tmp_path / "labels.jsonl.gz"
    assert pack(raw, packed) == 1
    (rec,) = read_labels(packed)
    assert rec["charges"] == charges[::-1]  # the last record of a key wins
    with gzip.open(packed, "rt") as fh:
        assert set(json.loads(fh.readline())) == {"key", "smiles", "charges"}
    raw.write_text(raw.read_text() + "\n" + json.dumps({**rows[0], "recipe": RECIPES[True]}) + "\n")
    with pytest.raises(DataFormatError, match="mixes the recipes"):
        pack(raw, packed)
    assert failures_path(raw).name == "run.failures.jsonl"


def test_label_smiles_keeps_the_charge_order():
    mol = Chem.AddHs(Chem.MolFromSmiles("OC(=O)c1ccccc1N"))
    smiles, order = indexed_smiles(mol)
    back = mol_from_label_smiles(smiles)
    assert back.GetNumAtoms() == mol.GetNumAtoms()
    symbols = np.array([a.GetSymbol() for a in mol.GetAtoms()])
    assert [a.GetSymbol() for a in back.GetAtoms()] == list(symbols[order])
