"""Held-out metrics of a charge model (numbers only): RMSE overall, per element, per variant,
charged subset, in-domain subset, dipoles, outliers; and the composition of a label set."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from rdkit import Chem

from hybridff.charges.labels import mol_from_label_smiles
from hybridff.charges.model.features import rare_atoms
from hybridff.elements import SUPPORTED_ELEMENTS
from hybridff.io.molecule import ensure_conformer
from hybridff.units import ANGSTROM_TO_NM, DEBYE_TO_E_NM


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square difference."""
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2))) if len(a) else float("nan")


def pooled_rmse(preds: list[np.ndarray], refs: list[np.ndarray], select) -> float:
    """RMSE over the atoms of the molecules where ``select`` is true (NaN when none is)."""
    chosen = [i for i, ok in enumerate(select) if ok]
    if not chosen:
        return float("nan")
    return rmse(np.concatenate([preds[i] for i in chosen]), np.concatenate([refs[i] for i in chosen]))


def point_charge_dipole(mol: Chem.Mol, q: np.ndarray) -> np.ndarray:
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
    metrics["per_molecule_rmse_median"] = float(np.median(per_mol))
    metrics["per_molecule_rmse_p95"] = float(np.percentile(per_mol, 95))
    metrics["worst_molecule"] = {
        "key": keys[worst] if keys else str(worst),
        "smiles": Chem.MolToSmiles(Chem.RemoveHs(mols[worst])),
        "max_abs_error": float(np.max(np.abs(preds[worst] - refs[worst]))),
    }
    metrics["rmse_without_worst_molecule"] = pooled_rmse(preds, refs, [i != worst for i in range(len(mols))])
    for el in SUPPORTED_ELEMENTS:
        sel = symbols == el
        if sel.any():
            metrics["per_element"][el] = {"n_atoms": int(sel.sum()), "rmse": rmse(all_pred[sel], all_ref[sel])}
    if charged.any():
        metrics["charged"] = {"n_molecules": int(charged.sum()), "rmse": pooled_rmse(preds, refs, charged)}
    if environments is not None:
        inside = [not rare_atoms(m, environments) for m in mols]
        metrics["in_domain"] = {
            "n_molecules": int(sum(inside)),
            "rmse": pooled_rmse(preds, refs, inside),
            "outside_keys": [keys[i] if keys else str(i) for i, ok in enumerate(inside) if not ok],
        }
    if with_dipoles:
        diffs, mags = [], []
        for m, r, p in zip(mols, refs, preds, strict=True):
            if Chem.GetFormalCharge(m) == 0:
                work = ensure_conformer(Chem.Mol(m))
                d_ref, d_ml = point_charge_dipole(work, r), point_charge_dipole(work, p)
                diffs.append(np.linalg.norm(d_ml - d_ref))
                mags.append(np.linalg.norm(d_ref))
        metrics["dipole_neutral"] = {
            "n_molecules": len(diffs),
            "mean_abs_vector_difference_debye": float(np.mean(diffs)) if diffs else float("nan"),
            "median_abs_vector_difference_debye": float(np.median(diffs)) if diffs else float("nan"),
            "mean_am1bcc_magnitude_debye": float(np.mean(mags)) if mags else float("nan"),
        }
    return metrics


def label_composition(records: list[dict]) -> dict:
    """Counts of a label set: records per variant kind, per formal charge, atoms per element."""
    variants: dict[str, int] = defaultdict(int)
    charges: dict[int, int] = defaultdict(int)
    elements: dict[str, int] = defaultdict(int)
    for rec in records:
        variants[rec["key"].split(":")[1]] += 1
        mol = mol_from_label_smiles(rec["smiles"])
        charges[Chem.GetFormalCharge(mol)] += 1
        for atom in mol.GetAtoms():
            elements[atom.GetSymbol()] += 1
    return {
        "n_records": sum(variants.values()),
        "variants": dict(sorted(variants.items(), key=lambda kv: -kv[1])),
        "formal_charges": {f"{k:+d}": charges[k] for k in sorted(charges)},
        "atoms_per_element": {k: elements[k] for k in SUPPORTED_ELEMENTS if k in elements},
    }
