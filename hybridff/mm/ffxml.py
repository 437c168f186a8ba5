"""Export of parameters to OpenMM ForceField XML: the per-molecule drop-in file.

:func:`to_ffxml` writes a :class:`~hybridff.mm.parameters.ParameterizedMolecule` as a residue
template with its types and charges and every bonded term it needs (load it after the shipped
force-field file); :meth:`ParameterizedMolecule.to_ffxml` calls it. Assignment of the
parameters lives in :mod:`hybridff.mm.parameters`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

import numpy as np

from hybridff import __version__, units
from hybridff.mm.bonded_geometry import ANHARMONIC_ENERGY, MORSE_TAIL_ENERGY
from hybridff.mm.signature import canonical_atom_order
from hybridff.mm.tables import load_tables

if TYPE_CHECKING:
    from hybridff.mm.analogy import FilledTerm
    from hybridff.mm.parameters import ParameterizedMolecule


def to_ffxml(pm: ParameterizedMolecule, names: list[str] | None = None,
             residue_name: str | None = None) -> str:
    """Per-molecule ForceField XML of ``pm``; load it after the shipped force-field file.

    ``names`` renames the atoms (same order) to match a topology's residue.

    With canonical pair labelling (the default) the System it gives does not depend on the
    atom order of the topology. OpenMM orders the atoms of an improper torsion by template
    index where two share a type, and reuses the first order it found for every later
    improper of the same types, so with shared GAFF2 types the result would follow the
    topology's atom order. Here each atom gets a type and class of its own (with its GAFF2
    type's mass and Lennard-Jones parameters) and every bonded term is written for its
    atoms' types, with the parameters and atom order OpenMM gives the molecule in
    canonical atom order, averaged over symmetry-equivalent atoms: the file is
    self-contained and gives the same System for any input order.
    The antechamber-compatible ``"index"`` labelling writes GAFF2 types (plus the terms
    filled by analogy) and leaves the order to OpenMM, as tleap does.

    With a bespoke refit the file also holds its cubic and quartic terms (``CustomBondForce``,
    ``CustomAngleForce``) and, as a ``<Script>`` (the ForceField XML has no tag for it), a
    ``CustomCompoundBondForce`` of its stretch-bend and bond-bond terms.
    """
    names = list(names) if names is not None else pm.names
    resname = residue_name or pm.residue_name
    if pm.pair_order != "canonical":
        return class_typed_ffxml(pm, names, resname, range(pm.mol.GetNumAtoms()))
    tables = load_tables(pm.forcefield)
    order = canonical_atom_order(pm.mol)
    prefix = f"{resname}-{pm.content_hash()[:8]}-"
    own_type = {i: f"{prefix}{rank}" for rank, i in enumerate(order)}
    root = xml_header(pm)
    atom_types = ET.SubElement(root, "AtomTypes")
    for i in order:
        gaff = tables.type_attributes[tables.type_name(pm.atom_types[i])]
        # a class of its own too, so that no class-based term of the shipped file applies
        # to it even when both files are loaded in one call
        ET.SubElement(atom_types, "Type", {"name": own_type[i], "class": own_type[i],
                                           "element": gaff["element"], "mass": gaff["mass"]})
    residue_xml(pm, root, names, resname, order, own_type)
    terms = pm.canonical_terms()
    if pm.refit is not None:
        # not a loop (bespoke imports neither this module nor parameters): imported when a
        # refit is written, as bespoke brings the refit's optimizer (scipy.optimize, ~0.5 s)
        from hybridff.mm.bespoke import record_in_atom_order

        terms.update(record_in_atom_order(pm.refit, pm.mol))

    def typed(atoms: tuple[int, ...]) -> dict[str, str]:
        return {f"type{k + 1}": own_type[a] for k, a in enumerate(atoms)}

    bonds = ET.SubElement(root, "HarmonicBondForce")
    for atoms, (length, k, *_) in terms["bonds"].items():
        ET.SubElement(bonds, "Bond", {**typed(atoms), "length": repr(length), "k": repr(k)})
    angles = ET.SubElement(root, "HarmonicAngleForce")
    for atoms, (angle, k, *_) in terms["angles"].items():
        ET.SubElement(angles, "Angle", {**typed(atoms), "angle": repr(angle), "k": repr(k)})
    # anharmonic terms of a refit: c3 d^3 + c4 d^4 about the harmonic term's minimum, inside
    # the training data's range [lo, hi] of d (records from version 3), tangent beyond it, or
    # for a bond with a Morse exponent a (version 4) a Morse curve beyond it
    forms = {4: ("c3*({q}-x0)^3 + c4*({q}-x0)^4", ("x0", "c3", "c4")),
             6: (ANHARMONIC_ENERGY, ("x0", "c3", "c4", "lo", "hi")),
             7: (MORSE_TAIL_ENERGY, ("x0", "k", "c3", "c4", "lo", "hi", "a"))}
    for tag, term, variable, table in (("CustomBondForce", "Bond", "r", terms["bonds"]),
                                       ("CustomAngleForce", "Angle", "theta", terms["angles"])):
        anharmonic = {a: v for a, v in table.items()
                      if len(v) >= 4 and (v[2] or v[3] or (len(v) == 7 and v[6] > 0))}
        for size, (energy, names) in forms.items():
            chosen = {a: v for a, v in anharmonic.items() if len(v) == size}
            if not chosen:
                continue
            element = ET.SubElement(root, tag, {"energy": energy.format(q=variable)})
            for name in names:
                ET.SubElement(element, f"Per{term}Parameter", {"name": name})
            for atoms, value in chosen.items():
                numbers = value if "k" in names else (value[0], *value[2:])
                ET.SubElement(element, term, {**typed(atoms), **{
                    name: repr(float(v)) for name, v in zip(names, numbers, strict=True)}})
    if terms.get("cross"):
        ET.SubElement(root, "Script").text = cross_terms_script(
            {tuple(own_type[a] for a in atoms): values
             for atoms, values in terms["cross"].items()}, f"hybridff cross terms {prefix.rstrip('-')}")
    torsions = ET.SubElement(root, "PeriodicTorsionForce", {"ordering": "amber"})
    for kind in ("Proper", "Improper"):
        for atoms, parts in terms[kind].items():
            # OpenMM lists an improper's centre first; the System (amber order) third
            attrs = typed(atoms if kind == "Proper" else (atoms[2], atoms[0], atoms[1], atoms[3]))
            for j, (periodicity, phase, k) in enumerate(parts, start=1):
                attrs.update({f"periodicity{j}": str(periodicity), f"phase{j}": repr(phase),
                              f"k{j}": repr(k)})
            ET.SubElement(torsions, kind, attrs)
    nonbonded = ET.SubElement(root, "NonbondedForce", dict(tables.nonbonded_attributes))
    ET.SubElement(nonbonded, "UseAttributeFromResidue", {"name": "charge"})
    for i in order:
        lj = tables.nonbonded_atoms[tables.type_name(pm.atom_types[i])]
        ET.SubElement(nonbonded, "Atom", {"type": own_type[i], "sigma": lj["sigma"],
                                          "epsilon": lj["epsilon"]})
    ET.indent(root, space=" ")
    return ET.tostring(root, encoding="unicode")


def xml_header(pm: ParameterizedMolecule) -> ET.Element:
    """A ``<ForceField>`` root whose ``<Info>`` names the provenance of ``pm``."""
    root = ET.Element("ForceField")
    info = ET.SubElement(root, "Info")
    ET.SubElement(info, "Source").text = (
        f"hybridff {__version__}; force field {pm.forcefield} (sha256 "
        f"{pm.forcefield_sha256[:12]}); charges {pm.charge_method}; {pm.smiles}; "
        f"MM signature {pm.signature.key()}")
    return root


def residue_xml(pm: ParameterizedMolecule, root: ET.Element, names: list[str], resname: str,
                order: Any, type_of: dict[int, str]) -> None:
    """The residue template: atoms in ``order`` with types ``type_of`` and charges, bonds."""
    residues = ET.SubElement(root, "Residues")
    res = ET.SubElement(residues, "Residue", {"name": resname})
    for i in order:
        ET.SubElement(res, "Atom", {"name": names[i], "type": type_of[i],
                                    "charge": format(float(pm.charges[i]), ".10f")})
    for b in pm.mol.GetBonds():
        ET.SubElement(res, "Bond", {"atomName1": names[b.GetBeginAtomIdx()],
                                    "atomName2": names[b.GetEndAtomIdx()]})


def class_typed_ffxml(pm: ParameterizedMolecule, names: list[str], resname: str,
                      order: Any) -> str:
    """The template with GAFF2's own types (OpenMM orders impropers itself)."""
    tables = load_tables(pm.forcefield)
    root = xml_header(pm)
    residue_xml(pm, root, names, resname, order,
                {i: tables.type_name(t) for i, t in enumerate(pm.atom_types)})
    filled_terms_xml(root, pm.filled_terms)
    ET.indent(root, space=" ")
    return ET.tostring(root, encoding="unicode")


def filled_terms_xml(root: ET.Element, terms: list[FilledTerm]) -> None:
    """Class-typed force elements of the terms filled by analogy (frcmod units to OpenMM's)."""
    bonds = [t for t in terms if t.kind == "bond"]
    angles = [t for t in terms if t.kind == "angle"]
    propers = [t for t in terms if t.kind == "proper"]
    impropers = [t for t in terms if t.kind == "improper"]
    if bonds:
        el = ET.SubElement(root, "HarmonicBondForce")
        for t in bonds:
            k, r0 = t.values
            ET.SubElement(el, "Bond", {"class1": t.classes[0], "class2": t.classes[1],
                                       "length": repr(r0 * units.ANGSTROM_TO_NM),
                                       "k": repr(units.amber_bond_k_to_openmm(k))})
    if angles:
        el = ET.SubElement(root, "HarmonicAngleForce")
        for t in angles:
            k, theta0 = t.values
            ET.SubElement(el, "Angle", {"class1": t.classes[0], "class2": t.classes[1],
                                        "class3": t.classes[2], "angle": repr(math.radians(theta0)),
                                        "k": repr(units.amber_angle_k_to_openmm(k))})
    if propers or impropers:
        el = ET.SubElement(root, "PeriodicTorsionForce", {"ordering": "amber"})
        for t in propers:
            attrs = {f"class{i + 1}": ("" if c == "X" else c) for i, c in enumerate(t.classes)}
            for j, (idivf, pk, phase, pn) in enumerate(
                    np.asarray(t.values).reshape(-1, 4).tolist(), start=1):
                attrs[f"periodicity{j}"] = str(abs(int(round(pn))))
                attrs[f"phase{j}"] = repr(math.radians(phase))
                attrs[f"k{j}"] = repr(pk / idivf * units.KCAL_TO_KJ)
            ET.SubElement(el, "Proper", attrs)
        for t in impropers:  # Amber puts the central atom third, OpenMM first
            a, b, c, d = t.classes
            pk, phase, pn = t.values
            ET.SubElement(el, "Improper", {
                "class1": c, "class2": a, "class3": b, "class4": d,
                "periodicity1": str(abs(int(round(pn)))), "phase1": repr(math.radians(phase)),
                "k1": repr(pk * units.KCAL_TO_KJ)})



#: energy of the stretch-bend and bond-bond terms of a bespoke refit (p2 the angle's vertex;
#: :func:`hybridff.mm.refit.cross_energy_forces` computes the same)
CROSS_TERM_ENERGY = ("(angle(p1,p2,p3)-theta0)*(ksb1*(distance(p1,p2)-r10)"
                     "+ksb2*(distance(p2,p3)-r20))+kbb*(distance(p1,p2)-r10)*(distance(p2,p3)-r20)")


def cross_terms_script(table: dict[tuple[str, str, str], tuple[float, ...]], name: str) -> str:
    """A ForceField ``<Script>`` that adds the cross terms ``table`` ((type of a, j, b) ->
    (θ0, r10, r20, k_sb1, k_sb2, k_bb)) as a CustomCompoundBondForce over the System's angles.

    OpenMM's ForceField XML has no tag for CustomCompoundBondForce (which atoms a compound
    bond spans cannot be told from a Topology in general); a ``<Script>`` is its way to add
    such a Force: ``createSystem`` runs it at the end with ``sys`` and ``data`` (the atom types
    and angles it found). Here each angle whose atom types are a key (either direction) gets
    the term; the types are this molecule's own, so no other molecule's angle matches.
    """
    rows = ",\n".join(f"    {key!r}: {tuple(float(v) for v in values)!r}"
                      for key, values in sorted(table.items()))
    return f"""
# hybridff: stretch-bend and bond-bond terms of a bespoke refit (CustomCompoundBondForce)
import openmm as _openmm
_cross_table = {{
{rows},
}}
_cross_force = _openmm.CustomCompoundBondForce(3, {CROSS_TERM_ENERGY!r})
_cross_force.setName({name!r})
for _name in ("theta0", "r10", "r20", "ksb1", "ksb2", "kbb"):
    _cross_force.addPerBondParameter(_name)
for _angle in data.angles:
    _types = tuple(data.atomType[data.atoms[_i]] for _i in _angle)
    if _types in _cross_table:
        _cross_force.addBond(list(_angle), _cross_table[_types])
    elif _types[::-1] in _cross_table:
        _cross_force.addBond(list(_angle[::-1]), _cross_table[_types[::-1]])
if _cross_force.getNumBonds() > 0:
    sys.addForce(_cross_force)
"""


def merge_ffxml(documents: list[str]) -> str:
    """Merge per-molecule ForceField XML documents into one file (sections combined by tag
    and attributes, an element that is already in its section, such as
    ``<UseAttributeFromResidue>``, written once; the first ``<Info>`` kept), as ``hybridff
    parameterize`` writes for several molecules."""
    root = ET.Element("ForceField")
    sections: dict[tuple[str, tuple], tuple[ET.Element, set[bytes]]] = {}
    for doc in documents:
        for child in ET.fromstring(doc):
            key = (child.tag, tuple(sorted(child.attrib.items())))
            if child.tag == "Info":
                if "Info" not in [c.tag for c in root]:
                    root.append(child)
                continue
            if key not in sections:
                sections[key] = ET.SubElement(root, child.tag, child.attrib), set()
            section, seen = sections[key]
            for element in child:
                element.tail = None  # the layout is redone below
                text = ET.tostring(element)
                if text not in seen:
                    seen.add(text)
                    section.append(element)
    ET.indent(root, space=" ")
    return ET.tostring(root, encoding="unicode")
