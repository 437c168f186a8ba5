"""QM-minus-MM residuals: the MM energy and forces of every labelled frame, from OpenMM.

The MM System is the one simulations use (:func:`hybridff.system.create_system` in vacuum),
evaluated frame by frame on the Reference platform (deterministic, float64).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import openmm
from openmm import app, unit

from hybridff.data import LabelledFrames, check_atom_order


@dataclass
class MMSetup:
    """The MM side of the hybrid for one molecule."""

    system: openmm.System
    topology: app.Topology
    positions: np.ndarray  # (N, 3) nm, the input conformer
    numbers: np.ndarray  # atomic numbers, molecule order
    signature: dict[str, Any]  # ParameterizedMolecule.mm_signature() and smiles
    parameterized: Any = None  # the ParameterizedMolecule

    @property
    def bonds(self) -> list[tuple[int, int]]:
        """Bonded atom pairs (molecule order): label files are checked against them."""
        return [(b[0].index, b[1].index) for b in self.topology.bonds()]


def build_mm(
    molecule: Any, charge_method: str | None = None, **parameterize_options: Any
) -> MMSetup:
    """Parameterize ``molecule`` (path, SMILES, RDKit Mol) and build its vacuum MM System.

    ``charge_method``: default the project's (``hybridff.parameters.DEFAULT_CHARGE_METHOD``).
    """
    from hybridff.parameters import DEFAULT_CHARGE_METHOD, parameterize
    from hybridff.system import create_system

    charge_method = charge_method or DEFAULT_CHARGE_METHOD
    pm = parameterize(molecule, charge_method=charge_method, **parameterize_options)
    system, topology, positions = create_system(pm, nonbonded_method="NoCutoff")
    numbers = np.array([a.GetAtomicNum() for a in pm.mol.GetAtoms()], dtype=int)
    signature = {**pm.mm_signature(), "smiles": pm.smiles}
    return MMSetup(system, topology, positions.value_in_unit(unit.nanometer), numbers,
                   signature, pm)


def mm_energies_forces(
    system: openmm.System, frames_nm: np.ndarray, platform: str = "Reference",
    groups: set[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """MM energies (F,) kJ/mol and forces (F, N, 3) kJ/mol/nm of frames (F, N, 3) nm."""
    integrator = openmm.VerletIntegrator(0.001)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))
    kwargs: dict[str, Any] = {"getEnergy": True, "getForces": True}
    if groups is not None:
        kwargs["groups"] = set(groups)
    energies = np.empty(len(frames_nm))
    forces = np.empty(frames_nm.shape)
    for k, x in enumerate(frames_nm):
        context.setPositions(x)
        state = context.getState(**kwargs)
        energies[k] = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        forces[k] = state.getForces(asNumpy=True).value_in_unit(
            unit.kilojoule_per_mole / unit.nanometer
        )
    return energies, forces


def residuals(frames: LabelledFrames, mm: MMSetup) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(QM - MM energies, QM - MM forces, MM energies, MM forces) of every frame."""
    check_atom_order(frames.numbers, mm.numbers, "labelled frames vs molecule")
    e_mm, f_mm = mm_energies_forces(mm.system, frames.positions)
    return frames.energies - e_mm, frames.forces - f_mm, e_mm, f_mm
