"""The fine-tuning script (scripts/finetune_charge_model.py): its loss weights and options reach
the training, on a tiny base model trained here on a few shipped label records."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem

from hybridff.charges.labels import mol_from_label_smiles
from hybridff.charges.model.features import featurize
from hybridff.charges.model.file import DEFAULT_LABELS, network_from_file, read_model_file
from hybridff.charges.model.network import network_for
from hybridff.charges.model.train import Batcher, train_epoch
from hybridff.charges.model.train import main as train_main

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "finetune_charge_model.py"


@pytest.fixture(scope="module")
def ft():
    spec = importlib.util.spec_from_file_location("finetune_charge_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["finetune_charge_model"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, Path]:
    """(labels, model): a two-member, two-epoch model on the first 45 NCI and 8 WEHI molecules."""
    work = tmp_path_factory.mktemp("finetune")
    with gzip.open(DEFAULT_LABELS, "rt") as fh:
        records = [json.loads(line) for line in fh]
    parents = sorted({r["key"].split(":")[0] for r in records})
    keep = set(sorted(k for k in parents if k.startswith("NCI"))[:45])
    keep |= set(sorted(k for k in parents if k.startswith("WEHI"))[:8])
    labels = work / "labels.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in records if r["key"].split(":")[0] in keep))
    model = work / "base.pt"
    train_main(["--labels", str(labels), "--model", str(model), "--metrics", str(work / "m.json"),
                "--epochs", "2", "--members", "2", "--hidden", "16", "--layers", "2",
                "--batch-size", "8", "--threads", "1"])
    return labels, model


def test_element_weights_parse_and_refuse(ft):
    assert ft.element_weights(["S=3", "P=2.5"]) == {"S": 3.0, "P": 2.5}
    with pytest.raises(SystemExit, match="ELEMENT=WEIGHT"):
        ft.element_weights(["S3"])


def test_atom_weights_by_element_and_per_molecule(ft):
    mol = Chem.AddHs(Chem.MolFromSmiles("CS(C)(=O)=O"))  # 11 atoms, one S
    w = ft.atom_weights(mol, {"S": 4.0}, per_molecule=False)
    assert w[1] == 4.0 and np.sum(w == 1.0) == 10
    w = ft.atom_weights(mol, {"S": 4.0}, per_molecule=True)
    assert np.isclose(w.sum(), 14.0 / 11)


def test_uniform_weights_train_like_the_plain_epoch(ft):
    """With every weight 1 the weighted loss is the plain mean squared error: same steps."""
    smiles = ["[H]OC([H])([H])[H]", "[H]N([H])C(=O)C([H])([H])[H]", "[H]SC([H])([H])[H]"]
    mols = [mol_from_label_smiles(s) for s in smiles]
    elements = ["H", "C", "N", "O", "S"]
    graphs = [featurize(m, elements) for m in mols]
    targets = [np.linspace(-0.3, 0.3, m.GetNumAtoms()) for m in mols]
    nets = []
    for weighted in (False, True):
        torch.manual_seed(1)
        net = network_for(elements, {"hidden": 8, "layers": 1, "members": 2})
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        batches = Batcher(graphs, targets, 2, None)
        if weighted:
            ft.train_epoch_weighted(net, opt, batches, [np.ones(m.GetNumAtoms()) for m in mols])
        else:
            train_epoch(net, opt, batches)
        nets.append(net.state_dict())
    for k, v in nets[0].items():
        assert torch.allclose(v, nets[1][k], atol=1e-6), k


def test_options_reach_the_fine_tuning(ft, base, tmp_path):
    """Head-only tuning keeps every message-passing weight and changes the readout; the
    options are recorded in the model file."""
    labels, model = base
    out = tmp_path / "tuned.pt"
    assert ft.main(["--labels", str(labels), "--base", str(model), "--base-labels", str(labels),
                    "--out", str(out), "--epochs", "2", "--lr", "1e-3", "--tune", "head",
                    "--element-weight", "S=3", "--average", "molecule", "--replay-weight", "0.5",
                    "--replay-skip", "[#16]",
                    "--mix", "0.5", "--choose", "members", "--schedule", "constant",
                    "--choice-fraction", "0.3", "--no-held-out"]) == 0
    before = read_model_file(model)["state_dict"]
    data = read_model_file(out)
    after = data["state_dict"]
    tune = data["metadata"]["fine_tune"]
    assert max(tune["member_best_epoch"]) >= 0  # an under-trained base improves on its own labels
    for k in before:
        same = torch.equal(before[k], after[k])
        assert same != k.startswith("readout."), k
    assert tune["tune"] == "head" and tune["element_weight"] == ["S=3"]
    assert tune["replay_skip"] == ["[#16]"] and tune["replay_weight"] == 0.5
    assert tune["average"] == "molecule" and tune["choose"] == "members"
    assert tune["n_tune"] > 0 and tune["n_epoch_choice"] > 0
    assert data["metadata"]["metrics_standard_held_out"] == {"base": None, "fine_tuned": None}
    network_from_file(data, out)


def test_evaluate_prints_the_held_out_table_with_charged_apart(ft, base, capsys):
    """--evaluate trains nothing: the held-out table of the base and of the given model, with
    charged and neutral molecules reported apart; without --out or --evaluate it refuses."""
    labels, model = base
    before = model.read_bytes()
    assert ft.main(["--labels", str(labels), "--base", str(model), "--base-labels", str(labels),
                    "--evaluate", str(model)]) == 0
    out = capsys.readouterr().out
    tables = [line for line in out.splitlines() if " molecules, RMSE " in line]
    assert len(tables) == 2 and tables[0].split(":", 1)[1] == tables[1].split(":", 1)[1]
    assert "charged" in tables[0] and "neutral" in tables[0]
    n = [int(t.split(": ")[1].split()[0]) for t in tables[:1]][0]
    charged = int(tables[0].split("charged ")[1].split()[0])
    neutral = int(tables[0].split("neutral ")[1].split()[0])
    assert n > 0 and charged + neutral == n
    assert model.read_bytes() == before
    with pytest.raises(SystemExit, match="--out MODEL"):
        ft.main(["--labels", str(labels), "--base", str(model)])
