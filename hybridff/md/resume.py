"""Continuing a run from its folder (:func:`resume_md`).

The CSV log and the DCD grow as a run goes; a resume first cuts them back to the checkpoint
it continues from (:func:`trim_log`, :func:`trim_dcd`), so the files continue without gaps
or repeats.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any

import openmm
from openmm import app

from hybridff.exceptions import SimulationError
from hybridff.io.files import atomic_write_text
from hybridff.md.options import MDOptions
from hybridff.md.outputs import OUTPUTS, load_system_xml, read_run, write_pdb, write_restart_files
from hybridff.md.reporters import EnsembleMonitor, Production, Trajectory
from hybridff.md.run import get_platform, set_torch_threads
from hybridff.ml import RECORDED_BEFORE_PRECISION

logger = logging.getLogger(__name__)


def trim_log(path: Path, step: int) -> int:
    """Drop the CSV log's rows after ``step`` and a cut-off last line; return how many."""
    if not path.is_file():
        return 0
    text = path.read_text()
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    if not lines:
        return 0
    n_columns = len(next(csv.reader([lines[0]])))
    keep, dropped = [lines[0]], 0
    for k, line in enumerate(lines[1:], start=1):
        fields = next(csv.reader([line]), [])
        cut = k == len(lines) - 1 and not text.endswith("\n")
        try:
            ok = not cut and len(fields) == n_columns and int(fields[0]) <= step
        except ValueError:
            ok = False
        if ok:
            keep.append(line)
        else:
            dropped += 1
    if dropped:
        atomic_write_text(path, "\n".join(keep) + "\n")
    return dropped


def trim_dcd(path: Path, step: int) -> tuple[int, tuple[int, int] | None]:
    """Cut the DCD trajectory back to its frames up to ``step`` (and whole frames only).

    OpenMM's ``DCDFile`` appends after the frame count in the header, so frames written after
    the checkpoint, or a frame cut off by a stop, would otherwise stay in the middle of the
    file. Returns how many frames (whole or partial) were removed, and the (first step,
    interval) of the frames kept; ``None`` and no file when no frame is kept (an empty file
    of a run stopped before its first frame, or of hybridff 0.x's short runs, included), so
    the resumed run starts the file anew.
    """
    import struct

    if not path.is_file():
        return 0, None
    size = path.stat().st_size
    if size == 0:
        path.unlink()
        return 0, None
    with open(path, "r+b") as handle:
        head = handle.read(104)
        if len(head) < 104 or head[4:8] != b"CORD" or struct.unpack("<i", head[:4])[0] != 84:
            raise SimulationError(
                f"{path}: not a DCD trajectory OpenMM can append to (bad header); move it away "
                "to have the resumed run start a new one")
        n_frames, first, interval = struct.unpack("<3i", head[8:20])
        box = struct.unpack("<i", head[48:52])[0]
        comments = struct.unpack("<i", head[92:96])[0]
        handle.seek(104 + comments)
        n_atoms = struct.unpack("<i", handle.read(4))[0]
        header = 104 + comments + 8
        frame = (56 if box else 0) + 3 * (8 + 4 * n_atoms)
        whole = max(0, (size - header) // frame)
        wanted = (step - first) // interval + 1 if interval > 0 and step >= first else 0
        keep = max(0, min(n_frames, whole, wanted))
        dropped = max(n_frames, whole + (1 if size > header + whole * frame else 0)) - keep
        if keep > 0 and keep == n_frames == whole and size == header + keep * frame:
            return 0, (first, interval)
        if keep > 0:
            handle.truncate(header + keep * frame)
            handle.seek(8)
            handle.write(struct.pack("<i", keep))
            handle.seek(20)
            handle.write(struct.pack("<i", first + max(keep - 1, 0) * interval))
            handle.flush()
            os.fsync(handle.fileno())
    if keep == 0:
        path.unlink()
        return dropped, None
    return dropped, (first, interval)


def resume_md(output_dir: str | os.PathLike, steps: int, platform: str | None = None,
              threads: int | None = None, progress: bool = True,
              disagreement_threshold_kcal: float | None = None) -> dict[str, Any]:
    """Continue the run in ``output_dir`` from its checkpoint for ``steps`` more steps.

    The run keeps its own settings (time step, temperature, report interval, ...); only the
    platform, the thread count and the ensemble-disagreement warning threshold can change.

    Appends to the CSV log and the DCD, then rewrites the final PDB, checkpoint, State and
    ``run.json``. A run stopped between checkpoints (killed, crashed) resumes too: log rows
    and trajectory frames written after its last checkpoint, or cut off, are dropped first
    (with a warning), so the files continue without gaps or repeats. The checkpoint is
    platform specific: resume on the platform that wrote it.
    """
    out = Path(output_dir)
    summary = read_run(out)
    opt_dict = dict(summary["options"])
    opt_dict["steps"] = int(steps)
    if platform is not None:
        opt_dict["platform"] = platform
    if threads is not None:
        opt_dict["threads"] = threads
    if disagreement_threshold_kcal is not None:
        opt_dict["disagreement_threshold_kcal"] = disagreement_threshold_kcal
    options = MDOptions(**opt_dict)
    options.check()
    model_path = summary.get("ml_model")
    solute = list(range(int(summary["system"]["solute_atoms"])))
    topology = app.PDBFile(str(out / OUTPUTS["start"])).topology
    system = load_system_xml(out / OUTPUTS["system"], model=model_path, topology=topology,
                             atoms=solute, backend=summary["system"].get("ml_backend", "torch"),
                             precision=summary["system"].get("ml_precision", RECORDED_BEFORE_PRECISION))
    integrator = openmm.XmlSerializer.deserialize((out / OUTPUTS["integrator"]).read_text())
    plat, properties = get_platform(options.platform, options.threads)
    set_torch_threads(system, options.threads)
    sim = app.Simulation(topology, system, integrator, plat, properties)
    try:
        sim.loadCheckpoint(str(out / OUTPUTS["checkpoint"]))
    except Exception as exc:  # OpenMM: bare Exception for a foreign/corrupt checkpoint
        raise SimulationError(
            f"{out / OUTPUTS['checkpoint']}: cannot be loaded on platform {options.platform} "
            f"({exc}); resume with the platform that wrote it ({summary.get('platform')}), or "
            f"restart from {OUTPUTS['state']} with XmlSerializer") from exc
    periodic = system.usesPeriodicBoundaryConditions()
    dropped_rows = trim_log(out / OUTPUTS["log"], sim.currentStep)
    dropped_frames, grid = trim_dcd(out / OUTPUTS["trajectory"], sim.currentStep)
    first = int(summary.get("first_report_step") or options.report_every)
    if grid is not None and grid != (first, options.report_every):
        raise SimulationError(
            f"{out / OUTPUTS['trajectory']}: its frames start at step {grid[0]}, every {grid[1]} "
            f"steps, but the run reports from step {first} every {options.report_every}: it is "
            "not this run's trajectory; move it away to have the resumed run start a new one")
    if dropped_rows or dropped_frames:
        logger.warning(
            "%s: the run stopped after its last checkpoint (step %d); dropped %d log row(s) and "
            "%d trajectory frame(s) written after it (or cut off by the stop): they are written "
            "again as the run continues", out, sim.currentStep, dropped_rows, dropped_frames)
    monitor = None
    if model_path and (summary.get("system", {}).get("ensemble_size") or 1) > 1 and Path(model_path).is_file():
        from hybridff.ml.modelfile import load_model

        monitor = EnsembleMonitor(load_model(model_path), topology, solute,
                                  options.disagreement_threshold_kcal)
    trajectory = Trajectory(out / OUTPUTS["trajectory"], topology, options.timestep_fs, first,
                             options.report_every, periodic, append=grid is not None)
    first_step = sim.currentStep
    production = Production(sim, out, options, periodic, summary.get("ml_force_group"), monitor,
                             append=True, progress=progress, trajectory=trajectory)
    speed = production.run(options.steps)
    write_pdb(out / OUTPUTS["final"], topology, sim.context.getState(getPositions=True,
                                                                      enforcePeriodicBox=periodic))
    write_restart_files(out, sim)
    summary.setdefault("resumed", []).append({"from_step": first_step, **speed})
    summary["total_steps"] = sim.currentStep
    summary["status"] = "finished"
    atomic_write_text(out / OUTPUTS["summary"], json.dumps(summary, indent=1, default=str) + "\n")
    return summary
