"""The charge-method registry and the always-available methods (gasteiger, file)."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from hybridff.charges import assign_charges, available_charge_methods, enforce_total_charge
from hybridff.exceptions import ChargeAssignmentError, UnknownNameError
from hybridff.io.molecule import load_molecule
from hybridff.mm.parameters import parameterize


@pytest.mark.parametrize("smiles,total", [("CCO", 0), ("CC(=O)[O-]", -1), ("C[NH3+]", 1),
                                          ("[NH3+]CC(=O)[O-]", 0)])
def test_gasteiger_total_is_the_formal_charge(smiles, total):
    q = assign_charges(load_molecule(smiles), "gasteiger")
    assert q.sum() == pytest.approx(total, abs=1e-6)


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match=r"unknown charge method 'resp'.*gasteiger"):
        assign_charges(load_molecule("C"), "resp")
    assert {"am1bcc", "gasteiger", "file", "ml"} <= set(available_charge_methods())


def test_total_beyond_rounding_is_refused():
    with pytest.raises(ChargeAssignmentError, match="formal charge is -1"):
        enforce_total_charge(np.zeros(7), -1, "broken")
    fixed = enforce_total_charge(np.full(4, 0.25 + 1e-5), 1, "rounded")
    assert fixed.sum() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ChargeAssignmentError, match="more than the 0.001 e of rounding"):
        enforce_total_charge(np.full(4, 0.251), 1, "rounded")


def test_user_charges_off_by_rounding_are_normalized_with_a_warning(caplog):
    """antechamber's 4-decimal mol2 charges can total a few 0.001 e off: accepted for user
    charges (up to 0.01 e) with a warning naming the residual; more is refused."""
    with caplog.at_level("WARNING", logger="hybridff.charges"):
        fixed = enforce_total_charge(np.full(4, 0.251), 1, "file")
    assert fixed.sum() == pytest.approx(1.0, abs=1e-12)
    assert "residual +0.004000 e (rounding) is spread evenly over the 4 atoms" in caplog.text
    with pytest.raises(ChargeAssignmentError, match="more than the 0.01 e of rounding"):
        enforce_total_charge(np.full(4, 0.26), 1, "file")


def test_file_charges_from_mol2(tmp_path):
    mol = load_molecule("CO")
    q = np.array([0.1166, -0.5988, 0.0287, 0.0287, 0.0287, 0.3961])
    mol2 = tmp_path / "m.mol2"
    from hybridff.io.molecule import atom_names
    from hybridff.mm.ambertools import mol2_text

    text = mol2_text(mol, atom_names(mol), ["C.3", "O.3", "H", "H", "H", "H"], q)
    mol2.write_text(text)
    pm = parameterize(mol2, "file")
    np.testing.assert_allclose(pm.charges, q - (q.sum()) / 6, atol=1e-9)


def test_file_charges_from_sdf_property_and_errors(tmp_path):
    mol = Chem.AddHs(Chem.MolFromSmiles("CO"))
    mol.SetProp("PartialCharges", " ".join(["0.1", "-0.6", "0.05", "0.05", "0.05", "0.35"]))
    np.testing.assert_allclose(assign_charges(mol, "file"), [0.1, -0.6, 0.05, 0.05, 0.05, 0.35])
    mol.SetProp("PartialCharges", "0.1 -0.1")
    with pytest.raises(ChargeAssignmentError, match="2 charges given for a molecule of 6 atoms"):
        assign_charges(mol, "file")
    with pytest.raises(ChargeAssignmentError, match="carries no charges"):
        assign_charges(Chem.AddHs(Chem.MolFromSmiles("C")), "file")


def test_explicit_charges_argument():
    q = [-0.4, 0.1, 0.1, 0.1, 0.1]
    pm = parameterize("C", charges=q)
    assert pm.charge_method == "file"
    np.testing.assert_allclose(pm.charges, q)


def test_openff_molecule_input():
    toolkit = pytest.importorskip("openff.toolkit")
    off = toolkit.Molecule.from_smiles("CC(=O)O")
    pm = parameterize(off, "gasteiger")
    assert pm.mol.GetNumAtoms() == off.n_atoms
    assert pm.atom_types[:4] == ["c3", "c", "o", "oh"]
