"""How much of the ML charge model's test error is conformer noise in its AM1-BCC labels.

AM1-BCC charges depend on the conformer they are computed on; the ML model sees only the
graph, so it cannot follow that dependence and at best predicts the conformer average. For a
seeded sample of held-out test molecules this script computes AM1-BCC again on ``--conformers``
new ETKDG+MMFF conformers (the labels' recipe: single point, or ``--optimize`` for the standard
recipe with AM1 relaxation), then reports per-atom RMSEs:

- label vs label on another conformer (the noise floor of a single-conformer reference),
- ML vs the stored label (the number in docs/charges.md), and
- ML vs the mean over all conformers (the conformer-averaged AM1-BCC reference).

    python scripts/charge_label_noise.py --n 150 --conformers 2 --json /tmp/noise.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem, RDLogger

from hybridff.charges import assign_charges
from hybridff.charges.labels import mol_from_label_smiles, read_labels
from hybridff.charges.ml import ml_charges
from hybridff.charges.model.file import DEFAULT_LABELS, DEFAULT_MODEL
from hybridff.charges.model.metrics import rmse
from hybridff.io.molecule import ensure_conformer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=150, help="test molecules to sample")
    parser.add_argument("--conformers", type=int, default=2, help="new conformers per molecule")
    parser.add_argument("--optimize", action="store_true",
                        help="AM1-relax before the charges (standard recipe; ~30x slower)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--json", type=Path, help="write the per-molecule results here")
    args = parser.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    torch.set_num_threads(1)

    meta = torch.load(args.model, map_location="cpu", weights_only=True)["metadata"]
    by_key = {r["key"]: r for r in read_labels(args.labels)}
    keys = sorted(meta["test_keys"])
    random.Random(args.seed).shuffle(keys)

    stored, ml, redo, elements, results = [], [], [], [], []
    failures: list[str] = []
    t0 = time.perf_counter()
    for key in keys[: args.n]:
        rec = by_key[key]
        mol = mol_from_label_smiles(rec["smiles"])
        try:
            charges = []
            for c in range(args.conformers):
                conf = Chem.Mol(mol)
                conf.RemoveAllConformers()
                conf = ensure_conformer(conf, seed=1000 + c)
                charges.append(assign_charges(conf, "am1bcc", optimize=args.optimize))
        except Exception as exc:  # noqa: BLE001 - report and go on, counted below
            failures.append(f"{key}: {str(exc).splitlines()[0][:120]}")
            continue
        q_label = np.asarray(rec["charges"])
        stored.append(q_label)
        ml.append(ml_charges(mol))
        redo.append(np.stack(charges))
        elements += [a.GetSymbol() for a in mol.GetAtoms()]
        results.append({"key": key, "smiles": rec["smiles"]})
        print(f"\r{len(results)}/{args.n} molecules, {time.perf_counter() - t0:.0f} s",
              end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    q_stored = np.concatenate(stored)
    q_ml = np.concatenate(ml)
    q_redo = np.concatenate(redo, axis=1)  # (conformers, atoms)
    q_mean = np.concatenate([q_stored[None], q_redo]).mean(0)
    elements = np.array(elements)
    recipe = "standard recipe (AM1 relaxation)" if args.optimize else "single point (labels' recipe)"
    summary = {
        "molecules": len(results), "atoms": int(q_stored.size), "failures": failures,
        "recipe": recipe, "conformers_per_molecule": args.conformers + 1,
        "label_vs_new_conformer_rmse": [rmse(q_stored, q) for q in q_redo],
        "ml_vs_stored_label_rmse": rmse(q_ml, q_stored),
        "ml_vs_new_conformer_rmse": [rmse(q_ml, q) for q in q_redo],
        "ml_vs_conformer_mean_rmse": rmse(q_ml, q_mean),
        "per_element": {},
    }
    for el in sorted(set(elements)):
        m = elements == el
        summary["per_element"][el] = {
            "atoms": int(m.sum()),
            "label_vs_new_conformer_rmse": rmse(q_stored[m], q_redo[0][m]),
            "ml_vs_stored_label_rmse": rmse(q_ml[m], q_stored[m]),
            "ml_vs_conformer_mean_rmse": rmse(q_ml[m], q_mean[m]),
        }
    print(json.dumps({k: v for k, v in summary.items() if k != "per_element"}, indent=1))
    print("| element | atoms | label vs label, other conformer | ML vs label | ML vs conformer mean |")
    print("|---|---|---|---|---|")
    for el, row in summary["per_element"].items():
        print(f"| {el} | {row['atoms']} | {row['label_vs_new_conformer_rmse']:.4f} | "
              f"{row['ml_vs_stored_label_rmse']:.4f} | {row['ml_vs_conformer_mean_rmse']:.4f} |")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "molecules": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
