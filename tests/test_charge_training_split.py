"""The charge model's data split (hybridff.charges.model.split): NCI scaffold split, WEHI extras,
external test set."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
from rdkit import Chem

from hybridff.charges.model import metrics, split


@pytest.fixture(scope="module")
def trainer():
    """The split and metric functions the training uses."""
    return SimpleNamespace(**vars(split), per_variant_rmse=metrics.per_variant_rmse)


def _scaffolds() -> list[str]:
    """Distinct ring scaffolds: two carbocycles joined by a chain."""
    out = []
    for a, b in itertools.combinations_with_replacement(range(3, 9), 2):
        for chain in range(3):
            out.append("C1" + "C" * (a - 2) + "C1" + "C" * chain + "C2" + "C" * (b - 2) + "C2")
    return out


def _records(prefix: str, smiles: list[str], cation: bool = True) -> list[dict]:
    recs = []
    for i, smi in enumerate(smiles):
        recs.append({"key": f"{prefix}{i}:input", "smiles": smi + "CN"})
        if cation:
            recs.append({"key": f"{prefix}{i}:cation", "smiles": smi + "C[NH3+]"})
    return recs


def test_split(trainer):
    scaffolds = _scaffolds()
    assert len(set(scaffolds)) == len(scaffolds) > 60
    for smi in scaffolds:
        assert Chem.MolFromSmiles(smi) is not None, smi
    nci = _records("NCI", scaffolds[:50])
    # WEHI: ten molecules on NCI scaffolds, the rest on scaffolds that NCI lacks
    wehi = _records("WEHI-", scaffolds[:10] + scaffolds[50:], cation=True)
    mols_nci = [Chem.MolFromSmiles(r["smiles"]) for r in nci]
    mols_all = [Chem.MolFromSmiles(r["smiles"]) for r in nci + wehi]
    records = nci + wehi

    alone = trainer.split_with_extras(nci, mols_nci, seed=3)
    tr, va, te, left_out, ext = trainer.split_with_extras(records, mols_all, seed=3, external_fraction=0.3)
    keys = [r["key"] for r in records]
    # the NCI split does not depend on the extra records
    for part_alone, part in zip(alone[:3], (tr, va, te), strict=True):
        assert {keys[i] for i in part_alone} == {keys[i] for i in part if keys[i].startswith("NCI")}
    assert not alone[3] and not alone[4]
    # every record in exactly one part
    parts = [tr, va, te, left_out, ext]
    assert sorted(itertools.chain(*parts)) == list(range(len(records)))
    scaffold = [trainer.scaffold_of(m) for m in mols_all]
    nci_scaffolds = {scaffold[i] for i in range(len(nci))}
    held_out = {scaffold[i] for i in va + te}
    assert all(keys[i].startswith("WEHI-") and scaffold[i] in held_out for i in left_out)
    # external: WEHI only, scaffolds new to NCI, variants with their parent, about the fraction
    assert ext and all(keys[i].startswith("WEHI-") and scaffold[i] not in nci_scaffolds for i in ext)
    parents = {keys[i].split(":")[0] for i in ext}
    assert {keys[i] for i in ext} == {k for k in keys if k.split(":")[0] in parents}
    others = len(wehi) - len(left_out)
    assert 0.3 * others <= len(ext) <= 0.3 * others + 2
    # no external scaffold in training
    assert not {scaffold[i] for i in ext} & {scaffold[i] for i in tr}
    # deterministic
    assert trainer.split_with_extras(records, mols_all, seed=3, external_fraction=0.3)[4] == ext


def test_per_variant_rmse(trainer):
    import numpy as np

    recs = [{"key": "A:input", "charges": [0.0, 0.0]}, {"key": "A:cation", "charges": [1.0, 0.0]},
            {"key": "B:input", "charges": [0.0, 0.0]}]
    preds = [np.array([0.1, -0.1]), np.array([1.0, 0.0]), np.array([0.0, 0.0])]
    out = trainer.per_variant_rmse(recs, preds)
    assert out["input"]["n_molecules"] == 2
    assert out["input"]["rmse"] == pytest.approx(np.sqrt(0.02 / 4))
    assert out["cation"] == {"n_molecules": 1, "rmse": 0.0}


def test_coverage_records_never_external(trainer):
    """Generated coverage records (``COV-``) only train: the external set is the same with or
    without them, and those on a held-out or external scaffold are left out."""
    scaffolds = _scaffolds()
    nci = _records("NCI", scaffolds[:50])
    # the WEHI file's ids have more than one prefix (WEHI-, CGF-, ...)
    wehi = _records("WEHI-", scaffolds[50:58]) + _records("CGF-", scaffolds[58:])
    # coverage: on every scaffold (NCI, WEHI-only and new ones) and acyclic
    cov = _records("COV-x-", scaffolds + ["C", "CC"], cation=False)
    base = nci + wehi
    records = base + cov
    mols_base = [Chem.MolFromSmiles(r["smiles"]) for r in base]
    mols_all = [Chem.MolFromSmiles(r["smiles"]) for r in records]
    keys = [r["key"] for r in records]
    split_base = trainer.split_with_extras(base, mols_base, seed=5, external_fraction=0.3)
    tr, va, te, left_out, ext = trainer.split_with_extras(records, mols_all, seed=5, external_fraction=0.3)
    assert ext == split_base[4] and ext
    # every non-NCI, non-coverage record is a WEHI record, whatever its prefix
    renamed = [dict(r, key=r["key"].replace("CGF-", "WEHI-9")) for r in base]
    assert trainer.split_with_extras(renamed, mols_base, seed=5, external_fraction=0.3) == split_base
    assert any(keys[i].startswith("CGF-") for i in ext)
    for part_base, part in zip(split_base[:3], (tr, va, te), strict=True):
        assert part_base == [i for i in part if i < len(base)]
    scaffold = [trainer.scaffold_of(m) for m in mols_all]
    blocked = {scaffold[i] for i in va + te + ext}
    cov_idx = range(len(base), len(records))
    assert all(keys[i].startswith("COV-") for i in cov_idx)
    assert {i for i in cov_idx if scaffold[i] in blocked} == {i for i in cov_idx if i in left_out}
    assert {i for i in cov_idx if scaffold[i] not in blocked} == {i for i in cov_idx if i in tr}
    assert not {scaffold[i] for i in tr} & blocked


def test_variants_go_with_their_parent(trainer):
    """A variant whose own scaffold differs from its parent's (an N-methylated pyridine stays
    [n+] after neutralizing) is held out, external or trained on with its parent."""
    pyridines = [f"c1ccncc1{'C' * chain}C2{'C' * (b - 2)}C2" for b in range(3, 9) for chain in range(3)]
    records = _records("NCI", _scaffolds()[:40] + pyridines)
    wehi = []
    for i, smi in enumerate(pyridines + _scaffolds()[40:]):
        wehi.append({"key": f"WEHI-{i}:input", "smiles": smi + "CO"})
        if smi.startswith("c1ccncc1"):
            wehi.append({"key": f"WEHI-{i}:armethyl", "smiles": "C[n+]1ccc(cc1)" + smi[8:] + "CO"})
    records += wehi
    mols = [Chem.MolFromSmiles(r["smiles"]) for r in records]
    own = [trainer.scaffold_of(m) for m in mols]
    parts = trainer.split_with_extras(records, mols, seed=3, external_fraction=0.3)
    where = {i: n for n, part in enumerate(parts) for i in part}
    index = {r["key"]: i for i, r in enumerate(records)}
    methylated = [i for i, r in enumerate(records) if r["key"].endswith(":armethyl")]
    assert all(own[i] != own[index[records[i]["key"].split(":")[0] + ":input"]] for i in methylated)
    assert {where[i] for i in methylated} >= {0, 3}  # some train, some left out (held-out parent)
    for i in methylated:
        assert where[i] == where[index[records[i]["key"].split(":")[0] + ":input"]]


def test_parent_scaffold_without_input_record(trainer):
    """The parent's scaffold is its ``:input`` record's, wherever that record sits; a molecule
    whose ``:input`` failed to label takes its first record's scaffold for every variant."""
    records = [{"key": k} for k in ("A:cation", "A:input", "A:armethyl", "B:anion", "B:armethyl", "C:anion")]
    scaffolds = ["a-cation", "a", "a-methyl", "b-anion", "b-methyl", "c"]
    assert trainer.parent_scaffolds(records, scaffolds) == ["a", "a", "a", "b-anion", "b-anion", "c"]
    groups = trainer._parent_scaffold_groups(records, scaffolds)
    assert dict(groups) == {"a": [0, 1, 2], "b-anion": [3, 4], "c": [5]}
