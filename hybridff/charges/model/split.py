"""The charge model's data split: NCI by scaffold, the other label sources around it.

The NCI molecules are split by Bemis-Murcko scaffold (all protonation variants of one NCI
molecule share a group) into train/validation/test; molecules from other sources (drug-like
molecules of RDKit's WEHI set; generated ``COV-...`` coverage molecules) are left out when
their scaffold is in the validation or test set; WEHI scaffold groups new to the NCI set form
an external test set (a seeded fraction of them; coverage molecules on those scaffolds are
left out too); the rest adds to training.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict

from rdkit import Chem
from rdkit.Chem.MolStandardize import rdMolStandardize
from rdkit.Chem.Scaffolds import MurckoScaffold


def scaffold_of(mol: Chem.Mol) -> str:
    """Bemis-Murcko scaffold SMILES of the neutralized heavy-atom graph ('' when acyclic)."""
    heavy = rdMolStandardize.Uncharger().uncharge(Chem.RemoveHs(mol))
    return MurckoScaffold.MurckoScaffoldSmiles(mol=heavy, includeChirality=False)


def is_nci(key: str) -> bool:
    """Whether a label key belongs to the NCI set (the set that is split)."""
    return key.startswith("NCI")


def is_coverage(key: str) -> bool:
    """Whether a label key belongs to the generated coverage set (never in the external test)."""
    return key.startswith("COV-")


def split_with_extras(
    records: list[dict], mols: list[Chem.Mol], seed: int, external_fraction: float = 0.0
) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """Indices of train/val/test/left out/external test.

    Every record counts with its parent's scaffold (:func:`parent_scaffolds`). The NCI records
    are split by :func:`scaffold_split` (unchanged by the presence of other
    records). Other records whose scaffold is one of the NCI validation or test scaffolds are
    left out. Of the remaining WEHI records (every key but ``NCI...`` and ``COV-...``), whole
    scaffold groups (variants with their parent) whose ring scaffold occurs nowhere in the NCI
    set form an external test set of about ``external_fraction`` of them (seeded); generated
    coverage records (``COV-...``) on an external scaffold are left out; everything else goes
    to training.
    """
    scaffolds = parent_scaffolds(records, [scaffold_of(m) for m in mols])
    nci = [i for i, r in enumerate(records) if is_nci(r["key"])]
    tr, va, te = scaffold_split([records[i] for i in nci], [scaffolds[i] for i in nci], seed)
    tr, va, te = [nci[i] for i in tr], [nci[i] for i in va], [nci[i] for i in te]
    held_out = {scaffolds[i] for i in va + te}
    nci_scaffolds = {scaffolds[i] for i in nci}
    left_out, other = [], []
    for i, rec in enumerate(records):
        if not is_nci(rec["key"]):
            (left_out if scaffolds[i] in held_out else other).append(i)
    wehi = [i for i in other if not is_coverage(records[i]["key"])]
    groups = _parent_scaffold_groups([records[i] for i in wehi], [scaffolds[i] for i in wehi])
    novel = sorted(g for g in groups if g and g not in nci_scaffolds)
    random.Random(seed).shuffle(novel)
    external: list[int] = []
    for g in novel:
        if len(external) >= external_fraction * len(wehi):
            break
        external += [wehi[i] for i in groups[g]]
    chosen = set(external)
    # coverage records on an external scaffold are left out
    external_scaffolds = {scaffolds[i] for i in external}
    for i in other:
        if i in chosen:
            continue
        blocked = is_coverage(records[i]["key"]) and scaffolds[i] in external_scaffolds
        (left_out if blocked else tr).append(i)
    return sorted(tr), va, te, sorted(left_out), sorted(external)


def parent_scaffolds(records: list[dict], scaffolds: list[str]) -> list[str]:
    """Each record's scaffold replaced by its parent's: that of the ``:input`` record of the
    same molecule when labelled, else that of the molecule's first record. A variant can have
    a scaffold of its own where the neutralizer cannot undo its charge (an N-methylated ring N
    stays [n+]); it must still be held out, or be external, with its parent."""
    parent: dict[str, str] = {}
    for rec, scaffold in zip(records, scaffolds, strict=True):
        molecule = rec["key"].split(":")[0]
        if molecule not in parent or rec["key"].endswith(":input"):
            parent[molecule] = scaffold
    return [parent[rec["key"].split(":")[0]] for rec in records]


def _parent_scaffold_groups(records: list[dict], scaffolds: list[str]) -> dict[str, list[int]]:
    """Record indices grouped by their parent's scaffold (:func:`parent_scaffolds`), so that
    all protonation variants of one molecule share a group."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, scaffold in enumerate(parent_scaffolds(records, scaffolds)):
        groups[scaffold].append(i)
    return groups


def scaffold_split(
    records: list[dict], scaffolds: list[str], seed: int, fractions=(0.8, 0.1, 0.1)
) -> tuple[list[int], list[int], list[int]]:
    """Indices of train/val/test; whole scaffold groups (and variant families) go together.
    ``scaffolds``: :func:`scaffold_of` of each record's molecule."""
    groups = _parent_scaffold_groups(records, scaffolds)
    n = len(records)
    n_val, n_test = int(fractions[1] * n), int(fractions[2] * n)
    names = sorted(groups)
    random.Random(seed).shuffle(names)
    # groups bigger than half a held-out set (the acyclic group, benzene, ...) train only
    big = [g for g in names if len(groups[g]) > n_test / 2]
    small = [g for g in names if g not in big]
    train, val, test = [], [], []
    for g in big:
        train += groups[g]
    for g in small:
        if len(test) < n_test:
            test += groups[g]
        elif len(val) < n_val:
            val += groups[g]
        else:
            train += groups[g]
    return sorted(train), sorted(val), sorted(test)


def sha256_records(records: list[dict]) -> str:
    """SHA256 of the canonical JSON of a list of label records."""
    h = hashlib.sha256()
    for rec in records:
        h.update(json.dumps(rec, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()
