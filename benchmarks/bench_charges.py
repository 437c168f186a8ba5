"""Benchmark: ML charges vs antechamber AM1-BCC on held-out molecules, timed in one run.

    python benchmarks/bench_charges.py [--n 100] [--single-point]

Molecules: the first N test-set molecules of the shipped model (scaffold split, never
trained on) whose labels are in ``hybridff/resources/am1bcc_labels.jsonl.gz``. Each gets a
seeded conformer; then ``assign_charges(mol, "ml")`` and ``assign_charges(mol, "am1bcc")``
(the full recipe with sqm's AM1 relaxation unless ``--single-point``) are timed. The ML model
is loaded and called once before timing (its one-off load time is reported separately). Prints a table,
the median per-molecule time ratio (the headline; the ratio of totals beside it), failures and
the charge differences.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybridff.charges import assign_charges  # noqa: E402
from hybridff.charges.labels import mol_from_label_smiles  # noqa: E402
from hybridff.charges.model.file import DEFAULT_MODEL, load_charge_model  # noqa: E402
from hybridff.io.molecule import prepare  # noqa: E402

LABELS = ROOT / "hybridff" / "resources" / "am1bcc_labels.jsonl.gz"


def held_out(n: int) -> list[dict]:
    """The first ``n`` test-set label records of the shipped model (smallest keys first)."""
    model = load_charge_model()
    test_keys = set(model.metadata["test_keys"])
    out = []
    with gzip.open(LABELS, "rt") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec["key"] in test_keys:
                out.append(rec)
    return out[:n]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100, help="number of held-out molecules")
    p.add_argument("--single-point", action="store_true",
                   help="AM1-BCC without sqm's geometry relaxation (as the training labels)")
    p.add_argument("--timeout", type=float, default=300.0, help="am1bcc seconds per molecule")
    args = p.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")

    t0 = time.perf_counter()
    load_charge_model()
    load_seconds = time.perf_counter() - t0
    records = held_out(args.n)
    mols = [prepare(mol_from_label_smiles(r["smiles"])) for r in records]
    print(f"{len(mols)} held-out molecules, {sum(m.GetNumAtoms() for m in mols)} atoms "
          f"(model {DEFAULT_MODEL.name}, loaded once in {load_seconds:.2f} s)", flush=True)

    if mols:  # first call pays one-off costs (torch kernels, RDKit tables): not timed
        assign_charges(mols[0], "ml")
    results: dict[str, dict] = {}
    for method, opts in (("ml", {}), ("am1bcc", {"optimize": not args.single_point,
                                                 "timeout": args.timeout})):
        charges, failures, seconds = [], [], []
        for mol in mols:
            t = time.perf_counter()
            try:
                charges.append(assign_charges(mol, method, **opts))
            except Exception as exc:  # count every failure, keep going
                charges.append(None)
                failures.append(f"{Chem.MolToSmiles(Chem.RemoveHs(mol))}: {type(exc).__name__}")
            seconds.append(time.perf_counter() - t)
        results[method] = {"charges": charges, "failures": failures, "seconds": np.array(seconds)}
        print(f"  {method}: done in {sum(seconds):.1f} s", flush=True)

    ml, am = results["ml"], results["am1bcc"]
    total_ratio = am["seconds"].sum() / ml["seconds"].sum()
    both = [i for i in range(len(mols)) if ml["charges"][i] is not None and am["charges"][i] is not None]
    diff_fresh = np.concatenate([ml["charges"][i] - am["charges"][i] for i in both]) if both else np.array([])
    diff_label = np.concatenate(
        [ml["charges"][i] - np.asarray(records[i]["charges"]) for i in range(len(mols))
         if ml["charges"][i] is not None]
    )
    am_label = np.concatenate(
        [am["charges"][i] - np.asarray(records[i]["charges"]) for i in both]
    ) if both else np.array([])
    recipe = "single point" if args.single_point else "with AM1 relaxation"
    rows = [
        ("method", "ok", "failed", "total s", "median ms/mol", "max ms/mol"),
        ("ml", len(mols) - len(ml["failures"]), len(ml["failures"]), f"{ml['seconds'].sum():.2f}",
         f"{1000 * np.median(ml['seconds']):.1f}", f"{1000 * ml['seconds'].max():.1f}"),
        (f"am1bcc ({recipe})", len(mols) - len(am["failures"]), len(am["failures"]),
         f"{am['seconds'].sum():.2f}", f"{1000 * np.median(am['seconds']):.1f}",
         f"{1000 * am['seconds'].max():.1f}"),
    ]
    widths = [max(len(str(r[k])) for r in rows) for k in range(len(rows[0]))]
    print()
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    per_molecule = am["seconds"][both] / ml["seconds"][both] if both else np.array([np.nan])
    print(f"\nspeed-up per molecule (am1bcc time / ml time, same run, {len(both)} molecules "
          f"both methods charged): median {np.median(per_molecule):.0f}x "
          f"(10th-90th percentile {np.percentile(per_molecule, 10):.0f}-"
          f"{np.percentile(per_molecule, 90):.0f}x); ratio of totals {total_ratio:.0f}x "
          "(failures' time included)")

    def _rmse(d: np.ndarray) -> str:
        return f"{np.sqrt(np.mean(d ** 2)):.4f} e" if d.size else "n/a"

    print(f"RMSE ml vs am1bcc computed here ({recipe}): {_rmse(diff_fresh)}")
    print(f"RMSE ml vs stored labels (single point):      {_rmse(diff_label)}")
    print(f"RMSE am1bcc here vs stored labels:            {_rmse(am_label)}")
    for method in ("ml", "am1bcc"):
        for f in results[method]["failures"]:
            print(f"  {method} failed: {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
