"""The label -> train -> evaluate steps behind the CLI, as plain functions.

- :func:`label`: sample conformations under MM (MD, torsion-restrained MD or a mix; seeded),
  compute QM energies and forces (in-process, or one task per frame on a Dask cluster),
  append them to an extxyz file frame by frame (an interrupted run resumes with the samples
  the file lacks).
- :func:`train`: QM - MM residuals of a label file -> trained model file with metadata.
- :func:`evaluate`: MM alone, hybrid (MM + correction, evaluated in OpenMM) and optionally an
  ML-only model against QM on a label file: the report; :func:`evaluate_frames`: the report
  with the per-frame numbers behind it.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openmm

from hybridff import units
from hybridff.exceptions import ModelCompatibilityError
from hybridff.io.frames import file_sha256, read_extxyz
from hybridff.labels.options import LabelOptions
from hybridff.ml import DEFAULT_PRECISION
from hybridff.mm.energies import mm_energies_forces
from hybridff.mm.signature import trained_build_options
from hybridff.training.label_units import check_label_units
from hybridff.training.residuals import MMSetup, build_mm

logger = logging.getLogger(__name__)

def _progress(total: int, initial: int, desc: str, enabled: bool) -> Any:
    from hybridff.cluster import progress_bar

    return progress_bar(total, initial, desc, "frame", enabled)


def label(molecule: str | os.PathLike, output: str | os.PathLike, n_frames: int,
          method: Any = "xtb", *args: Any, options: LabelOptions | None = None,
          **kwargs: Any) -> int:
    """Make ``output`` hold ``n_frames`` labelled frames; returns how many were added.

    The run's options are a :class:`~hybridff.labels.options.LabelOptions` (``options``),
    or its fields given as keywords (``seed=``, ``sampler=``, ``workers=``, ...; or
    positionally after ``method``, in the fields' order, as before); the other keywords are
    the QM engine's options (``engine_options``).

    ``sampler``: a name of :data:`hybridff.labels.samplers.SAMPLERS`; ``None`` continues an existing
    file with the sampler recorded in its frames and starts a new file with
    :data:`hybridff.labels.samplers.DEFAULT_SAMPLER`. ``sampler_options``: the sampler's own options,
    checked by :func:`~hybridff.labels.samplers.sample_conformations`; continuing a ``mixed`` file
    with ``mixed``, its recorded ``torsion_fraction`` unless one is given here.
    All ``n_frames`` frames are sampled from the seed; the samples the file already holds
    (known by their index, ``frame``) are skipped, with a warning when they are not the frames
    these settings give, and so are samples whose QM failed before (recorded in
    ``OUTPUT.failed.jsonl``) unless ``retry_failed``.

    ``method``: a QM method name (:data:`hybridff.labels.qm.ENGINES`, built with ``engine_options``)
    or a :class:`~hybridff.labels.qm.QMEngine` object. The QM runs in this process, frame after
    frame, unless ``workers`` (a local Dask cluster of that many processes), ``scheduler``
    (the address of a running Dask scheduler) or ``client`` (a ``distributed.Client``) is
    given: then one task per frame (:mod:`hybridff.labels.distributed`), written as each
    completes; the file ends in sample order either way. ``threads``: OpenMP/BLAS threads of
    each QM calculation (``None``: as the environment says).
    """
    from hybridff.cluster import ticking
    from hybridff.io.molecule import formal_charge
    from hybridff.labels.distributed import NO_WORKERS_TIMEOUT_S, log_worker_counts, run_tasks
    from hybridff.labels.plan import frame_settings, log_nothing_to_do, plan_labels, qm_info
    from hybridff.labels.qm import QMEngine, get_engine
    from hybridff.labels.samplers import check_sampler, sample_conformations
    from hybridff.labels.store import LabelStore
    from hybridff.labels.tasks import FrameTask

    opts, engine_options = LabelOptions.from_call(args, options, kwargs)
    check_sampler(opts.sampler)
    # fail early on a missing QM package or a bad option
    engine = method if isinstance(method, QMEngine) else get_engine(method, **engine_options)
    distributed = opts.distributed
    mm = build_mm(molecule, charge_method=opts.charge_method)
    output = Path(output)
    with LabelStore(output, mm.numbers, bonds=mm.bonds) as store:
        plan = plan_labels(store, n_frames, opts.sampler, opts.sampler_options, opts.retry_failed)
        missing = plan.missing
        if not missing:
            log_nothing_to_do(store, n_frames)
            return 0
        sampled = sample_conformations(plan.sampler, mm.system, mm.positions, n_frames,
                                       mol=mm.parameterized.mol, temperature=opts.temperature,
                                       seed=opts.seed, **plan.options)
        settings = frame_settings(store, plan, opts.seed, opts.temperature, sampled)
        charge = formal_charge(mm.parameterized.mol)
        level = qm_info(engine)
        # serially the engine object is reused; on a cluster each worker builds its own
        spec = method if distributed and isinstance(method, str) else engine
        tasks = [FrameTask(k, mm.numbers, sampled.positions[k], charge, spec,
                           engine_options if isinstance(spec, str) else {}, opts.threads)
                 for k in missing]
        bar = _progress(n_frames, n_frames - len(missing), f"{engine.name} labels",
                        opts.progress)
        outcomes = []
        added = 0
        try:
            for outcome in ticking(run_tasks(
                    tasks, scheduler=opts.scheduler, workers=opts.workers, client=opts.client,
                    no_workers_timeout=opts.no_workers_timeout or NO_WORKERS_TIMEOUT_S), bar):
                k = outcome.index
                info = {**settings, **sampled.info[k], **level}
                if store.add(outcome, sampled.positions[k], info) and outcome.ok:
                    added += 1
                outcomes.append(outcome)
        finally:
            if distributed:
                log_worker_counts(outcomes)
        failed = [o for o in outcomes if not o.ok]
        if failed:
            logger.warning("%s: %d of %d frames failed (recorded in %s; the run went on), "
                           "e.g. frame %d: %s", output, len(failed), len(outcomes),
                           store.failed_path, failed[0].index, failed[0].error)
    return added


def train(
    molecule: str | os.PathLike,
    data: str | os.PathLike,
    output: str | os.PathLike,
    config: Any = None,
    charge_method: str | None = None,
    ml_only: bool = False,
    pair_order: str | None = None,
    charge_options: dict[str, Any] | None = None,
    cache: Any = None,
    refit: bool = True,
    refit_options: Any = None,
    dipoles: Any = None,
) -> dict[str, Any]:
    """Train a correction (or, with ``ml_only``, a model of QM itself); returns its metadata.

    ``dipoles`` (a :class:`~hybridff.training.dipoles.DipoleConfig`): also train the
    geometry-dependent charge model on the frames' QM dipoles (the correction's train /
    validation split) and store it inside the model file (:mod:`hybridff.ml.dipole`).

    ``refit`` (default): first refit the molecule's bonded terms to the training frames (the
    bespoke MM, :mod:`hybridff.mm.bespoke`; validation frames left out), then train the
    correction on QM minus that MM; ``False``: on QM minus GAFF2 as shipped. The model
    records the MM signature it was trained against (``mm``), the refit (``mm_refit``) and its
    molecule (``molecule``: canonical SMILES and graph), all checked wherever it is used.
    """
    from hybridff.ml.modelfile import build_metadata, save_model
    from hybridff.training.trainer import TrainConfig, split_indices, train_correction

    config = config or TrainConfig()
    options = dict(charge_method=charge_method, pair_order=pair_order, cache=cache,
                   **(charge_options or {}))
    mm = build_mm(molecule, **options)
    frames = read_extxyz(data, mm.numbers, bonds=mm.bonds)
    check_label_units(mm.system, frames, str(data))  # Hartree, kcal/mol, ... read as eV
    record = None
    if refit and not ml_only:
        fit_index, val_index = split_indices(len(frames), config.val_fraction, config.seed)
        record, mm = _bespoke_mm(molecule, options, mm, frames, fit_index, val_index,
                                 refit_options)
    e_mm, f_mm = mm_energies_forces(mm.system, frames.positions)
    if ml_only:
        targets_e, targets_f = frames.energies, frames.forces
    else:
        targets_e, targets_f = frames.energies - e_mm, frames.forces - f_mm
    result = train_correction(mm.numbers, frames.positions, targets_e, targets_f, config)
    # the level of theory, as plain JSON values (extxyz readers give numpy scalars)
    qm = {k[3:]: v.item() if isinstance(v, np.generic) else v
          for k, v in (frames.info[0] if frames.info else {}).items() if k.startswith("qm_")}
    metadata = build_metadata(
        result.model, result.spec,
        kind="ml_only" if ml_only else "correction",
        mm=mm.signature.to_dict(),
        mm_refit=record,
        molecule=mm.molecule_record(),
        qm=qm,
        training_set=str(Path(data).name),
        training_set_sha256=file_sha256(data),
        n_frames=len(frames),
        train_frames=[int(i) for i in result.train_index],
        validation_frames=[int(i) for i in result.val_index],
        metrics={k: v for k, v in result.metrics.items()},
        train_config=result.config,
    )
    extra_files = None
    if dipoles is not None:
        from hybridff.ml.dipole import EMBEDDED_NAME, dipole_archive
        from hybridff.training.dipoles import train_dipoles

        dipole_model, dipole_meta = train_dipoles(mm, frames, data, dipoles,
                                                  (result.train_index, result.val_index))
        metadata["dipole_model"] = {"metrics": dipole_meta["metrics"],
                                    "total_charge": dipole_meta["total_charge"]}
        extra_files = {EMBEDDED_NAME: dipole_archive(dipole_model, dipole_meta)}
    save_model(output, result.model, metadata, extra_files=extra_files)
    return metadata


#: fewer training frames than this and the bonded terms are not refitted (a refit from a few
#: frames overfits: from 6 B3LYP/STO-3G frames of methanol its held-out force error was 5x
#: GAFF2's and MD blew up)
MIN_REFIT_FRAMES = 20


def _bespoke_mm(molecule: Any, options: dict[str, Any], gaff2: MMSetup, frames: Any,
                fit_index: np.ndarray, val_index: np.ndarray, refit_options: Any
                ) -> tuple[dict[str, Any] | None, MMSetup]:
    """(refit record, MM) for training: the bespoke MM, refitted on the training frames, if
    there are enough of them and it beats GAFF2 on the validation frames; else GAFF2."""
    from hybridff.mm.bespoke import fit_bespoke
    from hybridff.training.trainer import error_metrics

    if len(fit_index) < MIN_REFIT_FRAMES:
        logger.warning("%d training frames are too few to refit the bonded terms (at least %d): "
                       "the correction is trained on GAFF2 as shipped; label more frames for a "
                       "bespoke MM", len(fit_index), MIN_REFIT_FRAMES)
        return None, gaff2
    fit = frames.subset(fit_index)
    record = fit_bespoke(gaff2, fit.positions, fit.energies, fit.forces, refit_options)
    bespoke = build_mm(molecule, refit=record, **options)
    if len(val_index) == 0:
        logger.warning("no validation frames: the bespoke MM is used without a check against "
                       "GAFF2 on frames it was not fitted to")
        return record, bespoke
    val = frames.subset(val_index)
    scores = {}
    for name, mm in (("GAFF2", gaff2), ("bespoke", bespoke)):
        e, f = mm_energies_forces(mm.system, val.positions)
        scores[name] = error_metrics(e, val.energies, f, val.forces)["force_rmse_kcal_mol_A"]
    record["metrics"]["validation_force_rmse_gaff2_kcal_mol_A"] = scores["GAFF2"]
    record["metrics"]["validation_force_rmse_refit_kcal_mol_A"] = scores["bespoke"]
    if scores["bespoke"] >= scores["GAFF2"]:
        logger.warning("the refitted bonded terms do worse than GAFF2 on the %d validation frames "
                       "(force RMSE %.2f vs %.2f kcal/mol/A): the correction is trained on GAFF2 "
                       "as shipped; label more (or more varied) frames for a bespoke MM",
                       len(val_index), scores["bespoke"], scores["GAFF2"])
        return None, gaff2
    return record, bespoke


def _train_ml_only_like(
    molecule: str | os.PathLike, data: str | os.PathLike, metadata: dict[str, Any], out: Path
) -> Path:
    """Train an ML-only model on ``data`` into ``out`` with the hybrid model's own training
    settings."""
    from hybridff.training.trainer import TrainConfig

    settings = dict(metadata.get("train_config") or {})
    if "hidden" in settings:
        settings["hidden"] = tuple(settings["hidden"])
    settings["progress"] = False
    known = TrainConfig.__dataclass_fields__
    config = TrainConfig(**{k: v for k, v in settings.items() if k in known})
    options = trained_build_options(metadata.get("mm"), metadata.get("mm_refit"))
    options.pop("refit", None)  # an ML-only model subtracts no MM
    train(molecule, data, out, config, charge_method=options.pop("charge_method", None),
          pair_order=options.pop("pair_order"), charge_options=options, ml_only=True)
    return out


def _hybrid_system(mm: MMSetup, model: Any, precision: str = DEFAULT_PRECISION
                   ) -> tuple[openmm.System, int]:
    from hybridff.ml.backend import add_ml_correction

    system = copy.deepcopy(mm.system)
    force = add_ml_correction(system, mm.topology, model, mm_signature=mm.signature,
                              precision=precision, first=True)  # as simulate adds it
    return system, force.getForceGroup()


@dataclass
class EvaluatedFrames:
    """The per-frame numbers behind an :func:`evaluate` report, and what computed them.

    ``energies`` / ``forces``: method name (``qm``, ``mm`` (GAFF2), ``mm_refit`` (the
    bespoke MM, when the model has one), ``hybrid``, ``ml_only`` when given) -> (F,) kJ/mol /
    (F, N, 3) kJ/mol/nm; ``frame_index``: each frame's index in the data file; ``positions``
    (F, N, 3) nm; ``mm``: the MM under the correction; ``gaff2``: GAFF2 as shipped.
    """

    frame_index: np.ndarray
    positions: np.ndarray
    energies: dict[str, np.ndarray]
    forces: dict[str, np.ndarray]
    mm: MMSetup
    hybrid_system: openmm.System
    model: Any = None  # the correction's ModelFile
    ml_only_model: Any = None  # the ML-only ModelFile, when one was compared
    gaff2: Any = None  # MMSetup of GAFF2 as shipped (``mm`` itself without a refit)
    #: dipoles (F, 3) e*nm about the centre of mass: ``qm``, ``fixed_charges`` and
    #: ``dipole_model`` (q(X)) when there is one, and their ``frame_index``; None when the
    #: frames carry no dipole
    dipoles: dict[str, np.ndarray] | None = None
    #: the report :func:`evaluate` returns
    report: dict[str, Any] = field(default_factory=dict)


def evaluate(molecule: str | os.PathLike, data: str | os.PathLike, model_path: str | os.PathLike,
             ml_only_path: str | os.PathLike | None = None, frames_subset: str = "all",
             return_frames: bool = False, cache: Any = None,
             dipole_model_path: str | os.PathLike | None = None,
             precision: str = DEFAULT_PRECISION) -> dict[str, Any]:
    """The report of :func:`evaluate_frames` (same arguments): errors against QM per method.

    ``return_frames`` is deprecated (use :func:`evaluate_frames`): it returns
    ``(report, EvaluatedFrames)`` instead.
    """
    evaluated = evaluate_frames(molecule, data, model_path, ml_only_path, frames_subset, cache,
                                dipole_model_path, precision)
    if return_frames:
        warnings.warn("evaluate(return_frames=True) is deprecated: evaluate_frames(...) returns "
                      "the frames with the report as .report", DeprecationWarning, stacklevel=2)
        return evaluated.report, evaluated  # type: ignore[return-value]
    return evaluated.report


def evaluate_frames(
    molecule: str | os.PathLike,
    data: str | os.PathLike,
    model_path: str | os.PathLike,
    ml_only_path: str | os.PathLike | None = None,
    frames_subset: str = "all",
    cache: Any = None,
    dipole_model_path: str | os.PathLike | None = None,
    precision: str = DEFAULT_PRECISION,
) -> EvaluatedFrames:
    """Errors vs QM of MM alone, the hybrid and (optionally) an ML-only model (``.report``),
    with the per-frame energies and forces they come from (for plots); with QM dipoles in the
    frames also the dipole errors of the fixed MM charges and of the geometry-dependent
    charges (``dipole_model_path``, default the dipole model inside ``model_path`` when it
    holds one).

    ``ml_only_path``: an ML-only model file, or a label file (.xyz) to train one on with the
    hybrid model's own training settings first (in a temporary folder, removed afterwards;
    the model is ``.ml_only_model``; to keep one, train it with ``hybridff train --ml-only``).
    ``precision``: the correction's floating point inside OpenMM, as ``simulate`` runs it
    (``ml_in_openmm_matches_model_kj_mol`` then compares it with the stored float64 model).
    ``frames_subset``: ``all``, or ``held-out`` (the model's validation frames, when ``data``
    is its training file, recognised by SHA256).
    """
    import torch

    from hybridff.ml.model import energies_and_forces
    from hybridff.ml.modelfile import load_model
    from hybridff.training.trainer import error_metrics, species_of

    model = load_model(model_path)
    options = trained_build_options(model.metadata.get("mm"), model.metadata.get("mm_refit"))
    refit = options.pop("refit", None)
    charge_method, pair_order = options.pop("charge_method", None), options.pop("pair_order")
    mm = build_mm(molecule, charge_method=charge_method, pair_order=pair_order, cache=cache,
                  refit=refit, **options)
    gaff2 = mm if refit is None else build_mm(molecule, charge_method=charge_method,
                                              pair_order=pair_order, cache=cache, **options)
    frames = read_extxyz(data, mm.numbers, bonds=mm.bonds)
    check_label_units(gaff2.system, frames, str(data))
    report: dict[str, Any] = {"data": str(data), "model": str(model_path), "frames": "all",
                              "ml_precision": precision}
    frame_index = np.arange(len(frames))
    if frames_subset == "held-out":
        if model.metadata.get("training_set_sha256") != file_sha256(data):
            raise ModelCompatibilityError(
                f"{data} is not the file {model_path} was trained on (SHA256 differs); "
                "held-out frames are only known for the training file")
        frame_index = np.asarray(model.metadata["validation_frames"], dtype=int)
        frames = frames.subset(frame_index)
        report["frames"] = "held-out"
    e_mm, f_mm = mm_energies_forces(gaff2.system, frames.positions)
    hybrid, group = _hybrid_system(mm, model, precision)
    e_hy, f_hy = mm_energies_forces(hybrid, frames.positions)
    e_ml_omm, _ = mm_energies_forces(hybrid, frames.positions, groups={group})
    report["mm"] = error_metrics(e_mm, frames.energies, f_mm, frames.forces)
    if refit is not None:
        e_refit, f_refit = mm_energies_forces(mm.system, frames.positions)
        report["mm_refit"] = error_metrics(e_refit, frames.energies, f_refit, frames.forces)
    report["hybrid"] = error_metrics(e_hy, frames.energies, f_hy, frames.forces)
    species = species_of(mm.numbers, tuple(model.elements))
    pos = torch.tensor(frames.positions, dtype=torch.float64)
    e_members, f_members = energies_and_forces(model.module, pos, species, per_member=True)
    e_members, f_members = e_members.numpy(), f_members.numpy()
    report["ml_in_openmm_matches_model_kj_mol"] = float(
        np.abs(e_ml_omm - e_members.mean(0)).max())
    # members agree on energies only up to a constant: remove each one's mean first
    centred = e_members - e_members.mean(axis=1, keepdims=True)
    e_std = centred.std(0) * units.KJ_TO_KCAL
    f_std = f_members.std(0) * units.KJ_PER_MOL_NM_TO_KCAL_PER_MOL_ANGSTROM
    report["ensemble"] = {
        "size": int(e_members.shape[0]),
        "energy_std_mean_kcal_mol": float(e_std.mean()),
        "energy_std_max_kcal_mol": float(e_std.max()),
        "force_std_rms_kcal_mol_A": float(np.sqrt((f_std**2).mean())),
    }
    reference = (model.metadata.get("metrics") or {}).get("ensemble_force_spread_kcal_mol_A")
    if reference:
        # frames whose members disagree more than on 95 % of the validation frames: a sign of
        # conformations unlike the training data (about 5 % expected in distribution)
        per_frame = np.sqrt((f_std**2).mean(axis=(1, 2)))
        report["ensemble"]["fraction_above_validation_p95"] = float(
            np.mean(per_frame > reference["p95"]))
    evaluated = EvaluatedFrames(
        frame_index, frames.positions,
        energies={"qm": frames.energies, "mm": e_mm, "hybrid": e_hy},
        forces={"qm": frames.forces, "mm": f_mm, "hybrid": f_hy},
        mm=mm, hybrid_system=hybrid, model=model, gaff2=gaff2, report=report)
    if refit is not None:
        evaluated.energies["mm_refit"], evaluated.forces["mm_refit"] = e_refit, f_refit
    if ml_only_path is not None:
        if Path(ml_only_path).suffix.lower() in (".xyz", ".extxyz"):
            with tempfile.TemporaryDirectory(prefix="hybridff-mlonly-") as tmp:
                ml = load_model(_train_ml_only_like(molecule, ml_only_path, model.metadata,
                                                    Path(tmp) / "ml_only.pt"))
            report["ml_only_trained_on"] = str(ml_only_path)
            report["ml_only_train_config"] = ml.metadata.get("train_config")
        else:
            ml = load_model(ml_only_path)
        species_ml = species_of(mm.numbers, tuple(ml.elements))
        e_ml, f_ml = energies_and_forces(ml.module, pos, species_ml)
        report["ml_only"] = error_metrics(e_ml.numpy(), frames.energies, f_ml.numpy(), frames.forces)
        evaluated.energies["ml_only"], evaluated.forces["ml_only"] = e_ml.numpy(), f_ml.numpy()
        evaluated.ml_only_model = ml
    if frames.dipoles is not None:
        from hybridff.training.dipoles import evaluate_dipoles

        report["dipole"], evaluated.dipoles = evaluate_dipoles(
            mm, frames, frame_index, str(data), dipole_model_path or model_path,
            explicit=dipole_model_path is not None)
    report["n_frames"] = len(frames)
    return evaluated

