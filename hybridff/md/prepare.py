"""Set-up of a molecular dynamics run: molecule -> OpenMM System, vacuum or solvated.

:func:`prepare_system` builds the System through OpenMM's own ``ForceField`` (hybridff's XML
+ the template generator, plus ``amber14/tip3p.xml`` and ``Modeller`` for a TIP3P box with
neutralizing ions and PME); :func:`add_model` adds the ML correction on the solute.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openmm
from openmm import app, unit

from hybridff.exceptions import MoleculeInputError, SimulationError, UnknownNameError
from hybridff.ml import DEFAULT_PRECISION
from hybridff.mm.parameters import DEFAULT_CHARGE_METHOD
from hybridff.mm.system import DEFAULT_CUTOFF_NM, build_system, ligand_topology, net_charge

#: solvent name -> (OpenMM force-field file, Modeller water model); "none" is vacuum.
SOLVENTS: dict[str, tuple[str, str] | None] = {
    "tip3p": ("amber14/tip3p.xml", "tip3p"),
    "none": None,
}


@dataclass
class PreparedSystem:
    """An OpenMM System ready to simulate, with what was used to build it."""

    system: openmm.System
    topology: app.Topology
    positions: unit.Quantity
    solute_atoms: list[int]
    parameterized: Any  # hybridff.mm.parameters.ParameterizedMolecule
    solvent: str
    model: Any = None  # hybridff.ml.modelfile.ModelFile
    model_path: str | None = None
    ml_force_group: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def periodic(self) -> bool:
        return self.system.usesPeriodicBoundaryConditions()


def _orthorhombic_box_nm(topology: app.Topology) -> np.ndarray | None:
    vectors = topology.getPeriodicBoxVectors()
    if vectors is None:
        return None
    box = np.array([[float(c) for c in v] for v in vectors.value_in_unit(unit.nanometer)])
    if np.abs(box - np.diag(np.diag(box))).max() > 1e-9:
        return None  # triclinic: pairs are checked without periodic images
    return np.diag(box)


def check_positions(positions: Any, topology: app.Topology, what: str) -> None:
    """Refuse positions with a NaN/inf coordinate or two atoms on top of each other.

    Raises :class:`MoleculeInputError` naming the first atom with a non-finite coordinate, or
    :class:`OverlappingAtomsError` naming the closest pair of atoms nearer than
    :data:`hybridff.io.molecule.MIN_ATOM_DISTANCE_ANGSTROM` (periodic images of an orthorhombic
    box included); extra particles without an element (virtual sites) are not compared.
    """
    from hybridff.io.molecule import check_coordinates
    from hybridff.units import NM_TO_ANGSTROM

    xyz = np.asarray(positions.value_in_unit(unit.nanometer) if unit.is_quantity(positions)
                     else positions, dtype=float)
    atoms = list(topology.atoms())
    if len(xyz) != len(atoms):
        raise MoleculeInputError(f"{what}: {len(xyz)} positions for the topology's {len(atoms)} "
                                 "atoms; give one position per atom")

    def text(i: int) -> str:
        atom = atoms[i]
        symbol = atom.element.symbol if atom.element is not None else "no element"
        return f"atom {i} ({atom.name}, {symbol}, residue {atom.residue.name} {atom.residue.id})"

    real = np.array([a.element is not None for a in atoms], dtype=bool)
    index = np.nonzero(real)[0]  # virtual sites may sit on their parent atom
    box = _orthorhombic_box_nm(topology)
    check_coordinates(
        xyz[index] * NM_TO_ANGSTROM, lambda k: text(int(index[k])), what,
        "fix the input structure",
        overlap_advice="minimization does not reliably separate them: fix the input structure",
        box_angstrom=None if box is None else box * NM_TO_ANGSTROM)


def prepare_system(
    molecule: Any,
    charge_method: str | None = None,
    solvent: str = "tip3p",
    box_nm: float = 3.0,
    ionic_strength_molar: float = 0.15,
    model: str | os.PathLike | Any = None,
    ml_backend: str = "torch",
    ml_precision: str = DEFAULT_PRECISION,
    constraints: str | None = "HBonds",
    hydrogen_mass_amu: float | None = None,
    forcefield: str = "hybridff-gaff2.xml",
    cache: str | os.PathLike | bool | None = None,
    residue_name: str = "MOL",
    pair_order: str | None = None,
    charge_options: dict[str, Any] | None = None,
    remove_cmmotion: bool = True,
    refit: dict[str, Any] | None = None,
) -> PreparedSystem:
    """Build the System of ``molecule`` (path, SMILES, RDKit Mol) alone or in a TIP3P box.

    The one route to a molecule's MM System: ``hybridff label``, ``train``, ``evaluate`` and
    ``simulate`` all build it here (through the template generator, as a plain
    ``openmm.app.ForceField`` user would), so what is evaluated is what is simulated.

    Solvated: cubic box of edge ``box_nm``, PME, LJ switching 0.9/1.0 nm, neutralizing Na+/Cl-
    plus ``ionic_strength_molar`` of salt (Modeller). Vacuum (``solvent="none"``): NoCutoff.
    ``model``: a trained correction file (or loaded ``ModelFile``) added on the molecule; the
    MM is then built with the settings the model was trained against (charge method, its
    options, pair labelling) unless given here, and checked against them.
    ``charge_method`` / ``pair_order`` / ``charge_options`` / ``refit`` (a bespoke refit
    record): default the model's, else hybridff's defaults (GAFF2 as shipped). ``cache``: the
    template generator's parameter cache (``False`` off).
    """
    from hybridff.io.molecule import load_molecule
    from hybridff.mm.forcefield_files import forcefield_path
    from hybridff.mm.signature import DEFAULT_PAIR_ORDER, trained_build_options
    from hybridff.mm.templates import HybridTemplateGenerator

    if model is not None:
        from hybridff.ml.modelfile import ModelFile, load_model

        model_path = None
        if not isinstance(model, ModelFile):
            model_path = str(Path(model).resolve())
            model = load_model(model)
        trained = trained_build_options(model.metadata.get("mm"), model.metadata.get("mm_refit"))
        trained_method, trained_order = trained.pop("charge_method", None), trained.pop("pair_order")
        trained_refit = trained.pop("refit", None)
        refit = refit if refit is not None else trained_refit
        if trained_method is not None and charge_method in (None, trained_method):
            charge_method = trained_method
            if charge_options is None:
                charge_options = trained
        pair_order = pair_order or trained_order
    charge_method = charge_method or DEFAULT_CHARGE_METHOD
    pair_order = pair_order or DEFAULT_PAIR_ORDER

    if solvent not in SOLVENTS:
        raise UnknownNameError(f"unknown solvent {solvent!r}; known: {', '.join(SOLVENTS)}")
    constraint_map = {None: None, "none": None, "HBonds": app.HBonds, "AllBonds": app.AllBonds,
                      "HAngles": app.HAngles}
    if constraints not in constraint_map:
        raise UnknownNameError(f"unknown constraints {constraints!r}; known: "
                               f"{', '.join(str(k) for k in constraint_map if k)}")
    mol = load_molecule(molecule)  # missing file, unreadable record, NaN coordinates: clear errors
    generator = HybridTemplateGenerator([mol], charge_method=charge_method, forcefield=forcefield,
                                        cache=cache, pair_order=pair_order, refit=refit,
                                        **(charge_options or {}))
    pm = generator.parameterize_molecule(generator.molecules[0])
    topology, positions = ligand_topology(mol, residue_name)
    check_positions(positions, topology, "input molecule")
    files = [str(forcefield_path(forcefield))]
    spec = SOLVENTS[solvent]
    if spec is not None:
        files.append(spec[0])
    ff = app.ForceField(*files)
    ff.registerTemplateGenerator(generator.generator)
    info: dict[str, Any] = {"solute_atoms": topology.getNumAtoms(), "solute_charge": pm.net_charge,
                            "charge_method": pm.charge_method, "smiles": pm.smiles,
                            "mm_signature": pm.signature.to_dict()}
    if spec is None:
        method = "NoCutoff"
    else:
        method = "PME"
        box_nm = float(box_nm)
        if not box_nm > 2 * DEFAULT_CUTOFF_NM:
            raise SimulationError(
                f"box edge {box_nm} nm is not above twice the {DEFAULT_CUTOFF_NM} nm cutoff; "
                f"use --box {2 * DEFAULT_CUTOFF_NM + 0.5:.1f} or more")
        xyz = positions.value_in_unit(unit.nanometer)
        extent = float((xyz.max(axis=0) - xyz.min(axis=0)).max())
        if box_nm < extent + 0.4:
            raise SimulationError(
                f"box edge {box_nm} nm does not hold the molecule (extent {extent:.2f} nm) with "
                f"solvent around it; use a box of at least {extent + 2 * DEFAULT_CUTOFF_NM:.1f} nm")
        if box_nm < extent + 2 * DEFAULT_CUTOFF_NM:
            warnings.warn(
                f"box edge {box_nm} nm is below the molecule's extent ({extent:.2f} nm) plus twice "
                f"the cutoff: the molecule can interact with its periodic image; a box of "
                f"{extent + 2 * DEFAULT_CUTOFF_NM:.1f} nm avoids it", stacklevel=2)
        if ionic_strength_molar < 0:
            raise SimulationError(f"ionic strength {ionic_strength_molar} M must be >= 0")
        modeller = app.Modeller(topology, positions)
        modeller.addSolvent(ff, model=spec[1], boxSize=openmm.Vec3(box_nm, box_nm, box_nm) * unit.nanometer,
                            ionicStrength=ionic_strength_molar * unit.molar, neutralize=True)
        topology, positions = modeller.topology, modeller.positions
        counts: dict[str, int] = {}
        for res in topology.residues():
            counts[res.name] = counts.get(res.name, 0) + 1
        info.update(box_nm=box_nm, ionic_strength_molar=ionic_strength_molar,
                    waters=counts.get("HOH", 0), na=counts.get("NA", 0), cl=counts.get("CL", 0))
    hmass = None if hydrogen_mass_amu is None else hydrogen_mass_amu * unit.amu
    system = build_system(ff, topology, method, constraints=constraint_map[constraints],
                          remove_cmmotion=remove_cmmotion, hydrogen_mass=hmass)
    info["net_charge"] = round(net_charge(system), 6)
    info["constraints"] = "none" if constraint_map[constraints] is None else str(constraints)
    if spec is not None and abs(info["net_charge"]) > 1e-3:
        raise SimulationError(f"the solvated system carries {info['net_charge']:+.4f} e after "
                              "adding ions; this should not happen: report it with the input")
    solute = list(range(pm.mol.GetNumAtoms()))
    prepared = PreparedSystem(system, topology, positions, solute, pm, solvent, info=info)
    if model is not None:
        add_model(prepared, model, backend=ml_backend, precision=ml_precision)
        prepared.model_path = model_path
        prepared.info["ml_model"] = model_path
    return prepared


def add_model(prepared: PreparedSystem, model: Any, backend: str = "torch",
              precision: str = DEFAULT_PRECISION) -> None:
    """Add the ML correction (a model file path or ``ModelFile``) on the solute of ``prepared``,
    its network run in ``precision`` (see :func:`hybridff.ml.backend.add_ml_correction`)."""
    from hybridff.ml.backend import add_ml_correction
    from hybridff.ml.modelfile import ModelFile, load_model

    path = None
    if not isinstance(model, ModelFile):
        path = str(Path(model).resolve())
        model = load_model(model)
    pm = prepared.parameterized
    force = add_ml_correction(
        prepared.system, prepared.topology, model, atoms=prepared.solute_atoms, backend=backend,
        mm_signature=pm.mm_signature(), precision=precision, first=True)
    prepared.model, prepared.model_path = model, path
    prepared.ml_force_group = force.getForceGroup()
    prepared.info.update(ml_backend=backend, ml_precision=precision, ml_model=path,
                         ensemble_size=int(model.metadata.get("ensemble_size", 1)))
