"""Make AM1-BCC charge labels for the ML charge model from RDKit's NCI set.

Molecules: ``rdkit/Data/NCI/first_5K.smi``; largest fragment; elements H C N O F P S Cl Br I;
no radicals; at most ``--max-heavy`` heavy atoms. Protonation variants are made by rules so the
model sees charged molecules: carboxylic / sulfonic / phosphonic acids -> anions, basic
aliphatic amines and amidines/guanidines -> cations, both at once -> zwitterions (each variant
charged at one site per group kind, at most two sites, so totals stay within -2..+2).

Each molecule gets a seeded ETKDG conformer, MMFF94-relaxed (:func:`hybridff.io.molecule.prepare`),
and AM1-BCC charges from antechamber/sqm (by default on that conformer, without the AM1
geometry relaxation: ``--optimize`` for the full recipe, what ``antechamber -c bcc`` does by
default). Results are appended to a JSONL file (resumable: finished and failed keys are skipped
on restart; failures, timeouts included, are recorded with the error). Every record names its
recipe (:data:`RECIPES`); a run, resume or pack refuses a file holding the other recipe's records.
Smallest molecules go first so that a run cut short still covers the most molecules.

    nohup nice -n 10 python scripts/make_charge_labels.py --optimize --timeout 300 \
        --source wehi-all --out labels_standard/am1bcc_standard_wehi-all.jsonl > run.log 2>&1 &

    nice -n 10 python scripts/make_charge_labels.py --out labels/am1bcc_labels.jsonl --workers 2
    python scripts/make_charge_labels.py --out labels/am1bcc_labels.jsonl --pack \
        hybridff/resources/am1bcc_labels.jsonl.gz

The logic lives in :mod:`hybridff.charges.model.labelling` (sources, jobs, one label, the
run, packing) and :mod:`hybridff.charges.model.variants` (cleaning, protonation variants); this
script is their command line.

Packed records: ``{"key", "smiles", "charges"}``; ``smiles`` has explicit hydrogens and its
atom order is the order of ``charges`` (parse it with ``removeHs=False``).
"""


from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rdkit import Chem, RDLogger

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# the package holds the logic; the names below are also this script's (tests and old callers)
from hybridff.charges.labels import indexed_smiles  # noqa: E402, F401
from hybridff.charges.model.labelling import (  # noqa: E402, F401
    NCI_FILE,
    RECIPES,
    SOURCES,
    WEHI_FILE,
    _job,
    build_jobs,
    done_keys,
    failures_path,
    label_one,
    order_jobs,
    pack,
    read_nci,
    read_wehi,
    recipes_in,
    run_jobs,
)
from hybridff.charges.model.variants import clean, has_rare_chemistry, variants  # noqa: E402, F401
from hybridff.exceptions import HybridFFError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("labels/am1bcc_labels.jsonl"))
    parser.add_argument("--max-heavy", type=int, default=40)
    parser.add_argument("--limit", type=int, default=None,
                        help="only the first N jobs still to do (smallest first)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per molecule")
    parser.add_argument("--optimize", action="store_true", help="AM1 geometry relaxation in sqm")
    parser.add_argument("--source", choices=SOURCES, default="nci",
                        help="nci: RDKit's NCI first_5K set; wehi: rare chemistry (P, I, Br, unusual "
                             "S) from RDKit's WEHI PAINS test set; wehi-all: every WEHI molecule; "
                             "coverage: generated small molecules for bonding situations those sets "
                             "lack (hybridff/charges/model/coverage.py); add them to the same --out file")
    parser.add_argument("--charged-first", action="store_true",
                        help="label the charged protonation variants before the molecules as given "
                             "(smallest first within each), so a run cut short covers them")
    parser.add_argument("--order", choices=("size", "random"), default="size",
                        help="size: smallest first; random: a seeded shuffle, so a run cut short "
                             "is a sample of every size (the same order on every resume)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed for --order random")
    parser.add_argument("--first", action="append", default=[], metavar="SMARTS",
                        help="label molecules matching this SMARTS pattern first (repeatable; "
                             "the order above is kept within each part): chemistry the model "
                             "gets wrong, e.g. '[SX4](=O)=O' for sulfonyl groups")
    parser.add_argument("--workers", type=int, default=1,
                        help="molecules labelled in parallel (one sqm process each)")
    parser.add_argument("--pack", type=Path, default=None, help="only write the packed .jsonl.gz")
    args = parser.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    if args.pack:
        try:
            n = pack(args.out, args.pack)
        except HybridFFError as exc:
            raise SystemExit(str(exc)) from None
        print(f"packed {n} labelled molecules into {args.pack}")
        return 0

    args.out.parent.mkdir(parents=True, exist_ok=True)
    failures = failures_path(args.out)
    other = recipes_in(args.out, failures) - {RECIPES[args.optimize]}
    if other:
        parser.error(f"{args.out} (or its failures file) holds {sorted(other)} records, this run "
                     f"makes {RECIPES[args.optimize]!r} ones: use another --out, or {'drop' if args.optimize else 'add'} --optimize")
    skip = done_keys(args.out, failures)
    patterns = [Chem.MolFromSmarts(text) for text in args.first]
    for text, pattern in zip(args.first, patterns, strict=True):
        if pattern is None:
            parser.error(f"--first {text!r} is not a valid SMARTS pattern")
    jobs = order_jobs(build_jobs(args.max_heavy, args.source), skip, args.order, args.seed,
                      patterns, args.charged_first, args.limit)
    print(f"recipe {RECIPES[args.optimize]}, timeout {args.timeout:g} s per molecule: "
          f"{len(skip)} done before, {len(jobs)} to do", flush=True)
    n_ok, n_fail = run_jobs(jobs, args.out, args.timeout, args.optimize, args.workers)
    print(f"finished: {n_ok} labelled, {n_fail} failed (see {failures})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
