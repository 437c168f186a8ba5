"""Bad input to the classical layer ends in a clear error naming the atom or line."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from hybridff.exceptions import (
    MoleculeInputError,
    UnsupportedChemistryError,
    UnsupportedElementError,
)
from hybridff.molecule import atom_names, load_molecule, load_molecules


def test_smiles_gets_hydrogens_names_and_3d():
    mol = load_molecule("CCO")
    assert mol.GetNumAtoms() == 9
    assert mol.GetConformer().Is3D()
    assert atom_names(mol)[:3] == ["C1", "C2", "O1"]
    assert len(set(atom_names(mol))) == 9


def test_unknown_element_names_the_atom():
    with pytest.raises(UnsupportedElementError, match=r"atom 1 \(.*Si\).*Si is not supported"):
        load_molecule("C[Si](C)(C)C")


def test_radical_is_refused_with_advice():
    with pytest.raises(UnsupportedChemistryError, match=r"atom 1 .*unpaired.*radicals"):
        load_molecule("[CH3][CH2]")


def test_unparseable_smiles():
    with pytest.raises(MoleculeInputError, match="neither an existing molecule file nor a SMILES"):
        load_molecule("C1CC(")


def test_truncated_sdf_names_the_record(tmp_path):
    good = Chem.MolToMolBlock(Chem.AddHs(Chem.MolFromSmiles("CCO")))
    path = tmp_path / "broken.sdf"
    path.write_text(good + "$$$$\n" + good[: len(good) // 2])
    with pytest.raises(MoleculeInputError, match=r"record 2 could not be parsed"):
        load_molecules(path)


def test_nan_coordinates_name_the_atom(tmp_path):
    mol = Chem.AddHs(Chem.MolFromSmiles("CO"))
    conf = Chem.Conformer(mol.GetNumAtoms())
    for i in range(mol.GetNumAtoms()):
        conf.SetAtomPosition(i, (float(i), 0.0, 0.0))
    conf.SetAtomPosition(1, (np.nan, 0.0, 0.0))
    conf.Set3D(True)
    mol.AddConformer(conf)
    with pytest.raises(MoleculeInputError, match=r"atom 1 \(.*O\) has non-finite coordinates"):
        load_molecule(mol)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(MoleculeInputError, match="does not exist"):
        load_molecule(tmp_path / "nope.sdf")
    odd = tmp_path / "x.pdbqt"
    odd.write_text("junk")
    with pytest.raises(MoleculeInputError, match="unknown molecule format"):
        load_molecule(odd)


def test_smi_file_line_number(tmp_path):
    path = tmp_path / "in.smi"
    path.write_text("CCO ethanol\nC1CC( broken\n")
    with pytest.raises(MoleculeInputError, match=r"in.smi:2: unparseable SMILES"):
        load_molecules(path)
