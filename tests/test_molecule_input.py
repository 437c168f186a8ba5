"""Bad input to the classical layer ends in a clear error naming the atom or line."""

from __future__ import annotations

import re

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from hybridff.exceptions import (
    MoleculeInputError,
    UnsupportedChemistryError,
    UnsupportedElementError,
)
from hybridff.io.molecule import atom_names, gaff_element, load_molecule, load_molecules


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
    with pytest.raises(MoleculeInputError,
                       match=r"record 2 \(line \d+\): RDKit could not build a molecule"):
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


# ------------------------------------------------------------------ molecules as people have them


def test_empty_file_and_folder_are_clear_errors(tmp_path):
    empty = tmp_path / "empty.sdf"
    empty.write_text("")
    with pytest.raises(MoleculeInputError, match=r"empty\.sdf: the file is empty; give a file"):
        load_molecule(empty)
    with pytest.raises(MoleculeInputError, match=r"is a folder, not a molecule file"):
        load_molecule(str(tmp_path))
    folder = tmp_path / "looks.sdf"
    folder.mkdir()
    with pytest.raises(MoleculeInputError, match=r"looks\.sdf is a folder"):
        load_molecule(folder)


def test_smiles_longer_than_a_file_name():
    """A SMILES over 255 characters is no file name (the OS refuses to look it up)."""
    smiles = "C" * 300
    mol = load_molecule(smiles, conformer=False)
    assert sum(a.GetAtomicNum() == 6 for a in mol.GetAtoms()) == 300
    with pytest.raises(MoleculeInputError,
                       match=r"CCCC\.\.\. \(301 characters\)' is neither an existing molecule "
                             r"file nor a SMILES RDKit can parse \(RDKit: .*\); check"):
        load_molecule(smiles + "(")


@pytest.mark.parametrize("smiles, kept, removed, charge", [
    ("Cl.CN", "CN", "Cl", "+0"),
    ("CC(=O)[O-].[Na+]", "CC(=O)[O-]", "[Na+]", "-1"),
    ("[Cl-].C[N+](C)(C)C", "C[N+](C)(C)C", "[Cl-]", "+1"),
])
def test_salts_keep_the_largest_organic_fragment(smiles, kept, removed, charge, caplog):
    mol = load_molecule(smiles, conformer=False)
    assert len(Chem.GetMolFrags(mol)) == 1
    assert Chem.MolToSmiles(Chem.RemoveHs(mol)) == Chem.MolToSmiles(Chem.MolFromSmiles(kept))
    assert Chem.GetFormalCharge(mol) == int(charge)
    assert re.search(rf"has 2 fragments: kept the largest organic one, {re.escape(kept)} \(net "
                     rf"charge {re.escape(charge)} e; .*\), removed {re.escape(removed)}; give a "
                     "fragment on its own", caplog.text), caplog.text


def _acetate_block(charge_flag: bool) -> str:
    """Acetate with all hydrogens listed, as a program that writes no valence field would."""
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)[O-]"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    if not charge_flag:
        for atom in mol.GetAtoms():
            atom.SetFormalCharge(0)
    lines = Chem.MolToMolBlock(mol).splitlines()
    # RDKit writes a valence of 1 for the bare O (column 48): other programs leave it 0
    return "\n".join(line[:48] + "  0" + line[51:] if len(line) > 60 else line
                     for line in lines) + "\n"


def test_hydrogens_added_to_a_file_that_lists_them_are_named(tmp_path, caplog):
    path = tmp_path / "acetate.sdf"
    path.write_text(_acetate_block(charge_flag=False))
    mol = load_molecule(path, conformer=False)
    assert mol.GetNumAtoms() == 8  # the O- became an OH: the warning says so
    assert re.search(r"acetate\.sdf, record 1 \(line 1\): the input lists its hydrogens, yet 1 "
                     r"atom\(s\) have fewer bonds than their neutral valence: hydrogens were "
                     r"added, changing the molecule: atom 3 \(O\): 1 H\. If these atoms are "
                     r"charged \(O- with one bond, N\+ with four\), give their charges", caplog.text)
    caplog.clear()
    path.write_text(_acetate_block(charge_flag=True))
    assert load_molecule(path, conformer=False).GetNumAtoms() == 7
    assert "hydrogens were added" not in caplog.text
    load_molecule("CC(=O)O", conformer=False)  # hydrogens of a SMILES are no news
    assert "hydrogens were added" not in caplog.text


def test_ammonium_without_its_charge_flag_gets_advice(tmp_path):
    mol = Chem.AddHs(Chem.MolFromSmiles("C[NH3+]"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    mol.GetAtomWithIdx(1).SetFormalCharge(0)
    path = tmp_path / "ammonium.sdf"
    path.write_text(Chem.MolToMolBlock(mol, kekulize=False))
    with pytest.raises(MoleculeInputError, match=r"atom 1 \(N\) has more bonds than its neutral "
                                                 r"valence: if it is charged \(e\.g\. N\+ with four "
                                                 r"bonds\), give its charge in the file"):
        load_molecule(path)


# ------------------------------------------------------------------------ antechamber's mol2

#: name -> (SMILES, antechamber charge method): aromatic, charged, zwitterionic, hypervalent
ANTECHAMBER_MOLECULES = {
    "acetate": ("CC(=O)[O-]", "bcc"),
    "methylammonium": ("C[NH3+]", "bcc"),
    "imidazolium": ("c1c[nH]c[nH+]1", "bcc"),
    "tetrazolate": ("c1nn[n-]n1", "bcc"),
    "alanine_zwitterion": ("C[C@H]([NH3+])C(=O)[O-]", "bcc"),
    "nitrobenzene": ("c1ccccc1[N+](=O)[O-]", "gas"),
    "paracetamol": ("CC(=O)Nc1ccc(O)cc1", "gas"),
    "pyridine_sulfonamide": ("NS(=O)(=O)c1cccnc1", "gas"),
    "chlorobromothiophene": ("Clc1ccc(Br)s1", "gas"),
    "methyl_phosphate": ("COP(=O)([O-])[O-]", "bcc"),
}


def _antechamber_mol2(smiles: str, charge_method: str, folder) -> str:
    from hybridff.mm.ambertools import run_program

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=7)
    AllChem.MMFFOptimizeMolecule(mol)
    Chem.MolToMolFile(mol, str(folder / "in.sdf"))
    run_program("antechamber", ["-i", "in.sdf", "-fi", "sdf", "-o", "out.mol2", "-fo", "mol2",
                                "-at", "gaff2", "-c", charge_method, "-nc",
                                str(Chem.GetFormalCharge(mol)), "-pf", "y"], cwd=folder)
    return (folder / "out.mol2").read_text()


@pytest.fixture(scope="module")
def antechamber_files(tmp_path_factory):
    """antechamber -fo mol2 -at gaff2 files of ANTECHAMBER_MOLECULES (-c bcc for the ions,
    whose charge column must total the net charge; -c gas elsewhere, for speed)."""
    folder = tmp_path_factory.mktemp("antechamber")
    out = {}
    for name, (smiles, method) in ANTECHAMBER_MOLECULES.items():
        work = folder / name
        work.mkdir()
        path = folder / f"{name}.mol2"
        path.write_text(_antechamber_mol2(smiles, method, work))
        out[name] = path
    return out


@pytest.mark.parametrize("name", list(ANTECHAMBER_MOLECULES))
def test_antechamber_mol2_is_read_with_its_charges(name, antechamber_files, caplog):
    from hybridff.charges import assign_charges

    path = antechamber_files[name]
    text = path.read_text()
    rows = [line.split() for line in text.split("@<TRIPOS>ATOM")[1].split("@<TRIPOS>BOND")[0]
            .strip().splitlines()]
    types = [row[5] for row in rows]
    assert all(t.islower() and gaff_element(t) for t in types), types  # GAFF2 types
    smiles, method = ANTECHAMBER_MOLECULES[name]
    mol = load_molecule(path)
    expected = Chem.MolFromSmiles(smiles)
    # the same molecule up to resonance (where a tetrazolate's charge is drawn)
    assert Chem.MolToInchi(mol) == Chem.MolToInchi(expected)
    assert Chem.GetFormalCharge(mol) == Chem.GetFormalCharge(expected)
    assert "hydrogens were added" not in caplog.text
    assert atom_names(mol) == [row[1] for row in rows]  # antechamber's atom names, same order
    assert [a.GetSymbol() for a in mol.GetAtoms()] == [gaff_element(t) for t in types]
    column = [float(row[8]) for row in rows]
    if method == "bcc":  # antechamber's Gasteiger ignores -nc: only bcc columns total the charge
        charges = assign_charges(mol, "file")
        np.testing.assert_allclose(charges, column, atol=0.0011)  # rounding residual spread
        assert charges.sum() == pytest.approx(Chem.GetFormalCharge(expected), abs=1e-6)


def test_mol2_messages_carry_no_cpp_stack_trace(antechamber_files, tmp_path):
    lines = antechamber_files["paracetamol"].read_text().splitlines()
    atoms = lines.index("@<TRIPOS>ATOM")
    mixed = lines[atoms + 1].replace(" c3 ", " C.3 ")  # one SYBYL type: RDKit reads the file
    assert mixed != lines[atoms + 1]
    path = tmp_path / "mixed.mol2"
    path.write_text("\n".join(lines[: atoms + 1] + [mixed] + lines[atoms + 2:]) + "\n")
    with pytest.raises(MoleculeInputError) as err:
        load_molecule(path)
    text = str(err.value)
    assert "RDKit could not build a molecule from it (" in text and "also reads GAFF/GAFF2" in text
    for noise in ("Stacktrace", "Violation occurred", "Failed Expression", ".h", "0# ", "****"):
        assert noise not in text, noise
    assert len(text) < 700
    bad = tmp_path / "badtype.mol2"
    bad.write_text("\n".join(lines[: atoms + 1] + [lines[atoms + 1].replace(" c3 ", " zz ")]
                             + lines[atoms + 2:]) + "\n")
    with pytest.raises(MoleculeInputError,
                       match=r"badtype\.mol2, record 1 \(line 1\), line \d+: atom 0 \(C1\) has the "
                             r"atom type 'zz', not a GAFF/GAFF2 type"):
        load_molecule(bad)


def test_parameterize_takes_a_smiles(tmp_path, capsys):
    from hybridff.cli import main

    out = tmp_path / "salt.xml"
    assert main(["parameterize", "CC(=O)[O-].[Na+]", "--charges", "gasteiger", "-o", str(out)]) == 0
    from xml.etree import ElementTree

    residues = ElementTree.parse(out).getroot().findall("./Residues/Residue")
    assert [len(r.findall("Atom")) for r in residues] == [7]  # acetate; Na+ removed, warned
    assert "wrote" in capsys.readouterr().out
