"""The ``ml`` charge method: exact totals, equivariance, symmetry, reference values, accuracy, errors.

Reference predictions (tests/data/ml_charge_reference.json) belong to the shipped model file;
after retraining, regenerate them with ``python tests/test_charges_ml.py``.
"""

from __future__ import annotations

import functools
import gzip
import json
import random
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from hybridff.charges import assign_charges
from hybridff.charges.labels import label_problem, mol_from_label_smiles
from hybridff.charges.ml import ml_charges
from hybridff.charges.model.features import (
    BOND_FEATURES,
    FEATURE_SPEC,
    atom_feature_size,
    extra_valence,
    feature_spec,
    featurize,
)
from hybridff.charges.model.file import (
    DEFAULT_MODEL,
    MODEL_FORMAT,
    charge_model_sha256,
    load_charge_model,
)
from hybridff.charges.model.network import ChargeEquilibrationNet
from hybridff.charges.model.predict import ChargeModelApplicabilityWarning, ensemble_charges
from hybridff.exceptions import (
    ModelCompatibilityError,
    UnsupportedChemistryError,
    UnsupportedElementError,
)
from hybridff.io.molecule import load_molecule

DATA = Path(__file__).parent / "data"
REFERENCE = DATA / "ml_charge_reference.json"
LABELS = Path(__file__).resolve().parents[1] / "hybridff" / "resources" / "am1bcc_labels.jsonl.gz"
REFERENCE_SMILES = ["CCO", "CC(=O)[O-]", "C[NH3+]", "[NH3+]CC(=O)[O-]", "CC(=O)Nc1ccc(O)cc1",
                    "O=S(=O)([O-])c1ccccc1", "NC(N)=[NH2+]", "FC(F)(F)c1ccc(Cl)cc1Br", "CP(=O)(O)O"]
#: RMSE limits (e) for the shipped model against the committed single-point labels (AM1-BCC
#: on an MMFF conformer, no AM1 relaxation: the pre-training recipe). The shipped model is
#: fine-tuned on the standard recipe (AM1 relaxation first), which differs from the single
#: points by 0.023 e, so these are regression checks: each is the level the model measured on
#: that sample plus a margin. Its accuracy against the standard recipe, the goal of 0.02 e, is
#: checked in tests/test_charge_groups.py. The 50-molecule sample of the NCI test set measured
#: 0.0268 e (whole test set: 0.0228 e; the model before it, trained on these labels: 0.0150).
HELD_OUT_RMSE_LIMIT = 0.0295
#: all 113 charged molecules of the NCI test set: measured 0.0321 e (model before: 0.0188)
CHARGED_HELD_OUT_RMSE_LIMIT = 0.0350
#: 100 molecules of the external test set (WEHI, scaffolds new to NCI): measured 0.0224 e
#: (whole external set: 0.0272 e; model before: 0.0148)
EXTERNAL_RMSE_LIMIT = 0.0245


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


@pytest.mark.parametrize("smiles", ["OCCCN", "CS(=O)(=O)Nc1ccc(cc1)C(=O)[O-]"])
def test_conformer_independent(smiles):
    mol = load_molecule(smiles)
    q1 = ml_charges(mol)
    other = Chem.Mol(mol)
    AllChem.EmbedMolecule(other, randomSeed=99)
    np.testing.assert_array_equal(ml_charges(other), q1)


def test_shipped_model_reproduces_stored_predictions():
    reference = json.loads(REFERENCE.read_text())
    assert reference["model_sha256"] == charge_model_sha256(), (
        "the shipped charge model changed: regenerate the reference (python tests/test_charges_ml.py)")
    for smiles, expected in reference["charges"].items():
        q = ml_charges(mol_from_label_smiles(smiles))
        np.testing.assert_allclose(q, expected, atol=1e-6, err_msg=smiles)


@functools.cache
def _all_labels() -> tuple[dict, ...]:
    """The committed label records (read once per test session)."""
    with gzip.open(LABELS, "rt") as fh:
        return tuple(map(json.loads, fh))


def _labels(keys: set[str]) -> list[dict]:
    """The committed label records with these keys, in file order."""
    return [r for r in _all_labels() if r["key"] in keys]


def _rmse(records: list[dict]) -> float:
    err = np.concatenate([ml_charges(mol_from_label_smiles(r["smiles"])) - r["charges"] for r in records])
    return float(np.sqrt(np.mean(err**2)))


def test_held_out_accuracy_on_committed_labels():
    held_out = _labels(set(load_charge_model().metadata["test_keys"]))
    assert len(held_out) >= 50
    rmse = _rmse(random.Random(0).sample(held_out, 50))
    assert rmse < HELD_OUT_RMSE_LIMIT, f"held-out RMSE {rmse:.4f} e"


def test_held_out_accuracy_on_charged_molecules():
    held_out = _labels(set(load_charge_model().metadata["test_keys"]))
    charged = [r for r in held_out if Chem.GetFormalCharge(mol_from_label_smiles(r["smiles"])) != 0]
    assert len(charged) >= 100
    rmse = _rmse(charged)
    assert rmse < CHARGED_HELD_OUT_RMSE_LIMIT, f"held-out charged RMSE {rmse:.4f} e"


def test_external_test_accuracy():
    external = _labels(set(load_charge_model().metadata["external_test_keys"]))
    assert len(external) >= 1000
    assert not any(r["key"].startswith("NCI") for r in external)
    rmse = _rmse(random.Random(0).sample(external, 100))
    assert rmse < EXTERNAL_RMSE_LIMIT, f"external-test RMSE {rmse:.4f} e"


def test_model_metadata_complete():
    meta = load_charge_model().metadata
    for key in ("elements", "feature_spec", "hyperparameters", "training_set_sha256",
                "split_seed", "metrics_test", "test_keys"):
        assert key in meta
    assert meta["hyperparameters"]["members"] >= 2
    assert meta["training_environments"]["C X4 H3 v4 +0"] > 1000
    assert DEFAULT_MODEL.stat().st_size < 5 * 1024 * 1024


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


def _save_model(path: Path, elements: list[str], members: int = 1, seed: int = 0, **overrides) -> None:
    torch.manual_seed(seed)
    net = ChargeEquilibrationNet(atom_feature_size(elements), len(BOND_FEATURES), 8, 2, members)
    meta = {"elements": elements, "feature_spec": feature_spec(),
            "hyperparameters": {"hidden": 8, "layers": 2, "members": members}}
    data = {"format": MODEL_FORMAT, "state_dict": net.state_dict(), "metadata": meta}
    data.update(overrides)
    torch.save(data, path)


def _member_file(ensemble: Path, member: int, path: Path) -> Path:
    """A one-member model file holding member ``member`` of an ensemble file."""
    data = torch.load(ensemble, weights_only=True)
    data["state_dict"] = {k: v[member : member + 1].clone() for k, v in data["state_dict"].items()}
    data["metadata"]["hyperparameters"]["members"] = 1
    torch.save(data, path)
    return path


ELEMENTS = ["H", "C", "N", "O", "F", "P", "S", "Cl", "Br", "I"]


@pytest.mark.parametrize("smiles, total", [("[NH3+]CC(=O)[O-]", 0), ("[O-]C(=O)CCC(=O)[O-]", -2),
                                           ("C[N+](C)(C)C", 1), ("CC(=O)Nc1ccc(O)cc1", 0)])
def test_ensemble_is_the_mean_of_its_members_with_exact_total(tmp_path, smiles, total):
    path = tmp_path / "ens.pt"
    _save_model(path, ELEMENTS, members=3, seed=1)
    mol = load_molecule(smiles, conformer=False)
    q = ml_charges(mol, model=path)
    assert abs(q.sum() - total) < 1e-9
    members = [ml_charges(mol, model=_member_file(path, k, tmp_path / f"m{k}.pt")) for k in range(3)]
    np.testing.assert_allclose(q, np.mean(members, axis=0), atol=1e-12)
    assert np.ptp([m.sum() for m in members]) < 1e-9  # every member has the exact total
    assert np.max(np.ptp(members, axis=0)) > 1e-3  # and the members differ


def test_ensemble_keeps_symmetry_equivalent_atoms_identical(tmp_path):
    path = tmp_path / "ens.pt"
    _save_model(path, ELEMENTS, members=4, seed=2)
    mol = load_molecule("OC(=O)CC(C)(C)C", conformer=False)  # three methyls, nine methyl H
    q = ml_charges(mol, model=path)
    methyl_c = [a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "C" and a.GetTotalNumHs(True) == 3]
    methyl_h = [n.GetIdx() for i in methyl_c for n in mol.GetAtomWithIdx(i).GetNeighbors()
                if n.GetSymbol() == "H"]
    assert len(methyl_c) == 3 and len(methyl_h) == 9
    assert len({q[i] for i in methyl_c}) == 1
    assert len({q[i] for i in methyl_h}) == 1
    mol = load_molecule("CC(=O)[O-]", conformer=False)
    q = ml_charges(mol, model=path)
    oxygens = [q[a.GetIdx()] for a in mol.GetAtoms() if a.GetSymbol() == "O"]
    assert oxygens[0] == oxygens[1]
    # resonance: the valence features must not tell the =NH2+ from the two NH2 of guanidinium
    mol = load_molecule("NC(N)=[NH2+]", conformer=False)
    q = ml_charges(mol, model=path)
    assert len({q[a.GetIdx()] for a in mol.GetAtoms() if a.GetSymbol() == "N"}) == 1


def test_ensemble_charges_arithmetic():
    rng = np.random.default_rng(0)
    chi, hardness = rng.normal(size=(5, 6)), rng.uniform(0.5, 2.0, size=(5, 6))
    classes = np.array([0, 1, 1, 2, 3, 3])
    q = ensemble_charges(chi, hardness, classes, -1.0)
    assert q.sum() == pytest.approx(-1.0, abs=1e-12)
    assert q[1] == q[2] and q[4] == q[5]
    single = [ensemble_charges(c, j, classes, -1.0) for c, j in zip(chi, hardness, strict=True)]
    np.testing.assert_allclose(q, np.mean(single, axis=0), atol=1e-12)


def test_hydrogen_count_and_valence_features_see_explicit_hydrogens():
    mol = load_molecule("CS(C)(=O)=O", conformer=False)  # explicit H atoms
    g = featurize(mol, ELEMENTS)
    offset = len(ELEMENTS) + 4 + len(FEATURE_SPEC["hybridization"]) + 1 + len(FEATURE_SPEC["degree"]) + 1
    carbon = next(a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "C")
    sulfur = next(a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "S")
    assert g.atom_features[carbon, offset + FEATURE_SPEC["num_hs"].index(3)] == 1.0
    assert extra_valence(mol.GetAtomWithIdx(sulfur)) == 4
    assert extra_valence(mol.GetAtomWithIdx(carbon)) == 0


def test_applicability_warning_names_the_atom():
    # an aryl iodine(V) tetrafluoride: I with five neighbours, in no training source
    mol = load_molecule("FI(F)(F)(F)c1ccc(C)cc1", conformer=False)
    i_index = next(a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "I")
    with pytest.warns(ChargeModelApplicabilityWarning, match=rf"atom {i_index} \(.*I\): I with 5 "
                      r"neighbours \(0 H\), valence 5.*never occurs.*--method am1bcc"):
        q = ml_charges(mol)
    assert q.sum() == pytest.approx(0.0, abs=1e-9)


def test_no_applicability_warning_for_common_chemistry():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChargeModelApplicabilityWarning)
        for smiles in ("CC(=O)Nc1ccc(O)cc1", "[NH3+]CC(=O)[O-]", "CS(=O)(=O)c1ccc(Cl)cc1"):
            ml_charges(load_molecule(smiles, conformer=False))


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
    REFERENCE.write_text(json.dumps({"model_sha256": charge_model_sha256(),
                                     "model_training_set_sha256": meta["training_set_sha256"],
                                     "model_reference": meta["reference"],
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


def test_label_check_flags_unequal_resonance_equivalent_atoms() -> None:
    """A nitro group whose two O differ by 0.28 e (antechamber missed the delocalised bonds)
    fails the label check; equal O's, and unequal atoms that are not equivalent, pass."""
    mol = mol_from_label_smiles("[H]C([H])([H])[N+](=O)[O-]")
    n, o1, o2 = (a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() in "NO")
    q = np.zeros(mol.GetNumAtoms())
    q[[n, o1, o2]] = 0.19, -0.21, -0.21
    assert label_problem(mol, q) is None
    q[[n, o1, o2]] = 0.57, -0.21, -0.49
    problem = label_problem(mol, q)
    assert problem is not None and "O atoms" in problem and "0.280 e" in problem
    ester = mol_from_label_smiles("[H]C([H])([H])C(=O)OC([H])([H])[H]")  # carbonyl O vs ether O
    q = np.array([-0.6 if a.GetSymbol() == "O" and a.GetDegree() == 1 else 0.0
                  for a in ester.GetAtoms()])
    assert label_problem(ester, q) is None


def test_shipped_labels_that_fail_the_check_are_not_in_the_test_set() -> None:
    """The shipped model's held-out keys exclude every record failing the label check."""
    meta = load_charge_model().metadata
    rejected = set(meta["label_check"]["rejected"])
    assert rejected and not rejected & set(meta["test_keys"])
