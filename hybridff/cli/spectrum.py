"""The IR spectrum of a vacuum run of hybridff simulate, from the dipole time series of its
trajectory: the geometry-dependent charges q(X) when the run's model file holds a dipole model
(hybridff train --dipoles) or one is given with --dipole-model, else the run's fixed charges.
Autocorrelation of dM/dt, Hann window, harmonic quantum correction; writes ir.csv, ir.png and
ir.json (settings, strongest bands) into OUTPUT. --compare adds other runs' spectra (an MM run
next to a hybrid one) to the same files. The run needs a frame every 4 fs or less
(simulate --report-ps 0.002) and, for X-H stretches, no bond constraints (simulate
--constraints none). --qm-reference MOLECULE adds the QM harmonic spectrum of the molecule
(GFN2-xTB by default: optimized geometry, finite-difference Hessian and dipole derivatives,
Lorentzian-broadened; cached in OUTPUT/qm_harmonic.json) and a table of the strongest QM bands
with their positions in every run (bands.csv)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hybridff.cli.argtypes import positive

HELP = "IR spectrum of a vacuum MD run from its dipole time series"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="run folder of hybridff simulate (--solvent none)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument("--compare", type=Path, nargs="+", default=[], metavar="RUN",
                        help="more run folders whose spectra go on the same plot and CSV")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dipole-model", type=Path, default=None, metavar="MODEL",
                        help="charges q(X) from this model file (default: the run's own model "
                             "file, if it holds a dipole model)")
    source.add_argument("--fixed-charges", action="store_true",
                        help="the run's fixed MM charges even when a dipole model is present")
    parser.add_argument("--max-lag-ps", type=float, default=None,
                        help="correlation length, ps (default 2, or half the run if shorter)")
    parser.add_argument("--skip-ps", type=float, default=0.0,
                        help="leave out the first ps of the trajectory (default 0)")
    parser.add_argument("--no-quantum-correction", action="store_true",
                        help="the classical lineshape (no harmonic quantum correction factor)")
    qm = parser.add_argument_group("QM harmonic reference")
    qm.add_argument("--qm-reference", default=None, metavar="MOLECULE",
                    help="molecule file (the run's, same atom order) or SMILES: its QM "
                         "harmonic spectrum on the plot, and the band table")
    qm.add_argument("--qm-method", default="xtb", metavar="METHOD",
                    help="QM engine of the reference (hybridff label's names; default xtb = "
                         "GFN2-xTB)")
    qm.add_argument("--qm-fwhm", type=positive("a line width", " cm^-1"), default=20.0,
                    help="Lorentzian full width at half maximum, cm^-1 (default 20)")
    qm.add_argument("--bands", type=positive("a band count", integer=True), default=8,
                    help="the most intense QM bands in the band table, plus the O-H and N-H "
                         "stretches (default 8)")


def run(args: argparse.Namespace) -> int:
    from hybridff.exceptions import UnknownNameError
    from hybridff.md.spectrum import check_sampling, ir_spectrum, run_dipoles, write_spectrum

    if args.max_lag_ps is not None and args.max_lag_ps <= 0:
        raise UnknownNameError(f"--max-lag-ps must be positive, got {args.max_lag_ps}")
    if args.skip_ps < 0:
        raise UnknownNameError(f"--skip-ps must be >= 0, got {args.skip_ps}")
    spectra, sources, trajectories = {}, {}, {}
    for k, folder in enumerate([args.run, *args.compare]):
        series = run_dipoles(folder, args.dipole_model if k == 0 else None,
                             fixed_charges=args.fixed_charges, skip_ps=args.skip_ps)
        check_sampling(series, str(folder))
        name = folder.name if folder.name not in spectra else str(folder)
        spectra[name] = ir_spectrum(series.dipoles, series.dt_fs, series.temperature_k,
                                    args.max_lag_ps, quantum=not args.no_quantum_correction)
        spectra[name].info["charges"] = sources[name] = series.source
        trajectories[name] = (series.numbers, series.positions, series.dt_fs)
    sticks, table = None, None
    if args.qm_reference is not None:
        sticks, table = _qm_reference(args, spectra, trajectories)
    summary = write_spectrum(spectra, args.output, title=f"IR spectrum of {args.run}",
                             sticks=sticks)
    for name, record in summary["spectra"].items():
        if name not in sources:  # the QM reference, printed with the band table
            continue
        print(f"{name}: {record['frames']} frames every {record['frame_interval_fs']:g} fs, "
              f"resolution {record['resolution_cm-1']:.0f} cm^-1; dipoles from {sources[name]}")
        bands = ", ".join(f"{nu:.0f}" for nu, _ in record["strongest_bands_cm-1"])
        print(f"  strongest bands (cm^-1): {bands}")
    if table is not None:
        _print_table(table)
    print(f"wrote {', '.join(Path(f).name for f in summary['files'])} in {args.output}")
    return 0


def _qm_reference(args: argparse.Namespace, spectra: dict, trajectories: dict
                  ) -> tuple[dict, dict | None]:
    """Add the QM harmonic spectrum to ``spectra``; the sticks and the band table."""
    import json

    from hybridff.md.harmonic import (
        band_table,
        check_atom_order,
        mode_label,
        molecule_bonds,
        qm_reference,
        select_bands,
        write_band_table,
    )

    modes, cached = qm_reference(args.qm_reference, args.output, method=args.qm_method,
                                 progress=not getattr(args, "no_progress", False))
    level = modes.info["engine"].get("level", args.qm_method)
    print(f"QM harmonic reference ({level}): {len(modes.wavenumbers)} modes"
          + (" (cached)" if cached else f", {modes.info['qm_calls']} QM calls"))
    name = f"QM harmonic ({level})"
    spectra[name] = modes.spectrum(fwhm=args.qm_fwhm)
    sticks = {f"{name}, sticks": (modes.wavenumbers[modes.wavenumbers > 0],
                                  modes.intensities[modes.wavenumbers > 0])}
    orders, ring = molecule_bonds(args.qm_reference)
    labels = [mode_label(modes, k, orders, ring) for k in range(len(modes.wavenumbers))]
    indices = select_bands(modes, labels, n=int(args.bands))
    runs = {}
    for run_name, (numbers, positions, dt_fs) in trajectories.items():
        check_atom_order(modes, numbers, run_name)
        runs[run_name] = (positions, dt_fs)
    table = band_table(modes, labels, indices, runs, args.max_lag_ps)
    write_band_table(table, args.output / "bands.csv")
    (args.output / "bands.json").write_text(json.dumps(table, indent=1) + "\n")
    return sticks, table


def _print_table(table: dict) -> None:
    runs = list(table["rmse_vs_qm_cm-1"])
    print("bands (cm^-1): " + " | ".join(["QM harmonic", *runs]) + " | QM mode")
    for row in table["bands"]:
        print("  " + " | ".join([f"{row['qm_cm-1']:.0f}", *[f"{row[r]:.0f}" for r in runs]])
              + f" | {row['label']} ({row['qm_intensity_km_per_mol']:.0f} km/mol)")
    print("  RMSE vs QM: " + ", ".join(f"{r} {v:.0f}" for r, v in
                                       table["rmse_vs_qm_cm-1"].items()))
