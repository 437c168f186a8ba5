"""The ``ml`` charge method: exact totals, equivariance, symmetry, reference values, accuracy, errors.

Reference predictions (tests/data/ml_charge_reference.json) belong to the shipped model file;
after retraining, regenerate them with ``python tests/test_charges_ml.py``.
"""

from __future__ import annotations

import gzip
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from hybridff.charges import assign_charges
from hybridff.charges.labels import mol_from_label_smiles
from hybridff.charges.ml import DEFAULT_MODEL, MODEL_FORMAT, load_charge_model, ml_charges
from hybridff.charges.ml_model import (
    BOND_FEATURES,
    ChargeEquilibrationNet,
    atom_feature_size,
    feature_spec,
)
from hybridff.exceptions import (
    ModelCompatibilityError,
    UnsupportedChemistryError,
    UnsupportedElementError,
)
from hybridff.molecule import load_molecule

DATA = Path(__file__).parent / "data"
REFERENCE = DATA / "ml_charge_reference.json"
LABELS = Path(__file__).resolve().parents[1] / "hybridff" / "resources" / "am1bcc_labels.jsonl.gz"
REFERENCE_SMILES = ["CCO", "CC(=O)[O-]", "C[NH3+]", "[NH3+]CC(=O)[O-]", "CC(=O)Nc1ccc(O)cc1",
                    "O=S(=O)([O-])c1ccccc1", "NC(N)=[NH2+]", "FC(F)(F)c1ccc(Cl)cc1Br", "CP(=O)(O)O"]
#: Held-out RMSE the shipped model must stay under on the 50-molecule test sample (e). The goal
#: is 0.02 e and is NOT met on the whole test set: 0.0248 e over 604 molecules (0.0198 e without
#: one hypervalent-P outlier, see docs/charges.md); this sample measured 0.0198 e. The limit is
#: that level plus a small margin, so a regression shows while the goal stays honest.
HELD_OUT_RMSE_LIMIT = 0.025


@pytest.mark.parametrize(
    "smiles, total",
    [("CCO", 0), ("C[NH3+]", 1), ("CC(=O)[O-]", -1), ("[NH3+]CC(=O)[O-]", 0),
     ("[O-]C(=O)CCC(=O)[O-]", -2), ("C[N+](C)(C)C", 1), ("c1ccccc1[N+](=O)[O-]", 0)],
)
def test_total_charge_is_exact(smiles, total):
    q = ml_charges(load_molecule(smiles, conformer=False))
    assert q.dtype == np.float64
    assert abs(q.sum() - total) < 1e-6


def test_registered_and_total_through_assign_charges():
    q = assign_charges(load_molecule("CC(=O)[O-]"), "ml")
    assert q.sum() == pytest.approx(-1.0, abs=1e-9)


def test_permuting_atoms_permutes_charges():
    mol = load_molecule("CC(=O)Nc1ccc(O)cc1", conformer=False)
    q = ml_charges(mol)
    order = list(range(mol.GetNumAtoms()))
    random.Random(3).shuffle(order)
    q_perm = ml_charges(Chem.RenumberAtoms(mol, order))
    np.testing.assert_allclose(q_perm, q[order], atol=1e-10)


def test_symmetry_equivalent_atoms_identical():
    mol = load_molecule("CC(=O)[O-]", conformer=False)
    q = ml_charges(mol)
    oxygens = [q[a.GetIdx()] for a in mol.GetAtoms() if a.GetSymbol() == "O"]
    hydrogens = [q[a.GetIdx()] for a in mol.GetAtoms() if a.GetSymbol() == "H"]
    assert oxygens[0] == oxygens[1]
    assert len(set(hydrogens)) == 1
    mol = load_molecule("NC(N)=[NH2+]", conformer=False)
    q = ml_charges(mol)
    assert len({q[a.GetIdx()] for a in mol.GetAtoms() if a.GetSymbol() == "N"}) == 1


def test_conformer_independent():
    mol = load_molecule("OCCCN")
    q1 = ml_charges(mol)
    other = Chem.Mol(mol)
    AllChem.EmbedMolecule(other, randomSeed=99)
    np.testing.assert_array_equal(ml_charges(other), q1)


def test_shipped_model_reproduces_stored_predictions():
    reference = json.loads(REFERENCE.read_text())
    for smiles, expected in reference["charges"].items():
        q = ml_charges(mol_from_label_smiles(smiles))
        np.testing.assert_allclose(q, expected, atol=1e-6, err_msg=smiles)


def test_held_out_accuracy_on_committed_labels():
    model = load_charge_model()
    test_keys = set(model.metadata["test_keys"])
    with gzip.open(LABELS, "rt") as fh:
        held_out = [r for r in map(json.loads, fh) if r["key"] in test_keys]
    assert len(held_out) >= 50
    sample = random.Random(0).sample(held_out, 50)
    err = np.concatenate([ml_charges(mol_from_label_smiles(r["smiles"])) - r["charges"] for r in sample])
    rmse = float(np.sqrt(np.mean(err**2)))
    assert rmse < HELD_OUT_RMSE_LIMIT, f"held-out RMSE {rmse:.4f} e"


def test_model_metadata_complete():
    meta = load_charge_model().metadata
    for key in ("elements", "feature_spec", "hyperparameters", "training_set_sha256",
                "split_seed", "metrics_test", "test_keys"):
        assert key in meta
    assert DEFAULT_MODEL.stat().st_size < 2 * 1024 * 1024


def test_unsupported_element_names_the_atom():
    mol = Chem.AddHs(Chem.MolFromSmiles("C[Si](C)(C)C"))
    with pytest.raises(UnsupportedElementError, match=r"atom 1 .*Si"):
        ml_charges(mol)
    mol = Chem.AddHs(Chem.MolFromSmiles("OB(O)c1ccccc1"))
    with pytest.raises(UnsupportedElementError, match=r"atom 1 .*B"):
        ml_charges(mol)


def test_radical_refused():
    mol = Chem.AddHs(Chem.MolFromSmiles("[CH2]C"))
    with pytest.raises(UnsupportedChemistryError, match="unpaired"):
        ml_charges(mol)


def _save_model(path: Path, elements: list[str], **overrides) -> None:
    net = ChargeEquilibrationNet(atom_feature_size(elements), len(BOND_FEATURES), 8, 1)
    meta = {"elements": elements, "feature_spec": feature_spec(),
            "hyperparameters": {"hidden": 8, "layers": 1}}
    data = {"format": MODEL_FORMAT, "state_dict": net.state_dict(), "metadata": meta}
    data.update(overrides)
    torch.save(data, path)


def test_model_for_other_elements(tmp_path):
    path = tmp_path / "hcno.pt"
    _save_model(path, ["H", "C", "N", "O"])
    assert ml_charges(load_molecule("CCO", conformer=False), model=path).sum() == pytest.approx(0)
    with pytest.raises(ModelCompatibilityError, match=r"covers elements H, C, N, O.*needs Cl"):
        ml_charges(load_molecule("CCCl", conformer=False), model=path)
    path = tmp_path / "si.pt"
    _save_model(path, ["H", "C", "Si"])
    with pytest.raises(ModelCompatibilityError, match="Si"):
        ml_charges(load_molecule("CCO", conformer=False), model=path)


def test_wrong_model_files(tmp_path):
    mol = load_molecule("CCO", conformer=False)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    with pytest.raises(ModelCompatibilityError, match="has \\['weights'\\]"):
        ml_charges(mol, model=plain)
    text = tmp_path / "text.pt"
    text.write_text("not a model")
    with pytest.raises(ModelCompatibilityError, match="not a hybridff charge model"):
        ml_charges(mol, model=text)
    other = tmp_path / "other.pt"
    _save_model(other, ["H", "C", "N", "O"], format="something-else")
    with pytest.raises(ModelCompatibilityError, match="something-else"):
        ml_charges(mol, model=other)
    with pytest.raises(ModelCompatibilityError, match="does not exist"):
        ml_charges(mol, model=tmp_path / "missing.pt")


def write_reference() -> None:
    """Store the shipped model's predictions for REFERENCE_SMILES (after retraining)."""
    out = {}
    for smi in REFERENCE_SMILES:
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        out[Chem.MolToSmiles(mol)] = [round(float(x), 8) for x in ml_charges(mol_from_label_smiles(Chem.MolToSmiles(mol)))]
    meta = load_charge_model().metadata
    REFERENCE.write_text(json.dumps({"model_training_set_sha256": meta["training_set_sha256"],
                                     "charges": out}, indent=1) + "\n")


if __name__ == "__main__":
    write_reference()
    sys.exit(0)


def test_cli_writes_csv_sdf_mol2(tmp_path):
    from hybridff.cli import main

    csv = tmp_path / "q.csv"
    assert main(["charges", "CC(=O)[O-]", "-o", str(csv)]) == 0
    rows = csv.read_text().splitlines()
    assert rows[0] == "index,name,element,charge" and len(rows) == 8
    assert sum(float(r.split(",")[3]) for r in rows[1:]) == pytest.approx(-1.0, abs=1e-5)
    expected = ml_charges(load_molecule("CC(=O)[O-]", conformer=False))
    for suffix in (".sdf", ".mol2"):
        out = tmp_path / f"q{suffix}"
        assert main(["charges", "CC(=O)[O-]", "-o", str(out)]) == 0
        back = assign_charges(load_molecule(out), "file")
        np.testing.assert_allclose(back, expected, atol=1e-5)
    assert main(["charges", "CCO", "-o", str(tmp_path / "q.pdb")]) == 2
    assert main(["charges", "CCO", "--method", "gasteiger", "--model", "x.pt"]) == 2
