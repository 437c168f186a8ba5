"""Fine-tune a charge model on standard-recipe AM1-BCC labels (pre-trained on single points).

    python scripts/finetune_charge_model.py --labels labels_standard/am1bcc_standard_wehi-all.jsonl \
        --base charge_model_singlepoint.pt --out labels_standard/charge_model_standard.pt
    python scripts/finetune_charge_model.py --labels ... --base charge_model_singlepoint.pt \
        --evaluate hybridff/resources/charge_model.pt      # held-out table only, no training

``--base`` defaults to the shipped model, which since issue 20 is itself the fine-tuned one; the
single-point model it was fine-tuned from is ``git show
bdd37c6:hybridff/resources/charge_model.pt > charge_model_singlepoint.pt``.

The base model (default: the shipped one, trained on single-point AM1-BCC labels) keeps its
split (rebuilt here from the shipped single-point labels and checked against the keys the
model file records). Standard-recipe records whose molecule is in that split's training part
are fine-tuned on, 15 % of their parent-scaffold groups (seeded) kept aside to pick the best
epoch; records in its validation, test, external-test or left-out parts (scaffolds never
trained on) are the held-out set and steer nothing. Each epoch also replays ``--mix`` times as
many single-point training molecules, so the rest of chemistry is not forgotten (``--replay-skip
'[#16]'`` leaves out those with sulfur, whose single-point labels are farthest from the standard
recipe: measured better on the epoch-choice set, docs/charges.md). Prints the
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
from hybridff.charges.model.predict import predict_graphs, predict_members
from hybridff.charges.model.split import parent_scaffolds, scaffold_of, split_with_extras
from hybridff.charges.model.train import Batcher, train_epoch

#: functional groups checked one by one (the first atom of each match is scored; before
#: 2026-11-29 "carboxylate O", "amidinium C" and "N-oxide O" scored the C, the NH and the N)
GROUPS = {
    "sulfonyl S": "[SX4](=O)(=O)", "sulfonyl O": "[OX1]=[SX4]=[OX1]",
    "thioether S": "[SX2]([#6])[#6]", "nitro N": "[NX3+](=O)[O-]",
    "carboxylate C": "[CX3](=O)[O-]", "carboxylate O": "[OX1-][CX3]=[OX1]",
    "ammonium N": "[NX4+]", "amidinium C": "[CX3](=[NX3+])[NX3]",
    "phosphate P": "[PX4](=O)(O)O", "aromatic N": "[n]", "amide N": "[NX3][CX3]=O",
    "carbonyl O": "[CX3]=[OX1]", "N-oxide O": "[OX1-][#7+;!$([#7+](=O)[O-])]",
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
    """RMSE and mean signed error (e) overall, by element and by group; printed."""
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
    charged = [Chem.GetFormalCharge(mol) != 0 for _, mol, _, _ in rows]
    for name, want in (("charged", True), ("neutral", False)):
        chosen = [(p, q) for (*_, q), p, c in zip(rows, pred, charged, strict=True) if c == want]
        out[name] = {"n_molecules": len(chosen), "rmse": rmse(
            np.concatenate([p for p, _ in chosen]), np.concatenate([q for _, q in chosen]))
            if chosen else float("nan")}
    print(f"{title}: {len(rows)} molecules, RMSE {out['rmse']:.4f} e; charged "
          f"{out['charged']['n_molecules']} molecules {out['charged']['rmse']:.4f} e, neutral "
          f"{out['neutral']['n_molecules']} {out['neutral']['rmse']:.4f} e")
    for k, v in out["by"].items():
        print(f"  {k:14s} n={v['n']:5d}  RMSE {v['rmse']:.4f}  mean {v['mean']:+.4f}")
    return out


def atom_weights(mol: Chem.Mol, element_weight: dict[str, float], per_molecule: bool) -> np.ndarray:
    """Loss weight of each atom of ``mol``: its element's weight (default 1), divided by the
    number of atoms when every molecule counts the same (``per_molecule``)."""
    w = np.array([element_weight.get(a.GetSymbol(), 1.0) for a in mol.GetAtoms()])
    return w / len(w) if per_molecule else w


def train_epoch_weighted(net: ChargeEquilibrationNet, opt: torch.optim.Optimizer, batches: Batcher,
                         weights: list[np.ndarray]) -> None:
    """One pass like :func:`~hybridff.charges.model.train.train_epoch`, each member's loss the
    ``weights``-weighted mean squared charge error (``weights[i]``: per atom of molecule i)."""
    net.train()
    for inputs, y, idx in batches:
        w = torch.as_tensor(np.concatenate([weights[i] for i in idx]), dtype=torch.float32)
        opt.zero_grad()
        (((net(*inputs) - y) ** 2 * w).sum(dim=1) / w.sum()).sum().backward()
        opt.step()
    net.eval()


def element_weights(items: list[str]) -> dict[str, float]:
    """``["S=3", "P=2"]`` -> ``{"S": 3.0, "P": 2.0}``; a malformed item exits naming it."""
    out = {}
    for item in items:
        symbol, _, value = item.partition("=")
        try:
            out[symbol.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"--element-weight {item!r}: give ELEMENT=WEIGHT, e.g. S=3") from None
    return out


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", type=Path, required=True, help="standard-recipe records (.jsonl[.gz])")
    p.add_argument("--base", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--base-labels", type=Path, default=DEFAULT_LABELS,
                   help="the single-point labels the base model was trained on (its split)")
    p.add_argument("--out", type=Path, help="the fine-tuned model file to write (needed "
                   "unless --evaluate)")
    p.add_argument("--evaluate", type=Path, default=None, metavar="MODEL",
                   help="no fine-tuning: print the held-out table of --base and of MODEL (a "
                        "model fine-tuned from it) on the standard-recipe records of --labels")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--schedule", choices=("cosine", "constant"), default="cosine",
                   help="learning rate over the epochs: cosine decay to 0, or constant")
    p.add_argument("--mix", type=float, default=1.0,
                   help="single-point training molecules replayed per epoch, per fine-tuned one")
    p.add_argument("--replay-weight", type=float, default=1.0,
                   help="loss weight of each replayed single-point atom (standard-recipe atoms: 1)")
    p.add_argument("--replay-skip", action="append", default=[], metavar="SMARTS",
                   help="never replay single-point molecules matching this SMARTS (repeatable; "
                        "e.g. '[#16]' when the single points' sulfur charges are the ones off)")
    p.add_argument("--element-weight", action="append", default=[], metavar="EL=W",
                   help="loss weight of the standard-recipe atoms of an element (repeatable, "
                        "e.g. S=3); others 1")
    p.add_argument("--average", choices=("atom", "molecule"), default="atom",
                   help="loss averaged over atoms, or over molecules (each molecule's atoms "
                        "together weigh the same)")
    p.add_argument("--tune", choices=("all", "head"), default="all",
                   help="fine-tune every weight, or only the readout (chi, J) head")
    p.add_argument("--choose", choices=("ensemble", "members"), default="ensemble",
                   help="keep the epoch with the best ensemble epoch-choice RMSE, or each "
                        "member's own best epoch")
    p.add_argument("--choice-fraction", type=float, default=0.15,
                   help="share of the fine-tuning records' parent-scaffold groups set aside to "
                        "choose the epoch")
    p.add_argument("--no-held-out", action="store_true",
                   help="skip the held-out evaluation (for choosing settings on the epoch-choice "
                        "set alone)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    args = parser().parse_args(argv)
    if args.out is None and args.evaluate is None:
        raise SystemExit("give --out MODEL (the fine-tuned model to write) or --evaluate MODEL")
    weight_by_element = element_weights(args.element_weight)
    if not 0 < args.choice_fraction < 1:
        raise SystemExit(f"--choice-fraction {args.choice_fraction}: give a share between 0 and 1")
    RDLogger.DisableLog("rdApp.*")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    base = read_model_file(args.base)
    meta, hp = base["metadata"], base["metadata"]["hyperparameters"]
    if "fine_tune" in meta:
        print(f"note: the base {args.base} is itself fine-tuned on standard-recipe labels; the "
              "shipped model was fine-tuned from the single-point model (see this script's "
              "docstring)", flush=True)
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
    aside = set(groups[: int(args.choice_fraction * len(groups))])
    tune = [r for r, s in zip(rows["train"], scaffolds, strict=True) if s not in aside]
    pick = [r for r, s in zip(rows["train"], scaffolds, strict=True) if s in aside]
    if not (tune and pick):
        raise SystemExit(f"{args.labels}: {len(rows['train'])} records in {args.base}'s training "
                         f"part give {len(tune)} to fine-tune on and {len(pick)} to choose the "
                         "epoch; both need some: give more records or another --choice-fraction")
    print(f"standard records: fine-tune {len(tune)}, epoch choice {len(pick)}, held out "
          f"{len(rows['held_out'])}, not in the base split {len(rows['unknown'])} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    skip = [Chem.MolFromSmarts(smarts) for smarts in args.replay_skip]
    if None in skip:
        raise SystemExit(f"--replay-skip {args.replay_skip[skip.index(None)]!r} is not valid SMARTS")
    replayable = np.array([i for i in parts["train"]
                           if not any(mols[i].HasSubstructMatch(pattern) for pattern in skip)])
    if skip:
        print(f"replaying {len(replayable)} of {len(parts['train'])} single-point training "
              f"molecules (--replay-skip)", flush=True)
    net = network_from_file(base, args.base)
    if args.evaluate is not None:
        report(net, rows["held_out"], f"base {args.base.name}")
        report(network_from_file(read_model_file(args.evaluate), args.evaluate), rows["held_out"],
               args.evaluate.name)
        return 0
    before = None if args.no_held_out else report(net, rows["held_out"], f"base {args.base.name}")
    choice_before = report(net, pick, f"base {args.base.name}, epoch-choice set")
    if args.tune == "head":
        for name, weight in net.named_parameters():
            weight.requires_grad_(name.startswith("readout."))
    members = net.members
    pick_ref = np.concatenate([q for *_, q in pick])

    def member_rmse() -> np.ndarray:
        pred = np.concatenate(predict_members(net, [g for _, _, g, _ in pick]), axis=1)
        return np.sqrt(np.mean((pred - pick_ref) ** 2, axis=1))

    def ensemble_rmse() -> float:
        return rmse(np.concatenate(predict_graphs(net, [g for _, _, g, _ in pick])), pick_ref)

    opt = torch.optim.AdamW([w for w in net.parameters() if w.requires_grad], lr=args.lr,
                            weight_decay=hp["weight_decay"])
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
             if args.schedule == "cosine" else None)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    best = (ensemble_rmse(), -1, state)
    best_member, best_member_epoch = member_rmse(), np.full(members, -1)
    member_state = {k: v.clone() for k, v in state.items()}
    weighted = weight_by_element or args.average != "atom" or args.replay_weight != 1.0
    tune_weights = [atom_weights(m, weight_by_element, args.average == "molecule") for _, m, _, _ in tune]
    replay: dict[int, tuple] = {}
    for epoch in range(args.epochs):
        chosen = rng.choice(replayable, size=min(len(replayable), int(args.mix * len(tune))),
                            replace=False)
        for i in chosen:
            if i not in replay:
                replay[i] = (featurize(mols[i], elements),
                             args.replay_weight * atom_weights(mols[i], {}, args.average == "molecule"))
        graphs = [g for _, _, g, _ in tune] + [replay[i][0] for i in chosen]
        targets = [q for *_, q in tune] + [np.asarray(single[i]["charges"]) for i in chosen]
        batches = Batcher(graphs, targets, hp["batch_size"], rng)
        if weighted:
            train_epoch_weighted(net, opt, batches, tune_weights + [replay[i][1] for i in chosen])
        else:
            train_epoch(net, opt, batches)
        if sched is not None:
            sched.step()
        score, scores = ensemble_rmse(), member_rmse()
        if score < best[0]:
            best = (score, epoch, {k: v.clone() for k, v in net.state_dict().items()})
        for m in np.flatnonzero(scores < best_member):
            best_member[m], best_member_epoch[m] = scores[m], epoch
            for k, v in net.state_dict().items():
                member_state[k][m] = v[m].detach()
        print(f"epoch {epoch:3d}  epoch-choice RMSE {score:.4f} e (members "
              f"{' '.join(f'{r:.4f}' for r in scores)})  best {best[0]:.4f} (epoch {best[1]})  "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    net.load_state_dict(member_state)
    by_members = ensemble_rmse()
    print(f"epoch-choice RMSE: each member at its own best epoch {by_members:.4f} e "
          f"(epochs {best_member_epoch.tolist()}), the best ensemble epoch {best[0]:.4f} e "
          f"(epoch {best[1]}); keeping --choose {args.choose}", flush=True)
    if args.choose == "ensemble":
        net.load_state_dict(best[2])
    net.eval()
    choice_after = report(net, pick, "fine-tuned, epoch-choice set")
    after = None if args.no_held_out else report(net, rows["held_out"], "fine-tuned")
    settings = ("epochs", "lr", "schedule", "mix", "replay_weight", "replay_skip", "element_weight", "average",
                "tune", "choose", "choice_fraction", "seed")
    metadata = dict(meta)
    metadata.update({
        "reference": "AM1-BCC standard recipe (antechamber -c bcc: sqm AM1 relaxation first)",
        "fine_tuned_from": hashlib.sha256(args.base.read_bytes()).hexdigest(),
        "fine_tune": {**{k: v for k, v in vars(args).items() if k in settings},
                      "label_file_sha256": hashlib.sha256(args.labels.read_bytes()).hexdigest(),
                      "best_epoch": best[1], "member_best_epoch": [int(e) for e in best_member_epoch],
                      "n_tune": len(tune), "n_epoch_choice": len(pick),
                      "epoch_choice": {"base": choice_before, "fine_tuned": choice_after}},
        "metrics_standard_held_out": {"base": before, "fine_tuned": after},
    })
    print(f"wrote {write_model_file(args.out, net, metadata)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
