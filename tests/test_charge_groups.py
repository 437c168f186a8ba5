"""The shipped ML charges against the standard AM1-BCC recipe (``antechamber -c bcc``, AM1
relaxation first), functional group by functional group (issue 20).

The sample (tests/data/am1bcc_standard_groups.json, written by
scripts/make_charge_group_sample.py from the committed standard-recipe label run) holds 36
molecules: per class (sulfonamide, sulfone, thioether, nitro, carboxylate, ammonium,
amidinium, phosphonate) the smallest ones, held-out first. Sulfonamide, sulfone, thioether,
carboxylate, ammonium and amidinium molecules are held out (scaffolds the model never trained
on; one amidinium is a training-part molecule it was not fine-tuned on); the labels hold no
held-out nitro or phosphorus molecule, so the 2 nitro and 4 phosphonate molecules are ones it
was fine-tuned on, and no phosphate ester has a standard-recipe label yet.

Measured with the shipped model (mean signed error / RMSE, e): sulfonamide S +0.001 / 0.009,
sulfone S -0.000 / 0.011, thioether S +0.004 / 0.047, ammonium N -0.018 / 0.024, phosphonate
P -0.077 / 0.094; all atoms 0.0186. The model before it (single-point labels) fails these
limits: sulfonamide S -0.229, sulfone S -0.261, thioether S -0.080 mean; all atoms 0.0493.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

from hybridff.charges.labels import mol_from_label_smiles
from hybridff.charges.ml import ml_charges

SAMPLE = Path(__file__).parent / "data" / "am1bcc_standard_groups.json"
#: issue 20's goal: no functional group off by more than this on average (e)
MEAN_LIMIT = 0.05
#: per-group RMSE limit (e): the largest measured is thioether S, 0.047
GROUP_RMSE_LIMIT = 0.08
#: all atoms of the sample (e): issue 20's goal (measured 0.0186)
RMSE_LIMIT = 0.020
#: phosphonate P misses the goal (measured mean -0.077 e on 5 atoms, molecules it was
#: fine-tuned on); this bound only catches it getting worse
PHOSPHONATE_P_MEAN_LIMIT = 0.10
GROUPS_EXPECTED = {"sulfonamide S", "sulfonamide O", "sulfone S", "sulfone O", "thioether S",
                   "nitro N", "nitro O", "carboxylate C", "carboxylate O", "ammonium N",
                   "amidinium C", "amidinium N", "phosphonate P", "phosphonate O"}
WITHIN_GOAL = sorted(GROUPS_EXPECTED - {"phosphonate P"})


@functools.cache
def _errors() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(group -> signed errors of its scored atoms, all atoms' errors) of the shipped model."""
    data = json.loads(SAMPLE.read_text())
    assert data["recipe"] == "am1bcc-standard"
    patterns = {name: Chem.MolFromSmarts(smarts) for name, smarts in data["groups"].items()}
    by_group: dict[str, list[float]] = {name: [] for name in patterns}
    every = []
    for rec in data["records"]:
        mol = mol_from_label_smiles(rec["smiles"])
        err = ml_charges(mol) - np.asarray(rec["charges"])
        every.append(err)
        for name, pattern in patterns.items():
            by_group[name] += [err[i] for i in sorted({m[0] for m in mol.GetSubstructMatches(pattern)})]
    return {k: np.asarray(v) for k, v in by_group.items()}, np.concatenate(every)


def test_sample_covers_the_groups() -> None:
    data = json.loads(SAMPLE.read_text())
    assert set(data["groups"]) == GROUPS_EXPECTED
    assert len(data["records"]) >= 30
    errors, _ = _errors()
    assert all(len(errors[g]) >= 2 for g in GROUPS_EXPECTED), {g: len(e) for g, e in errors.items()}
    parts = [r["part"] for r in data["records"]]
    assert parts.count("held_out") >= 25


@pytest.mark.parametrize("group", WITHIN_GOAL)
def test_group_mean_and_rmse_within_limits(group: str) -> None:
    err = _errors()[0][group]
    rmse = float(np.sqrt(np.mean(err**2)))
    assert abs(err.mean()) <= MEAN_LIMIT, f"{group}: mean error {err.mean():+.4f} e ({len(err)} atoms)"
    assert rmse <= GROUP_RMSE_LIMIT, f"{group}: RMSE {rmse:.4f} e ({len(err)} atoms)"


def test_phosphonate_p_no_worse_than_measured() -> None:
    err = _errors()[0]["phosphonate P"]
    assert abs(err.mean()) <= PHOSPHONATE_P_MEAN_LIMIT, f"mean error {err.mean():+.4f} e"


@pytest.mark.xfail(strict=True, reason="phosphonate P is -0.077 e off on average (issue 20: "
                                       "few phosphorus standard-recipe labels)")
def test_phosphonate_p_within_the_goal() -> None:
    assert abs(_errors()[0]["phosphonate P"].mean()) <= MEAN_LIMIT


def test_all_atoms_rmse_within_the_goal() -> None:
    every = _errors()[1]
    rmse = float(np.sqrt(np.mean(every**2)))
    assert rmse <= RMSE_LIMIT, f"RMSE {rmse:.4f} e over {every.size} atoms"
