"""QM labels in the wrong unit, caught before training on them.

A label file holds energies in eV and forces in eV/Angstrom (extxyz, ASE's units). Energies
in Hartree or kcal/mol, or forces in Hartree/Bohr, read as eV come out wrong by a fixed
factor, and a model trained on them is silently useless. The MM of the same molecule gives
the scale to expect: over the first 20 frames of the shipped GFN2-xTB and B3LYP paracetamol
files, the RMS of the QM forces is 0.96 to 1.09 times the MM forces', and the spread
(standard deviation) of the QM energies 1.01 to 1.44 times the MM energies'. A
ratio near a unit factor (1/27.2 for Hartree, 23.06 for kcal/mol, 96.5 for kJ/mol, ...) is
refused with the unit it points to and how to convert; forces pointing against the MM
forces (energy gradients given as forces) likewise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import openmm

from hybridff import units
from hybridff.exceptions import DataFormatError
from hybridff.io.frames import LabelledFrames

logger = logging.getLogger(__name__)

#: frames compared (the first ones of the file)
UNIT_CHECK_FRAMES = 20
#: ratios QM/MM inside this band pass without a word
PLAUSIBLE_RATIO = (0.2, 5.0)
#: a ratio within this factor of a unit's factor is taken as that unit
UNIT_MATCH_FACTOR = 2.0
#: fewest frames, and least MM energy spread (kJ/mol), for the energy comparison
MIN_ENERGY_FRAMES = 5
MIN_MM_ENERGY_STD_KJ_MOL = 0.1
#: a QM-MM force cosine below this: the "forces" are gradients (sign flipped)
MIN_FORCE_COSINE = -0.3

_EV = units.EV_TO_KJ_PER_MOL  # kJ/mol
_EV_A = units.EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM  # kJ/mol/nm

#: unit name -> how many eV (energies) one of it is
ENERGY_UNITS_IN_EV: dict[str, float] = {
    "Hartree": units.HARTREE_TO_KJ_PER_MOL / _EV,
    "kcal/mol": units.KCAL_TO_KJ / _EV,
    "kJ/mol": 1.0 / _EV,
}
#: unit name -> how many eV/Angstrom (forces) one of it is
FORCE_UNITS_IN_EV_PER_ANGSTROM: dict[str, float] = {
    "Hartree/Bohr": units.HARTREE_PER_BOHR_TO_KJ_PER_MOL_NM / _EV_A,
    "kcal/mol/Angstrom": units.KCAL_TO_KJ * units.NM_TO_ANGSTROM / _EV_A,
    "kJ/mol/Angstrom": units.NM_TO_ANGSTROM / _EV_A,
    "kcal/mol/nm": units.KCAL_TO_KJ / _EV_A,
    "kJ/mol/nm": 1.0 / _EV_A,
}


@dataclass
class LabelScale:
    """QM/MM scale ratios measured on the first frames of a label file."""

    n_frames: int
    force_rms_ratio: float  # RMS(QM forces) / RMS(MM forces)
    force_cosine: float  # cosine between all QM and all MM force components
    energy_std_ratio: float | None  # std(QM energies) / std(MM energies); None: not measured


def likely_unit(ratio: float, table: dict[str, float]) -> str | None:
    """The unit whose factor (read-as-eV / true value = 1 / size in eV) is nearest ``ratio``
    on a log scale, if within :data:`UNIT_MATCH_FACTOR`; else None."""
    if not np.isfinite(ratio) or ratio <= 0:
        return None
    name, size = min(table.items(), key=lambda kv: abs(np.log(ratio * kv[1])))
    return name if abs(np.log(ratio * size)) <= np.log(UNIT_MATCH_FACTOR) else None


def measure_label_scale(system: openmm.System, frames: LabelledFrames,
                        n_frames: int = UNIT_CHECK_FRAMES) -> LabelScale:
    """The QM/MM ratios of :class:`LabelScale` on the first ``n_frames`` frames."""
    from hybridff.mm.energies import mm_energies_forces

    n = min(n_frames, len(frames))
    e_mm, f_mm = mm_energies_forces(system, frames.positions[:n])
    e_qm, f_qm = frames.energies[:n], frames.forces[:n]
    mm_rms = float(np.sqrt(np.mean(f_mm**2)))
    qm_rms = float(np.sqrt(np.mean(f_qm**2)))
    norms = float(np.linalg.norm(f_qm) * np.linalg.norm(f_mm))
    cosine = float(np.sum(f_qm * f_mm) / norms) if norms > 0 else 0.0
    energy_ratio = None
    if n >= MIN_ENERGY_FRAMES and e_mm.std() > MIN_MM_ENERGY_STD_KJ_MOL:
        energy_ratio = float(e_qm.std() / e_mm.std())
    return LabelScale(n, qm_rms / mm_rms if mm_rms > 0 else float("nan"), cosine, energy_ratio)


def check_label_units(system: openmm.System, frames: LabelledFrames, where: str,
                      n_frames: int = UNIT_CHECK_FRAMES) -> LabelScale:
    """Refuse labels whose scale against the MM ``system`` points to a wrong unit.

    Raises :class:`DataFormatError` naming the likely unit and the conversion when the QM
    force RMS or energy spread is a unit factor off the MM's, or the forces point against
    the MM forces; warns when a ratio is implausible but matches no unit. ``where``: the
    label file, for the message. Returns the measured ratios.
    """
    scale = measure_label_scale(system, frames, n_frames)
    first = f"the first {scale.n_frames} frame(s)"
    if scale.force_cosine < MIN_FORCE_COSINE:
        raise DataFormatError(
            f"{where}: the QM forces point against the MM forces (cosine {scale.force_cosine:.2f} "
            f"over {first}; about +0.9 expected): they look like energy gradients, not forces; "
            "negate them (forces = -dE/dx) and write the file again")
    low, high = PLAUSIBLE_RATIO
    checks = [("forces", "RMS", scale.force_rms_ratio, FORCE_UNITS_IN_EV_PER_ANGSTROM,
               "eV/Angstrom")]
    if scale.energy_std_ratio is not None:
        checks.append(("energies", "spread (standard deviation)", scale.energy_std_ratio,
                       ENERGY_UNITS_IN_EV, "eV"))
    wrong = []
    for what, measure, ratio, table, expected in checks:
        if low <= ratio <= high:
            continue
        said = (f"the {measure} of the QM {what} is {ratio:.3g} times the MM {what}' over "
                f"{first} (about 1 expected)")
        unit = likely_unit(ratio, table)
        if unit is None:
            logger.warning("%s: %s, a factor that matches no common unit; check that the labels "
                           "are this molecule's, in eV and eV/Angstrom", where, said)
            continue
        wrong.append(f"{said}: they look like {unit} where {expected} is expected; multiply the "
                     f"{what} by {table[unit]:.6g} (1 {unit} in {expected})")
    if wrong:
        raise DataFormatError(
            f"{where}: {'; and '.join(wrong)}, and write the file again (label files are read "
            "in eV and eV/Angstrom, ASE's units)")
    return scale
