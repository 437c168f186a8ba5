"""Conformations beyond thermal MD: random Cartesian displacements, and other conformers.

MD at 500 K stretches a C-H bond by about 0.04 Å (one standard deviation); a model trained only
there meets larger stretches and squeezes, and other conformers, for the first time in
production. Two ways to reach further:

- :func:`displace`: Gaussian displacements of every coordinate of given frames;
- :func:`conformer_conformations` (the ``conformers`` sampler): RDKit ETKDG conformers of the
  molecule, relaxed under the MM System, each displaced at random the same way; frame k
  starts from conformer k mod ``n_conformers``.

Both are seeded; frame k does not depend on how many frames are asked for.
"""

from __future__ import annotations

import numpy as np
import openmm

from hybridff.exceptions import InvalidOptionError, MoleculeInputError
from hybridff.labels.samplers import (
    Conformations,
    SamplingStart,
    context_positions_nm,
    langevin_integrator,
    seed_key,
)

#: seed stream of the displacements (the torsion sampler uses 0 and 1)
_DISPLACEMENT_STREAM = 2


def check_displacement(displacement_nm: float) -> float:
    """``displacement_nm`` as a float in (0, 0.05] nm, else an :class:`InvalidOptionError`."""
    try:
        value = float(displacement_nm)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 < value <= 0.05:
        raise InvalidOptionError(f"displacement_nm must be in (0, 0.05] nm (one standard deviation "
                                 f"per coordinate; 0.006 nm = 0.06 Angstrom), got "
                                 f"{displacement_nm!r}")
    return value


def displace(frames: np.ndarray, displacement_nm: float, seed: int) -> np.ndarray:
    """``frames`` (F, N, 3) nm plus independent Gaussian displacements of standard deviation
    ``displacement_nm`` per coordinate; frame k's displacement depends only on ``seed`` and k."""
    sigma = check_displacement(displacement_nm)
    rng = np.random.default_rng(seed_key(seed, _DISPLACEMENT_STREAM))
    frames = np.asarray(frames, dtype=float)
    # drawn frame after frame (C order), so the first k frames' displacements do not depend
    # on how many frames there are
    return frames + rng.normal(0.0, sigma, size=frames.shape)


def etkdg_conformers(mol: object, n_conformers: int, seed: int) -> np.ndarray:
    """(C, N, 3) nm: ``n_conformers`` RDKit ETKDG conformers of ``mol`` (its atom order), seeded."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    if mol is None:
        raise MoleculeInputError("the conformers sampler needs the molecule (its RDKit Mol)")
    work = Chem.Mol(mol)
    work.RemoveAllConformers()
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed) % (2**31 - 1)
    ids = list(AllChem.EmbedMultipleConfs(work, numConfs=int(n_conformers), params=params))
    if not ids:
        raise MoleculeInputError(f"RDKit could not embed {Chem.MolToSmiles(mol)}: no conformers; "
                                 f"use another sampler (md, torsion, mixed)")
    return np.stack([work.GetConformer(i).GetPositions() for i in ids]) / 10.0


def conformer_conformations(
    start: SamplingStart,
    n_frames: int,
    *,
    n_conformers: int = 10,
    displacement_nm: float = 0.006,
    relax_steps: int = 500,
) -> Conformations:
    """Other conformers, displaced: ``n_conformers`` ETKDG conformers (seeded), each minimized
    under the MM System (at most ``relax_steps`` iterations), frame k conformer k mod
    ``n_conformers`` plus Gaussian displacements of ``displacement_nm`` per coordinate. Each
    frame records its ``conformer``; the settings hold the options."""
    if n_frames < 0 or int(n_conformers) < 1:
        raise InvalidOptionError(f"n_frames must be >= 0 and n_conformers >= 1 (got {n_frames}, "
                                 f"{n_conformers})")
    check_displacement(displacement_nm)
    conformers = etkdg_conformers(start.mol, int(n_conformers), start.seed)
    context = start.context(langevin_integrator(start.temperature, 1.0, 0.5, int(start.seed) + 1))
    relaxed = []
    for x in conformers:
        context.setPositions(x)
        openmm.LocalEnergyMinimizer.minimize(context, 1.0, int(relax_steps))
        relaxed.append(context_positions_nm(context))
    which = [k % len(relaxed) for k in range(n_frames)]
    frames = displace(np.stack(relaxed)[which], displacement_nm, start.seed)
    settings = {"n_conformers": int(n_conformers), "displacement_nm": float(displacement_nm)}
    return Conformations(frames, settings, [{"conformer": c} for c in which])
