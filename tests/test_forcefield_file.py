"""The shipped GAFF2 ForceField XML against an independent reading of gaff2.dat (ParmEd)."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from openmm import app

from hybridff.exceptions import ExternalToolError
from hybridff.mm.ambertools import find_data_file
from hybridff.mm.forcefield_files import forcefield_path

ROOT = Path(__file__).resolve().parents[1]
parmed = pytest.importorskip("parmed")


@pytest.fixture(scope="module")
def xml_root():
    return ET.parse(forcefield_path()).getroot()


@pytest.fixture(scope="module")
def gaff2_dat():
    try:
        return find_data_file("dat/leap/parm/gaff2.dat", "these tests")
    except ExternalToolError:
        pytest.skip("gaff2.dat (AmberTools) not installed")


@pytest.fixture(scope="module")
def parmed_params(gaff2_dat):
    return parmed.amber.AmberParameterSet(str(gaff2_dat))


def test_openmm_finds_the_file_by_name():
    ff = app.ForceField("hybridff-gaff2.xml")
    assert "gaff2-c3" in ff._atomTypes


def test_shipped_file_is_what_the_build_script_writes(tmp_path, gaff2_dat):
    out = tmp_path / "ff.xml"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_forcefield.py"), "--gaff2-dat",
                    str(gaff2_dat), "-o", str(out)], check=True, capture_output=True)
    assert out.read_text() == forcefield_path().read_text(), (
        "forcefields/hybridff-gaff2.xml is stale: rerun scripts/build_forcefield.py")


def test_bonds_angles_lj_match_parmed(xml_root, parmed_params):
    n_checked = 0
    for el in xml_root.iter("Bond"):
        a, b = el.get("class1"), el.get("class2")
        ref = parmed_params.bond_types[(a, b)]
        assert float(el.get("length")) == pytest.approx(ref.req / 10, rel=1e-9)
        assert float(el.get("k")) == pytest.approx(2 * ref.k * 4.184 * 100, rel=1e-9)
        n_checked += 1
    for el in xml_root.iter("Angle"):
        key = (el.get("class1"), el.get("class2"), el.get("class3"))
        ref = parmed_params.angle_types[key]
        assert float(el.get("angle")) == pytest.approx(math.radians(ref.theteq), rel=1e-9)
        assert float(el.get("k")) == pytest.approx(2 * ref.k * 4.184, rel=1e-9)
        n_checked += 1
    nb = xml_root.find("NonbondedForce")
    assert float(nb.get("coulomb14scale")) == pytest.approx(1 / 1.2)
    assert float(nb.get("lj14scale")) == pytest.approx(0.5)
    for el in nb.iter("Atom"):
        cls = el.get("type").removeprefix("gaff2-")
        at = parmed_params.atom_types[cls]
        assert float(el.get("sigma")) == pytest.approx(at.sigma / 10, rel=1e-6)
        assert float(el.get("epsilon")) == pytest.approx(at.epsilon * 4.184, rel=1e-6)
    ours = {tuple(sorted((el.get("class1"), el.get("class2")))) for el in xml_root.iter("Bond")}
    # gaff2.dat's TIP3P water types (ow/hw, no LJ there) are left to the water model's file
    theirs = {tuple(sorted(k)) for k in parmed_params.bond_types if not set(k) & {"ow", "hw"}}
    assert ours == theirs  # every bond of gaff2.dat converted, none invented
    assert n_checked > 10000


def test_torsions_match_parmed(xml_root, parmed_params):
    torsions = xml_root.find("PeriodicTorsionForce")
    assert torsions.get("ordering") == "amber"
    for el in torsions.iter("Proper"):
        key = tuple(el.get(f"class{i}") or "X" for i in range(1, 5))
        ref = parmed_params.dihedral_types[key]
        ours = sorted((int(el.get(f"periodicity{j}")), float(el.get(f"k{j}")),
                       float(el.get(f"phase{j}")))
                      for j in range(1, 7) if el.get(f"periodicity{j}"))
        theirs = sorted((int(t.per), t.phi_k * 4.184, math.radians(t.phase)) for t in ref)
        assert len(ours) == len(theirs), key
        for o, t in zip(ours, theirs, strict=True):
            assert o[0] == t[0] and o[1] == pytest.approx(t[1], abs=1e-9) and o[2] == pytest.approx(t[2], abs=1e-9), key
    impropers = list(torsions.iter("Improper"))
    assert len(impropers) == len(parmed_params.improper_periodic_types) // 2 or len(impropers) > 30
    for el in impropers:  # OpenMM: central atom first; Amber: central atom third
        c, a, b, d = (el.get(f"class{i}") or "X" for i in range(1, 5))
        ref = next((parmed_params.improper_periodic_types[(p, q, c, r)]
                    for p, q, r in itertools.permutations((a, b, d))
                    if (p, q, c, r) in parmed_params.improper_periodic_types), None)
        assert ref is not None, (a, b, c, d)
        assert float(el.get("k1")) == pytest.approx(ref.phi_k * 4.184, rel=1e-9)


def test_every_type_has_element_mass_and_lj(xml_root):
    types = xml_root.findall("./AtomTypes/Type")
    assert len(types) >= 90
    lj = {el.get("type") for el in xml_root.find("NonbondedForce").iter("Atom")}
    for t in types:
        assert t.get("element") in {"H", "C", "N", "O", "F", "P", "S", "Cl", "Br", "I"}
        assert float(t.get("mass")) > 0
        assert t.get("name") in lj
    assert xml_root.find("Info/Source").text.startswith("gaff2.dat")
