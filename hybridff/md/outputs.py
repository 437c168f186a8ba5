"""The files of a run folder (:data:`OUTPUTS`): checks, the summary, restart files, the System.

Files whose half-written state would mislead (System, integrator, PDB, checkpoint, State,
``run.json``) are written atomically.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import openmm
from openmm import app

from hybridff.exceptions import SimulationError
from hybridff.io.files import atomic_write_bytes, atomic_write_text
from hybridff.ml import DEFAULT_PRECISION

#: Output files of a run folder, by role.
OUTPUTS: dict[str, str] = {
    "log": "log.csv",
    "trajectory": "trajectory.dcd",
    "start": "start.pdb",
    "final": "final.pdb",
    "system": "system.xml",
    "integrator": "integrator.xml",
    "checkpoint": "checkpoint.chk",
    "state": "state.xml",
    "summary": "run.json",
}


def run_files(output_dir: str | os.PathLike) -> list[Path]:
    """The files of a hybridff run (:data:`OUTPUTS`) present in ``output_dir``."""
    out = Path(output_dir)
    return [out / name for name in OUTPUTS.values() if (out / name).exists()]


def check_run_folder(output_dir: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    """Refuse to start a run in a folder that holds another run unless ``overwrite``.

    Returns the earlier run's files (which :func:`run_md` removes, with ``overwrite``, when the
    new run starts writing). A folder without run files (new, empty, other files) is fine.
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise SimulationError(f"output {out} is a file, not a folder; give a folder for the run")
    found = run_files(out)
    if found and not overwrite:
        names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise SimulationError(
            f"output folder {out} already holds a run ({names}); continue it with --resume, "
            "replace it with --overwrite, or choose another output folder")
    return found


def read_run(output_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``run.json`` summary of a run folder, checking the files a resume needs are there."""
    out = Path(output_dir)
    needed = [OUTPUTS[k] for k in ("summary", "system", "integrator", "checkpoint", "start")]
    missing = [n for n in needed if not (out / n).is_file()]
    if missing:
        raise SimulationError(f"cannot resume from {out}: missing {', '.join(missing)}; it must "
                              "be the -o folder of a finished or checkpointed hybridff simulate run")
    try:
        summary = json.loads((out / OUTPUTS["summary"]).read_text())
        summary["options"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SimulationError(f"{out / OUTPUTS['summary']}: not a readable run summary ({exc}); "
                              "the run cannot be resumed: start it again with --overwrite") from exc
    return summary


def write_pdb(path: Path, topology: app.Topology, state: openmm.State) -> None:
    buffer = io.StringIO()
    app.PDBFile.writeFile(topology, state.getPositions(), buffer)
    atomic_write_text(path, buffer.getvalue())


def write_restart_files(out: Path, simulation: app.Simulation) -> None:
    atomic_write_bytes(out / OUTPUTS["checkpoint"], simulation.context.createCheckpoint())
    state = simulation.context.getState(getPositions=True, getVelocities=True, getParameters=True,
                                        getEnergy=True)
    atomic_write_text(out / OUTPUTS["state"], openmm.XmlSerializer.serialize(state))


def load_system_xml(path: str | os.PathLike, model: Any = None, topology: app.Topology | None = None,
                    atoms: list[int] | None = None, backend: str = "torch",
                    precision: str = DEFAULT_PRECISION) -> openmm.System:
    """Deserialize a System XML written by :func:`run_md`.

    A TorchForce in the file is not handed to OpenMM's deserializer: with openmm-torch 1.10 on
    OpenMM 8.6.1 (the verified stack) ``TorchForceProxy::deserialize`` crashes the process
    (segmentation fault in ``SerializationNode::getStringProperty``). It is removed from the
    XML and, when ``model`` (file or ``ModelFile``), the ``topology`` and the ML ``atoms`` are
    given, added again
    with :func:`hybridff.ml.backend.add_ml_correction` in the same force group, with the same
    ``lambda`` default and its network in ``precision`` (the run's: run.json's
    ``ml_precision``, :data:`hybridff.ml.RECORDED_BEFORE_PRECISION` for runs recorded before
    it); without a model that is an error saying so.
    """
    from xml.etree import ElementTree as ET

    path = Path(path)
    if not path.is_file():
        raise SimulationError(f"System file {str(path)!r} does not exist")
    text = path.read_text()
    removed: list[ET.Element] = []
    if 'type="TorchForce"' in text:
        root = ET.fromstring(text)
        forces = root.find("Forces")
        for element in list(forces if forces is not None else []):
            if element.get("type") == "TorchForce":
                forces.remove(element)
                removed.append(element)
        if model is None or atoms is None or topology is None:
            raise SimulationError(
                f"{path} holds an ML correction (TorchForce), which this openmm-torch cannot "
                "read back (its deserializer crashes); pass the model file and the ML atoms "
                "(load_system_xml(path, model=..., topology=..., atoms=...)) to re-create it, or resume with "
                "hybridff simulate --resume, which does that from run.json")
        text = ET.tostring(root, encoding="unicode")
    try:
        system = openmm.XmlSerializer.deserialize(text)
    except Exception as exc:  # OpenMM raises a bare Exception for malformed XML
        raise SimulationError(f"{path}: not a readable OpenMM System XML ({exc}); run the "
                              "simulation again to rewrite it") from exc
    for element in removed:
        from hybridff.ml.backend import add_ml_correction
        from hybridff.ml.modelfile import ModelFile, load_model

        loaded = model if isinstance(model, ModelFile) else load_model(model)
        params = element.find("GlobalParameters")
        names = {p.get("name"): float(p.get("default")) for p in (params if params is not None else [])}
        name, value = next(iter(names.items())) if names else ("lambda_ml", 1.0)
        add_ml_correction(system, topology, loaded, atoms=list(atoms), backend=backend,
                          lambda_ml=value, parameter_name=name, precision=precision,
                          force_group=int(element.get("forceGroup", "0")), first=True)
    return system
