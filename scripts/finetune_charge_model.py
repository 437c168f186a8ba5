"""Fine-tune a charge model on standard-recipe AM1-BCC labels (pre-trained on single points).

    python scripts/finetune_charge_model.py --labels labels_standard/am1bcc_standard_wehi-all.jsonl \
        --out labels_standard/charge_model_standard.pt

The base model (default: the shipped one, trained on single-point AM1-BCC labels) keeps its
split (rebuilt here from the shipped single-point labels and checked against the keys the
model file records). Standard-recipe records whose molecule is in that split's training part
are fine-tuned on, 15 % of their parent-scaffold groups (seeded) kept aside to pick the best
epoch; records in its validation, test, external-test or left-out parts (scaffolds never
trained on) are the held-out set and steer nothing. Each epoch also replays ``--mix`` times as
many single-point training molecules, so the rest of chemistry is not forgotten. Prints the
held-out RMSE against the standard recipe, by element and by functional group, for the base
and the fine-tuned model; writes the fine-tuned model with those metrics in its metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem, RDLogger

from hybridff.charges.labels import label_problem, mol_from_label_smiles, read_labels
from hybridff.charges.model.features import featurize
from hybridff.charges.model.file import (
    DEFAULT_LABELS,
    DEFAULT_MODEL,
    network_from_file,
    read_model_file,
    write_model_file,
)
from hybridff.charges.model.metrics import rmse
from hybridff.charges.model.network import ChargeEquilibrationNet
from hybridff.charges.model.predict import predict_graphs
from hybridff.charges.model.split import parent_scaffolds, scaffold_of, split_with_extras
from hybridff.charges.model.train import Batcher, train_epoch

#: functional groups checked one by one (the first atom of each match is scored)
GROUPS = {
    "sulfonyl S": "[SX4](=O)(=O)", "sulfonyl O": "[OX1]=[SX4]=[OX1]",
    "thioether S": "[SX2]([#6])[#6]", "nitro N": "[NX3+](=O)[O-]",
    "carboxylate O": "[CX3](=O)[O-]", "ammonium N": "[NX4+]", "amidinium C": "[NX3][CX3]=[NX3+]",
    "phosphate P": "[PX4](=O)(O)O", "aromatic N": "[n]", "amide N": "[NX3][CX3]=O",
    "carbonyl O": "[CX3]=[OX1]", "N-oxide O": "[#7+][O-]",
}
HELD_OUT_PARTS = ("val", "test", "left_out", "external")


def standard_records(path: Path, part: dict[str, str], elements: list[str]) -> dict[str, list]:
    """(key, mol, graph, charges) of the standard-recipe records, by the base split's part."""
    out: dict[str, list] = {"train": [], "held_out": [], "unknown": []}
    for rec in read_labels(path):
        mol = mol_from_label_smiles(rec["smiles"])
        q = np.asarray(rec["charges"], dtype=np.float64)
        if len(q) != mol.GetNumAtoms() or label_problem(mol, q):
            continue
        where = part.get(rec["key"])
        bucket = "train" if where == "train" else "held_out" if where in HELD_OUT_PARTS else "unknown"
        out[bucket].append((rec["key"], mol, featurize(mol, elements), q))
    return out


def report(net: ChargeEquilibrationNet, rows: list, title: str) -> dict:
    """Held-out RMSE and mean signed error (e) overall, by element and by group; printed."""
    pred = predict_graphs(net, [g for _, _, g, _ in rows])
    patterns = {name: Chem.MolFromSmarts(smarts) for name, smarts in GROUPS.items()}
    errors: dict[str, list[float]] = {}
    for (_, mol, _, q), p in zip(rows, pred, strict=True):
        d = p - q
        for atom in mol.GetAtoms():
            errors.setdefault(atom.GetSymbol(), []).append(d[atom.GetIdx()])
        for name, pattern in patterns.items():
            for match in mol.GetSubstructMatches(pattern):
                errors.setdefault(name, []).append(d[match[0]])
    out = {"n_molecules": len(rows),
           "rmse": rmse(np.concatenate(pred), np.concatenate([q for *_, q in rows]))}
    out["by"] = {k: {"n": len(v), "rmse": rmse(np.asarray(v), np.zeros(len(v))),
                     "mean": float(np.mean(v))} for k, v in errors.items()}
    print(f"{title}: {len(rows)} held-out molecules, RMSE {out['rmse']:.4f} e")
    for k, v in out["by"].items():
        print(f"  {k:14s} n={v['n']:5d}  RMSE {v['rmse']:.4f}  mean {v['mean']:+.4f}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", type=Path, required=True, help="standard-recipe records (.jsonl[.gz])")
    p.add_argument("--base", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--base-labels", type=Path, default=DEFAULT_LABELS,
                   help="the single-point labels the base model was trained on (its split)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--mix", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    base = read_model_file(args.base)
    meta, hp = base["metadata"], base["metadata"]["hyperparameters"]
    elements = list(meta["elements"])
    single = read_labels(args.base_labels)
    mols = [mol_from_label_smiles(r["smiles"]) for r in single]
    kept = [i for i, (r, m) in enumerate(zip(single, mols, strict=True))
            if len(r["charges"]) == m.GetNumAtoms()]
    single, mols = [single[i] for i in kept], [mols[i] for i in kept]
    parts = dict(zip(("train", "val", "test", "left_out", "external"),
                     split_with_extras(single, mols, meta["split_seed"], 0.1), strict=True))
    if not set(meta["test_keys"]) <= {single[i]["key"] for i in parts["test"]}:
        raise SystemExit(f"the split rebuilt from {args.base_labels} is not {args.base}'s")
    part = {single[i]["key"]: name for name, idx in parts.items() for i in idx}
    rows = standard_records(args.labels, part, elements)
    scaffolds = parent_scaffolds([{"key": k} for k, *_ in rows["train"]],
                                 [scaffold_of(m) for _, m, _, _ in rows["train"]])
    groups = sorted(set(scaffolds))
    rng.shuffle(groups)
    aside = set(groups[: int(0.15 * len(groups))])
    tune = [r for r, s in zip(rows["train"], scaffolds, strict=True) if s not in aside]
    pick = [r for r, s in zip(rows["train"], scaffolds, strict=True) if s in aside]
    print(f"standard records: fine-tune {len(tune)}, epoch choice {len(pick)}, held out "
          f"{len(rows['held_out'])}, not in the base split {len(rows['unknown'])} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    net = network_from_file(base, args.base)
    before = report(net, rows["held_out"], f"base {args.base.name}")

    def pick_rmse() -> float:
        return rmse(np.concatenate(predict_graphs(net, [g for _, _, g, _ in pick])),
                    np.concatenate([q for *_, q in pick]))

    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=hp["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    best = (pick_rmse(), -1, {k: v.clone() for k, v in net.state_dict().items()})
    replay: dict[int, object] = {}
    for epoch in range(args.epochs):
        chosen = rng.choice(parts["train"], size=min(len(parts["train"]), int(args.mix * len(tune))),
                            replace=False)
        for i in chosen:
            replay.setdefault(i, featurize(mols[i], elements))
        graphs = [g for _, _, g, _ in tune] + [replay[i] for i in chosen]
        targets = [q for *_, q in tune] + [np.asarray(single[i]["charges"]) for i in chosen]
        train_epoch(net, opt, Batcher(graphs, targets, hp["batch_size"], rng))
        sched.step()
        score = pick_rmse()
        if score < best[0]:
            best = (score, epoch, {k: v.clone() for k, v in net.state_dict().items()})
        print(f"epoch {epoch:3d}  epoch-choice RMSE {score:.4f} e  best {best[0]:.4f} "
              f"(epoch {best[1]})  {time.perf_counter() - t0:.0f} s", flush=True)
    net.load_state_dict(best[2])
    net.eval()
    after = report(net, rows["held_out"], "fine-tuned")
    metadata = dict(meta)
    metadata.update({
        "reference": "AM1-BCC standard recipe (antechamber -c bcc: sqm AM1 relaxation first)",
        "fine_tuned_from": hashlib.sha256(args.base.read_bytes()).hexdigest(),
        "fine_tune": {**{k: v for k, v in vars(args).items() if k in ("epochs", "lr", "mix", "seed")},
                      "label_file_sha256": hashlib.sha256(args.labels.read_bytes()).hexdigest(),
                      "best_epoch": best[1], "n_tune": len(tune), "n_epoch_choice": len(pick)},
        "metrics_standard_held_out": {"base": before, "fine_tuned": after},
    })
    print(f"wrote {write_model_file(args.out, net, metadata)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
