"""The AM1-BCC label script (scripts/make_charge_labels.py): protonation rules, sources, jobs."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

from hybridff.charges.labels import mol_from_label_smiles

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_charge_labels.py"


@pytest.fixture(scope="module")
def labels():
    spec = importlib.util.spec_from_file_location("make_charge_labels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_charge_labels"] = module  # the process pool pickles its job function
    spec.loader.exec_module(module)
    return module


def _variants(labels, smiles: str, aromatic: bool = False) -> dict[str, str]:
    return {k: Chem.MolToSmiles(v) for k, v in labels.variants(Chem.MolFromSmiles(smiles), aromatic).items()}


@pytest.mark.parametrize(
    "smiles, expected",
    [
        ("CC(=O)O", {"anion": "CC(=O)[O-]"}),
        ("CCN", {"cation": "CC[NH3+]"}),
        ("NCC(=O)O", {"anion": "NCC(=O)[O-]", "cation": "[NH3+]CC(=O)O",
                      "zwitterion": "[NH3+]CC(=O)[O-]"}),
        ("OC(=O)CCC(=O)O", {"anion": "O=C([O-])CCC(=O)O", "dianion": "O=C([O-])CCC(=O)[O-]"}),
        ("CC(=N)N", {"cation": "CC(N)=[NH2+]"}),
        ("CC(=O)Nc1ccccc1", {}),  # amide and aniline N are not protonated
    ],
)
def test_protonation_variants(labels, smiles, expected):
    got = _variants(labels, smiles)
    assert got.pop("input") == Chem.MolToSmiles(Chem.MolFromSmiles(smiles))
    assert got == {k: Chem.MolToSmiles(Chem.MolFromSmiles(v)) for k, v in expected.items()}
    for name, smi in got.items():
        charge = Chem.GetFormalCharge(Chem.MolFromSmiles(smi))
        assert charge == {"anion": -1, "cation": 1, "zwitterion": 0, "dianion": -2}[name]


@pytest.mark.parametrize(
    "smiles, protonated",
    [
        ("Nc1ccccn1", "Nc1cccc[nH+]1"),  # 2-aminopyridine: the ring N
        ("c1c[nH]cn1", "c1c[nH+]c[nH]1"),  # imidazole
        ("Cc1ccncc1", "Cc1cc[nH+]cc1"),  # pyridine
        ("c1ccc(-c2ccccn2)nc1N", "Nc1cccc(-c2ccccn2)[nH+]1"),  # the most basic kind wins
    ],
)
def test_aromatic_base_variant(labels, smiles, protonated):
    got = _variants(labels, smiles, aromatic=True)
    assert got["arcation"] == Chem.MolToSmiles(Chem.MolFromSmiles(protonated))
    assert "arcation" not in _variants(labels, smiles, aromatic=False)


@pytest.mark.parametrize(
    "smiles, methylated",
    [
        ("Nc1ccccn1", "C[n+]1ccccc1N"),  # the same ring N as arcation, now without an N-H
        ("Cn1ccnc1", "Cn1cc[n+](C)c1"),
        ("c1ccc2ncccc2c1", "C[n+]1cccc2ccccc21"),
    ],
)
def test_methylated_aromatic_base_variant(labels, smiles, methylated):
    got = _variants(labels, smiles, aromatic=True)
    assert got["armethyl"] == Chem.MolToSmiles(Chem.MolFromSmiles(methylated))
    assert "armethyl" not in _variants(labels, smiles, aromatic=False)
    assert "armethyl" not in _variants(labels, "c1ccccc1N", aromatic=True)  # no aromatic base


@pytest.mark.parametrize(
    "smiles, anion",
    [
        ("Cc1nn[nH]n1", "Cc1nn[n-]n1"),  # tetrazole, before ...
        ("Oc1ccc(cc1)-c1nn[nH]n1", "Oc1ccc(-c2nn[n-]n2)cc1"),  # ... a phenol
        ("CC(=O)NS(=O)(=O)c1ccccc1", "CC(=O)[N-]S(=O)(=O)c1ccccc1"),  # acyl sulfonamide
        ("NS(=O)(=O)c1ccccc1", "[NH-]S(=O)(=O)c1ccccc1"),  # primary sulfonamide keeps one H
        ("O=C1NC(=O)c2ccccc21", "O=C1[N-]C(=O)c2ccccc21"),  # imide
        ("CC(=O)C=C(O)C", "CC(=O)C=C(C)[O-]"),  # enol of a 1,3-dicarbonyl
        ("CC(=O)NO", "CC(=O)N[O-]"),  # hydroxamic acid
        ("Cc1ccc(O)cc1", "Cc1ccc([O-])cc1"),  # phenol
        ("NCCS", "NCC[S-]"),  # thiol
    ],
)
def test_weak_acid_variant(labels, smiles, anion):
    got = _variants(labels, smiles, aromatic=True)
    assert got["weakanion"] == Chem.MolToSmiles(Chem.MolFromSmiles(anion))
    assert "weakanion" not in _variants(labels, smiles, aromatic=False)


def test_weak_acid_variant_needs_no_stronger_acid(labels):
    got = _variants(labels, "Oc1ccccc1C(=O)O", aromatic=True)  # salicylic acid: the carboxylate
    assert "weakanion" not in got and got["anion"] == "O=C([O-])c1ccccc1O"


def test_charged_input_gets_no_variants(labels):
    assert list(_variants(labels, "C[NH3+]", aromatic=True)) == ["input"]
    assert list(_variants(labels, "c1cc[nH+]cc1", aromatic=True)) == ["input"]


def test_sources(labels):
    wehi = labels.build_jobs(12, "wehi")
    everything = labels.build_jobs(12, "wehi-all")
    keys = {k for _, k, _ in everything}
    assert {k for _, k, _ in wehi} < keys  # the rare-chemistry keys are kept, so not redone
    for variant in ("arcation", "armethyl", "weakanion"):
        assert any(k.endswith(f":{variant}") for k in keys)
    assert all(k.startswith("WEHI-") for k in keys)
    assert all(h <= 12 for h, _, _ in everything)
    smiles = [s for _, _, s in everything]
    assert len(smiles) == len(set(smiles))
    with pytest.raises(ValueError, match="unknown source"):
        labels.build_jobs(12, "chembl")


def test_failed_job_becomes_a_record(labels):
    rec = labels._job(("X:input", 1, "not a smiles", 10.0, False))
    assert rec["key"] == "X:input" and "error" in rec


@pytest.mark.skipif(shutil.which("antechamber") is None, reason="needs AmberTools")
def test_resumable_parallel_run_and_pack(labels, tmp_path):
    out = tmp_path / "labels.jsonl"
    args = ["--out", str(out), "--source", "wehi-all", "--max-heavy", "10", "--charged-first",
            "--workers", "2", "--limit", "3"]
    assert labels.main(args) == 0
    first = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(first) == 3
    # charged variants first: the three smallest charged jobs still to do
    jobs = labels.build_jobs(10, "wehi-all")
    charged = sorted((j for j in jobs if not j[1].endswith(":input")), key=lambda j: (j[0], j[1]))
    assert {r["key"] for r in first} == {k for _, k, _ in charged[:3]}
    for rec in first:
        mol = mol_from_label_smiles(rec["smiles"])
        assert len(rec["charges"]) == mol.GetNumAtoms()
        assert np.isclose(sum(rec["charges"]), Chem.GetFormalCharge(mol), atol=5e-3)
    # a second run resumes: nothing is labelled twice
    assert labels.main(args) == 0
    second = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(second) == 6 and len({r["key"] for r in second}) == 6
    packed = tmp_path / "labels.jsonl.gz"
    assert labels.main(["--out", str(out), "--pack", str(packed)]) == 0
    assert packed.exists()
