"""The charge model's training as a command (``python -m hybridff.charges.model.train``) on a
handful of shipped label records: the metrics JSON, the model file, its charges; old import paths."""

from __future__ import annotations

import gzip
import importlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hybridff.charges.model.file import DEFAULT_LABELS, load_charge_model
from hybridff.charges.model.train import main
from hybridff.exceptions import DataFormatError
from hybridff.io.molecule import load_molecule

#: small options: two members, two epochs, a narrow network
FAST = ["--epochs", "2", "--members", "2", "--hidden", "16", "--layers", "2", "--batch-size", "8",
        "--threads", "1"]


def _subset(path: Path, n_nci: int, n_wehi: int, n_cov: int) -> Path:
    """The shipped records of the first molecules of each source (all their variants)."""
    with gzip.open(DEFAULT_LABELS, "rt") as fh:
        records = [json.loads(line) for line in fh]

    def first(prefix: str, n: int) -> set[str]:
        return set(sorted({r["key"].split(":")[0] for r in records if r["key"].startswith(prefix)})[:n])

    chosen = first("NCI", n_nci) | first("WEHI", n_wehi) | first("COV-", n_cov)
    path.write_text("".join(json.dumps(r) + "\n" for r in records if r["key"].split(":")[0] in chosen))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(labels, model, metrics) of one run of the module command on 56 molecules (83 records)."""
    work = tmp_path_factory.mktemp("charge_model")
    labels = _subset(work / "labels.jsonl", 45, 8, 3)
    model, metrics = work / "model.pt", work / "numbers.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run(
        [sys.executable, "-m", "hybridff.charges.model.train", "--labels", str(labels), "--model",
         str(model), "--metrics", str(metrics), *FAST],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return labels, model, metrics


def test_command_writes_the_metrics_json(trained):
    labels, model, metrics = trained
    numbers = json.loads(metrics.read_text())
    n = numbers["n_molecules"]
    assert n["train"] > 0 and n["val"] > 0 and n["test"] > 0
    n_records = sum(1 for _ in labels.open())
    assert n["train"] + n["val"] + n["test"] + n["external_test"] + n["left_out"] \
        + numbers["label_check"]["n_rejected"] == n_records
    assert numbers["label_composition"]["n_records"] == n_records
    assert numbers["hyperparameters"]["members"] == 2 and numbers["hyperparameters"]["max_epochs"] == 2
    for part in ("metrics_val", "metrics_test"):
        assert 0.0 < numbers[part]["rmse"] < 1.0  # two epochs: trained a little, not converged
        assert numbers[part]["n_molecules"] == n["val" if part == "metrics_val" else "test"]
    assert len(numbers["metrics_val"]["member_rmse"]) == 2
    assert "dipole_neutral" in numbers["metrics_test"]
    # numbers only: the long key lists stay in the model file
    assert "test_keys" not in numbers and "training_environments" not in numbers
    meta = load_charge_model(model).metadata
    assert numbers["metrics_test"]["rmse"] == meta["metrics_test"]["rmse"]


@pytest.mark.parametrize("smiles, total", [("CCO", 0), ("C[NH3+]", 1), ("CC(=O)[O-]", -1),
                                           ("[O-]C(=O)CCC(=O)[O-]", -2), ("NC(N)=[NH2+]", 1)])
def test_trained_model_loads_and_gives_the_exact_total(trained, smiles, total):
    _, model, _ = trained
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 56-molecule model warns about most environments
        q = load_charge_model(model).predict(load_molecule(smiles, conformer=False))
    assert np.all(np.isfinite(q)) and np.ptp(q) > 0
    assert abs(q.sum() - total) < 1e-9


def test_reevaluate_gives_the_stored_test_metrics(trained, tmp_path):
    labels, model, metrics = trained
    copy = tmp_path / "model.pt"
    copy.write_bytes(model.read_bytes())
    threads = torch.get_num_threads()
    try:
        assert main(["--reevaluate", "--labels", str(labels), "--model", str(copy), "--metrics",
                     str(tmp_path / "again.json"), "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    again = json.loads((tmp_path / "again.json").read_text())["metrics_test"]
    stored = json.loads(metrics.read_text())["metrics_test"]
    assert again["n_molecules"] == stored["n_molecules"]
    assert again["rmse"] == pytest.approx(stored["rmse"], abs=1e-9)


def test_too_few_records_is_one_clear_error(tmp_path):
    labels = _subset(tmp_path / "labels.jsonl", 3, 0, 0)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(DataFormatError, match=r"every part needs at least one"):
            main(["--labels", str(labels), "--model", str(tmp_path / "m.pt"), *FAST])
    finally:
        torch.set_num_threads(threads)
    assert not (tmp_path / "m.pt").exists()


def test_old_import_paths_still_work_with_a_deprecation_warning():
    from hybridff.charges.model import features, file

    sys.modules.pop("hybridff.charges.ml_model", None)
    with pytest.warns(DeprecationWarning, match="hybridff.charges.model.features"):
        old = importlib.import_module("hybridff.charges.ml_model")
    assert old.featurize is features.featurize and old.ChargeEquilibrationNet.__name__ == "ChargeEquilibrationNet"
    import hybridff.charges.ml as ml

    with pytest.warns(DeprecationWarning, match="hybridff.charges.model.file"):
        assert ml.DEFAULT_MODEL == file.DEFAULT_MODEL
    with pytest.raises(AttributeError):
        ml.no_such_name  # noqa: B018


def test_metrics_json_is_strict_json(trained):
    _, _, metrics = trained
    json.loads(metrics.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the metrics JSON"))
