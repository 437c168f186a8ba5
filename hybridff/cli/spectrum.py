"""The IR spectrum of a vacuum run of hybridff simulate, from the dipole time series of its
trajectory: the geometry-dependent charges q(X) when the run's model file holds a dipole model
(hybridff train --dipoles) or one is given with --dipole-model, else the run's fixed charges.
Autocorrelation of dM/dt, Hann window, harmonic quantum correction; writes ir.csv, ir.png and
ir.json (settings, strongest bands) into OUTPUT. --compare adds other runs' spectra (an MM run
next to a hybrid one) to the same files. The run needs a frame every 4 fs or less
(simulate --report-ps 0.002) and, for X-H stretches, no bond constraints."""

from __future__ import annotations

import argparse
from pathlib import Path

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


def run(args: argparse.Namespace) -> int:
    from hybridff.exceptions import UnknownNameError
    from hybridff.md.spectrum import check_sampling, ir_spectrum, run_dipoles, write_spectrum

    if args.max_lag_ps is not None and args.max_lag_ps <= 0:
        raise UnknownNameError(f"--max-lag-ps must be positive, got {args.max_lag_ps}")
    if args.skip_ps < 0:
        raise UnknownNameError(f"--skip-ps must be >= 0, got {args.skip_ps}")
    spectra, sources = {}, {}
    for k, folder in enumerate([args.run, *args.compare]):
        series = run_dipoles(folder, args.dipole_model if k == 0 else None,
                             fixed_charges=args.fixed_charges, skip_ps=args.skip_ps)
        check_sampling(series, str(folder))
        name = folder.name if folder.name not in spectra else str(folder)
        spectra[name] = ir_spectrum(series.dipoles, series.dt_fs, series.temperature_k,
                                    args.max_lag_ps, quantum=not args.no_quantum_correction)
        spectra[name].info["charges"] = sources[name] = series.source
    summary = write_spectrum(spectra, args.output, title=f"IR spectrum of {args.run}")
    for name, record in summary["spectra"].items():
        print(f"{name}: {record['frames']} frames every {record['frame_interval_fs']:g} fs, "
              f"resolution {record['resolution_cm-1']:.0f} cm^-1; dipoles from {sources[name]}")
        bands = ", ".join(f"{nu:.0f}" for nu, _ in record["strongest_bands_cm-1"])
        print(f"  strongest bands (cm^-1): {bands}")
    print(f"wrote {', '.join(Path(f).name for f in summary['files'])} in {args.output}")
    return 0
