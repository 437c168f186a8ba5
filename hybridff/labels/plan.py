"""What a run of one label file computes, decided from the file itself: the sampler it
continues with, the samples it lacks, and the settings and info each new frame records.

Shared by ``hybridff label`` of one molecule (:func:`hybridff.training.workflow.label`) and of
a series (:mod:`hybridff.labels.series`), so a molecule's file behaves the same either way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybridff.labels.store import LabelStore

logger = logging.getLogger(__name__)


@dataclass
class LabelPlan:
    """The samples to compute for a label file: ``sampler`` with its ``options``, the sample
    indices ``missing`` from the file, and what its first frame ``recorded``."""

    n_frames: int
    sampler: str
    options: dict[str, Any] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)
    recorded: dict[str, Any] = field(default_factory=dict)


def plan_labels(store: LabelStore, n_frames: int, sampler: str | None = None,
                sampler_options: dict[str, Any] | None = None,
                retry_failed: bool = False) -> LabelPlan:
    """The plan for ``store`` to hold ``n_frames`` frames.

    ``sampler``: a name of :data:`hybridff.labels.samplers.SAMPLERS`; ``None`` continues the file
    with the sampler recorded in its frames, a new file with
    :data:`~hybridff.labels.samplers.DEFAULT_SAMPLER`. Continuing a ``mixed`` file with ``mixed``
    keeps its ``torsion_fraction`` unless ``sampler_options`` gives one. Samples whose QM
    failed before are left out unless ``retry_failed``."""
    from hybridff.labels.samplers import DEFAULT_SAMPLER, SAMPLERS, check_sampler

    check_sampler(sampler)
    existing = store.existing
    recorded = dict(existing.info[0]) if existing is not None and existing.info else {}
    options = dict(sampler_options or {})
    if sampler is None:
        sampler = str(recorded.get("sampler", DEFAULT_SAMPLER))
        if sampler not in SAMPLERS:
            sampler = DEFAULT_SAMPLER
        if store.done:
            logger.info("%s: continuing with the %s sampler", store.path, sampler)
    if sampler == recorded.get("sampler") and "torsion_fraction" in recorded:
        options.setdefault("torsion_fraction", float(recorded["torsion_fraction"]))
    return LabelPlan(n_frames, sampler, options, store.missing(n_frames, retry_failed),
                     recorded)


def log_nothing_to_do(store: LabelStore, n_frames: int) -> None:
    """Say that ``store`` already holds every wanted frame (and how many failed before)."""
    skipped = len(set(range(n_frames)) & set(store.failures))
    logger.info("%s already holds %d frames (asked for %d%s): nothing to do", store.path,
                len(store.done), n_frames,
                f"; {skipped} failed before, --retry-failed retries them" if skipped else "")


def frame_settings(store: LabelStore, plan: LabelPlan, seed: int, temperature: float,
                   sampled: Any) -> dict[str, Any]:
    """The sampling settings every new frame records (sampled by ``sampled``, a
    :class:`~hybridff.labels.samplers.Conformations`), with a warning when the frames the file holds
    are not the ones these settings give."""
    settings = {"seed": seed, "temperature": temperature, "sampler": plan.sampler,
                **sampled.settings}
    held = store.existing_frames(range(plan.n_frames))
    if held:
        warn_other_settings(store.path, plan.recorded, settings, held, sampled.positions)
    return settings


def qm_info(engine: Any) -> dict[str, str]:
    """The level of theory of ``engine`` as frame info (``qm_method``, ``qm_basis``, ...)."""
    return {f"qm_{key}": str(v) for key, v in engine.describe().items()}


def warn_other_settings(output: Path, recorded: dict[str, Any], settings: dict[str, Any],
                        held: dict[int, np.ndarray], sampled: np.ndarray) -> None:
    """Warn when the frames ``output`` holds (sample index -> positions) are not the samples
    of these settings."""
    def equal(a: Any, b: Any) -> bool:
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return str(a) == str(b)

    differ = [key for key, value in settings.items()
              if key in recorded and not equal(recorded[key], value)]
    same = all(np.allclose(x, sampled[k], atol=1e-5) for k, x in held.items())
    if differ or not same:
        said = "; ".join(f"{key} {recorded.get(key)} in the file, {settings.get(key)} now"
                         for key in differ) or ("its frames are not the ones these settings "
                                                "give: another platform, MM force field or "
                                                "charge model?")
        logger.warning("%s was not made with these sampling settings (%s); appending frames "
                       "of the current settings", output, said)
