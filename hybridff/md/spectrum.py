"""Infrared spectra from the dipole time series of a vacuum MD run (``hybridff spectrum``).

The dipole of every trajectory frame comes from the geometry-dependent charges q(X) of a
dipole model (:mod:`hybridff.ml.dipole`) when the run's correction file holds one (or one is
given), else from the fixed charges of the run's System. The spectrum is the Fourier
transform of the autocorrelation of the dipole's time derivative,

    I(nu) = Q(nu) * FT[ w(tau) <dM/dt(0) . dM/dt(tau)> ](nu)

(the classical absorption lineshape times the refractive index, up to a constant), with

- dM/dt by forward differences between frames; the transform is divided by the finite
  difference's transfer function ``sinc^2(pi c nu dt)``, so band heights need no small time
  step (at 4000 cm^-1 and 1 fs it is a 5 % correction);
- the autocorrelation averaged over time origins (FFT, zero-padded, unbiased normalisation),
  cut at ``max_lag_ps`` and tapered by a Hann half-window ``w`` (its resolution: about
  ``1 / (c max_lag)``, 17 cm^-1 at 2 ps);
- the harmonic quantum correction factor ``Q = x / (1 - exp(-x))``, ``x = h c nu / (k T)``,
  which turns the classical lineshape into the quantum one for a harmonic system (it lifts
  the high-frequency bands, which classical MD underweights relative to QM).

Intensities are in arbitrary units (the largest band between 400 and 4000 cm^-1 is 1).
The trajectory must be sampled finely enough (the Nyquist wavenumber ``1 / (2 c dt)`` above
the bands: a frame every 4 fs at most) and X-H bonds must not be constrained for their
stretches to appear; both are checked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybridff import units
from hybridff.exceptions import DataFormatError, SimulationError

logger = logging.getLogger(__name__)

#: the band range the normalisation and the peak list look at, cm^-1
BAND_RANGE = (400.0, 4000.0)
#: correlation length unless given: this, or half the trajectory if shorter (ps)
DEFAULT_MAX_LAG_PS = 2.0


@dataclass
class Spectrum:
    """An IR spectrum: wavenumbers (cm^-1), intensity (arbitrary units, max 1 in
    :data:`BAND_RANGE`) and what it was computed from."""

    wavenumber: np.ndarray
    intensity: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def peaks(self, n: int = 12, min_height: float = 0.02) -> list[tuple[float, float]]:
        """The ``n`` highest local maxima in :data:`BAND_RANGE` as (cm^-1, intensity)."""
        from scipy.signal import find_peaks

        inside = (self.wavenumber >= BAND_RANGE[0]) & (self.wavenumber <= BAND_RANGE[1])
        nu, y = self.wavenumber[inside], self.intensity[inside]
        index, _ = find_peaks(y, height=min_height)
        best = sorted(index, key=lambda i: -y[i])[:n]
        return [(float(nu[i]), float(y[i])) for i in sorted(best)]


def quantum_correction(wavenumber: np.ndarray, temperature_k: float) -> np.ndarray:
    """Harmonic quantum correction factor ``x / (1 - exp(-x))``, ``x = h c nu / (k T)``."""
    x = units.WAVENUMBER_TO_KELVIN * np.asarray(wavenumber, dtype=np.float64) / temperature_k
    out = np.ones_like(x)
    nonzero = x > 1e-12
    out[nonzero] = x[nonzero] / -np.expm1(-x[nonzero])
    return out


def correlation_spectrum(series: np.ndarray, dt_fs: float, max_lag_ps: float | None = None
                         ) -> tuple[np.ndarray, np.ndarray, int]:
    """Wavenumbers (cm^-1), the Fourier transform of the time-origin-averaged
    autocorrelation of the series' time derivative (summed over its K columns; (T, K) values
    sampled every ``dt_fs``), and the correlation length in frames.

    Forward differences, their ``sinc^2`` transfer function divided out; Hann half-window over
    ``max_lag_ps`` (default :data:`DEFAULT_MAX_LAG_PS`, or half the series if shorter)."""
    m = np.asarray(series, dtype=np.float64)
    dt_ps = dt_fs * 1e-3
    velocity = np.diff(m, axis=0) / dt_ps
    n = len(velocity)
    default_lag = min(DEFAULT_MAX_LAG_PS, 0.5 * n * dt_ps)
    lag = default_lag if max_lag_ps is None else min(max_lag_ps, (n - 1) * dt_ps)
    n_lag = max(2, int(round(lag / dt_ps)))
    size = 1 << int(math.ceil(math.log2(2 * n)))
    spectrum = np.fft.rfft(velocity, n=size, axis=0)
    acf = np.fft.irfft((spectrum * spectrum.conj()).real.sum(axis=1), n=size)[:n_lag]
    acf /= n - np.arange(n_lag)  # average over the time origins of each lag
    window = np.cos(0.5 * np.pi * np.arange(n_lag) / n_lag) ** 2  # Hann half-window
    tapered = acf * window
    # even extension: I(nu) = dt (C0 + 2 sum_k C_k cos(2 pi nu k dt)), zero-padded for a fine grid
    n_fft = 1 << int(math.ceil(math.log2(8 * n_lag)))
    transform = dt_ps * (2.0 * np.fft.rfft(tapered, n=n_fft).real - tapered[0])
    frequency = np.fft.rfftfreq(n_fft, d=dt_ps)  # 1/ps
    wavenumber = frequency * 2.0 * np.pi * units.RAD_PER_PS_TO_WAVENUMBER
    # the forward difference multiplies amplitudes by sinc(pi f dt): undo its square
    transfer = np.sinc(frequency * dt_ps) ** 2
    transform = transform / np.where(transfer > 1e-3, transfer, np.inf)
    return wavenumber, transform, n_lag


def ir_spectrum(dipoles: np.ndarray, dt_fs: float, temperature_k: float,
                max_lag_ps: float | None = None, quantum: bool = True) -> Spectrum:
    """The IR spectrum of a dipole time series (T, 3) in e*nm sampled every ``dt_fs``.

    ``max_lag_ps``: correlation length (default :data:`DEFAULT_MAX_LAG_PS`, or half the
    series if shorter); ``quantum``: apply the harmonic quantum correction factor.
    """
    m = np.asarray(dipoles, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != 3 or len(m) < 8:
        raise DataFormatError(f"a dipole series needs (T >= 8, 3) values, got {m.shape}")
    dt_ps = dt_fs * 1e-3
    wavenumber, transform, n_lag = correlation_spectrum(m, dt_fs, max_lag_ps)
    if quantum:
        transform = transform * quantum_correction(wavenumber, temperature_k)
    inside = (wavenumber >= BAND_RANGE[0]) & (wavenumber <= BAND_RANGE[1])
    top = float(transform[inside].max()) if inside.any() else float(transform.max())
    intensity = transform / top if top > 0 else transform
    nyquist = 0.5 / dt_ps * 2.0 * np.pi * units.RAD_PER_PS_TO_WAVENUMBER
    keep = wavenumber <= min(nyquist, BAND_RANGE[1] + 500.0)
    info = {"frames": int(len(m)), "frame_interval_fs": float(dt_fs),
            "correlation_length_ps": float(n_lag * dt_ps),
            "resolution_cm-1": float(1.0 / (n_lag * dt_ps) * 2 * np.pi
                                     * units.RAD_PER_PS_TO_WAVENUMBER),
            "nyquist_cm-1": float(nyquist), "temperature_K": float(temperature_k),
            "quantum_correction": "harmonic" if quantum else "none",
            "window": "Hann half-window over the correlation length"}
    return Spectrum(wavenumber[keep], intensity[keep], info)


# --------------------------------------------------------------------------- run folders


@dataclass
class DipoleSeries:
    """Dipoles (T, 3) e*nm about the centre of mass of a run's frames, and their source."""

    dipoles: np.ndarray
    dt_fs: float
    temperature_k: float
    source: str
    numbers: np.ndarray
    positions: np.ndarray  # (T, N, 3) nm
    constraints: int = 0


def _system_charges_and_constraints(path: Path, n_atoms: int) -> tuple[np.ndarray, int]:
    """Fixed charges of the first ``n_atoms`` particles and the number of constraints, read
    from a serialized System (XML, without deserializing its ML force)."""
    from xml.etree import ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DataFormatError(f"{path}: not a readable System XML ({exc})") from exc
    constraints = root.find("Constraints")
    n_constraints = 0 if constraints is None else len(list(constraints))
    for force in root.iter("Force"):
        if force.get("type") == "NonbondedForce":
            particles = force.find("Particles")
            if particles is None:
                break
            q = np.array([float(p.get("q")) for p in particles][:n_atoms])
            return q, n_constraints
    raise DataFormatError(f"{path}: the System has no NonbondedForce: no charges to take")


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send what C code writes to file descriptor 1 to /dev/null for the block."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def run_dipoles(run_dir: str | os.PathLike, dipole_model: str | os.PathLike | None = None,
                fixed_charges: bool = False, skip_ps: float = 0.0) -> DipoleSeries:
    """The dipole series of a vacuum run folder written by ``hybridff simulate``.

    Charges: ``dipole_model`` if given; else the dipole model inside the run's correction
    file, if it holds one (``fixed_charges`` skips it); else the System's fixed charges.
    ``skip_ps``: leave out the first frames (more equilibration).
    """
    from hybridff.elements import atomic_masses
    from hybridff.labels.qm.base import optional_import
    from hybridff.md.outputs import OUTPUTS
    from hybridff.ml.dipole import dipoles_from_charges, has_dipole_model, load_dipole_model

    run = Path(run_dir)
    summary_path = run / OUTPUTS["summary"]
    if not summary_path.is_file():
        raise SimulationError(f"{run}: no {OUTPUTS['summary']}: not a run folder of hybridff "
                              "simulate")
    summary = json.loads(summary_path.read_text())
    if summary.get("solvent") not in ("none", None):
        raise SimulationError(
            f"{run}: a run in {summary.get('solvent')} solvent; the IR spectrum here is the "
            "molecule's own, from a vacuum run: hybridff simulate ... --solvent none")
    options = summary.get("options") or {}
    dt_fs = float(options["report_every"]) * float(options["timestep_fs"])
    temperature = float(options.get("temperature_k", 300.0))
    mdtraj = optional_import("mdtraj", "mdtraj", "reading the run's DCD trajectory")
    trajectory = run / OUTPUTS["trajectory"]
    if not trajectory.is_file():
        raise SimulationError(f"{run}: no {OUTPUTS['trajectory']}; the run wrote no frames")
    with _quiet_stdout():  # mdtraj's DCD plugin prints its format to the C stdout
        traj = mdtraj.load_dcd(str(trajectory), top=str(run / OUTPUTS["start"]))
    n_atoms = int((summary.get("system") or {}).get("solute_atoms", traj.n_atoms))
    numbers = np.array([a.element.number for a in traj.topology.atoms][:n_atoms])
    skip = int(round(skip_ps * 1000.0 / dt_fs))
    positions = np.asarray(traj.xyz[skip:, :n_atoms], dtype=np.float64)  # nm
    charges, n_constraints = _system_charges_and_constraints(run / OUTPUTS["system"], n_atoms)
    model_path = dipole_model
    if model_path is None and not fixed_charges:
        stored = summary.get("ml_model")
        if stored and Path(stored).is_file() and has_dipole_model(stored):
            model_path = stored
    if model_path is not None:
        model = load_dipole_model(model_path)
        total = round(float(charges.sum()))
        if int(model.metadata["total_charge"]) != total:
            raise DataFormatError(f"{model_path}: a dipole model for total charge "
                                  f"{model.metadata['total_charge']}, the run's molecule has "
                                  f"{total}")
        dipoles = model.dipoles(numbers, positions)
        source = f"geometry-dependent charges q(X) of {model_path}"
    else:
        import torch

        dipoles = dipoles_from_charges(
            torch.as_tensor(charges), torch.as_tensor(positions),
            torch.as_tensor(atomic_masses(numbers))).numpy()
        source = f"fixed charges of {run / OUTPUTS['system']}"
    return DipoleSeries(dipoles, dt_fs, temperature, source, numbers, positions, n_constraints)


def check_sampling(series: DipoleSeries, where: str) -> None:
    """Refuse a trajectory too coarse for IR bands; warn about constrained bonds."""
    nyquist = 0.5 / (series.dt_fs * 1e-3) * 2 * np.pi * units.RAD_PER_PS_TO_WAVENUMBER
    if nyquist < BAND_RANGE[1]:
        raise SimulationError(
            f"{where}: frames every {series.dt_fs:g} fs resolve bands only up to "
            f"{nyquist:.0f} cm^-1 (Nyquist); IR needs a frame every 4 fs or less: run "
            "hybridff simulate with --report-ps 0.002 (and a short --ns, e.g. 0.05)")
    if series.constraints:
        logger.warning("%s: the run constrains %d bonds (hybridff simulate's default, H bonds "
                       "rigid): their stretches (C-H, N-H, O-H near 3000-3600 cm^-1) are "
                       "missing from the spectrum; run hybridff simulate with --constraints "
                       "none --timestep-fs 0.5", where, series.constraints)


def write_spectrum(spectra: dict[str, Spectrum], out_dir: str | os.PathLike,
                   title: str = "", sticks: dict[str, Any] | None = None) -> dict[str, Any]:
    """``ir.csv`` (one intensity column per spectrum, on the first one's grid), ``ir.png`` and
    ``ir.json`` (settings and the strongest bands) into ``out_dir``.

    ``sticks``: name -> (wavenumbers, intensities) of a harmonic reference, drawn as sticks.
    """
    from hybridff.plots import _pyplot, _write_csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(spectra)
    grid = spectra[names[0]].wavenumber
    columns = [grid.tolist()] + [np.interp(grid, spectra[k].wavenumber,
                                           spectra[k].intensity).tolist() for k in names]
    _write_csv(out / "ir.csv", ["wavenumber_cm-1"] + [f"{k}_intensity" for k in names], columns)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4), constrained_layout=True)
    for k in names:
        ax.plot(spectra[k].wavenumber, spectra[k].intensity, lw=1.0, label=k)
    for k, (nu, y) in (sticks or {}).items():
        top = float(np.max(y)) if len(y) else 1.0
        ax.vlines(nu, 0, np.asarray(y) / (top or 1.0), colors="black", lw=0.8, label=k)
    ax.set_xlim(BAND_RANGE[1], BAND_RANGE[0])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("wavenumber (cm$^{-1}$)")
    ax.set_ylabel("IR intensity (arbitrary units)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.savefig(out / "ir.png", dpi=110)
    plt.close(fig)
    summary = {"files": [str(out / f) for f in ("ir.csv", "ir.png", "ir.json")],
               "spectra": {k: {**spectra[k].info, "strongest_bands_cm-1": [
                   [round(nu, 1), round(y, 3)] for nu, y in spectra[k].peaks()]} for k in names}}
    if sticks:
        summary["harmonic_reference"] = {k: [[float(a), float(b)] for a, b in zip(*v, strict=True)]
                                         for k, v in sticks.items()}
    (out / "ir.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
