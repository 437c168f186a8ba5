"""hybridff label / train / evaluate from the command line, small and fast."""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tblite.interface")
pytest.importorskip("openmmtorch")

from hybridff.cli import main  # noqa: E402
from hybridff.io.frames import read_extxyz  # noqa: E402
from hybridff.ml.modelfile import load_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def test_label_resumes_train_evaluate(tmp_path, capsys, monkeypatch) -> None:
    data = tmp_path / "d.xyz"
    assert main(["label", "CCO", "--n", "6", "-o", str(data), "--seed", "2", "--no-progress"]) == 0
    first = read_extxyz(data)
    assert len(first) == 6
    # a second call continues the same file to 10 frames, same first frames
    assert main(["label", "CCO", "--n", "10", "-o", str(data), "--seed", "2", "--no-progress"]) == 0
    full = read_extxyz(data)
    assert len(full) == 10
    np.testing.assert_array_equal(full.energies[:6], first.energies)
    assert [f["frame"] for f in full.info] == list(range(10))
    assert full.info[0]["qm_level"] == "GFN2-xTB"
    capsys.readouterr()

    model = tmp_path / "m.pt"
    argv = ["train", "CCO", str(data), "-o", str(model), "--epochs", "3", "--ensemble", "2",
            "--val-fraction", "0.2", "--no-progress"]
    assert main(argv) == 0
    meta = load_model(model).metadata
    assert meta["ensemble_size"] == 2 and meta["kind"] == "correction"
    from hybridff.mm.parameters import DEFAULT_CHARGE_METHOD

    assert meta["mm"]["charge_method"] == DEFAULT_CHARGE_METHOD
    assert len(meta["training_set_sha256"]) == 64
    assert len(meta["validation_frames"]) == 2
    assert meta["qm"]["level"] == "GFN2-xTB"

    ml_only = tmp_path / "ml.pt"
    assert main(["train", "CCO", str(data), "-o", str(ml_only), "--epochs", "2", "--ml-only",
                 "--no-progress"]) == 0
    report_path = tmp_path / "r.json"
    assert main(["evaluate", "CCO", str(data), "--model", str(model), "--ml-only", str(ml_only),
                 "--json", str(report_path), "--frames", "held-out"]) == 0
    report = json.loads(report_path.read_text())
    assert report["n_frames"] == 2
    assert set(report) >= {"mm", "hybrid", "ml_only", "ensemble"}
    assert report["ml_precision"] == "single"  # float32 network, as simulate runs it
    assert report["ml_in_openmm_matches_model_kj_mol"] < 1e-3
    assert "fraction_above_validation_p95" in report["ensemble"]
    out = capsys.readouterr().out
    assert "hybrid" in out and "ensemble K=2" in out
    # --ml-only with a label file trains the baseline there, with the model's settings, in a
    # temporary folder that is removed afterwards
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    assert main(["evaluate", "CCO", str(data), "--model", str(model), "--ml-only", str(data),
                 "--json", str(report_path)]) == 0
    trained = json.loads(report_path.read_text())
    assert trained["ml_only_trained_on"] == str(data)
    assert trained["ml_only_train_config"]["epochs"] == 3 and "ml_only" in trained
    assert list(temporary.iterdir()) == []

    # held-out frames exist only for the training file itself
    other = tmp_path / "other.xyz"
    assert main(["label", "CCO", "--n", "3", "-o", str(other), "--seed", "9", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "CCO", str(other), "--model", str(model), "--frames", "held-out"]) == 2
    assert "is not the file" in capsys.readouterr().err
    # the ML-only model is refused as a correction
    assert main(["evaluate", "CCO", str(other), "--model", str(ml_only)]) == 2
    assert "count the physics twice" in capsys.readouterr().err


def test_label_resume_with_other_seed_warns(tmp_path, caplog) -> None:
    data = tmp_path / "d.xyz"
    assert main(["label", "CCO", "--n", "2", "-o", str(data), "--seed", "1", "--no-progress"]) == 0
    assert main(["label", "CCO", "--n", "3", "-o", str(data), "--seed", "2", "--no-progress"]) == 0
    assert "was not made with these sampling settings" in caplog.text
    assert len(read_extxyz(data)) == 3


def test_label_rejects_dft_options_for_xtb(tmp_path, capsys) -> None:
    code = main(["label", "CCO", "--n", "1", "-o", str(tmp_path / "x.xyz"), "--xc", "pbe"])
    assert code == 2
    assert "--xc/--basis only apply to --method dft" in capsys.readouterr().err


def test_label_refuses_other_molecule_file(tmp_path, capsys) -> None:
    data = tmp_path / "d.xyz"
    assert main(["label", "CCO", "--n", "2", "-o", str(data), "--no-progress"]) == 0
    code = main(["label", "CCS", "--n", "3", "-o", str(data), "--no-progress"])
    assert code == 2
    assert "atom 2 is O but the molecule's atom 2 is S" in capsys.readouterr().err


def test_threads_option_sets_the_library_thread_variables(monkeypatch) -> None:
    from hybridff.cli import THREAD_VARIABLES, limit_threads

    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with limit_threads(["label", "CCO", "--method", "xtb", "--threads", "2", "-o", "x.xyz"]):
        assert all(os.environ[name] == "2" for name in THREAD_VARIABLES)
    assert not any(name in os.environ for name in THREAD_VARIABLES)  # as it was afterwards
    with limit_threads(["label", "CCO", "-o", "x.xyz"]):  # label's default
        assert os.environ["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # the user's own setting wins
    with limit_threads(["train", "CCO", "d.xyz", "-o", "m.pt", "--threads", "1"]):
        assert os.environ["OMP_NUM_THREADS"] == "7"
    assert os.environ["OMP_NUM_THREADS"] == "7"
