"""Add QM dipole moments to a label file made before ``hybridff label`` recorded them.

Recomputes every frame (or the first ``--n``) with the file's own QM method (``qm_method``
of its frames: xtb or dft with its ``qm_xc``/``qm_basis``), checks that the recomputed
energy matches the stored one (a different level of theory would not), and writes a copy
with ``dipole`` (e*Angstrom, about the centre of mass) in every frame:

    OMP_NUM_THREADS=1 python scripts/add_dipoles.py examples/data/paracetamol_gfn2xtb_train.xyz \\
        -o /tmp/dipoles/train.xyz
"""

from __future__ import annotations

import argparse

import numpy as np

from hybridff.io.frames import read_extxyz, write_extxyz
from hybridff.labels.qm import get_engine

#: largest energy difference (kJ/mol) between the stored and the recomputed label
ENERGY_TOLERANCE_KJ_MOL = 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="extxyz label file (hybridff label)")
    parser.add_argument("-o", "--output", required=True, help="extxyz file to write")
    parser.add_argument("--n", type=int, default=None, help="only the first N frames")
    parser.add_argument("--charge", type=int, default=0, help="the molecule's total charge")
    args = parser.parse_args()
    frames = read_extxyz(args.data)
    if args.n is not None:
        frames = frames.subset(np.arange(min(args.n, len(frames))))
    info = frames.info[0] if frames.info else {}
    method = str(info.get("qm_method", "xtb"))
    options = ({k: str(info[f"qm_{k}"]) for k in ("xc", "basis") if f"qm_{k}" in info}
               if method == "dft" else {})
    engine = get_engine(method, **options)
    dipoles = np.empty((len(frames), 3))
    try:
        from tqdm.auto import tqdm
    except ImportError:
        tqdm = None
    indices = range(len(frames))
    for k in (tqdm(indices, desc=f"{method} dipoles") if tqdm else indices):
        result = engine.compute(frames.numbers, frames.positions[k], charge=args.charge)
        if abs(result.energy - frames.energies[k]) > ENERGY_TOLERANCE_KJ_MOL:
            raise SystemExit(f"{args.data}, frame {k}: recomputed {method} energy differs by "
                             f"{result.energy - frames.energies[k]:.4f} kJ/mol from the stored "
                             "one: not the level of theory the file was made with")
        dipoles[k] = result.dipole
    info_out = [{k: v for k, v in i.items() if k != "dipole_origin"} for i in frames.info]
    write_extxyz(args.output, frames.numbers, frames.positions, frames.energies, frames.forces,
                 info=info_out, append=False, dipoles_e_nm=dipoles)
    print(f"{args.output}: {len(frames)} frames with {method} dipoles")


if __name__ == "__main__":
    main()
