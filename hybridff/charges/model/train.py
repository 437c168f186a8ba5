"""Train the ML charge model on AM1-BCC labels; write the model file and a metrics JSON.

    python -m hybridff.charges.model.train                    # labels shipped with hybridff
    python -m hybridff.charges.model.train --labels labels/am1bcc_labels.jsonl

Seeded (split, initialization, batch order); the float sums in training depend on the machine
and on ``--threads``, so a rerun elsewhere gives a model of the same accuracy, not bit-identical
weights. The split is :func:`hybridff.charges.model.split.split_with_extras`; records whose
labels fail :func:`hybridff.charges.labels.label_problem` are then dropped from every part.
K ensemble members (``--members``) train together from independent initializations; each
keeps the weights of its best epoch on the validation RMSE. The test set is only used for the
metrics written into the model file and the metrics JSON (``docs/charges.md`` reports them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rdkit import Chem, RDLogger
from tqdm.auto import tqdm

from hybridff.charges.labels import (
    EQUIVALENT_ATOM_TOLERANCE,
    label_problem,
    mol_from_label_smiles,
    read_labels,
)
from hybridff.charges.model.features import (
    Graph,
    batch_graphs,
    feature_spec,
    featurize,
    training_environments,
)
from hybridff.charges.model.file import (
    DEFAULT_LABELS,
    DEFAULT_MODEL,
    network_from_file,
    read_model_file,
    write_model_file,
)
from hybridff.charges.model.metrics import evaluate, label_composition, per_variant_rmse, rmse
from hybridff.charges.model.network import graph_tensors, network_for
from hybridff.charges.model.predict import predict_graphs, predict_members
from hybridff.charges.model.split import is_coverage, is_nci, sha256_records, split_with_extras
from hybridff.elements import SUPPORTED_ELEMENTS
from hybridff.exceptions import DataFormatError

#: the checkout (or site-packages) folder that holds ``hybridff/``: label paths are stored
#: relative to it when they lie below it
ROOT = Path(__file__).resolve().parents[3]


class Batcher:
    """Tensors of batched molecule graphs, fixed per epoch by a seeded permutation."""

    def __init__(self, graphs: list[Graph], targets: list[np.ndarray], batch_size: int,
                 rng: np.random.Generator | None) -> None:
        self.graphs, self.targets, self.batch_size, self.rng = graphs, targets, batch_size, rng

    def __iter__(self):
        order = np.arange(len(self.graphs))
        if self.rng is not None:
            order = self.rng.permutation(order)
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            g = batch_graphs([self.graphs[i] for i in idx])
            y = torch.as_tensor(np.concatenate([self.targets[i] for i in idx]), dtype=torch.float32)
            yield graph_tensors(g), y, idx


def train_epoch(net: Any, opt: torch.optim.Optimizer, batches: Batcher) -> None:
    """One pass over ``batches``: the loss is each member's mean squared charge error, summed
    over members (members are independent: AdamW acts element-wise)."""
    net.train()
    for inputs, y, _ in batches:
        opt.zero_grad()
        torch.mean((net(*inputs) - y) ** 2, dim=1).sum().backward()
        opt.step()
    net.eval()


def load_records(path: Path, elements: list[str]) -> tuple[list[dict], list[Chem.Mol], list[Graph],
                                                           list[np.ndarray]]:
    """(records, molecules, graphs, charges) of a label file; records whose charge count does
    not match their SMILES are skipped."""
    records, mols, graphs, targets = [], [], [], []
    for rec in tqdm(read_labels(path), desc="featurizing", unit="mol", mininterval=5):
        mol = mol_from_label_smiles(rec["smiles"])
        if len(rec["charges"]) != mol.GetNumAtoms():
            continue
        records.append(rec)
        mols.append(mol)
        graphs.append(featurize(mol, elements))
        targets.append(np.asarray(rec["charges"], dtype=np.float64))
    return records, mols, graphs, targets


def fit(net: Any, train: tuple[list, list], val: tuple[list, np.ndarray], args: argparse.Namespace
        ) -> dict:
    """Train ``net`` in place (cosine learning rate over ``--epochs``, early stop after
    ``--patience`` epochs without a better ensemble validation RMSE); each member ends with
    the weights of its own best epoch. Returns the run's record (best epochs, seconds)."""
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    batches = Batcher(*train, args.batch_size, np.random.default_rng(args.seed))
    val_graphs, val_ref = val
    best_member = np.full(args.members, np.inf)
    best_member_epoch = np.full(args.members, -1)
    best_state = {name: v.detach().clone() for name, v in net.state_dict().items()}
    best, best_epoch, t0 = float("inf"), -1, time.perf_counter()
    for epoch in range(args.epochs):
        train_epoch(net, opt, batches)
        val_members = np.concatenate(predict_members(net, val_graphs), axis=1)
        member_rmse = np.sqrt(np.mean((val_members - val_ref) ** 2, axis=1))
        val_rmse = rmse(val_members.mean(axis=0), val_ref)
        sched.step()
        state = net.state_dict()
        for m in np.flatnonzero(member_rmse < best_member):
            best_member[m], best_member_epoch[m] = member_rmse[m], epoch
            for name, v in state.items():
                best_state[name][m] = v[m].detach()
        if val_rmse < best:
            best, best_epoch = val_rmse, epoch
        print(f"epoch {epoch:3d}  val RMSE {val_rmse:.4f} e (members "
              f"{' '.join(f'{r:.4f}' for r in member_rmse)})  best {best:.4f} (epoch {best_epoch})  "
              f"lr {opt.param_groups[0]['lr']:.1e}  {time.perf_counter() - t0:.0f} s", flush=True)
        if epoch - best_epoch >= args.patience:
            break
    net.load_state_dict(best_state)
    net.eval()
    return {"best_epoch": best_epoch, "member_rmse": [float(r) for r in best_member],
            "member_best_epoch": [int(e) for e in best_member_epoch],
            "seconds": time.perf_counter() - t0}


def train(args: argparse.Namespace) -> dict:
    """The whole training run: split, fit, held-out metrics, model file; returns its metadata."""
    RDLogger.DisableLog("rdApp.*")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    elements = list(SUPPORTED_ELEMENTS)
    records, mols, graphs, targets = load_records(args.labels, elements)
    tr, va, te, left_out, ext = split_with_extras(records, mols, args.split_seed, args.external_fraction)
    # the split is made on all records (so the held-out molecules do not depend on the label
    # check); records whose labels fail the check are then dropped from every part
    rejected = {rec["key"]: problem for rec, mol, target in zip(records, mols, targets, strict=True)
                if (problem := label_problem(mol, target))}
    drop = {i for i, rec in enumerate(records) if rec["key"] in rejected}
    tr, va, te, ext = ([i for i in part if i not in drop] for part in (tr, va, te, ext))
    print(f"{len(records)} labelled molecules: train {len(tr)}, val {len(va)}, test {len(te)}, "
          f"external test {len(ext)}, left out {len(left_out)} (other sources with a held-out scaffold), "
          f"{len(rejected)} failing the label check", flush=True)
    if not (tr and va and te):
        raise DataFormatError(
            f"{args.labels}: {len(records)} usable records give train {len(tr)}, validation "
            f"{len(va)}, test {len(te)} molecules; every part needs at least one (the NCI records "
            "are split 80/10/10 by scaffold group): give a larger label file"
        )

    hp = {"hidden": args.hidden, "layers": args.layers, "members": args.members, "lr": args.lr,
          "batch_size": args.batch_size, "max_epochs": args.epochs, "schedule": "cosine",
          "patience": args.patience, "weight_decay": args.weight_decay}
    net = network_for(elements, hp)
    run = fit(net, ([graphs[i] for i in tr], [targets[i] for i in tr]),
              ([graphs[i] for i in va], np.concatenate([targets[i] for i in va])), args)

    def held_out(part: list[int], with_dipoles: bool, environments: dict | None) -> tuple[dict, list]:
        pred = predict_graphs(net, [graphs[i] for i in part])
        return evaluate([mols[i] for i in part], [targets[i] for i in part], pred, with_dipoles,
                        keys=[records[i]["key"] for i in part], environments=environments), pred

    metrics_val, _ = held_out(va, False, None)
    metrics_val["member_rmse"] = run["member_rmse"]
    metrics_val["member_best_epoch"] = run["member_best_epoch"]
    environments = training_environments([mols[i] for i in tr])
    metrics, _ = held_out(te, True, environments)
    metrics["val_rmse"] = metrics_val["rmse"]
    metrics["best_epoch"] = run["best_epoch"]
    metrics_ext = None
    if ext:
        metrics_ext, ext_pred = held_out(ext, False, environments)
        metrics_ext["per_variant"] = per_variant_rmse([records[i] for i in ext], ext_pred)
    print(f"validation RMSE {metrics_val['rmse']:.4f} e, test RMSE {metrics['rmse']:.4f} e"
          + (f", external test RMSE {metrics_ext['rmse']:.4f} e" if metrics_ext else ""), flush=True)
    labels = Path(args.labels).resolve()
    metadata = {
        "elements": elements,
        "feature_spec": feature_spec(),
        "hyperparameters": hp,
        "reference": "AM1-BCC (antechamber/sqm, MMFF94 conformer, no AM1 relaxation)",
        "training_set_sha256": sha256_records([records[i] for i in tr]),
        "label_file": str(labels.relative_to(ROOT) if labels.is_relative_to(ROOT) else args.labels),
        "label_file_sha256": hashlib.sha256(labels.read_bytes()).hexdigest(),
        "n_molecules": {"train": len(tr), "val": len(va), "test": len(te), "left_out": len(left_out),
                        "external_test": len(ext),
                        "train_other_sources": sum(not is_nci(records[i]["key"]) for i in tr),
                        "train_coverage": sum(is_coverage(records[i]["key"]) for i in tr)},
        "training_environments": environments,
        "seed": args.seed,
        "split_seed": args.split_seed,
        "split": "NCI: Bemis-Murcko scaffold groups, 80/10/10 by molecule, seeded shuffle; other "
                 "sources: left out when the scaffold is held out; WEHI: external test for seeded "
                 f"scaffold groups new to NCI ({args.external_fraction:g} of them); else training",
        "test_keys": [records[i]["key"] for i in te],
        "external_test_keys": [records[i]["key"] for i in ext],
        "external_test": "WEHI molecules in whole scaffold groups whose ring scaffold occurs nowhere "
                         "in the NCI set, never trained on",
        "label_check": {"rule": "resonance-equivalent terminal atoms within "
                                f"{EQUIVALENT_ATOM_TOLERANCE} e (hybridff.charges.labels.label_problem)",
                        "rejected": rejected},
        "metrics_val": metrics_val,
        "metrics_test": metrics,
        "metrics_external_test": metrics_ext,
        "torch_version": str(torch.__version__),
        "threads": args.threads,
        "train_loop_seconds": round(run["seconds"], 1),
    }
    path = write_model_file(args.model, net, metadata)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return metadata


def reevaluate(args: argparse.Namespace) -> dict:
    """Recompute the test metrics of a trained model file (weights untouched, same test keys),
    store them in its metadata and return that metadata."""
    RDLogger.DisableLog("rdApp.*")
    torch.set_num_threads(args.threads)
    data = read_model_file(args.model)
    meta = data["metadata"]
    by_key = {r["key"]: r for r in read_labels(args.labels)}
    missing = [k for k in meta["test_keys"] if k not in by_key]
    if missing:
        raise DataFormatError(f"{args.labels} lacks {len(missing)} test records of {args.model} "
                              f"(first: {missing[0]}); give the labels the model was trained on")
    recs = [by_key[k] for k in meta["test_keys"]]
    mols = [mol_from_label_smiles(r["smiles"]) for r in recs]
    net = network_from_file(data, args.model)
    preds = predict_graphs(net, [featurize(m, meta["elements"]) for m in mols])
    metrics = evaluate(mols, [np.asarray(r["charges"]) for r in recs], preds, with_dipoles=True,
                       keys=[r["key"] for r in recs], environments=meta["training_environments"])
    metrics["val_rmse"] = meta["metrics_test"]["val_rmse"]
    metrics["best_epoch"] = meta["metrics_test"]["best_epoch"]
    meta["metrics_test"] = metrics
    tmp = Path(args.model).with_suffix(".tmp")
    torch.save(data, tmp)
    tmp.replace(args.model)
    return meta


#: metadata entries left out of the metrics JSON (long lists kept in the model file only)
_NOT_METRICS = ("feature_spec", "test_keys", "external_test_keys", "training_environments")


def metrics_summary(meta: dict, label_records: list[dict]) -> dict:
    """The numbers of a trained model, for the metrics JSON: its metadata without the long
    lists, the rejected labels as a count, and the composition of the label file."""
    out = {k: v for k, v in meta.items() if k not in _NOT_METRICS}
    check = meta.get("label_check")
    if check:
        out["label_check"] = {"rule": check["rule"], "n_rejected": len(check["rejected"]),
                              "rejected_keys": sorted(check["rejected"])}
    out["label_composition"] = label_composition(label_records)
    return _finite(out)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(path: Path, meta: dict, labels: Path) -> None:
    """The metrics JSON of a model (:func:`metrics_summary`), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(metrics_summary(meta, read_labels(labels)), indent=1) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m hybridff.charges.model.train``."""
    p = argparse.ArgumentParser(prog="python -m hybridff.charges.model.train",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--metrics", type=Path, default=None,
                   help="metrics JSON to write (default: beside --model, NAME.metrics.json)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--split-seed", type=int, default=2024)
    p.add_argument("--hidden", type=int, default=96)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--members", type=int, default=3, help="ensemble members trained together")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--external-fraction", type=float, default=0.1,
                   help="share of the other sources' molecules (novel scaffolds only) held out as "
                        "an external test set")
    p.add_argument("--threads", type=int, default=2,
                   help="torch threads (the shipped model was trained with 2)")
    p.add_argument("--patience", type=int, default=60)
    p.add_argument("--reevaluate", action="store_true",
                   help="recompute the test metrics of an existing --model file (same test keys), "
                        "store them in its metadata and write the metrics JSON")
    p.add_argument("--metrics-only", action="store_true",
                   help="only write the metrics JSON from the metadata of an existing --model file")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    args = parser().parse_args(argv)
    metrics = args.metrics or args.model.with_suffix(".metrics.json")
    if args.reevaluate:
        meta = reevaluate(args)
    elif args.metrics_only:
        meta = read_model_file(args.model)["metadata"]
    else:
        meta = train(args)
    write_metrics(metrics, meta, args.labels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
