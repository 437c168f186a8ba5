"""Make a fine-tuned charge model the shipped one, with metadata true to its weights.

    python scripts/ship_charge_model.py labels_standard/charge_model_standard_skipS.pt

``scripts/finetune_charge_model.py`` copies the base model's metadata and adds the fine-tuning
record; the base's single-point metrics (``metrics_val``, ``metrics_test``,
``metrics_external_test``) then describe the base, not these weights. This script recomputes
them for the fine-tuned weights on the same parts of the same split (validation rebuilt from
the split seed, test and external test from the stored keys; records failing the label check
left out as in training), keeps the base's under ``fine_tuned_from_metrics``, and writes the
file (default: ``hybridff/resources/charge_model.pt``). Weights are copied unchanged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from rdkit import RDLogger

from hybridff.charges.labels import mol_from_label_smiles, read_labels
from hybridff.charges.model.features import featurize
from hybridff.charges.model.file import (
    DEFAULT_LABELS,
    DEFAULT_MODEL,
    network_from_file,
    read_model_file,
)
from hybridff.charges.model.metrics import evaluate, per_variant_rmse
from hybridff.charges.model.predict import predict_graphs
from hybridff.charges.model.split import split_with_extras

#: what the single-point metrics in a shipped fine-tuned model are measured against
METRICS_REFERENCE = ("metrics_val, metrics_test, metrics_external_test: against the single-point "
                     "labels of label_file (the pre-training recipe); metrics_standard_held_out: "
                     "against the standard recipe (antechamber -c bcc with AM1 relaxation)")


def single_point_metrics(data: dict, labels: Path) -> dict[str, dict]:
    """metrics_val / metrics_test / metrics_external_test of the weights in ``data``."""
    meta = data["metadata"]
    records = read_labels(labels)
    mols = [mol_from_label_smiles(r["smiles"]) for r in records]
    kept = [i for i, (r, m) in enumerate(zip(records, mols, strict=True))
            if len(r["charges"]) == m.GetNumAtoms()]
    records, mols = [records[i] for i in kept], [mols[i] for i in kept]
    _, val, test, _, _ = split_with_extras(records, mols, meta["split_seed"], 0.1)
    if [records[i]["key"] for i in test if records[i]["key"] not in meta["label_check"]["rejected"]] \
            != meta["test_keys"]:
        raise SystemExit(f"the split rebuilt from {labels} is not the one the model records")
    rejected = set(meta["label_check"]["rejected"])
    by_key = {r["key"]: i for i, r in enumerate(records)}
    parts = {"metrics_val": [i for i in val if records[i]["key"] not in rejected],
             "metrics_test": [by_key[k] for k in meta["test_keys"]],
             "metrics_external_test": [by_key[k] for k in meta["external_test_keys"]]}
    net = network_from_file(data)
    out = {}
    for name, idx in parts.items():
        pred = predict_graphs(net, [featurize(mols[i], meta["elements"]) for i in idx])
        refs = [np.asarray(records[i]["charges"], dtype=np.float64) for i in idx]
        out[name] = evaluate([mols[i] for i in idx], refs, pred, name == "metrics_test",
                             keys=[records[i]["key"] for i in idx],
                             environments=None if name == "metrics_val" else meta["training_environments"])
        if name == "metrics_external_test":
            out[name]["per_variant"] = per_variant_rmse([records[i] for i in idx], pred)
        print(f"{name}: {len(idx)} molecules, RMSE {out[name]['rmse']:.4f} e (single-point labels)",
              flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="a model file written by finetune_charge_model.py")
    p.add_argument("--labels", type=Path, default=DEFAULT_LABELS,
                   help="the single-point labels of the base model's split")
    p.add_argument("--out", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    torch.set_num_threads(args.threads)
    data = read_model_file(args.model)
    meta = data["metadata"]
    if "fine_tune" not in meta:
        raise SystemExit(f"{args.model} has no fine-tuning record: ship a model of "
                         "scripts/finetune_charge_model.py (a trained one is written in place)")
    if "fine_tuned_from_metrics" not in meta:
        meta["fine_tuned_from_metrics"] = {k: meta.get(k) for k in
                                           ("metrics_val", "metrics_test", "metrics_external_test")}
    meta.update(single_point_metrics(data, args.labels))
    meta["metrics_reference"] = METRICS_REFERENCE
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    torch.save(data, tmp)
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
