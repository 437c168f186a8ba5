"""How new are a test set's conformers, and do the errors differ on the new ones?

For frames made by ``hybridff label --sampler conformers`` (each frame records its
``conformer``), each test conformer's distance to the training conformers is the smallest
heavy-atom RMSD (Kabsch-aligned, atom order as in the file, no symmetry) between its first frame
and the first frame of any training conformer. Test frames of conformers farther than
``--threshold`` Angstrom from all of them are "far", the rest "near"; the force and energy
RMSEs of GAFF2, the bespoke MM, the hybrid and ML-only are reported for each part (energies
with each part's mean offset removed), from :func:`hybridff.training.workflow.evaluate_frames`.

    python scripts/conformer_novelty.py MOLECULE TRAIN.xyz TEST.xyz HYBRID.pt ML_ONLY.pt [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from ase.io import read

from hybridff import units
from hybridff.md.harmonic import kabsch_align
from hybridff.training.workflow import evaluate_frames


def heavy_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    """RMSD (same units as the input) of two (n, 3) point sets after optimal superposition."""
    aligned = kabsch_align(a[None], b, np.ones(len(a)))[0]
    return float(np.sqrt(((aligned - b) ** 2).sum(1).mean()))


def first_frames(frames: list) -> dict[int, np.ndarray]:
    """Conformer index -> positions (Angstrom) of its first frame."""
    out: dict[int, np.ndarray] = {}
    for atoms in frames:
        if "conformer" not in atoms.info:
            raise SystemExit("frames without a 'conformer' entry: label them with "
                             "hybridff label --sampler conformers")
        out.setdefault(int(atoms.info["conformer"]), atoms.positions)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("molecule")
    parser.add_argument("train", type=Path)
    parser.add_argument("test", type=Path)
    parser.add_argument("hybrid", type=Path)
    parser.add_argument("ml_only", type=Path)
    parser.add_argument("--threshold", type=float, default=0.3,
                        help="heavy-atom RMSD, Angstrom, beyond which a conformer is new "
                             "(default 0.3: 0.06 Angstrom displacements alone give about 0.13)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    train, test = read(args.train, ":"), read(args.test, ":")
    heavy = [i for i, z in enumerate(test[0].numbers) if z > 1]
    known = first_frames(train)
    distance = {k: min(heavy_rmsd(x[heavy], y[heavy]) for y in known.values())
                for k, x in first_frames(test).items()}
    far = np.array([distance[int(a.info["conformer"])] > args.threshold for a in test])
    evaluated = evaluate_frames(args.molecule, args.test, args.hybrid, args.ml_only)
    result: dict = {"threshold_angstrom": args.threshold,
                    "conformer_distance_angstrom": {str(k): round(v, 3)
                                                    for k, v in sorted(distance.items())},
                    "n_far_frames": int(far.sum()), "n_near_frames": int((~far).sum())}
    for name in ("mm", "mm_refit", "hybrid", "ml_only"):
        if name not in evaluated.forces:
            continue
        for part, chosen in (("far", far), ("near", ~far)):
            if not chosen.any():
                continue
            force = evaluated.forces[name][chosen] - evaluated.forces["qm"][chosen]
            energy = evaluated.energies[name][chosen] - evaluated.energies["qm"][chosen]
            energy = energy - energy.mean()
            result[f"{name}_{part}"] = {
                "force_rmse_kcal_mol_A": float(np.sqrt((force**2).mean())
                                               * units.KJ_PER_MOL_NM_TO_KCAL_PER_MOL_ANGSTROM),
                "energy_rmse_kcal_mol": float(np.sqrt((energy**2).mean()) * units.KJ_TO_KCAL)}
    print(f"conformer distances (A): {sorted(round(v, 2) for v in distance.values())}")
    for key, value in result.items():
        if isinstance(value, dict) and "force_rmse_kcal_mol_A" in value:
            print(f"{key:16s} F {value['force_rmse_kcal_mol_A']:6.2f}  "
                  f"E {value['energy_rmse_kcal_mol']:6.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
