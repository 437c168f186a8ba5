"""Wrap a trained correction as an OpenMM Force: the one place that knows how.

Backends, by name:

- ``"torch"`` (default): ``openmmtorch.TorchForce`` running a TorchScript wrapper that
  picks the ML atoms out of the full System's positions. Runs inside OpenMM's C++ loop; the
  symmetry-function models return hand-derived forces (:mod:`hybridff.ml.analytic`), other
  architectures their energy, whose gradient TorchForce takes.
- ``"python"``: ``openmm.PythonForce`` applied to the ML atoms only (``setParticles``),
  calling the same TorchScript model from Python. Slower; useful where openmm-torch is
  missing, and a cross-check of the first (it always takes forces by autograd).

Both expose a global parameter (default ``lambda_ml``) that scales the correction, put the
Force in its own force group, and turn on periodic boundary conditions when the System is
periodic. Upstream openmm-torch plans to replace TorchForce with a Python-side class; a new
backend is one more entry in :data:`BACKENDS` (or, from another package, an entry point of
the ``hybridff.ml_backends`` group).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import openmm
import torch
from openmm import app, unit

from hybridff.elements import SYMBOL
from hybridff.exceptions import ModelCompatibilityError
from hybridff.ml import DEFAULT_PRECISION
from hybridff.ml.analytic import analytic_forces
from hybridff.ml.model import inference_module
from hybridff.ml.modelfile import ModelFile, load_model
from hybridff.ml.region import (  # noqa: F401 - WATER_RESIDUES: its old import path
    WATER_RESIDUES,
    _atom_text,
    model_molecule,
    select_ml_atoms,
)
from hybridff.mm.signature import LEGACY_KEYS, MMSignature, check_trained_against
from hybridff.registry import Registry

logger = logging.getLogger(__name__)

DEFAULT_PARAMETER = "lambda_ml"


def check_compatibility(
    model: ModelFile,
    topology: app.Topology,
    indices: Sequence[int],
    mm_signature: MMSignature | dict[str, Any] | None = None,
    box_vectors: Any = None,
) -> list[int]:
    """Species indices of the selected atoms; raise :class:`ModelCompatibilityError` on a misfit.

    Checks: the model is a correction (not ML-only); every selected element is covered; the
    System's MM signature is the one the model was trained against
    (:func:`hybridff.mm.signature.check_trained_against`); the model cutoff fits in the
    periodic box.
    """
    if model.metadata.get("kind", "correction") != "correction":
        raise ModelCompatibilityError(
            f"this is a {model.metadata['kind']!r} model (trained on QM itself, not on QM - MM): "
            "adding it to an MM System would count the physics twice; use a model trained "
            "with 'hybridff train' without --ml-only"
        )
    elements = model.elements
    atom_list = list(topology.atoms())
    species = []
    for i in indices:
        atom = atom_list[i]
        z = atom.element.atomic_number if atom.element is not None else 0
        if z not in elements:
            covered = ", ".join(SYMBOL.get(e, str(e)) for e in elements)
            sym = atom.element.symbol if atom.element is not None else "no element"
            raise ModelCompatibilityError(
                f"{_atom_text(atom)}: element {sym} is not covered by the ML model "
                f"(trained on {covered}); train a model that includes it or leave the atom "
                "out of the ML region"
            )
        species.append(elements.index(z))
    trained = model.metadata.get("mm") or {}
    if isinstance(mm_signature, MMSignature):
        check_trained_against(trained, mm_signature)
    elif isinstance(mm_signature, dict):  # a partial description given by hand
        for key, value in mm_signature.items():
            stored = trained.get(key, trained.get(LEGACY_KEYS.get(key, key)))
            if stored is not None and value is not None and stored != value:
                raise ModelCompatibilityError(
                    f"the ML model was trained against MM {key}={stored!r}, but this System "
                    f"uses {key}={value!r}; a delta-learned correction only fits the MM it was "
                    "trained on: retrain it (hybridff train) for this force field / charges")
    if box_vectors is not None:
        box = np.array([[float(c) for c in v.value_in_unit(unit.nanometer)] for v in box_vectors])
        heights = np.array([box[0, 0], box[1, 1], box[2, 2]])
        cutoff = float(model.metadata["cutoff_nm"])
        if cutoff >= 0.5 * heights.min():
            raise ModelCompatibilityError(
                f"ML cutoff {cutoff} nm is not below half the smallest box height "
                f"({heights.min():.3f} nm); use a larger box"
            )
    return species


def mm_signature_of(source: Any, model: ModelFile | None = None
                    ) -> MMSignature | dict[str, Any] | None:
    """The MM description to check a model against.

    ``source``: an :class:`MMSignature`, a ParameterizedMolecule, a HybridTemplateGenerator
    (the signature it gave the model's molecule), a dict (a full signature, or a partial
    description checked key by key), or None: then the template generators alive in this
    process are asked for the model's molecule; when none parameterized it, a warning says the
    MM could not be checked.
    """
    from hybridff.mm.templates import HybridTemplateGenerator, live_signatures

    molecule = model_molecule(model) if model is not None else None
    smiles = molecule[0] if molecule is not None else None
    if isinstance(source, MMSignature):
        return source
    if isinstance(source, dict):
        return MMSignature.from_dict(source) if "schema" in source else source
    if hasattr(source, "mm_signature"):
        return source.mm_signature()
    if isinstance(source, HybridTemplateGenerator) or source is None:
        found = (source.signatures(smiles) if source is not None else live_signatures(smiles)
                 ) if smiles is not None else []
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ModelCompatibilityError(
                f"{smiles} was parameterized with {len(found)} different MM settings in this "
                f"process ({'; '.join(s.describe() for s in found)}); pass mm_signature= (the "
                "generator or ParameterizedMolecule the System was built with)")
        if source is not None:
            raise ModelCompatibilityError(
                f"the template generator has not parameterized the model's molecule {smiles}; "
                "build the System with it first")
        if model is not None and model.metadata.get("mm"):
            logger.warning(
                "the MM of this System could not be checked against the one the ML model was "
                "trained on (%s): it was not built by a hybridff template generator in this "
                "process; pass mm_signature= (the ParameterizedMolecule or generator it was "
                "built with)", smiles or "molecule not recorded")
        return None
    raise ModelCompatibilityError(
        f"mm_signature must be an MMSignature, a ParameterizedMolecule, a HybridTemplateGenerator "
        f"or a dict, not {type(source).__name__}"
    )


def _free_force_group(system: openmm.System) -> int:
    used = {f.getForceGroup() for f in system.getForces()}
    for group in range(32):
        if group not in used:
            return group
    raise ModelCompatibilityError("all 32 OpenMM force groups are in use; pass force_group=")


# --------------------------------------------------------------------------- backends


class _Correction(torch.nn.Module):
    """The model with the ML atoms' indices and species, picked out of all positions."""

    def __init__(self, model: torch.nn.Module, indices: torch.Tensor, species: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("indices", indices)
        self.register_buffer("species", species)


class VacuumCorrection(_Correction):
    """TorchForce convention without a box: (all positions, lambda) -> energy."""

    def forward(self, positions: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        pos = positions.index_select(0, self.indices)
        return scale * self.model(pos, self.species, None)


class PeriodicCorrection(_Correction):
    """TorchForce convention with a box: (all positions, box vectors, lambda) -> energy."""

    def forward(
        self, positions: torch.Tensor, boxvectors: torch.Tensor, scale: torch.Tensor
    ) -> torch.Tensor:
        pos = positions.index_select(0, self.indices)
        return scale * self.model(pos, self.species, boxvectors)


class _ForcesCorrection(torch.nn.Module):
    """A model that returns its own forces (:class:`~hybridff.ml.analytic.AnalyticForces`),
    with the ML atoms' indices."""

    def __init__(self, model: torch.nn.Module, indices: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("indices", indices)

    def scatter(self, positions: torch.Tensor, forces: torch.Tensor, scale: torch.Tensor
                ) -> torch.Tensor:
        """The ML atoms' forces placed in a (all atoms, 3) array, scaled."""
        return torch.zeros_like(positions).index_copy(
            0, self.indices, forces * scale)


class VacuumForcesCorrection(_ForcesCorrection):
    """TorchForce convention with forces output, no box: (all positions, lambda) ->
    (energy, forces of all atoms)."""

    def forward(self, positions: torch.Tensor, scale: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        pos = positions.detach()
        energy, forces = self.model(pos.index_select(0, self.indices), None)
        # energy * scale keeps d(energy)/d(lambda) for addEnergyParameterDerivative
        return energy * scale, self.scatter(pos, forces, scale)


class PeriodicForcesCorrection(_ForcesCorrection):
    """TorchForce convention with forces output and a box: (all positions, box vectors,
    lambda) -> (energy, forces of all atoms)."""

    def forward(self, positions: torch.Tensor, boxvectors: torch.Tensor, scale: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        pos = positions.detach()
        energy, forces = self.model(pos.index_select(0, self.indices), boxvectors)
        return energy * scale, self.scatter(pos, forces, scale)


def torch_force_module(
    module: Any, indices: list[int], species: list[int], periodic: bool
) -> tuple[torch.jit.ScriptModule, bool]:
    """The scripted wrapper TorchForce runs around the model, and whether it returns forces.

    The symmetry-function models run with hand-derived forces
    (:class:`~hybridff.ml.analytic.AnalyticForces`: the same energies and forces to
    rounding, about 3x faster per call than autograd); other architectures return their
    energy and TorchForce takes its gradient."""
    index_tensor = torch.tensor(indices, dtype=torch.long)
    analytic = analytic_forces(module, species)
    if analytic is not None:
        cls = PeriodicForcesCorrection if periodic else VacuumForcesCorrection
        wrapper = cls(analytic, index_tensor)
    else:
        cls = PeriodicCorrection if periodic else VacuumCorrection
        wrapper = cls(module, index_tensor, torch.tensor(species, dtype=torch.long))
    # not frozen here: openmm-torch freezes the module itself after moving it to its device
    # (a module frozen before would keep its constants on the CPU under CUDA)
    return torch.jit.script(wrapper).eval(), analytic is not None


class _SimtkNotice(logging.Filter):
    """Drops the one log line ``simtk.openmm`` writes when imported (openmm-torch 1.10 imports
    it; the deprecation is OpenMM's own, not the user's to act on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "importing 'simtk.openmm' is deprecated" not in record.getMessage()


def _import_openmmtorch() -> Any:
    """``import openmmtorch`` without the simtk deprecation line it makes the root logger print."""
    root = logging.getLogger()
    notice = _SimtkNotice()
    root.addFilter(notice)
    try:
        import openmmtorch
    finally:
        root.removeFilter(notice)
    return openmmtorch


def _make_torch_force(
    module: Any, indices: list[int], species: list[int], periodic: bool, parameter: str,
    lambda_ml: float,
) -> openmm.Force:
    try:
        openmmtorch = _import_openmmtorch()
    except ImportError as exc:
        from hybridff.exceptions import OptionalDependencyError

        raise OptionalDependencyError(
            "the 'torch' ML backend needs openmm-torch: pip install acellera-openmmtorch-cpu==1.10 "
            "(or acellera-openmmtorch-cu12 on GPU machines); or use backend='python'"
        ) from exc
    script, outputs_forces = torch_force_module(module, indices, species, periodic)
    force = openmmtorch.TorchForce(script)
    force.setOutputsForces(outputs_forces)
    force.addGlobalParameter(parameter, float(lambda_ml))
    force.setUsesPeriodicBoundaryConditions(periodic)
    return force


class TorchModelComputation:
    """The callable a ``PythonForce`` runs: TorchScript model on the ML atoms' positions.

    Picklable (the model travels as TorchScript bytes), so Systems serialize with it.
    """

    def __init__(self, module: Any, species: list[int], periodic: bool, parameter: str) -> None:
        self.module = module
        self.species = torch.tensor(species, dtype=torch.long)
        self.periodic = periodic
        self.parameter = parameter

    def __getstate__(self) -> dict[str, Any]:
        buffer = io.BytesIO()
        torch.jit.save(self.module, buffer)
        return {
            "module": buffer.getvalue(),
            "species": self.species.tolist(),
            "periodic": self.periodic,
            "parameter": self.parameter,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        module = torch.jit.load(io.BytesIO(state["module"]), map_location="cpu")
        self.__init__(module, state["species"], state["periodic"], state["parameter"])

    def __call__(self, state: openmm.State) -> tuple[float, np.ndarray]:
        pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        positions = torch.tensor(np.asarray(pos), dtype=torch.float64, requires_grad=True)
        box = None
        if self.periodic:
            vectors = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
            box = torch.tensor(np.asarray(vectors), dtype=torch.float64)
        scale = float(state.getParameters()[self.parameter])
        energy = self.module(positions, self.species, box)
        (grad,) = torch.autograd.grad(energy, positions)
        forces = -scale * grad.detach().numpy().astype(np.float64)
        return scale * float(energy.detach()), forces


def _make_python_force(
    module: Any, indices: list[int], species: list[int], periodic: bool, parameter: str,
    lambda_ml: float,
) -> openmm.Force:
    if not hasattr(openmm, "PythonForce"):
        raise ModelCompatibilityError(
            f"openmm {openmm.__version__} has no PythonForce (needs OpenMM >= 8.3); use "
            "backend='torch'"
        )
    computation = TorchModelComputation(module, species, periodic, parameter)
    force = openmm.PythonForce(computation, {parameter: float(lambda_ml)})
    force.setParticles(list(indices))
    force.setUsesPeriodicBoundaryConditions(periodic)
    return force


ForceFactory = Callable[[Any, list[int], list[int], bool, str, float], openmm.Force]

#: name -> factory(module, indices, species, periodic, parameter_name, lambda_ml) -> Force;
#: other packages add theirs through the ``hybridff.ml_backends`` entry-point group
BACKENDS: Registry[ForceFactory] = Registry("ML backend", "hybridff.ml_backends", {
    "torch": _make_torch_force,
    "python": _make_python_force,
})


def get_backend(name: str) -> ForceFactory:
    """The force factory registered under ``name``; unknown names list the known ones."""
    return BACKENDS[name]


# --------------------------------------------------------------------------- public entry


def add_ml_correction(
    system: openmm.System,
    topology: app.Topology,
    model: str | os.PathLike | ModelFile,
    atoms: Any = None,
    backend: str = "torch",
    lambda_ml: float = 1.0,
    force_group: int | None = None,
    mm_signature: Any = None,
    parameter_name: str = DEFAULT_PARAMETER,
    precision: str = DEFAULT_PRECISION,
    first: bool = False,
) -> openmm.Force:
    """Add the trained ML correction to ``system`` and return the new Force.

    ``model``: a model file path or a loaded :class:`ModelFile`. ``atoms``: the ML region
    (default: the residue that is the model's molecule; see :func:`select_ml_atoms`).
    ``mm_signature``: the System's MM identity (see :func:`mm_signature_of`; by default the
    signature the template generator gave the molecule), checked against the one the model
    was trained on.
    ``force_group``: default the lowest group no other Force uses.
    ``precision``: ``"single"`` (default; float32 network, about 1.3-2x faster on CPU, forces
    within ~1e-6 of the float64 model's) or ``"double"`` (the stored float64 model).
    ``first``: put the correction first in the System's Force list, so OpenMM computes it
    before the MM forces. On the CPU platform that is faster (a protein-ligand System ran
    3-6 % faster: the correction then runs before the MM sweep the caches), but the
    System's other Forces are replaced by copies, so Force objects taken from the System
    before the call must be taken again. ``hybridff simulate`` and ``evaluate`` use it.
    """
    factory = get_backend(backend)
    if not isinstance(model, ModelFile):
        model = load_model(model)
    if system.getNumParticles() != topology.getNumAtoms():
        raise ModelCompatibilityError(
            f"System has {system.getNumParticles()} particles but the topology "
            f"{topology.getNumAtoms()} atoms; pass the topology the System was built from"
        )
    indices = select_ml_atoms(topology, atoms, model_molecule(model))
    periodic = system.usesPeriodicBoundaryConditions()
    box = system.getDefaultPeriodicBoxVectors() if periodic else None
    species = check_compatibility(model, topology, indices, mm_signature_of(mm_signature, model),
                                  box)
    if force_group is None:
        force_group = _free_force_group(system)
    elif not 0 <= int(force_group) <= 31:
        raise ModelCompatibilityError(f"force_group must be 0..31, got {force_group}")
    module = inference_module(model.module, precision)  # members' networks batched
    force = factory(module, indices, species, periodic, parameter_name, lambda_ml)
    force.setForceGroup(int(force_group))
    force.setName(f"hybridff ML correction ({backend}, {precision})")
    if first:
        _add_first(system, force)
    else:
        system.addForce(force)
    return force


def _copyable(force: openmm.Force) -> bool:
    """Whether ``force`` is one of OpenMM's own Force classes, copied exactly by
    ``XmlSerializer.clone`` (plugin forces show as the bare base class)."""
    kind = type(force)
    return (kind is not openmm.Force and kind.__module__ == openmm.Force.__module__
            and kind.__name__ != "PythonForce")


def _add_first(system: openmm.System, force: openmm.Force) -> None:
    """Add ``force`` as the System's first Force: the others are replaced by copies of
    themselves added after it (groups and names kept). Only OpenMM's own Force classes are
    copied: a System holding another kind (a plugin's, which Python sees as a bare ``Force``,
    such as a TorchForce; a PythonForce) gets ``force`` last instead."""
    existing = list(system.getForces())
    if not all(_copyable(f) for f in existing):
        logger.debug("the System holds a Force that is not copied: the correction is added last")
        system.addForce(force)
        return
    copies = [openmm.XmlSerializer.clone(f) for f in existing]
    for index in reversed(range(system.getNumForces())):
        system.removeForce(index)
    system.addForce(force)
    for copy in copies:
        system.addForce(copy)
