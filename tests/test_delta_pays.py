"""A small honest training run: on held-out paracetamol frames, the hybrid (bespoke MM +
correction) is closer to QM than an ML-only model trained on the same frames with the same
settings, on thermal MD frames and on other conformers displaced far beyond anything the
training frames visit (where the bespoke MM's Morse tails carry it). Measured (force RMSE,
kcal/mol/A; GAFF2 / bespoke / hybrid / ML-only): MD 11.47 / 3.97 / 1.93 / 3.32; other
conformers 27.64 / 8.11 / 5.25 / 21.78; with the harmonic tangent instead of the Morse tails
the hybrid there is 18.01 (0.65x GAFF2), which the last assertion refuses."""

from __future__ import annotations

from pathlib import Path

from ase.io import read, write

from hybridff.training.trainer import TrainConfig
from hybridff.training.workflow import evaluate, train

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"
PARACETAMOL = str(EXAMPLES / "paracetamol.sdf")


def test_hybrid_beats_ml_only_on_held_out_frames(tmp_path) -> None:
    data = tmp_path / "train.xyz"
    write(data, read(EXAMPLES / "paracetamol_gfn2xtb_train.xyz", ":160"), format="extxyz")
    tests = {}
    for name, source in (("md", "paracetamol_gfn2xtb_test.xyz"),
                         ("conformers", "paracetamol_gfn2xtb_conformers.xyz")):
        tests[name] = tmp_path / f"{name}.xyz"
        write(tests[name], read(EXAMPLES / source, ":40"), format="extxyz")
    config = TrainConfig(epochs=60, progress=False, seed=1)
    train(PARACETAMOL, data, tmp_path / "hybrid.pt", config, charge_method="gasteiger")
    train(PARACETAMOL, data, tmp_path / "ml_only.pt", config, charge_method="gasteiger",
          ml_only=True)
    force = {}
    for name, path in tests.items():
        report = evaluate(PARACETAMOL, path, tmp_path / "hybrid.pt", tmp_path / "ml_only.pt")
        force[name] = {k: report[k]["force_rmse_kcal_mol_A"]
                       for k in ("mm", "mm_refit", "hybrid", "ml_only")}
    for name, f in force.items():
        assert f["hybrid"] < f["ml_only"], (name, force)
    # far out: the hybrid keeps under 0.3x GAFF2's force error (issue 21's goal)
    assert force["conformers"]["hybrid"] < 0.3 * force["conformers"]["mm"], force
