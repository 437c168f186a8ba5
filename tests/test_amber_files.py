"""AmberTools files and types-only antechamber runs (hybridff.mm.ambertools), behind
scripts/build_forcefield.py and scripts/make_typing_reference.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import have_program
from rdkit import Chem
from rdkit.Chem import AllChem

from hybridff.exceptions import DataFormatError, ExternalToolError
from hybridff.mm import ambertools
from hybridff.mm.ambertools import antechamber_types, find_data_file, parse_parm_file

#: a parm file in GAFF2's layout, two types
PARM = """\
TOY parameters
c3 12.01         0.878               Sp3 C
hc 1.008         0.135               H on aliphatic C

hn  ho
c3-c3  232.5    1.5350       comment
c3-hc  337.3    1.0920

hc-c3-hc   39.4      108.35
c3-c3-hc   46.3      110.05

X -c3-c3-X    1    0.156         0.0             3.
hc-c3-c3-hc   1    0.150         0.0            -3.
hc-c3-c3-hc   1    0.250         0.0             1.

X -X -c3-hc          1.1          180.0         2.

  hw  ow  0000.     0000.                                4.  flag for fast water


MOD4      RE
  c3          1.9069  0.1094
  hc          1.4593  0.0208

END
"""


def test_a_parm_file_is_read_in_amber_units(tmp_path: Path) -> None:
    path = tmp_path / "toy.dat"
    path.write_text(PARM)
    parm = parse_parm_file(path)
    assert parm.title == "TOY parameters"
    assert parm.masses == {"c3": 12.01, "hc": 1.008}
    assert parm.bonds == {("c3", "c3"): (232.5, 1.535), ("c3", "hc"): (337.3, 1.092)}
    assert parm.angles[("c3", "c3", "hc")] == (46.3, 110.05)
    # IDIVF divides the barrier; a negative periodicity (more terms follow) becomes positive
    assert parm.propers[("X", "c3", "c3", "X")].terms == [(3, 0.0, 0.156)]
    assert parm.propers[("hc", "c3", "c3", "hc")].terms == [(3, 0.0, 0.15), (1, 0.0, 0.25)]
    assert parm.impropers[("X", "X", "c3", "hc")].terms == [(2, 180.0, 1.1)]
    assert parm.lj == {"c3": (1.9069, 0.1094), "hc": (1.4593, 0.0208)}


def test_a_file_without_the_nonbonded_section_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "cut.dat"
    path.write_text(PARM.split("MOD4")[0])
    with pytest.raises(DataFormatError, match=r"cut\.dat: expected a 'MOD4 RE' nonbonded"):
        parse_parm_file(path)


def test_a_missing_data_file_names_itself_and_the_install_hint(tmp_path: Path,
                                                               monkeypatch) -> None:
    monkeypatch.setattr(ambertools.shutil, "which", lambda name: None)
    monkeypatch.setattr(ambertools.sys, "prefix", str(tmp_path))
    with pytest.raises(ExternalToolError, match=r"the tests need AmberTools' dat/x\.dat, not "
                                                r"found under .*pip install ambertools"):
        find_data_file("dat/x.dat", "the tests")
    (tmp_path / "dat").mkdir()
    (tmp_path / "dat" / "x.dat").write_text("x")
    assert find_data_file("dat/x.dat", "the tests") == tmp_path / "dat" / "x.dat"


@pytest.mark.amber
@pytest.mark.skipif(not have_program("antechamber"), reason="AmberTools antechamber missing")
def test_antechamber_types_in_rdkit_atom_order(tmp_path: Path) -> None:
    mol = Chem.AddHs(Chem.MolFromSmiles("OCC"))  # O first: antechamber must keep the order
    AllChem.EmbedMolecule(mol, randomSeed=1)
    assert antechamber_types(mol, tmp_path) == "oh c3 c3 ho h1 h1 hc hc hc".split()
    assert antechamber_types(mol, tmp_path, j=4) == "oh c3 c3 ho h1 h1 hc hc hc".split()
