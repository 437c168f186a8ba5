"""QM-minus-MM residuals: the MM energy and forces of every labelled frame, from OpenMM.

The MM System is the one simulations use (:func:`hybridff.md.prepare.prepare_system` in
vacuum), evaluated frame by frame on the Reference platform (deterministic, float64).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import openmm
from openmm import app, unit

from hybridff.io.frames import LabelledFrames, check_atom_order
from hybridff.mm.energies import mm_energies_forces
from hybridff.mm.signature import MMSignature


@dataclass
class MMSetup:
    """The MM side of the hybrid for one molecule (atoms in the input molecule's order)."""

    system: openmm.System
    topology: app.Topology
    positions: np.ndarray  # (N, 3) nm, the input conformer
    numbers: np.ndarray  # atomic numbers, molecule order
    signature: MMSignature  # the MM identity of these parameters
    parameterized: Any = None  # the ParameterizedMolecule, in the input atom order

    @property
    def bonds(self) -> list[tuple[int, int]]:
        """Bonded atom pairs (molecule order): label files are checked against them."""
        return [(b[0].index, b[1].index) for b in self.topology.bonds()]

    def molecule_record(self) -> dict[str, Any]:
        """What a trained model stores about its molecule: canonical SMILES and graph."""
        return {"smiles": self.parameterized.smiles, **self.parameterized.graph.to_dict()}


def build_mm(
    molecule: Any, charge_method: str | None = None, pair_order: str | None = None,
    cache: Any = None, refit: dict[str, Any] | None = None, **charge_options: Any,
) -> MMSetup:
    """The vacuum MM System of ``molecule`` (path, SMILES, RDKit Mol), built by the route
    ``hybridff simulate`` uses (:func:`hybridff.md.prepare.prepare_system`), so residuals are
    taken against exactly the MM that runs.

    ``charge_method`` / ``pair_order``: default hybridff's (``ml``, ``canonical``);
    ``refit``: a bespoke refit record (:mod:`hybridff.mm.bespoke`), else GAFF2 as shipped.
    """
    from hybridff.md.prepare import prepare_system

    prepared = prepare_system(molecule, charge_method=charge_method, solvent="none",
                              constraints=None, cache=cache, pair_order=pair_order,
                              charge_options=charge_options or None, remove_cmmotion=False,
                              refit=refit)
    pm = prepared.parameterized
    numbers = np.array([a.element.atomic_number for a in prepared.topology.atoms()], dtype=int)
    return MMSetup(prepared.system, prepared.topology,
                   np.asarray(prepared.positions.value_in_unit(unit.nanometer)), numbers,
                   pm.signature, pm)


def residuals(frames: LabelledFrames, mm: MMSetup) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(QM - MM energies, QM - MM forces, MM energies, MM forces) of every frame."""
    check_atom_order(frames.numbers, mm.numbers, "labelled frames vs molecule")
    e_mm, f_mm = mm_energies_forces(mm.system, frames.positions)
    return frames.energies - e_mm, frames.forces - f_mm, e_mm, f_mm
