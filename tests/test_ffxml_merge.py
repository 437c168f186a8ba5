"""Several molecules in one ForceField XML file (hybridff.mm.ffxml.merge_ffxml, what
``hybridff parameterize`` writes for a file of several molecules)."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

from openmm import app

from hybridff.mm.ffxml import merge_ffxml
from hybridff.mm.parameters import parameterize
from hybridff.mm.system import ligand_topology


def test_merged_file_builds_both_molecules_as_their_own_files_do():
    smiles = {"M01": "CCO", "M02": "c1ccccc1O"}
    pms = {name: parameterize(s, "gasteiger", residue_name=name) for name, s in smiles.items()}
    merged = merge_ffxml([pm.to_ffxml() for pm in pms.values()])
    root = ET.fromstring(merged)
    tags = [child.tag for child in root]
    assert tags.count("Info") <= 1
    assert len(tags) == len({(c.tag, tuple(sorted(c.attrib.items()))) for c in root})
    assert sorted(r.get("name") for r in root.iter("Residue")) == ["M01", "M02"]

    modeller = app.Modeller(*ligand_topology(smiles["M01"], "M01"))
    modeller.add(*ligand_topology(smiles["M02"], "M02"))
    system = app.ForceField("hybridff-gaff2.xml", io.StringIO(merged)).createSystem(
        modeller.topology)
    separate = [app.ForceField("hybridff-gaff2.xml", io.StringIO(pm.to_ffxml())).createSystem(
        ligand_topology(smiles[name], name)[0]) for name, pm in pms.items()]
    assert system.getNumParticles() == modeller.topology.getNumAtoms() == 9 + 13
    assert _charges(system) == _charges(separate[0]) + _charges(separate[1])
    assert _count(system, "HarmonicBondForce", "getNumBonds") == sum(
        _count(s, "HarmonicBondForce", "getNumBonds") for s in separate)


def _charges(system) -> list[float]:
    nb = next(f for f in system.getForces() if type(f).__name__ == "NonbondedForce")
    return [nb.getParticleParameters(i)[0]._value for i in range(nb.getNumParticles())]


def _count(system, force: str, method: str) -> int:
    return getattr(next(f for f in system.getForces() if type(f).__name__ == force), method)()
