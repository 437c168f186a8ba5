"""Fit the ML correction to energies and forces (delta-learning on QM - MM residuals).

Energies enter with their mean removed: the loss compares predicted and target energies
after subtracting each one's mean over the batch, so the (arbitrary, large) offset between
QM and MM total energies never has to be learned. Losses are normalised by the target
variances; validation split, early stopping (best validation state kept), seeds, an
ensemble of K independently initialised members, and a final error summary.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from hybridff import units
from hybridff.exceptions import InvalidOptionError
from hybridff.ml.descriptors import DescriptorSpec
from hybridff.ml.model import EnsembleModel, MeanOfMembers, energies_and_forces
from hybridff.ml.painn import MessagePassingEnsemble, MessagePassingSpec

logger = logging.getLogger(__name__)

ENERGY_TO_KCAL = units.KJ_TO_KCAL
FORCE_TO_KCAL_A = units.KJ_PER_MOL_NM_TO_KCAL_PER_MOL_ANGSTROM


#: the fewest epochs of an automatic schedule (TrainConfig.epochs = None)
MIN_EPOCHS = 200

#: the correction's network families (``TrainConfig.architecture``): per-element MLPs over
#: symmetry functions (:mod:`hybridff.ml.model`), or equivariant message passing
#: (:mod:`hybridff.ml.painn`)
ARCHITECTURES = ("symmetry", "painn")


@dataclass
class TrainConfig:
    """Training options (lengths nm, energies kJ/mol)."""

    #: ``None``: enough epochs for ``min_steps`` optimizer steps, and at least ``MIN_EPOCHS``
    epochs: int | None = None
    batch_size: int = 16
    learning_rate: float = 2e-3
    val_fraction: float = 0.1
    #: early-stopping patience in epochs; ``None``: a fifth of the epochs
    patience: int | None = None
    #: with ``epochs=None``: optimizer steps per member (small sets then get more epochs)
    min_steps: int = 6000
    seed: int = 0
    ensemble: int = 1
    hidden: tuple[int, ...] = (32, 32)
    cutoff: float = 0.5
    #: force-heavy by default: a frame gives one energy but 3N force components, and with
    #: equal weights the few energies were overfitted (docs/ml-correction.md, "Loss weights")
    energy_weight: float = 0.03
    force_weight: float = 1.0
    progress: bool = True
    #: the network family, one of :data:`ARCHITECTURES`
    architecture: str = "symmetry"
    #: message passing only: feature width and number of interaction blocks
    features: int = 32
    interactions: int = 3
    #: precompute descriptor Jacobians once (much faster epochs) when they fit in this many MB
    jacobian_memory_mb: float = 4000.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise InvalidOptionError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.ensemble < 1 or self.batch_size < 1 or (self.epochs is not None and self.epochs < 1):
            raise InvalidOptionError(f"ensemble, epochs and batch_size must be >= 1 (got "
                                     f"{self.ensemble}, {self.epochs}, {self.batch_size})")
        if self.patience is not None and self.patience < 1:
            raise InvalidOptionError(f"patience must be >= 1, got {self.patience}")
        if self.architecture not in ARCHITECTURES:
            raise InvalidOptionError(f"unknown architecture {self.architecture!r}; choose one of "
                                     f"{', '.join(ARCHITECTURES)}")
        if self.features < 2 or self.interactions < 1:
            raise InvalidOptionError(f"features must be >= 2 and interactions >= 1 (got "
                                     f"{self.features}, {self.interactions})")

    def schedule(self, n_train: int) -> tuple[int, int]:
        """(epochs, early-stopping patience) for ``n_train`` training frames.

        Small sets take few optimizer steps per epoch, and a fixed epoch count left them
        under-trained (paracetamol, GFN2-xTB, 65 frames: held-out force RMSE 4.61 kcal/mol/A
        after 200 epochs, 3.55 after 800), so by default the epochs follow from ``min_steps``.
        """
        per_epoch = max(1, n_train // self.batch_size + (n_train % self.batch_size >= 2))
        epochs = self.epochs
        if epochs is None:
            epochs = max(MIN_EPOCHS, math.ceil(self.min_steps / per_epoch))
        patience = self.patience if self.patience is not None else max(1, epochs // 5)
        return epochs, patience


@dataclass
class TrainResult:
    """The trained ensemble, its descriptor (or message-passing) spec, the split and the
    error summary."""

    model: MeanOfMembers
    spec: DescriptorSpec | MessagePassingSpec
    train_index: np.ndarray
    val_index: np.ndarray
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``n`` frames into (train, validation) index arrays."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(val_fraction * n)) if val_fraction > 0 else 0
    if val_fraction > 0 and n >= 2:
        n_val = max(1, n_val)
    if n - n_val < 1:
        raise InvalidOptionError(f"{n} frames are too few for a validation fraction of "
                                 f"{val_fraction}: label more frames or lower --val-fraction")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def error_metrics(
    pred_energy: np.ndarray, ref_energy: np.ndarray, pred_forces: np.ndarray, ref_forces: np.ndarray
) -> dict[str, float]:
    """Energy RMSE/MAE (kcal/mol, mean offset removed) and force RMSE/MAE (kcal/mol/A)."""
    de = (pred_energy - ref_energy) * ENERGY_TO_KCAL
    de = de - de.mean()
    df = (pred_forces - ref_forces) * FORCE_TO_KCAL_A
    return {
        "energy_rmse_kcal_mol": float(np.sqrt(np.mean(de**2))),
        "energy_mae_kcal_mol": float(np.mean(np.abs(de))),
        "force_rmse_kcal_mol_A": float(np.sqrt(np.mean(df**2))),
        "force_mae_kcal_mol_A": float(np.mean(np.abs(df))),
        "n_frames": int(len(ref_energy)),
    }


def species_of(numbers: np.ndarray, elements: tuple[int, ...]) -> torch.Tensor:
    """Species indices of ``numbers`` into ``elements``."""
    return torch.tensor([elements.index(int(z)) for z in numbers], dtype=torch.long)


def _batch_loss(
    model: MeanOfMembers, member: torch.nn.Module, batch: dict[str, torch.Tensor],
    species: torch.Tensor, scales: tuple[float, float, float, float], create_graph: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised loss, energy MSE (centred) and force MSE of one batch.

    With precomputed descriptors ``feats`` (B, N, F) and Jacobians ``jac`` (B, N, F, N, 3),
    forces are ``-dE/dG . dG/dx``; otherwise descriptors are recomputed from ``pos``.
    """
    w_e, var_e, w_f, var_f = scales
    if "jac" in batch:
        feats = batch["feats"].clone().requires_grad_(True)
        energy = member(feats, species)
        (d_e,) = torch.autograd.grad(energy.sum(), feats, create_graph=create_graph)
        forces = -torch.einsum("bnf,bnfmk->bmk", d_e, batch["jac"].to(d_e.dtype))
    else:
        pos = batch["pos"].clone().requires_grad_(True)
        energy = member(model.features(pos, species), species)
        (grad,) = torch.autograd.grad(energy.sum(), pos, create_graph=create_graph)
        forces = -grad
    t_energy = batch["energy"]
    de = (energy - energy.mean()) - (t_energy - t_energy.mean())
    e_mse = (de**2).mean()
    f_mse = ((forces - batch["forces"]) ** 2).mean()
    loss = w_e * e_mse / var_e + w_f * f_mse / var_f
    return loss, e_mse.detach(), f_mse.detach()


def descriptor_jacobians(
    model: EnsembleModel, positions: torch.Tensor, species: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Descriptors (F, N, D) and their Jacobians (F, N, D, N, 3) w.r.t. positions (nm)."""
    from torch.func import jacfwd

    def features(x: torch.Tensor) -> torch.Tensor:
        return model.features(x.unsqueeze(0), species)[0]

    n, d = positions.shape[1], model.descriptor.n_features
    if positions.shape[0] == 0:
        return positions.new_zeros((0, n, d)), positions.new_zeros((0, n, d, n, 3))
    feats, jacs = [], []
    for x in positions:
        feats.append(features(x).detach())
        jacs.append(jacfwd(features)(x).detach())
    return torch.stack(feats), torch.stack(jacs)


def _fit_member(
    model: MeanOfMembers, k: int, species: torch.Tensor, data: dict[str, torch.Tensor],
    config: TrainConfig, scales: tuple[float, float, float, float],
) -> dict[str, float]:
    member = model.members[k]
    gen = torch.Generator().manual_seed(config.seed * 1000 + k)
    opt = torch.optim.Adam(member.parameters(), lr=config.learning_rate)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=10)
    n_train = data["energy"].shape[0]
    has_val = data["val_energy"].shape[0] > 0
    keys = [name for name in ("pos", "feats", "jac", "energy", "forces") if name in data]
    best = (math.inf, copy.deepcopy(member.state_dict()), 0)
    epochs, patience = config.schedule(n_train)
    bar = _progress(range(epochs), config.progress, f"member {k + 1}/{config.ensemble}")
    for epoch in bar:
        order = torch.randperm(n_train, generator=gen)
        for start in range(0, n_train, config.batch_size):
            idx = order[start : start + config.batch_size]
            if len(idx) < 2:
                continue
            batch = {name: data[name][idx] for name in keys}
            loss, _, _ = _batch_loss(model, member, batch, species, scales, create_graph=True)
            opt.zero_grad()
            loss.backward()
            opt.step()
        prefix = "val_" if has_val else ""  # without a validation set, watch the training loss
        batch = {name: data[prefix + name] for name in keys}
        loss, e_mse, f_mse = _batch_loss(model, member, batch, species, scales,
                                         create_graph=False)
        value = float(loss.detach())
        sched.step(value)
        if value < best[0]:
            best = (value, copy.deepcopy(member.state_dict()), epoch)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(
                val_force_rmse=f"{math.sqrt(float(f_mse)) * FORCE_TO_KCAL_A:.3f}", refresh=False
            )
        if epoch - best[2] >= patience:
            logger.info("member %d: early stop at epoch %d (best %d)", k, epoch, best[2])
            break
    member.load_state_dict(best[1])
    return {"best_epoch": best[2], "best_val_loss": best[0], "epochs": epochs, "patience": patience}


def _progress(iterable: Any, enabled: bool, desc: str) -> Any:
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=desc, unit="epoch", leave=False)


def train_correction(
    numbers: np.ndarray,
    positions: np.ndarray,
    target_energies: np.ndarray,
    target_forces: np.ndarray,
    config: TrainConfig | None = None,
    elements: tuple[int, ...] | None = None,
) -> TrainResult:
    """Train an ensemble on frames (F, N, 3) nm with targets in kJ/mol and kJ/mol/nm.

    ``target_*`` are what the model must reproduce: QM - MM residuals for a hybrid
    correction, or QM itself for an ML-only model.
    """
    config = config or TrainConfig()
    elements = tuple(sorted({int(z) for z in numbers})) if elements is None else tuple(elements)
    species = species_of(numbers, elements)
    train_idx, val_idx = split_indices(len(positions), config.val_fraction, config.seed)
    torch.manual_seed(config.seed)  # members' initial weights differ, drawn in sequence
    spec: DescriptorSpec | MessagePassingSpec
    model: MeanOfMembers
    if config.architecture == "painn":
        # trained in float32 (about 2.5x faster steps), then kept in float64 like the
        # symmetry-function models: the cast of the weights is exact
        spec = MessagePassingSpec(elements=elements, cutoff=config.cutoff,
                                  features=config.features, interactions=config.interactions)
        model = MessagePassingEnsemble(spec, n_models=config.ensemble, dtype=torch.float32)
        dtype = torch.float32
    else:
        spec = DescriptorSpec(elements=elements, cutoff=config.cutoff)
        model = EnsembleModel(spec, hidden=tuple(config.hidden), n_models=config.ensemble)
        dtype = torch.float64

    as_t = lambda a: torch.tensor(np.asarray(a), dtype=dtype)  # noqa: E731
    data = {
        "pos": as_t(positions[train_idx]),
        "energy": as_t(target_energies[train_idx]),
        "forces": as_t(target_forces[train_idx]),
        "val_pos": as_t(positions[val_idx]),
        "val_energy": as_t(target_energies[val_idx]),
        "val_forces": as_t(target_forces[val_idx]),
    }
    n_atoms = len(numbers)
    jac_mb = (len(positions) * n_atoms * spec.n_features * n_atoms * 3 * 8 / 2**20
              if isinstance(spec, DescriptorSpec) else math.inf)
    if jac_mb <= config.jacobian_memory_mb:
        logger.info("precomputing descriptor Jacobians (%.0f MB)", jac_mb)
        for prefix in ("", "val_"):
            data[prefix + "feats"], data[prefix + "jac"] = descriptor_jacobians(
                model, data[prefix + "pos"], species)
            del data[prefix + "pos"]
    with torch.no_grad():
        if "feats" in data:
            feats = data["feats"]
        else:
            feats = model.features(data["pos"], species)
        feats = feats.reshape(-1, feats.shape[-1])
        mean, std = feats.mean(0), feats.std(0)
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
    e_centred = data["energy"] - data["energy"].mean()
    var_e = float((e_centred**2).mean()) or 1.0
    var_f = float((data["forces"] ** 2).mean()) or 1.0
    scales = (config.energy_weight, var_e, config.force_weight, var_f)
    history = []
    for k, member in enumerate(model.members):
        if hasattr(member, "feature_mean"):  # descriptors are normalised; positions are not
            member.feature_mean.copy_(mean)
            member.feature_std.copy_(std)
        member.energy_scale.fill_(math.sqrt(var_e) / max(1, len(numbers)) ** 0.5)
        history.append(_fit_member(model, k, species, data, config, scales))
        with torch.no_grad():  # zero mean over the training frames: members share one offset
            if "feats" in data:
                mean_energy = member(data["feats"], species).mean()
            else:
                mean_energy = member(model.features(data["pos"], species), species).mean()
            member.energy_shift.sub_(mean_energy)
    if dtype != torch.float64:
        model = model.to(torch.float64)
        data = {name: value.to(torch.float64) for name, value in data.items()}

    with torch.no_grad():  # the safety net: atom energies stay near their range on these frames
        if "feats" in data:
            all_feats = torch.cat([data["feats"], data["val_feats"]])
        else:
            all_feats = model.features(torch.cat([data["pos"], data["val_pos"]]), species)
        bounds = [member.set_bounds(member.atom_energies(all_feats, species), species)
                  for member in model.members]

    result = TrainResult(model=model, spec=spec, train_index=train_idx, val_index=val_idx,
                         config={k: list(v) if isinstance(v, tuple) else v
                                 for k, v in asdict(config).items()})
    result.metrics = {
        "members": history,
        # per member, per element (atomic number): [low, high, tail width] in kJ/mol
        "atom_energy_bounds_kj_mol": [{str(elements[i]): b for i, b in member.items()}
                                      for member in bounds],
    }
    if config.ensemble > 1:
        # one pass of every member over all frames serves both ensemble summaries
        e_members, f_members = energies_and_forces(
            model, torch.tensor(positions, dtype=torch.float64), species, per_member=True)
        ref_idx = val_idx if len(val_idx) else train_idx
        spread = ensemble_force_spread(f_members.numpy()[:, ref_idx])
        result.metrics["ensemble_force_spread_kcal_mol_A"] = {
            "frames": "validation" if len(val_idx) else "train",
            "median": float(np.median(spread)),
            "p95": float(np.percentile(spread, 95)),
        }
        # the trained range of what the MD monitor (hybridff.md.reporters.EnsembleMonitor)
        # measures: the members' energy std per frame (unbiased, kcal/mol), over all frames
        e_std = (e_members.std(0) * ENERGY_TO_KCAL).numpy()
        result.metrics["disagreement"] = {
            "frames": "all", "energy_std_max_kcal_mol": float(e_std.max()),
            "energy_std_p95_kcal_mol": float(np.percentile(e_std, 95)),
        }
    for name, idx in (("train", train_idx), ("validation", val_idx)):
        if len(idx) == 0:
            continue
        result.metrics[name] = evaluate_fit(model, species, positions[idx],
                                            target_energies[idx], target_forces[idx])
    return result


def ensemble_force_spread(member_forces: np.ndarray) -> np.ndarray:
    """Per frame, the RMS over atoms and components of the members' force std (kcal/mol/A),
    from member forces (K, B, N, 3) in kJ/mol/nm."""
    std = np.asarray(member_forces).std(axis=0) * FORCE_TO_KCAL_A
    return np.sqrt((std**2).mean(axis=(1, 2)))


def evaluate_fit(
    model: MeanOfMembers, species: torch.Tensor, positions: np.ndarray,
    target_energies: np.ndarray, target_forces: np.ndarray,
) -> dict[str, Any]:
    """Errors of the targets left without the model ("before") and with it ("after")."""
    pos = torch.tensor(np.asarray(positions), dtype=torch.float64)
    e, f = energies_and_forces(model, pos, species)
    e, f = e.numpy(), f.numpy()
    zeros_e, zeros_f = np.zeros_like(target_energies), np.zeros_like(target_forces)
    return {
        "before": error_metrics(zeros_e, target_energies, zeros_f, target_forces),
        "after": error_metrics(e, target_energies, f, target_forces),
    }
