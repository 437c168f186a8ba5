"""Sample conformations of a molecule with MM MD (seeded) and label them with QM energies and
forces, appended frame by frame to an extxyz file (eV, Angstrom) in the molecule's atom order.
Re-running the same command continues an interrupted file up to --n frames."""

from __future__ import annotations

import argparse

HELP = "sample conformations and compute QM energies/forces"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("molecule", help="molecule file (SDF/mol2) or SMILES")
    parser.add_argument("--method", default="xtb", help="QM method: xtb (GFN2-xTB) or dft (pyscf)")
    parser.add_argument("--n", type=int, default=200, help="total number of frames wanted")
    parser.add_argument("-o", "--output", required=True, help="extxyz file (appended to)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--temperature", type=float, default=500.0, help="sampling temperature, K")
    parser.add_argument("--sampler", default="md", choices=["md", "normal-modes"])
    parser.add_argument("--charges", default=None,
                        help="MM charge method for sampling (default: the project default, ml)")
    parser.add_argument("--xc", default=None, help="DFT functional (dft only; default b3lyp)")
    parser.add_argument("--basis", default=None, help="DFT basis (dft only; default def2-svp)")
    parser.add_argument("--threads", type=int, default=1,
                        help="OpenMP threads of the QM engine (OMP_NUM_THREADS unless set)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import os

    # before tblite/pyscf load: their OpenMP pools otherwise spin on every core
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from hybridff.exceptions import UnknownNameError
    from hybridff.training.workflow import label

    options = {k: v for k, v in (("xc", args.xc), ("basis", args.basis)) if v is not None}
    if options and args.method != "dft":
        raise UnknownNameError(f"--xc/--basis only apply to --method dft, not {args.method!r}")
    added = label(args.molecule, args.output, args.n, method=args.method, seed=args.seed,
                  temperature=args.temperature, sampler=args.sampler,
                  charge_method=args.charges, progress=not args.no_progress, **options)
    print(f"{args.output}: added {added} frames ({args.n} wanted)")
    return 0
