"""Figures of ``hybridff evaluate --plots``, each written next to the numbers it shows.

- Parity plots: QM against MM, the hybrid and (when compared) an ML-only model, on the
  evaluated frames. ``parity_energy.png`` / ``.csv``: energies in kcal/mol with each method's
  mean over the frames removed (the same offset removal as the reported RMSE);
  ``parity_forces.png`` / ``.csv``: every force component in kcal/mol/Angstrom.
- Torsion scans: a dihedral driven from 0 to 360 degrees in steps, the rest of the molecule
  relaxed under MM with a harmonic restraint on that dihedral (OpenMM ``CustomTorsionForce``
  + ``LocalEnergyMinimizer``); MM, hybrid, ML-only and optionally QM single points on the
  relaxed geometries, each relative to its own minimum, with the correction ensemble's
  spread along the scan and the dihedral's values in the evaluated frames (where the model
  has data): ``torsion_I-J-K-L.png`` / ``.csv``, and the geometries as ``.xyz`` (Angstrom).
- Dipoles (frames with QM dipoles): ``parity_dipoles.png`` / ``.csv``, every component of the
  fixed MM charges' dipole and of the geometry-dependent charges' (q(X)) against QM, Debye.
- ``plots.json``: the settings, the files, and the numbers quoted in the figures.

matplotlib is imported only when a figure is drawn, with the non-interactive Agg backend.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openmm
from openmm import unit

from hybridff import units
from hybridff.elements import SYMBOL
from hybridff.labels.torsions import (  # one home, shared with the torsion sampler
    Torsion,
    angle_difference_deg,
    check_torsion,
    dihedral_deg,
    rotatable_torsions,
)

logger = logging.getLogger(__name__)

#: force constant of the dihedral restraint during a scan, kJ/mol/rad^2 (about 3 kJ/mol at 1
#: degree off target: residual deviations stay well below a degree for ordinary torsions)
RESTRAINT_K_KJ_MOL_RAD2 = 1.0e4
#: minimizer convergence: root-mean-square force, kJ/mol/nm
MINIMIZER_TOLERANCE_KJ_MOL_NM = 0.1

#: method key -> (short name, long name, colour) for every figure
METHODS: dict[str, tuple[str, str, str]] = {
    "mm": ("MM", "MM alone (GAFF2)", "#d95f02"),
    "mm_refit": ("bespoke MM", "bespoke MM (bonded terms refitted)", "#7570b3"),
    "hybrid": ("hybrid", "hybrid (MM + ML correction)", "#1b63b5"),
    "ml_only": ("ML only", "ML-only model", "#1b9e77"),
    "qm": ("QM", "QM", "black"),
    "fixed_charges": ("fixed q", "fixed MM charges", "#d95f02"),
    "dipole_model": ("q(X)", "geometry-dependent charges q(X)", "#1b63b5"),
}
#: methods compared with QM, in drawing order
COMPARED = ("mm", "mm_refit", "hybrid", "ml_only")

# --------------------------------------------------------------------------- torsions

def _restrained_context(system: openmm.System, torsion: Torsion) -> tuple[openmm.Context, int]:
    """A Reference Context of ``system`` plus a harmonic restraint on ``torsion`` (global
    parameter ``theta0``, radians) in its own force group; returns it and that group."""
    restrained = copy.deepcopy(system)
    used = {restrained.getForce(f).getForceGroup() for f in range(restrained.getNumForces())}
    group = max(set(range(32)) - used)
    force = openmm.CustomTorsionForce(
        f"0.5*k_dihedral*d^2; d = min(dt, {2 * math.pi!r} - dt); dt = abs(theta - theta0)")
    force.addGlobalParameter("k_dihedral", RESTRAINT_K_KJ_MOL_RAD2)
    force.addGlobalParameter("theta0", 0.0)
    force.addTorsion(*torsion, [])
    force.setForceGroup(group)
    restrained.addForce(force)
    context = openmm.Context(restrained, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    return context, group


@dataclass
class TorsionScan:
    """A relaxed scan: grid targets (degrees), achieved dihedrals, relaxed geometries (nm),
    and energies (kJ/mol) per method on those geometries."""

    torsion: Torsion
    targets_deg: np.ndarray
    achieved_deg: np.ndarray
    positions: np.ndarray  # (S, N, 3) nm
    energies: dict[str, np.ndarray] = field(default_factory=dict)
    #: the correction ensemble's energy spread per point (kJ/mol; members centred over the scan)
    ensemble_std: np.ndarray | None = None


def relaxed_scan(system: openmm.System, positions_nm: np.ndarray, torsion: Torsion,
                 step_deg: float = 15.0) -> TorsionScan:
    """Drive ``torsion`` over the grid 0, step, ... < 360 degrees, minimizing the rest of the
    molecule under ``system`` (MM) with the dihedral restrained at each grid angle.

    The scan starts at the grid angle nearest the starting geometry's dihedral and walks the
    circle both ways, each point started from its neighbour's relaxed geometry; of the two
    geometries per angle the one with the lower MM energy (restraint excluded) is kept, which
    removes most of the hysteresis a one-way scan leaves. ``energies["mm"]`` holds those MM
    energies.
    """
    targets = np.arange(0.0, 360.0 - 1e-9, step_deg)
    n = len(targets)
    context, group = _restrained_context(system, torsion)
    mm_groups = set(range(32)) - {group}
    start = np.asarray(positions_nm, dtype=np.float64)
    first = int(np.argmin(np.abs(angle_difference_deg(targets, dihedral_deg(start, torsion)))))
    best_e = np.full(n, np.inf)
    best_x = np.empty((n, *start.shape))
    for direction in (1, -1):
        x = start
        for s in range(n):
            g = (first + direction * s) % n
            theta0 = np.radians(angle_difference_deg(targets[g], 0.0))  # in [-pi, pi)
            context.setParameter("theta0", float(theta0))
            context.setPositions(x)
            openmm.LocalEnergyMinimizer.minimize(context, MINIMIZER_TOLERANCE_KJ_MOL_NM, 0)
            state = context.getState(getPositions=True, getEnergy=True, groups=mm_groups)
            x = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
            energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            if energy < best_e[g]:
                best_e[g], best_x[g] = energy, x
    return TorsionScan(torsion, targets, dihedral_deg(best_x, torsion), best_x, {"mm": best_e})


# --------------------------------------------------------------------------- figures

def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def _write_csv(path: Path, header: list[str], columns: list[Any]) -> None:
    rows = zip(*columns, strict=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow([f"{v:.10g}" if isinstance(v, (float, np.floating)) else v
                             for v in row])


def _parity_figure(path: Path, reference: np.ndarray, predicted: dict[str, np.ndarray],
                   rmse: dict[str, float], what: str, unit_label: str, title: str,
                   point_size: float, alpha: float) -> None:
    plt = _pyplot()
    keys = list(predicted)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.5 * len(keys), 3.9), squeeze=False,
                             constrained_layout=True)
    values = np.concatenate([reference.ravel(), *(predicted[k].ravel() for k in keys)])
    lo, hi = float(values.min()), float(values.max())
    pad = 0.04 * (hi - lo or 1.0)
    lims = (lo - pad, hi + pad)
    for ax, key in zip(axes[0], keys, strict=True):
        short, name, colour = METHODS[key]
        ax.plot(lims, lims, color="0.35", lw=0.8, ls="--", zorder=1)
        ax.scatter(reference.ravel(), predicted[key].ravel(), s=point_size, alpha=alpha,
                   color=colour, lw=0, rasterized=True, zorder=2)
        ax.text(0.04, 0.96, f"RMSE {rmse[key]:.2f} {unit_label}", transform=ax.transAxes,
                va="top", ha="left", fontsize=9,
                bbox={"boxstyle": "round", "fc": "white", "ec": "0.8"})
        ax.text(0.96, 0.04, "y = x", transform=ax.transAxes, va="bottom", ha="right",
                fontsize=8, color="0.35")
        ax.set_xlim(lims)
        ax.set_ylim(lims)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(f"QM {what} ({unit_label})")
        ax.set_ylabel(f"{short} {what} ({unit_label})")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_parity(evaluated: Any, out_dir: Path, data_name: str = "") -> dict[str, Any]:
    """Parity plots and CSVs of an :class:`~hybridff.training.workflow.EvaluatedFrames`;
    returns the files and each method's RMSE (the same as the report's)."""
    keys = [k for k in COMPARED if k in evaluated.energies]
    e_kcal = {k: np.asarray(v) * units.KJ_TO_KCAL for k, v in evaluated.energies.items()}
    e_centred = {k: v - v.mean() for k, v in e_kcal.items()}
    f_kcal = {k: np.asarray(v) * units.KJ_PER_MOL_NM_TO_KCAL_PER_MOL_ANGSTROM
              for k, v in evaluated.forces.items()}
    e_rmse = {k: _rmse(e_centred[k], e_centred["qm"]) for k in keys}
    f_rmse = {k: _rmse(f_kcal[k], f_kcal["qm"]) for k in keys}

    energy_csv = out_dir / "parity_energy.csv"
    _write_csv(energy_csv, ["frame"] + [f"{k}_kcal_mol" for k in ("qm", *keys)],
               [evaluated.frame_index.tolist()] + [e_centred[k].tolist() for k in ("qm", *keys)])
    n_frames, n_atoms = evaluated.positions.shape[:2]
    frame = np.repeat(evaluated.frame_index, n_atoms * 3)
    atom = np.tile(np.repeat(np.arange(n_atoms), 3), n_frames)
    component = np.tile(np.array(["x", "y", "z"]), n_frames * n_atoms)
    forces_csv = out_dir / "parity_forces.csv"
    _write_csv(forces_csv, ["frame", "atom", "component"]
               + [f"{k}_kcal_mol_A" for k in ("qm", *keys)],
               [frame.tolist(), atom.tolist(), component.tolist()]
               + [f_kcal[k].ravel().tolist() for k in ("qm", *keys)])

    energy_png, forces_png = out_dir / "parity_energy.png", out_dir / "parity_forces.png"
    where = f"{n_frames} frames" + (f" of {data_name}" if data_name else "")
    _parity_figure(energy_png, e_centred["qm"], {k: e_centred[k] for k in keys}, e_rmse,
                   "energy", "kcal/mol",
                   f"Energies against QM, {where} (each method's mean removed)",
                   point_size=14, alpha=0.6)
    _parity_figure(forces_png, f_kcal["qm"], {k: f_kcal[k] for k in keys}, f_rmse,
                   "force", "kcal/mol/Å",
                   f"Force components against QM, {where} ({n_frames * n_atoms * 3} values)",
                   point_size=3, alpha=0.25)
    return {
        "files": [str(p) for p in (energy_png, energy_csv, forces_png, forces_csv)],
        "energy_rmse_kcal_mol": e_rmse,
        "force_rmse_kcal_mol_A": f_rmse,
        "n_frames": int(n_frames),
    }


def write_dipole_parity(dipoles: dict[str, np.ndarray], out_dir: Path,
                        data_name: str = "") -> dict[str, Any]:
    """``parity_dipoles.png`` / ``.csv``: every dipole component (Debye, about the centre of
    mass) of the fixed charges and of q(X) against QM; returns the files and RMSEs."""
    keys = [k for k in ("fixed_charges", "dipole_model") if k in dipoles]
    debye = {k: np.asarray(dipoles[k]) * units.E_NM_TO_DEBYE for k in ("qm", *keys)}
    # the same RMSE as the report's: over frames, of the vector difference's length
    rmse = {k: float(np.sqrt(np.mean(np.sum((debye[k] - debye["qm"]) ** 2, axis=-1))))
            for k in keys}
    n_frames = len(debye["qm"])
    path_csv, path_png = out_dir / "parity_dipoles.csv", out_dir / "parity_dipoles.png"
    frame = np.repeat(np.asarray(dipoles["frame_index"]), 3)
    component = np.tile(np.array(["x", "y", "z"]), n_frames)
    _write_csv(path_csv, ["frame", "component"] + [f"{k}_debye" for k in ("qm", *keys)],
               [frame.tolist(), component.tolist()] + [debye[k].ravel().tolist()
                                                       for k in ("qm", *keys)])
    where = f"{n_frames} frames" + (f" of {data_name}" if data_name else "")
    _parity_figure(path_png, debye["qm"], {k: debye[k] for k in keys}, rmse, "dipole", "D",
                   f"Dipole components against QM, {where} (RMSE of the vector)",
                   point_size=8, alpha=0.5)
    return {"files": [str(path_png), str(path_csv)], "dipole_rmse_debye": rmse,
            "n_frames": int(n_frames)}


def _torsion_name(mol: Any, torsion: Torsion) -> str:
    from hybridff.io.molecule import atom_names

    names = atom_names(mol)
    return "-".join(names[a] for a in torsion)


def _write_xyz(path: Path, numbers: np.ndarray, positions_nm: np.ndarray,
               comments: list[str]) -> None:
    with open(path, "w") as handle:
        for x, comment in zip(positions_nm, comments, strict=True):
            handle.write(f"{len(numbers)}\n{comment}\n")
            for z, (a, b, c) in zip(numbers, x * units.NM_TO_ANGSTROM, strict=True):
                handle.write(f"{SYMBOL.get(int(z), str(z)):2s} {a:14.8f} {b:14.8f} {c:14.8f}\n")


def _scan_figure(path: Path, scan: TorsionScan, relative: dict[str, np.ndarray],
                 rmse: dict[str, float], title: str, frame_angles: np.ndarray,
                 ensemble_size: int) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6), constrained_layout=True)
    angles = np.append(scan.targets_deg, 360.0)  # the 0-degree point again: the scan is periodic
    if scan.ensemble_std is not None:
        hybrid = np.append(relative["hybrid"], relative["hybrid"][0])
        std = np.append(scan.ensemble_std, scan.ensemble_std[0]) * units.KJ_TO_KCAL
        ax.fill_between(angles, hybrid - std, hybrid + std, color=METHODS["hybrid"][2],
                        alpha=0.18, lw=0, label=f"hybrid ± ensemble std (K={ensemble_size})")
    ax.plot(np.mod(frame_angles, 360.0), np.zeros_like(frame_angles), "|", ms=10, mew=0.6,
            color="0.45", transform=ax.get_xaxis_transform(), clip_on=False,
            label=f"dihedral in the {len(frame_angles)} evaluated frames")
    for key in ("qm", *COMPARED):
        if key not in relative:
            continue
        _, name, colour = METHODS[key]
        label = name if key not in rmse else f"{name}: RMSE vs QM {rmse[key]:.2f} kcal/mol"
        style = {"lw": 2.4, "marker": "o", "ms": 4, "zorder": 3} if key == "qm" else \
            {"lw": 1.5, "marker": "s", "ms": 3, "zorder": 2}
        ax.plot(angles, np.append(relative[key], relative[key][0]), color=colour, label=label,
                **style)
    ax.set_xlim(0, 360)
    ax.set_xticks(np.arange(0, 361, 60))
    ax.set_xlabel("dihedral angle (degrees)")
    ax.set_ylabel("energy relative to its minimum (kcal/mol)")
    step = scan.targets_deg[1] - scan.targets_deg[0]
    ax.set_title(f"Torsion scan {title}\nMM-relaxed geometries, dihedral restrained, {step:g}° "
                 "steps", fontsize=10)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    n_extra = len(handles) - len(relative)  # the band and the frames, drawn first: list last
    handles, labels = handles[n_extra:] + handles[:n_extra], labels[n_extra:] + labels[:n_extra]
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=8, frameon=False,
               title="RMSE along the scan with the mean offset removed" if rmse else None,
               title_fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)


def write_torsion_scan(evaluated: Any, torsion: Torsion, out_dir: Path, step_deg: float,
                       qm_engine: Any = None, start_nm: np.ndarray | None = None
                       ) -> dict[str, Any]:
    """Scan ``torsion`` (see :func:`relaxed_scan`), evaluate every method on the relaxed
    geometries, write the figure, CSV and geometries; returns the summary numbers."""
    import torch

    from hybridff.io.molecule import formal_charge
    from hybridff.ml.model import energies_and_forces
    from hybridff.mm.energies import mm_energies_forces
    from hybridff.training.trainer import species_of

    mm = evaluated.mm
    mol = mm.parameterized.mol
    start = mm.positions if start_nm is None else start_nm
    gaff2 = evaluated.gaff2 if evaluated.gaff2 is not None else mm
    scan = relaxed_scan(gaff2.system, start, torsion, step_deg)  # geometries relaxed in GAFF2
    scan.energies["mm"], _ = mm_energies_forces(gaff2.system, scan.positions)
    if gaff2 is not mm:
        scan.energies["mm_refit"], _ = mm_energies_forces(mm.system, scan.positions)
    scan.energies["hybrid"], _ = mm_energies_forces(evaluated.hybrid_system, scan.positions)
    pos = torch.tensor(scan.positions, dtype=torch.float64)
    ensemble_size = 0
    if evaluated.model is not None:
        model = evaluated.model
        members, _ = energies_and_forces(model.module, pos,
                                         species_of(mm.numbers, tuple(model.elements)),
                                         per_member=True)
        members = members.detach().numpy()
        ensemble_size = members.shape[0]
        if ensemble_size > 1:
            # members agree up to a constant (as in evaluate): remove each one's mean first
            scan.ensemble_std = (members - members.mean(axis=1, keepdims=True)).std(0)
    if evaluated.ml_only_model is not None:
        ml = evaluated.ml_only_model
        e_ml, _ = energies_and_forces(ml.module, pos, species_of(mm.numbers, tuple(ml.elements)))
        scan.energies["ml_only"] = e_ml.detach().numpy()
    if qm_engine is not None:
        charge = formal_charge(mol)
        scan.energies["qm"] = np.array(
            [qm_engine.compute(mm.numbers, x, charge=charge).energy for x in scan.positions])

    relative = {k: (v - v.min()) * units.KJ_TO_KCAL for k, v in scan.energies.items()}
    rmse: dict[str, float] = {}
    if "qm" in relative:
        for key in COMPARED:
            if key in relative:
                d = relative[key] - relative["qm"]
                rmse[key] = float(np.sqrt(np.mean((d - d.mean()) ** 2)))
    stem = "torsion_" + "-".join(map(str, torsion))
    name = _torsion_name(mol, torsion)
    keys = [k for k in ("qm", *COMPARED) if k in relative]
    csv_path, png_path, xyz_path = (out_dir / f"{stem}{ext}" for ext in (".csv", ".png", ".xyz"))
    header = ["target_deg", "dihedral_deg"] + [f"{k}_kcal_mol" for k in keys]
    columns = ([scan.targets_deg.tolist(), scan.achieved_deg.tolist()]
               + [relative[k].tolist() for k in keys])
    if scan.ensemble_std is not None:
        header.append("hybrid_ensemble_std_kcal_mol")
        columns.append((scan.ensemble_std * units.KJ_TO_KCAL).tolist())
    _write_csv(csv_path, header, columns)
    _write_xyz(xyz_path, mm.numbers, scan.positions,
               [f"torsion={' '.join(map(str, torsion))} target_deg={t:g} dihedral_deg={a:.4f} "
                f"mm_kcal_mol={e:.6f}"
                for t, a, e in zip(scan.targets_deg, scan.achieved_deg, relative["mm"],
                                   strict=True)])
    frame_angles = dihedral_deg(evaluated.positions, torsion)
    _scan_figure(png_path, scan, relative, rmse, f"{name} (atoms {' '.join(map(str, torsion))})",
                 frame_angles, ensemble_size)
    deviation = np.abs(angle_difference_deg(scan.achieved_deg, scan.targets_deg))
    rad = np.radians(frame_angles)
    centre = float(np.degrees(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())))
    summary = {
        "torsion": list(torsion),
        "atoms": name,
        "files": [str(p) for p in (png_path, csv_path, xyz_path)],
        "n_points": int(len(scan.targets_deg)),
        "max_deviation_from_target_deg": float(deviation.max()),
        "barrier_kcal_mol": {k: float(relative[k].max()) for k in keys},
        # where the evaluated frames put this dihedral: circular mean and the farthest frame
        "evaluated_frames_dihedral_deg": {
            "mean": centre,
            "max_from_mean": float(np.abs(angle_difference_deg(frame_angles, centre)).max()),
        },
    }
    if scan.ensemble_std is not None:
        summary["hybrid_ensemble_std_max_kcal_mol"] = float(
            scan.ensemble_std.max() * units.KJ_TO_KCAL)
    if rmse:
        summary["rmse_vs_qm_kcal_mol"] = rmse
    return summary


def write_plots(evaluated: Any, out_dir: str | os.PathLike,
                torsions: list[Torsion] | None = None, scan_step_deg: float = 15.0,
                scan_qm: str | None = None, data_name: str = "") -> dict[str, Any]:
    """Every figure of ``hybridff evaluate --plots`` into ``out_dir``; returns the summary
    that is also written there as ``plots.json``.

    ``torsions``: dihedrals to scan (checked); default every :func:`rotatable_torsions`.
    ``scan_qm``: a QM engine name (``hybridff.labels.qm.get_engine``) for reference energies on the
    scan geometries; default none. ``data_name``: the label file, for the figure titles.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mol = evaluated.mm.parameterized.mol
    if torsions is None:
        torsions = rotatable_torsions(mol)
        if not torsions:
            logger.info("no rotatable bond between heavy atoms: no torsion scan")
    else:
        torsions = [check_torsion(mol, t) for t in torsions]
    engine = None
    if scan_qm is not None and torsions:
        from hybridff.labels.qm import get_engine

        engine = get_engine(scan_qm)
    summary: dict[str, Any] = {"directory": str(out),
                               "parity": write_parity(evaluated, out, data_name)}
    if getattr(evaluated, "dipoles", None) is not None:
        summary["dipole_parity"] = write_dipole_parity(evaluated.dipoles, out, data_name)
    summary["torsion_scans"] = {
        "step_deg": scan_step_deg,
        "start": "the molecule's input conformer",
        "relaxation": "MM, LocalEnergyMinimizer, harmonic dihedral restraint "
                      f"{RESTRAINT_K_KJ_MOL_RAD2:g} kJ/mol/rad^2",
        "qm": {k: str(v) for k, v in engine.describe().items()} if engine is not None else None,
        "scans": [write_torsion_scan(evaluated, t, out, scan_step_deg, engine) for t in torsions],
    }
    with open(out / "plots.json", "w") as handle:
        json.dump(summary, handle, indent=1)
    return summary
