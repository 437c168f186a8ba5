"""Write the per-group sample of standard-recipe AM1-BCC labels that tests/test_charge_groups.py
checks the shipped charge model against.

    python scripts/make_charge_group_sample.py \
        --labels scripts/charge_label_runs/am1bcc_standard_wehi-all.jsonl.gz \
        --fine-tuned-on /tmp/std_labels_snapshot.jsonl --out tests/data/am1bcc_standard_groups.json

For each molecule class (sulfonamide, sulfone, thioether, nitro, carboxylate, ammonium,
amidinium, phosphonate: the labels hold no phosphate ester) the ``--per-class`` smallest
records (fewest atoms, then key; one per parent molecule, so not two protonation variants of
one molecule) are taken,
held-out ones first: molecules in the validation, test, external-test or left-out part of the
shipped model's split (scaffolds it was never trained on), then training-part records it was
not fine-tuned on (not in ``--fine-tuned-on``), then the ones it was fine-tuned on. Each record
says which (``part``). The choice looks at no prediction. Records failing the label check are
skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger

from hybridff.charges.labels import label_problem, mol_from_label_smiles, read_labels
from hybridff.charges.model.file import DEFAULT_LABELS, DEFAULT_MODEL, read_model_file
from hybridff.charges.model.split import split_with_extras

#: molecule classes: a molecule belongs to one when it matches the SMARTS
CLASSES = {
    "sulfonamide": "[SX4](=O)(=O)[NX3]", "sulfone": "[SX4](=O)(=O)([#6])[#6]",
    "thioether": "[SX2]([#6])[#6]", "nitro": "[NX3+](=O)[O-]", "carboxylate": "[CX3](=O)[O-]",
    "ammonium": "[NX4+]", "amidinium": "[CX3](=[NX3+])[NX3]", "phosphonate": "[PX4](=O)[#8]",
}
#: atoms scored by the test: the first atom of every match of the SMARTS
GROUPS = {
    "sulfonamide S": "[SX4](=O)(=O)[NX3]", "sulfonamide O": "[OX1]=[SX4](=O)[NX3]",
    "sulfone S": "[SX4](=O)(=O)([#6])[#6]", "sulfone O": "[OX1]=[SX4](=O)([#6])[#6]",
    "thioether S": "[SX2]([#6])[#6]",
    "nitro N": "[NX3+](=O)[O-]", "nitro O": "[OX1-][NX3+]=O",
    "carboxylate C": "[CX3](=O)[O-]", "carboxylate O": "[OX1-][CX3]=[OX1]",
    "ammonium N": "[NX4+]", "amidinium C": "[CX3](=[NX3+])[NX3]",
    "amidinium N": "[NX3+]=[CX3][NX3]", "phosphonate P": "[PX4](=O)[#8]",
    "phosphonate O": "[OX1]=[PX4][#8]",
}
HELD_OUT_PARTS = ("val", "test", "left_out", "external")


def split_parts(model: Path, labels: Path) -> dict[str, str]:
    """key -> part ("train", "val", "test", "left_out", "external") of the model's split."""
    meta = read_model_file(model)["metadata"]
    records = read_labels(labels)
    mols = [mol_from_label_smiles(r["smiles"]) for r in records]
    kept = [i for i, (r, m) in enumerate(zip(records, mols, strict=True))
            if len(r["charges"]) == m.GetNumAtoms()]
    records, mols = [records[i] for i in kept], [mols[i] for i in kept]
    parts = split_with_extras(records, mols, meta["split_seed"], 0.1)
    if not set(meta["test_keys"]) <= {records[i]["key"] for i in parts[2]}:
        raise SystemExit(f"the split rebuilt from {labels} is not {model}'s")
    names = ("train", "val", "test", "left_out", "external")
    return {records[i]["key"]: name for name, idx in zip(names, parts, strict=True) for i in idx}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", type=Path, required=True, help="standard-recipe records")
    p.add_argument("--fine-tuned-on", type=Path, required=True,
                   help="the standard-recipe label file the shipped model was fine-tuned on")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--base-labels", type=Path, default=DEFAULT_LABELS)
    p.add_argument("--per-class", type=int, default=5)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    part = split_parts(args.model, args.base_labels)
    tuned = {r["key"] for r in read_labels(args.fine_tuned_on)}
    classes = {name: Chem.MolFromSmarts(s) for name, s in CLASSES.items()}
    candidates: dict[str, list] = {name: [] for name in CLASSES}
    for rec in read_labels(args.labels):
        mol = mol_from_label_smiles(rec["smiles"])
        q = np.asarray(rec["charges"], dtype=np.float64)
        if len(q) != mol.GetNumAtoms() or label_problem(mol, q) or rec["key"] not in part:
            continue
        where = ("held_out" if part[rec["key"]] in HELD_OUT_PARTS else
                 "train, fine-tuned on" if rec["key"] in tuned else "train, not fine-tuned on")
        rank = (0 if where == "held_out" else 1 if where.endswith("not fine-tuned on") else 2)
        for name, pattern in classes.items():
            if mol.HasSubstructMatch(pattern):
                candidates[name].append((rank, mol.GetNumAtoms(), rec["key"], where, rec))
    chosen: dict[str, dict] = {}
    for name, rows in candidates.items():
        picked, parents = [], set()
        for row in sorted(rows, key=lambda r: r[:3]):
            if row[2].split(":")[0] not in parents and len(picked) < args.per_class:
                picked.append(row)
                parents.add(row[2].split(":")[0])
        for *_, where, rec in picked:
            entry = chosen.setdefault(rec["key"], {"key": rec["key"], "smiles": rec["smiles"],
                                                   "charges": rec["charges"], "part": where,
                                                   "classes": []})
            entry["classes"].append(name)
        print(f"{name:12s} {len(rows):4d} candidates; chose "
              + ", ".join(f"{r[2]} ({r[3]})" for r in picked))
    out = {"source": str(args.labels), "recipe": "am1bcc-standard",
           "selection": f"per class the {args.per_class} smallest records, held-out first "
                        "(scripts/make_charge_group_sample.py)",
           "groups": GROUPS, "records": sorted(chosen.values(), key=lambda r: r["key"])}
    args.out.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {args.out}: {len(chosen)} molecules, {args.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
