"""Read-only lookup tables of a hybridff ForceField XML (which bonded terms it defines)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

from hybridff.mm.forcefield_files import forcefield_path


@dataclass(frozen=True)
class ForceFieldTables:
    """Atom classes and the class tuples that have bonded parameters in one XML file."""

    name: str
    path: Path
    sha256: str
    type_prefix: str
    classes: frozenset[str]
    bonds: frozenset[tuple[str, str]]
    angles: frozenset[tuple[str, str, str]]
    propers: frozenset[tuple[str, str, str, str]]  # '' is a wildcard
    #: atom-type name -> attributes of its <Type> (class, element, mass)
    type_attributes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: atom-type name -> attributes of its <NonbondedForce><Atom> (sigma, epsilon)
    nonbonded_atoms: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: attributes of the <NonbondedForce> element (1-4 scales)
    nonbonded_attributes: Mapping[str, str] = field(default_factory=dict)

    def has_bond(self, a: str, b: str) -> bool:
        return (a, b) in self.bonds or (b, a) in self.bonds

    def has_angle(self, a: str, b: str, c: str) -> bool:
        return (a, b, c) in self.angles or (c, b, a) in self.angles

    def has_proper(self, a: str, b: str, c: str, d: str, specific: bool = False) -> bool:
        """Whether a proper torsion term covers a-b-c-d (only non-wildcard ones if ``specific``)."""
        keys = [(a, b, c, d), (d, c, b, a)]
        if not specific:
            keys += [("", b, c, ""), ("", c, b, "")]
        return any(key in self.propers for key in keys)

    def type_name(self, atom_class: str) -> str:
        """OpenMM atom-type name of a class (the file prefixes type names)."""
        return self.type_prefix + atom_class


@functools.lru_cache(maxsize=8)
def load_tables(name: str = "hybridff-gaff2.xml") -> ForceFieldTables:
    """Parse (once) the shipped or given force-field XML into lookup tables."""
    path = forcefield_path(name)
    data = path.read_bytes()
    root = ET.fromstring(data)
    types = root.findall("./AtomTypes/Type")
    classes = frozenset(t.get("class") for t in types)
    prefix = ""
    if types:
        first = types[0]
        prefix = first.get("name")[: -len(first.get("class"))]

    def tuples(tag: str, n: int) -> frozenset:
        return frozenset(
            tuple(el.get(f"class{i}") for i in range(1, n + 1)) for el in root.iter(tag)
        )

    return ForceFieldTables(
        name=path.name,
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        type_prefix=prefix,
        classes=classes,
        bonds=tuples("Bond", 2),
        angles=tuples("Angle", 3),
        propers=tuples("Proper", 4),
        type_attributes={t.get("name"): dict(t.attrib) for t in types},
        nonbonded_atoms={a.get("type"): dict(a.attrib)
                         for a in root.findall("./NonbondedForce/Atom") if a.get("type")},
        nonbonded_attributes=dict(nb.attrib) if (nb := root.find("./NonbondedForce")) is not None
        else {},
    )
