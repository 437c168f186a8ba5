"""Write an OpenMM ForceField XML (residue templates + any terms filled by analogy) for the
molecules in a file, loadable with ``openmm.app.ForceField("hybridff-gaff2.xml", OUT.xml)``.
A JSON report lists atom types, charges and every parameter filled by analogy. With -o FOLDER/
each molecule of an SDF or SMI file gets its own FOLDER/NAME.xml (template NAME), written as
it completes; failed molecules are listed in FOLDER/failures.jsonl and the run goes on; a
re-run skips the files already there; --workers N / --scheduler ADDRESS run one task per
molecule on Dask (docs/scale-out.md)."""

from __future__ import annotations

import argparse
import json
import logging
import time

from tqdm import tqdm

from hybridff.cli.argtypes import output_file, registered
from hybridff.cli.batch import (
    add_batch_arguments,
    is_batch,
    output_target,
    resolved,
    run_batch_command,
)
from hybridff.cli.charges import CHARGE_REGISTRY, METHODS
from hybridff.exceptions import InvalidOptionError
from hybridff.io.files import atomic_write_text
from hybridff.io.molecule import load_molecules
from hybridff.mm.ffxml import merge_ffxml
from hybridff.mm.parameters import DEFAULT_CHARGE_METHOD, parameterize

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hybridff.mm.signature import DEFAULT_PAIR_ORDER, PAIR_ORDERS

    parser.add_argument("molecules", help="molecule file (SDF, MOL, mol2, SMI; one or more "
                        "molecules) or a SMILES string")
    parser.add_argument("--charges", default=DEFAULT_CHARGE_METHOD, type=registered(CHARGE_REGISTRY),
                        metavar="METHOD", help=f"charge method: {', '.join(METHODS)} or one a "
                        f"plugin adds (default: {DEFAULT_CHARGE_METHOD})")
    parser.add_argument("-o", "--output", type=output_target, required=True,
                        help="output ForceField XML, or a folder (ending in /) for one "
                        "NAME.xml per molecule")
    parser.add_argument("--report", type=output_file,
                        help="write a JSON report (types, charges, filled terms)")
    parser.add_argument("--forcefield", default="hybridff-gaff2.xml", help="hybridff force-field file")
    parser.add_argument("--pair-order", choices=PAIR_ORDERS, default=DEFAULT_PAIR_ORDER,
                        help="labelling of conjugated pair types (cc/cd, ...): 'canonical' "
                             "independent of the input atom order (default, as every other "
                             "command and the template generator), 'index' as antechamber "
                             "does for this input order (recorded in the MM signature)")
    parser.add_argument("--residue-name", default=None,
                        help="residue name of the template(s) (default: MOL, MOL2, ...; "
                        "with -o FOLDER/ the output's NAME)")
    add_batch_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if is_batch(args):
        if args.report:
            raise InvalidOptionError("--report writes one file; with -o FOLDER/ each molecule "
                                     "has its own NAME.xml: leave --report out")
        from hybridff.batch import ParameterizeJob

        return run_batch_command(args, args.molecules, ParameterizeJob(
            args.charges, resolved(args.forcefield), args.pair_order, args.residue_name))
    start = time.perf_counter()
    mols = load_molecules(args.molecules)
    docs, reports = [], []
    for k, mol in enumerate(tqdm(mols, desc="parameterizing", unit="mol",
                                 disable=len(mols) < 2 or args.no_progress)):
        resname = args.residue_name or ("MOL" if len(mols) == 1 else f"M{k + 1:02d}")
        pm = parameterize(mol, args.charges, args.forcefield, residue_name=resname,
                          pair_order=args.pair_order)
        docs.append(pm.to_ffxml())
        report = pm.report()
        report["residue_name"] = resname
        reports.append(report)
        if abs(pm.net_charge) > 0:
            logger.warning(
                "%s has a net charge of %+d e: in a periodic (PME) box add counter-ions, e.g. "
                "Modeller.addSolvent(..., neutralize=True), since Ewald needs a neutral box",
                report["name"] or resname, pm.net_charge)
        for term in pm.filled_terms:
            if term.kind != "improper":
                logger.info("%s: %s %s filled by analogy (%s)", resname, term.kind,
                            "-".join(term.classes), term.source)
    atomic_write_text(args.output, merge_ffxml(docs) + "\n")
    if args.report:
        atomic_write_text(args.report, json.dumps(reports if len(reports) > 1 else reports[0], indent=1) + "\n")
    n_filled = sum(1 for r in reports for t in r["filled_by_analogy"] if t["kind"] != "improper")
    print(f"wrote {args.output} ({len(mols)} molecule(s), charges: {args.charges}, "
          f"{n_filled} term(s) filled by analogy, {time.perf_counter() - start:.2f} s)")
    if args.report:
        print(f"wrote {args.report}")
    return 0
