"""Sample conformations of a molecule under MM (seeded) and label them with QM energies and
forces (and the QM dipole moment, e*Angstrom about the centre of mass, as ASE's ``dipole``),
appended frame by frame to an extxyz file (eV, Angstrom) in the molecule's atom order.
Samplers: md (Langevin MD at --temperature), torsion (MD with every rotatable torsion
restrained at random angles on the full circle), mixed (md and torsion frames interleaved,
--torsion-fraction of them torsion frames), normal-modes, conformers (10 other RDKit
conformers, MM-relaxed, each coordinate displaced by 0.06 Angstrom at random). Re-running the same command
continues an interrupted file up to --n frames (each frame carries its sample index; only
the missing ones are computed). --workers N or --scheduler ADDRESS run one QM task per frame
on a Dask cluster (docs/scale-out.md); frames whose QM fails are recorded in
OUTPUT.failed.jsonl and the run goes on. A series: an SDF/SMI file of several molecules with
-o FOLDER/ writes FOLDER/NAME.xyz per molecule, every frame of every molecule one task."""

from __future__ import annotations

import argparse

from hybridff.cli import number_in
from hybridff.cli.argtypes import positive, registered
from hybridff.cli.batch import OutputFolder, add_batch_arguments, output_target
from hybridff.cli.charges import CHARGE_REGISTRY
from hybridff.cli.charges import METHODS as CHARGE_METHOD_NAMES

HELP = "sample conformations and compute QM energies/forces"
#: threads per QM calculation unless --threads says otherwise
DEFAULT_THREADS = 1
#: the built-in samplers of hybridff.labels.samplers.SAMPLERS, named in --help (spelled out so
#: that building the parser does not import the samplers; tests/test_cli_registry_names.py);
#: ``--sampler`` takes any name of SAMPLERS, those other packages add included
SAMPLER_NAMES = ["md", "torsion", "mixed", "normal-modes", "conformers"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("molecule", help="molecule file (SDF/mol2) or SMILES; with -o FOLDER/ "
                        "an SDF or SMI file of a series")
    parser.add_argument("--method", default="xtb", help="QM method: xtb (GFN2-xTB) or dft (pyscf)")
    parser.add_argument("--n", type=positive("a frame count", integer=True), default=200,
                        help="total number of frames wanted")
    parser.add_argument("-o", "--output", type=output_target, required=True,
                        help="extxyz file (appended to); a path ending in / is a folder: one "
                        "file FOLDER/NAME.xyz per molecule of the input (names from the "
                        "records' titles), see docs/scale-out.md")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--temperature", type=positive("a temperature", " K"), default=500.0,
                        help="sampling temperature, K")
    parser.add_argument("--sampler", default=None, type=registered("hybridff.labels.samplers:SAMPLERS"),
                        metavar="NAME",
                        help=f"conformation sampler: {', '.join(SAMPLER_NAMES)} or one a plugin "
                             "adds (default: the one recorded in OUTPUT when continuing it, "
                             "else mixed)")
    parser.add_argument("--torsion-fraction", type=number_in(0.0, 1.0, "a fraction"), default=None, metavar="F",
                        help="mixed sampler: share of torsion frames, 0 to 1 (default: the "
                             "file's when continuing it, else 0.5)")
    parser.add_argument("--charges", default=None, type=registered(CHARGE_REGISTRY), metavar="METHOD",
                        help=f"MM charge method for sampling: {', '.join(CHARGE_METHOD_NAMES)} or "
                             "one a plugin adds (default: the project default, ml)")
    parser.add_argument("--xc", default=None, help="DFT functional (dft only; default b3lyp)")
    parser.add_argument("--basis", default=None, help="DFT basis (dft only; default def2-svp)")
    parser.add_argument("--threads", type=positive("a thread count", integer=True), default=DEFAULT_THREADS,
                        help="OpenMP/BLAS threads of the QM engine (sets OMP_NUM_THREADS, "
                        "OPENBLAS_NUM_THREADS, MKL_NUM_THREADS unless already set)")
    add_batch_arguments(parser, work="compute the QM frames",
                        tasks="one task per frame, --threads threads each",
                        retry="compute again the frames whose QM failed before (recorded in "
                        "OUTPUT.failed.jsonl; with -o FOLDER/ also the molecules in "
                        "FOLDER/failures.jsonl); by default they are skipped")


def run(args: argparse.Namespace) -> int:
    # --threads was applied to the OpenMP/BLAS variables by hybridff.cli.limit_threads
    from hybridff.exceptions import UnknownNameError
    from hybridff.labels.options import LabelOptions
    from hybridff.training.workflow import label

    options = {k: v for k, v in (("xc", args.xc), ("basis", args.basis)) if v is not None}
    if options and args.method != "dft":
        raise UnknownNameError(f"--xc/--basis only apply to --method dft, not {args.method!r}")
    sampler_options = ({} if args.torsion_fraction is None
                       else {"torsion_fraction": args.torsion_fraction})
    if sampler_options and args.sampler not in (None, "mixed"):
        raise UnknownNameError(
            f"--torsion-fraction only applies to --sampler mixed, not {args.sampler!r}")
    run_options = LabelOptions(
        seed=args.seed, temperature=args.temperature, sampler=args.sampler,
        charge_method=args.charges, progress=not args.no_progress,
        sampler_options=sampler_options, workers=args.workers, scheduler=args.scheduler,
        retry_failed=args.retry_failed,
        threads=args.threads if args.workers or args.scheduler else None)
    if isinstance(args.output, OutputFolder):
        from hybridff.labels.series import label_series

        summary = label_series(args.molecule, args.output, args.n, method=args.method,
                               options=run_options, **options)
        print(summary.line())
        return 0 if summary.complete else 1
    added = label(args.molecule, args.output, args.n, method=args.method, options=run_options,
                  **options)
    print(f"{args.output}: added {added} frames ({args.n} wanted)")
    return 0
