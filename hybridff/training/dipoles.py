"""Train the geometry-dependent charge model (:mod:`hybridff.ml.dipole`) on QM dipoles.

Loss, over the training frames with a dipole:

    mean_F |d_model(X) - d_QM(X)|^2 / (1 D)^2  +  charge_weight * mean_{F,i} (q_i(X) - q_i^MM)^2 / (0.1 e)^2

The second term (weak by default) keeps the charges near the molecule's fixed MM charges
where the dipoles do not determine them: three numbers per frame cannot fix N charges, so
without it charges that no conformation tests are free to drift. Full-batch Adam on
precomputed descriptors (they do not depend on the weights); the weights with the lowest
validation dipole error are kept.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import openmm
import torch

from hybridff import units
from hybridff.elements import DIPOLE_ORIGIN, atomic_masses, centre_of_mass
from hybridff.exceptions import DataFormatError, ModelCompatibilityError
from hybridff.io.frames import LabelledFrames, file_sha256, read_extxyz
from hybridff.io.molecule import formal_charge
from hybridff.ml.descriptors import DescriptorSpec
from hybridff.ml.dipole import (
    ChargeEquilibrationModel,
    dipoles_from_charges,
    fixed_charge_dipoles,
    has_dipole_model,
    load_dipole_model,
)

if TYPE_CHECKING:
    from hybridff.training.residuals import MMSetup

logger = logging.getLogger(__name__)

#: ``dipole_origin`` values that mean the coordinate origin (0, 0, 0)
COORDINATE_ORIGIN = ("origin", "coordinate_origin", "zero")
#: scales of the loss terms: 1 Debye for dipoles, 0.1 e for charges
DIPOLE_SCALE_DEBYE = 1.0
CHARGE_SCALE_E = 0.1


@dataclass
class DipoleConfig:
    """Options of :func:`train_dipole_model`."""

    hidden: tuple[int, ...] = (16, 16)
    cutoff: float = 0.5
    steps: int = 3000
    learning_rate: float = 5e-3
    val_fraction: float = 0.1
    seed: int = 0
    charge_weight: float = 0.01
    weight_decay: float = 0.01
    patience: int = 500
    progress: bool = True


def system_charges(system: openmm.System) -> np.ndarray:
    """The fixed charges (e) of a System's NonbondedForce, one per particle."""
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            return np.array([force.getParticleParameters(i)[0].value_in_unit(
                openmm.unit.elementary_charge) for i in range(force.getNumParticles())])
    raise DataFormatError("the System has no NonbondedForce: no fixed charges to compare")


def reference_dipoles(frames: LabelledFrames, total_charge: int, where: str) -> np.ndarray:
    """The frames' QM dipoles (F, 3) e*nm about each frame's centre of mass (NaN rows where a
    frame has none). A charged molecule's dipole depends on its origin: each frame must say
    which (``dipole_origin``: ``centre_of_mass`` as hybridff writes, or ``origin``)."""
    if frames.dipoles is None:
        raise DataFormatError(
            f"{where}: no frame carries a dipole moment ('dipole' in e*Angstrom in the comment "
            "line); label with hybridff label, which records it")
    dipoles = frames.dipoles.copy()
    if total_charge == 0:
        return dipoles
    for k in range(len(frames)):
        origin = str((frames.info[k] if frames.info else {}).get("dipole_origin", ""))
        if origin in COORDINATE_ORIGIN:
            com = centre_of_mass(frames.numbers, frames.positions[k])
            dipoles[k] = dipoles[k] - total_charge * com
        elif origin != DIPOLE_ORIGIN and np.isfinite(dipoles[k]).all():
            raise DataFormatError(
                f"{where}, frame {k}: the molecule has charge {total_charge:+d}, so its dipole "
                "depends on the origin, and the frame does not say which "
                f"(dipole_origin={origin or 'missing'}); add dipole_origin={DIPOLE_ORIGIN} or "
                "dipole_origin=origin to the comment line")
    return dipoles


def _features(model: ChargeEquilibrationModel, positions: np.ndarray, species: torch.Tensor,
              batch: int = 128) -> torch.Tensor:
    x = torch.as_tensor(positions, dtype=torch.float64)
    with torch.no_grad():
        return torch.cat([model.descriptor(x[s:s + batch], species)
                          for s in range(0, len(x), batch)])


def dipole_metrics(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """RMSE / MAE of dipole vectors (per component) and of their magnitudes, in Debye."""
    diff = (predicted - reference) * units.E_NM_TO_DEBYE
    norm = (np.linalg.norm(predicted, axis=-1) - np.linalg.norm(reference, axis=-1))
    return {
        "dipole_rmse_debye": float(np.sqrt(np.mean(np.sum(diff**2, axis=-1)))),
        "dipole_component_mae_debye": float(np.mean(np.abs(diff))),
        "dipole_magnitude_rmse_debye": float(np.sqrt(np.mean(norm**2)) * units.E_NM_TO_DEBYE),
        "n_frames": int(len(reference)),
    }


@dataclass
class DipoleTrainResult:
    """A trained charge model with its split and metrics."""

    model: ChargeEquilibrationModel
    spec: DescriptorSpec
    train_index: np.ndarray
    val_index: np.ndarray
    metrics: dict[str, Any]
    config: dict[str, Any]


def train_dipole_model(numbers: np.ndarray, positions: np.ndarray, dipoles: np.ndarray,
                       total_charge: int, reference_charges: np.ndarray,
                       config: DipoleConfig | None = None,
                       split: tuple[np.ndarray, np.ndarray] | None = None) -> DipoleTrainResult:
    """Fit q(X) to dipoles (F, 3) e*nm about the centre of mass of frames (F, N, 3) nm.

    ``split``: (train, validation) frame indices; default a seeded split. Frames whose dipole
    is NaN are left out of both.
    """
    from hybridff.training.trainer import species_of, split_indices

    config = config or DipoleConfig()
    numbers = np.asarray(numbers, dtype=int)
    if split is None:
        split = split_indices(len(positions), config.val_fraction, config.seed)
    finite = np.isfinite(dipoles).all(axis=1)
    train_idx = np.array([i for i in split[0] if finite[i]], dtype=int)
    val_idx = np.array([i for i in split[1] if finite[i]], dtype=int)
    if len(train_idx) < 1:
        raise DataFormatError("no training frame carries a dipole: nothing to fit")
    elements = tuple(sorted({int(z) for z in numbers}))
    spec = DescriptorSpec(elements=elements, cutoff=config.cutoff)
    species = species_of(numbers, elements)
    torch.manual_seed(config.seed)
    model = ChargeEquilibrationModel(spec, hidden=tuple(config.hidden))
    masses = torch.as_tensor(atomic_masses(numbers))
    as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    feats, val_feats = (_features(model, positions[idx], species) for idx in (train_idx, val_idx))
    pos, val_pos = as_t(positions[train_idx]), as_t(positions[val_idx])
    target, val_target = as_t(dipoles[train_idx]), as_t(dipoles[val_idx])
    q_ref = as_t(reference_charges)
    with torch.no_grad():
        flat = feats.reshape(-1, spec.n_features)
        mean, std = flat.mean(0), flat.std(0) if len(flat) > 1 else torch.ones(spec.n_features)
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        for net in (model.electronegativity, model.hardness):
            net.feature_mean.copy_(mean)
            net.feature_std.copy_(std)
    d_scale = DIPOLE_SCALE_DEBYE * units.DEBYE_TO_E_NM

    def loss_of(f: torch.Tensor, x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = model.from_features(f, species, float(total_charge))
        err = ((dipoles_from_charges(q, x, masses) - d) / d_scale).pow(2).sum(-1).mean()
        reg = ((q - q_ref) / CHARGE_SCALE_E).pow(2).mean()
        return err + config.charge_weight * reg, err

    # weight decay on the networks only: a pull toward charges that vary little with the
    # geometry, which three numbers per frame cannot otherwise tell from noise
    baselines = [model.chi0, model.hardness0]
    networks = [p for p in model.parameters() if all(p is not b for b in baselines)]
    optimizer = torch.optim.AdamW([{"params": networks, "weight_decay": config.weight_decay},
                                   {"params": baselines, "weight_decay": 0.0}],
                                  lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=100)
    best, best_state, since = float("inf"), None, 0
    bar = _bar(config.steps, config.progress)
    for _step in range(config.steps):
        optimizer.zero_grad()
        loss, _ = loss_of(feats, pos, target)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            if len(val_idx):
                _, watched = loss_of(val_feats, val_pos, val_target)
            else:
                watched = loss
        scheduler.step(float(watched))
        if float(watched) < best:
            best, since = float(watched), 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            since += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(val_rmse_D=f"{np.sqrt(best) * DIPOLE_SCALE_DEBYE:.3f}", refresh=False)
        if since >= config.patience:
            break
    if bar is not None:
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    metrics: dict[str, Any] = {"steps": _step + 1}
    for name, idx, f, x in (("train", train_idx, feats, pos), ("validation", val_idx, val_feats,
                                                                  val_pos)):
        if not len(idx):
            continue
        with torch.no_grad():
            q = model.from_features(f, species, float(total_charge))
            predicted = dipoles_from_charges(q, x, masses).numpy()
        metrics[name] = {
            "model": dipole_metrics(predicted, dipoles[idx]),
            "fixed_charges": dipole_metrics(
                fixed_charge_dipoles(reference_charges, numbers, positions[idx]), dipoles[idx]),
            "charge_rms_from_fixed_e": float(((q - q_ref) ** 2).mean().sqrt()),
        }
    settings = asdict(config)
    settings["hidden"] = list(config.hidden)
    return DipoleTrainResult(model, spec, train_idx, val_idx, metrics, settings)


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="dipole model", unit="step")


def train_dipoles(mm: Any, frames: LabelledFrames, data: str | os.PathLike,
                  config: DipoleConfig | None = None,
                  split: tuple[np.ndarray, np.ndarray] | None = None
                  ) -> tuple[ChargeEquilibrationModel, dict[str, Any]]:
    """Train a dipole model for ``mm``'s molecule (an :class:`MMSetup`) on ``frames`` (read from
    ``data``); returns the model and its metadata (for :func:`hybridff.ml.dipole.dipole_archive`)."""
    charge = int(formal_charge(mm.parameterized.mol))
    dipoles = reference_dipoles(frames, charge, str(data))
    fixed = system_charges(mm.system)[: len(mm.numbers)]
    result = train_dipole_model(mm.numbers, frames.positions, dipoles, charge, fixed, config,
                                split)
    metadata = {
        "elements": list(result.spec.elements),
        "cutoff_nm": float(result.spec.cutoff),
        "descriptor": result.spec.to_dict(),
        "hidden": list(result.config["hidden"]),
        "total_charge": charge,
        "dipole_origin": DIPOLE_ORIGIN,
        "dipole_unit": "e*nm",
        "charge_model": "charge equilibration, per-atom electronegativity and hardness from "
                        "symmetry functions",
        "molecule": mm.molecule_record(),
        "reference_charges": [float(q) for q in fixed],
        "reference_charges_method": mm.signature.to_dict().get("charge_method"),
        "training_set": str(Path(data).name),
        "training_set_sha256": file_sha256(data),
        "n_frames": len(frames),
        "train_frames": [int(i) for i in result.train_index],
        "validation_frames": [int(i) for i in result.val_index],
        "metrics": result.metrics,
        "train_config": result.config,
    }
    return result.model, metadata


def train_dipoles_from_files(molecule: str | os.PathLike, data: str | os.PathLike,
                             output: str | os.PathLike, config: DipoleConfig | None = None,
                             charge_method: str | None = None) -> dict[str, Any]:
    """``hybridff train --dipoles-only``: a standalone dipole model file; returns its metadata."""
    from hybridff.ml.dipole import save_dipole_model
    from hybridff.training.residuals import build_mm

    mm = build_mm(molecule, charge_method=charge_method)
    frames = read_extxyz(data, mm.numbers, bonds=mm.bonds)
    model, metadata = train_dipoles(mm, frames, data, config)
    save_dipole_model(output, model, metadata)
    return metadata


def evaluate_dipoles(mm: MMSetup, frames: Any, frame_index: np.ndarray, where: str,
                      dipole_model_path: Any, explicit: bool
                      ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Dipole errors (Debye) of the fixed MM charges and, where there is one, the dipole
    model, on the frames that carry a QM dipole; and the dipoles (``frame_index``: their
    frames' indices in the data file)."""
    charge = int(formal_charge(mm.parameterized.mol))
    qm = reference_dipoles(frames, charge, where)
    have = np.isfinite(qm).all(axis=1)
    positions = frames.positions[have]
    dipoles = {"qm": qm[have], "fixed_charges": fixed_charge_dipoles(
        system_charges(mm.system)[: len(mm.numbers)], mm.numbers, positions)}
    if explicit or has_dipole_model(dipole_model_path):
        model = load_dipole_model(dipole_model_path)
        if int(model.metadata["total_charge"]) != charge:
            raise ModelCompatibilityError(
                f"{dipole_model_path}: the dipole model is for total charge "
                f"{model.metadata['total_charge']}, the molecule has {charge}")
        dipoles["dipole_model"] = model.dipoles(mm.numbers, positions)
    report = {k: dipole_metrics(v, dipoles["qm"]) for k, v in dipoles.items() if k != "qm"}
    report["frames_with_dipole"] = int(have.sum())
    dipoles["frame_index"] = np.asarray(frame_index)[have]
    return report, dipoles
