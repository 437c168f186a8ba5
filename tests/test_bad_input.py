"""Bad input, one place: each item of the reliability list ends in a clear message (what,
where, what to do) and leaves nothing half-written.

Items tested elsewhere are listed here, not repeated:

| item                                        | tests                                                                  |
|---------------------------------------------|------------------------------------------------------------------------|
| broken / truncated SDF                      | test_molecule_input::test_truncated_sdf_names_the_record;              |
|                                             | here: test_sdf_error_names_line_and_rdkit_reason                       |
| broken / truncated mol2                     | here: test_broken_mol2, test_mol2_with_several_records                 |
| empty file, folder, SMILES > 255 characters | test_molecule_input::test_empty_file_and_folder_are_clear_errors,     |
|                                             | ::test_smiles_longer_than_a_file_name; here: test_cli_molecule_*      |
| salts, several fragments                    | test_molecule_input::test_salts_keep_the_largest_organic_fragment,    |
|                                             | ::test_parameterize_takes_a_smiles                                    |
| charge missing in an SDF (N+, O-)           | test_molecule_input::test_hydrogens_added_to_a_file_that_lists_them_  |
|                                             | are_named, ::test_ammonium_without_its_charge_flag_gets_advice        |
| antechamber's (GAFF2-typed) mol2            | test_molecule_input::test_antechamber_mol2_is_read_with_its_charges,  |
|                                             | ::test_mol2_messages_carry_no_cpp_stack_trace                         |
| QM labels in another unit                   | test_qm_units::test_labels_in_another_unit_are_refused_naming_it,     |
|                                             | ::test_gradients_given_as_forces_are_refused,                         |
|                                             | ::test_train_refuses_hartree_labels_before_training                   |
| broken / truncated xyz (QM labels)          | here: test_broken_extxyz, test_truncated_last_frame_*                  |
| atom order: other elements per index        | test_data_io::test_atom_order_mismatch_names_atom                      |
| atom order: same elements, atoms swapped    | here: test_swapped_atoms_in_qm_frames_are_named                        |
| QM file without forces / without energy     | test_data_io::test_missing_forces_or_energy                            |
| unsupported element                         | test_molecule_input::test_unknown_element_names_the_atom,              |
|                                             | test_charges_ml::test_unsupported_element_names_the_atom,              |
|                                             | test_templates::test_parameterize_cli_warns_about_net_charge_and_...; |
|                                             | here: test_unsupported_element_in_a_file_names_file_and_record         |
| non-neutral periodic system                 | test_system_options::test_net_charged_pme_warns_with_the_charge,       |
|                                             | test_simulate::test_charged_ligand_is_neutralized_with_ions;           |
|                                             | here: test_non_neutral_periodic_system_strict                          |
| overlapping atoms                           | here: test_overlapping_atoms (molecule, QM frame, simulation set-up)   |
| NaN positions                               | test_molecule_input::test_nan_coordinates_name_the_atom,               |
|                                             | test_simulate::test_nan_coordinates_are_a_clear_error;                 |
|                                             | here: test_non_finite_qm_frame (positions, energy, forces)             |
| model for other elements / other MM         | test_ml_backend::test_refuses_uncovered_element, ::test_refuses_mm_    |
|                                             | mismatch, ::test_refuses_ml_only_model; test_charges_ml::test_model_   |
|                                             | for_other_elements, ::test_wrong_model_files                           |
| corrupted model file                        | test_ml_backend::test_model_file_round_trip_and_corruption (truncated, |
|                                             | missing, no metadata); here: test_corrupted_model_file (CRC, empty)    |
| corrupted cache file                        | test_templates::test_cache_hit_corrupt_entry_and_key (cut JSON);       |
|                                             | here: test_corrupt_cache_entry_is_recomputed, test_cache_round_trip_   |
|                                             | keeps_unspecified_stereo, test_unusable_cache_*                        |
| second process writing the cache            | test_templates::test_two_processes_writing_the_cache_at_once;          |
|                                             | here: test_atomic_write_readers_see_whole_files                        |
| atomic writes (cache, model, outputs)       | test_templates::test_parameterize_cli_warns_... (no output on error);  |
|                                             | here: test_interrupted_write_leaves_the_old_file,                      |
|                                             | test_truncated_last_frame_is_cut_before_the_next_append,              |
|                                             | test_resume_after_a_stop_between_checkpoints                           |
| System XML round trip, same energy          | test_system_options::test_serialization_round_trip_same_energy,        |
|                                             | test_simulate::test_system_xml_round_trip_same_energy,                 |
|                                             | test_ml_backend::test_python_backend_system_round_trips_xml,           |
|                                             | test_simulate::test_ml_correction_with_ensemble_monitor (TorchForce:   |
|                                             | load_system_xml re-adds it, same energy)                               |
| restart from a checkpoint                   | test_simulate::test_restart_from_checkpoint_continues_the_same_...,    |
|                                             | test_simulate::test_cli_resume;                                        |
|                                             | here: test_resume_after_a_stop_between_checkpoints                     |
| errors reach the CLI without a traceback    | test_simulate::test_missing_file_is_a_clear_error; here: test_cli_*,   |
|                                             | test_error_message_of_os_value_and_openmm_errors                       |
| option out of range (--timestep-fs 0, ...)  | here: test_cli_option_out_of_range_is_one_line                         |
| output that cannot be written               | here: test_unwritable_output_is_refused_before_any_work,                |
|                                             | test_output_that_is_a_folder_is_refused                                |
| simulate into a folder holding a run        | here: test_simulate_refuses_a_folder_holding_a_run                     |
| run shorter than the report interval        | here: test_short_run_writes_its_last_frame_and_resumes,                |
|                                             | test_resume_after_an_empty_trajectory_of_an_older_run                  |
| settings given with --resume                | here: test_resume_refuses_settings_it_cannot_honour                    |
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import struct
import threading
import zipfile
from pathlib import Path

import numpy as np
import openmm
import pytest
from conftest import parameterized
from openmm import app, unit
from rdkit import Chem
from rdkit.Chem import AllChem

from hybridff.exceptions import (
    DataFormatError,
    MoleculeInputError,
    NonNeutralSystemError,
    OverlappingAtomsError,
    UnsupportedElementError,
)
from hybridff.io.files import atomic_write_text
from hybridff.io.molecule import load_molecule, load_molecules
from hybridff.mm.cache import ParameterCache, cache_key

pytest.importorskip("ase")

ROOT = Path(__file__).resolve().parents[1]
PARACETAMOL = ROOT / "examples" / "data" / "paracetamol.sdf"


@pytest.fixture(scope="module")
def paracetamol_mol() -> Chem.Mol:
    return load_molecule(PARACETAMOL)


def _numbers(mol: Chem.Mol) -> list[int]:
    return [a.GetAtomicNum() for a in mol.GetAtoms()]


def _bonds(mol: Chem.Mol) -> list[tuple[int, int]]:
    return [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]


# --------------------------------------------------------------------------- molecule files


def _mol2_lines(mol: Chem.Mol, tmp_path: Path) -> list[str]:
    from hybridff.cli.charges import write_mol2

    path = tmp_path / "good.mol2"
    write_mol2(path, mol, np.zeros(mol.GetNumAtoms()), "test")
    return path.read_text().splitlines()


def _section(lines: list[str], name: str) -> int:
    """0-based index of the line '@<TRIPOS>name'."""
    return next(k for k, line in enumerate(lines) if line.strip() == f"@<TRIPOS>{name}")


def _edit_field(line: str, field: int, value: str) -> str:
    fields = line.split()
    fields[field] = value
    return " ".join(fields)


MOL2_CASES = {
    # name: (edit of the lines, expected message; {atom}/{bond}: 1-based line numbers used)
    "cut in the atoms": (lambda ls, a, b: ls[: a + 12],
                         r"record 1 \(line 1\): declares 20 atoms, its ATOM section has 11; the file "
                         r"ends at line {cut}: truncated; re-export it"),
    "cut in the bonds": (lambda ls, a, b: ls[: b + 7],
                         r"record 1 \(line 1\): declares 20 bonds, its BOND section has 6; the file "
                         r"ends at line {cut}: truncated"),
    "cut in the header": (lambda ls, a, b: ls[:2],
                          r"record 1 \(line 1\): the file ends inside the MOLECULE header: truncated"),
    "bad coordinate": (lambda ls, a, b: ls[: a + 3] + [_edit_field(ls[a + 3], 3, "1.2.3")] + ls[a + 4:],
                       r"record 1, line {line}: atom 2 \(mol2 atom id 3\): expected 'id name x y z "
                       r"type \.\.\.', found '3 O1 .*1\.2\.3"),
    "bond to a missing atom": (lambda ls, a, b: ls[: b + 3] + [_edit_field(ls[b + 3], 2, "99")] + ls[b + 4:],
                               r"record 1, line {line}: expected a bond 'id atom1 atom2 type' "
                               r"between atoms 1\.\.20, found '3 \d+ 99"),
    "bond type RDKit drops": (lambda ls, a, b: ls[: b + 3] + [_edit_field(ls[b + 3], 3, "zz")] + ls[b + 4:],
                              r"record 1, line {line}: bond type 'zz' is not one RDKit reads .*the "
                              r"bond would be lost"),
}


@pytest.mark.parametrize("case", list(MOL2_CASES))
def test_broken_mol2(case, paracetamol_mol, tmp_path) -> None:
    lines = _mol2_lines(paracetamol_mol, tmp_path)
    atoms, bonds = _section(lines, "ATOM"), _section(lines, "BOND")
    edit, pattern = MOL2_CASES[case]
    broken = edit(lines, atoms, bonds)
    changed = next((k for k, (x, y) in enumerate(zip(broken, lines, strict=False)) if x != y), None)
    path = tmp_path / "broken.mol2"
    path.write_text("\n".join(broken) + "\n")
    expected = pattern.format(cut=len(broken), line=None if changed is None else changed + 1)
    with pytest.raises(MoleculeInputError, match=rf"broken\.mol2, {expected}"):
        load_molecules(path)


def test_mol2_with_several_records(paracetamol_mol, tmp_path) -> None:
    """Every record is read (RDKit's file reader silently keeps only the first); an error in
    the second names it and its first line."""
    lines = _mol2_lines(paracetamol_mol, tmp_path)
    path = tmp_path / "two.mol2"
    path.write_text("\n".join(lines + lines) + "\n")
    assert [m.GetNumAtoms() for m in load_molecules(path)] == [20, 20]
    path.write_text("\n".join(lines + lines[: _section(lines, "BOND") + 3]) + "\n")
    with pytest.raises(MoleculeInputError, match=rf"record 2 \(line {len(lines) + 1}\): declares "
                                                 r"20 bonds, its BOND section has 2"):
        load_molecules(path)


def test_sdf_error_names_line_and_rdkit_reason(tmp_path) -> None:
    good = PARACETAMOL.read_text()
    n_lines = len(good.splitlines())
    cut = tmp_path / "cut.sdf"
    cut.write_text(good + "\n".join(good.splitlines()[:10]) + "\n")
    with pytest.raises(MoleculeInputError, match=rf"cut\.sdf, record 2 \(line {n_lines + 1}\): "
                                                 r"RDKit could not build a molecule from it \(EOF "
                                                 r"hit.*a broken or truncated SDF record"):
        load_molecules(cut)
    valence = tmp_path / "valence.sdf"  # a charge line making the amide oxygen (atom 2) trivalent
    valence.write_text(good.replace("M  END", "M  CHG  1   3  -1\nM  END"))
    with pytest.raises(MoleculeInputError, match=r"record 1 \(line 1\): RDKit could not .*"
                                                 r"valence for atom # 2 O.*RDKit counts atoms from 0"):
        load_molecules(valence)


def test_unsupported_element_in_a_file_names_file_and_record(tmp_path) -> None:
    silane = Chem.AddHs(Chem.MolFromSmiles("C[Si](C)(C)C"))
    AllChem.EmbedMolecule(silane, randomSeed=1)
    good = PARACETAMOL.read_text()
    path = tmp_path / "two.sdf"
    path.write_text(good + Chem.MolToMolBlock(silane) + "$$$$\n")
    with pytest.raises(UnsupportedElementError,
                       match=rf"two\.sdf, record 2 \(line {len(good.splitlines()) + 1}\): atom 1 "
                             r"\(Si\): element Si is not supported; hybridff covers H, C, N"):
        load_molecules(path)


# --------------------------------------------------------------------------- QM label files


def _frames(mol: Chem.Mol, n: int = 3, seed: int = 0):
    """``n`` frames near the molecule's conformer (nm), with made-up energies and forces."""
    rng = np.random.default_rng(seed)
    x0 = mol.GetConformer().GetPositions() * 0.1
    pos = x0 + rng.normal(scale=0.002, size=(n, *x0.shape))
    ene = rng.normal(scale=10.0, size=n) - 1.5e6
    frc = rng.normal(scale=300.0, size=pos.shape)
    return pos, ene, frc


def _label_file(mol: Chem.Mol, path: Path, n: int = 3) -> tuple[Path, list[str]]:
    from hybridff.io.frames import write_extxyz

    pos, ene, frc = _frames(mol, n)
    write_extxyz(path, _numbers(mol), pos, ene, frc, append=False)
    return path, path.read_text().splitlines(keepends=True)


EXTXYZ_CASES = {
    # name: (line edit (0-based line index, new text or None to delete), expected message)
    "not a number": (lambda ls: (25, _edit_field(ls[25], 1, "1.2.3") + "\n"),
                     r"d\.xyz:23-44, frame 1: not readable as extxyz \(ValueError: .*'1\.2\.3'.*"
                     r"repair or delete this frame"),
    "a column missing": (lambda ls: (25, " ".join(ls[25].split()[:-1]) + "\n"),
                         r"d\.xyz:26: frame 1, atom 1: 6 columns, but the Properties of the comment "
                         r"line declare 7: the file is damaged here; repair or delete frame 1 "
                         r"\(lines 23-44\)"),
    "atom count garbled": (lambda ls: (22, "2O\n"),
                           r"d\.xyz:23: expected the atom count of frame 1, found '2O'"),
    "blank line": (lambda ls: (22, "\n" + ls[22]),
                   r"d\.xyz:23: a blank line where frame 1 should start"),
}


@pytest.mark.parametrize("case", list(EXTXYZ_CASES))
def test_broken_extxyz(case, paracetamol_mol, tmp_path) -> None:
    from hybridff.io.frames import read_extxyz

    path, lines = _label_file(paracetamol_mol, tmp_path / "d.xyz")
    assert int(lines[22]) == 20  # frame 1 starts at line 23
    k, text = EXTXYZ_CASES[case][0](lines)
    lines[k] = text
    path.write_text("".join(lines))
    with pytest.raises(DataFormatError, match=EXTXYZ_CASES[case][1]):
        read_extxyz(path, _numbers(paracetamol_mol))


#: where an interrupted append can stop: inside a line, at a line end, in the count line
CUTS = {"inside a line": -30, "at a line end": None, "in the atom-count line": "count"}


@pytest.mark.parametrize("cut", list(CUTS))
def test_truncated_last_frame_is_dropped_with_a_warning(cut, paracetamol_mol, tmp_path, caplog) -> None:
    from hybridff.io.frames import read_extxyz

    path, lines = _label_file(paracetamol_mol, tmp_path / "d.xyz")
    if cut == "in the atom-count line":
        text, have = "".join(lines[:44]) + "2", r"stops inside its atom-count line"
    elif cut == "at a line end":
        text, have = "".join(lines[:60]), r"is incomplete: the file ends after 14 of its 20 atom lines"
    else:
        text, have = "".join(lines)[:-30], r"is incomplete: the file ends after 19 of its 20 atom lines"
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="hybridff.io.frames"):
        frames = read_extxyz(path, _numbers(paracetamol_mol))
    assert len(frames) == 2
    assert caplog.records, "no warning"
    assert caplog.records[0].getMessage().startswith(f"{path}: frame 2 (line 45) ")
    assert re.search(have, caplog.text)
    assert "(an interrupted write); ignoring it" in caplog.text and "from line 45 on" in caplog.text


def test_truncated_last_frame_is_cut_before_the_next_append(paracetamol_mol, tmp_path, caplog) -> None:
    """``hybridff label`` resumes by appending: the incomplete frame must not stay in the
    middle of the file."""
    from hybridff.io.frames import read_extxyz, write_extxyz

    path, lines = _label_file(paracetamol_mol, tmp_path / "d.xyz")
    path.write_text("".join(lines)[:-30])
    pos, ene, frc = _frames(paracetamol_mol, 1, seed=5)
    with caplog.at_level(logging.WARNING, logger="hybridff.io.frames"):
        write_extxyz(path, _numbers(paracetamol_mol), pos, ene, frc)
    assert "removing it before appending" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hybridff.io.frames"):
        frames = read_extxyz(path, _numbers(paracetamol_mol), _bonds(paracetamol_mol))
    assert not caplog.records
    assert len(frames) == 3
    assert frames.energies[2] == pytest.approx(ene[0], rel=1e-12)
    np.testing.assert_allclose(frames.positions[2], pos[0], atol=1e-9)


@pytest.mark.parametrize(("i", "j", "element"), [(12, 17, "H"), (1, 5, "C")])
def test_swapped_atoms_in_qm_frames_are_named(i, j, element, paracetamol_mol, tmp_path) -> None:
    """Same elements at every index, but two atoms in another order: the bonds of the first
    frame give it away, and the message names the pair."""
    from hybridff.io.frames import read_extxyz, write_extxyz

    z = _numbers(paracetamol_mol)
    assert z[i] == z[j] == Chem.GetPeriodicTable().GetAtomicNumber(element)
    pos, ene, frc = _frames(paracetamol_mol)
    pos[:, [i, j]] = pos[:, [j, i]]
    path = tmp_path / "swapped.xyz"
    write_extxyz(path, z, pos, ene, frc, append=False)
    read_extxyz(path, z)  # the element-by-element check cannot see it
    with pytest.raises(DataFormatError,
                       match=rf"swapped\.xyz:1, frame 0: \d bond\(s\) of the molecule are far longer "
                             rf"than a bond .*atom {i} \({element}\) and atom {j} \({element}\) look "
                             r"swapped\..*write the frames in the molecule's atom order"):
        read_extxyz(path, z, _bonds(paracetamol_mol))


@pytest.mark.parametrize("what", ["position", "energy", "force"])
def test_non_finite_qm_frame(what, paracetamol_mol, tmp_path) -> None:
    from hybridff.io.frames import read_extxyz, write_extxyz

    z = _numbers(paracetamol_mol)
    pos, ene, frc = _frames(paracetamol_mol)
    if what == "energy":
        ene[1] = np.nan
    else:
        {"position": pos, "force": frc}[what][1, 2, 1] = np.nan  # atom 2 (O) of frame 1
    path = tmp_path / "nan.xyz"
    write_extxyz(path, z, pos, ene, frc, append=False)
    expected = {"position": r"atom 2 \(O\) has non-finite coordinates \[.*nan",
                "energy": r"the energy is nan",
                "force": r"the force on atom 2 \(O\) is \[.*nan"}[what]
    with pytest.raises(DataFormatError, match=rf"nan\.xyz:23, frame 1: {expected}.*; remove or "
                                              "recompute this frame"):
        read_extxyz(path, z)


# --------------------------------------------------------------------------- geometry


def _overlapping_ethanol() -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    conf = mol.GetConformer()
    p = conf.GetAtomPosition(6)
    conf.SetAtomPosition(3, (p.x + 0.2, p.y, p.z))  # an H of C1 0.2 Angstrom from an H of C2
    return mol


def _topology(names: list[str], box_nm: float | None = None) -> app.Topology:
    top = app.Topology()
    res = top.addResidue("LIG", top.addChain())
    for name in names:
        top.addAtom(name, app.Element.getBySymbol(name[0]), res)
    if box_nm is not None:
        top.setPeriodicBoxVectors([openmm.Vec3(box_nm, 0, 0), openmm.Vec3(0, box_nm, 0),
                                   openmm.Vec3(0, 0, box_nm)])
    return top


@pytest.mark.parametrize("where", ["molecule file", "simulation set-up", "qm frame",
                                   "positions", "periodic image"])
def test_overlapping_atoms(where, paracetamol_mol, tmp_path) -> None:
    pair = r"atom 3 \(H\) and atom 6 \(H\) are 0\.200 Angstrom apart, closer than 0\.5 Angstrom"
    if where == "molecule file":
        path = tmp_path / "overlap.sdf"
        path.write_text(Chem.MolToMolBlock(_overlapping_ethanol()) + "$$$$\n")
        with pytest.raises(OverlappingAtomsError,
                           match=rf"overlap\.sdf, record 1 \(line 1\): {pair}: overlapping atoms; "
                                 "fix the input structure"):
            load_molecule(path)
    elif where == "simulation set-up":  # refused before anything is built or run
        from hybridff.md.prepare import prepare_system

        with pytest.raises(OverlappingAtomsError, match=pair):
            prepare_system(_overlapping_ethanol(), solvent="none", cache=False)
    elif where == "qm frame":
        from hybridff.io.frames import read_extxyz, write_extxyz

        z = _numbers(paracetamol_mol)
        pos, ene, frc = _frames(paracetamol_mol)
        pos[1, 4] = pos[1, 3] + [0.01, 0.0, 0.0]
        path = tmp_path / "overlap.xyz"
        write_extxyz(path, z, pos, ene, frc, append=False)
        with pytest.raises(DataFormatError,
                           match=r"overlap\.xyz:23, frame 1: atom 3 \(N\) and atom 4 \(C\) are "
                                 r"0\.100 Angstrom apart.*remove or recompute this frame"):
            read_extxyz(path, z, _bonds(paracetamol_mol))
    else:
        from hybridff.md.prepare import check_positions

        box = 2.0 if where == "periodic image" else None
        top = _topology(["C1", "O1", "N1"], box)
        xyz = np.array([[0.01, 1.0, 1.0], [1.0, 1.0, 1.0], [0.03, 1.0, 1.0]])
        if box is not None:
            xyz[2, 0] = 1.995  # 0.015 nm from atom 0 through the box face
            check_positions(xyz, _topology(["C1", "O1", "N1"]), "starting positions")  # no box: far
        d = "0.150" if box else "0.200"
        with pytest.raises(OverlappingAtomsError,
                           match=rf"starting positions: atom 0 \(C1, C, residue LIG 1\) and atom 2 "
                                 rf"\(N1, N, residue LIG 1\) are {d} Angstrom apart.*fix the input"):
            check_positions(xyz * unit.nanometer, top, "starting positions")


def test_non_neutral_periodic_system_strict() -> None:
    """Warned by default (test_system_options); ``strict`` refuses it with the same text."""
    from hybridff.mm.system import create_system, warn_if_charged_periodic

    box = [openmm.Vec3(3, 0, 0), openmm.Vec3(0, 3, 0), openmm.Vec3(0, 0, 3)]
    with pytest.warns(UserWarning):
        system, _, _ = create_system(parameterized("CC(=O)[O-]"), "PME", box_vectors=box)
    with pytest.raises(NonNeutralSystemError, match=r"net charge of -1\.0000 e; .*Neutralize it, e\.g\. "
                                                    r"Modeller\.addSolvent\(\.\.\., neutralize=True\) or "
                                                    r"add counter-ions \(1 Na\+\)"):
        warn_if_charged_periodic(system, "PME", strict=True)
    warn_if_charged_periodic(system, "NoCutoff", strict=True)  # no Ewald: nothing to refuse


# --------------------------------------------------------------------------- model files


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from test_ml_backend import make_model_file

    from hybridff.ml.modelfile import save_model

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    model_file = make_model_file(n_models=2)
    path = save_model(tmp_path_factory.mktemp("model") / "m.pt", model_file.module,
                      model_file.metadata)
    torch.set_num_threads(before)
    return path


def _member_data_offset(path: Path, suffix: str) -> tuple[str, int, int]:
    """(name, offset of its data, size) of the largest archive member whose name ends so."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if i.filename.endswith(suffix)),
                   key=lambda i: i.file_size)
    raw = path.read_bytes()
    n, m = struct.unpack("<HH", raw[info.header_offset + 26: info.header_offset + 30])
    return info.filename, info.header_offset + 30 + n + m, info.file_size


@pytest.mark.parametrize("damage", ["empty", "not a model", "flipped weight byte",
                                    "flipped metadata byte"])
def test_corrupted_model_file(damage, model_path, tmp_path) -> None:
    """torch.jit.load does not check the archive's CRCs: a changed weight would load silently."""
    from hybridff.ml.modelfile import load_model

    raw = bytearray(model_path.read_bytes())
    path = tmp_path / "bad.pt"
    if damage == "empty":
        raw = bytearray()
    elif damage == "not a model":
        raw = bytearray(b"this is a text file\n" * 50)
    else:
        name, offset, size = _member_data_offset(
            model_path, "hybridff_metadata.json" if "metadata" in damage else "")
        raw[offset + size // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    if damage in ("empty", "not a model"):
        expected = (r"bad\.pt: not a readable TorchScript model file: truncated, or not a model at "
                    r"all \(not a valid zip archive: .*\); copy the file again or retrain")
    else:
        expected = (rf"bad\.pt: not a readable TorchScript model file: corrupted \(archive member "
                    rf"'{name}' fails its CRC check.*copy the file again or retrain")
    with pytest.raises(DataFormatError, match=expected):
        load_model(path)


# --------------------------------------------------------------------------- atomic writes


def _write_model(path: Path, model_path: Path) -> None:
    from hybridff.ml.modelfile import load_model, save_model

    loaded = load_model(model_path)
    save_model(path, loaded.module, dict(loaded.metadata, note="second"))


def _write_labels(path: Path, mol: Chem.Mol) -> None:
    from hybridff.io.frames import write_extxyz

    pos, ene, frc = _frames(mol, 2, seed=9)
    write_extxyz(path, _numbers(mol), pos, ene, frc, append=False)


@pytest.mark.parametrize("writer", ["model", "text output", "label file"])
def test_interrupted_write_leaves_the_old_file(writer, model_path, paracetamol_mol, tmp_path,
                                               monkeypatch) -> None:
    """A write that fails at the last moment (disk full at fsync) keeps the previous file
    whole and leaves no temporary file."""
    import hybridff.io.files

    path = tmp_path / {"model": "m.pt", "text output": "out.xml", "label file": "d.xyz"}[writer]
    write = {"model": lambda: _write_model(path, model_path),
             "text output": lambda: atomic_write_text(path, "<new/>\n"),
             "label file": lambda: _write_labels(path, paracetamol_mol)}[writer]
    if writer == "model":
        path.write_bytes(model_path.read_bytes())
    elif writer == "text output":
        path.write_text("<old/>\n")
    else:
        _label_file(paracetamol_mol, path)
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hybridff.io.files.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write()
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    write()  # and it works once the disk has room
    assert path.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_atomic_write_readers_see_whole_files(tmp_path) -> None:
    """Two writers replacing one file while a reader reads it: every read is one whole
    version (the mechanism the cache, models and outputs rely on)."""
    path = tmp_path / "shared.json"
    versions = {k: json.dumps({"writer": k, "payload": [k] * 20000}) for k in range(2)}
    atomic_write_text(path, versions[0])
    done = threading.Event()
    problems: list[str] = []
    seen: set[int] = set()

    def writer(k: int) -> None:
        try:
            for _ in range(60):
                atomic_write_text(path, versions[k])
        except Exception as exc:  # reported below
            problems.append(f"writer {k}: {exc!r}")

    def reader() -> None:
        while not done.is_set():
            text = path.read_text()
            if text in (versions[0], versions[1]):
                seen.add(json.loads(text)["writer"])
            else:
                problems.append(f"a partial file of {len(text)} characters")

    reading = threading.Thread(target=reader)
    writers = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    reading.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    reading.join()
    assert not problems
    assert seen  # the reader did read
    assert [p.name for p in tmp_path.iterdir()] == ["shared.json"]


# --------------------------------------------------------------------------- cache


def _cached(directory: Path, smiles: str = "CCO"):
    from hybridff.mm.templates import HybridTemplateGenerator

    gen = HybridTemplateGenerator(smiles, charge_method="gasteiger", cache=directory)
    return gen.parameterize_molecule(gen.molecules[0])


def _damaged(damage: str, entry: str, other_entry: str) -> str:
    if damage == "another molecule":  # a valid entry of CCN under the key of CCO
        return other_entry
    data = json.loads(entry)
    if damage == "non-finite charge":  # JSON allows NaN
        data["charges"][2] = float("nan")
    else:  # "garbled molecule"
        data["mol_binary"] = "AAAA"
    return json.dumps(data)


@pytest.mark.parametrize("damage", ["another molecule", "non-finite charge", "garbled molecule"])
def test_corrupt_cache_entry_is_recomputed(damage, tmp_path, caplog) -> None:
    """Valid JSON that is still wrong (the cut-JSON case is in test_templates): warned about,
    recomputed, rewritten; never used."""
    pm = _cached(tmp_path)
    key = cache_key(pm.smiles, pm.signature)
    path = ParameterCache(tmp_path).path(key)
    other = _cached(tmp_path / "other", "CCN")
    other_entry = next((tmp_path / "other").glob("*.json")).read_text()
    path.write_text(_damaged(damage, path.read_text(), other_entry))
    with caplog.at_level(logging.WARNING, logger="hybridff.mm.cache"):
        again = _cached(tmp_path)
    assert f"ignoring corrupt cache entry {path}" in caplog.text
    assert "it will be recomputed and rewritten" in caplog.text
    assert {"another molecule": "it holds CCN (hybridff-gaff2.xml (",
            "non-finite charge": "non-finite charge on atom 2",
            "garbled molecule": "ignoring corrupt"}[damage] in caplog.text
    assert again.smiles == pm.smiles != other.smiles
    np.testing.assert_allclose(again.charges, pm.charges)
    assert json.loads(path.read_text())["charges"] == pytest.approx(list(pm.charges))


def test_cache_round_trip_keeps_unspecified_stereo(tmp_path, caplog) -> None:
    """A molecule with an unspecified stereocentre read back from the cache is the same
    molecule (a molblock read back perceives stereo from 3D and made the template generator
    fail with 'cache entry does not match the molecule' on the second run)."""
    from hybridff.mm.system import molecules_topology
    from hybridff.mm.templates import HybridTemplateGenerator

    top, _ = molecules_topology([parameterized("CC(N)C(=O)O")])
    charges = []
    for _ in range(2):  # the second generator reads the entry the first one wrote
        gen = HybridTemplateGenerator("CC(N)C(=O)O", charge_method="gasteiger", cache=tmp_path)
        ff = app.ForceField("hybridff-gaff2.xml")
        ff.registerTemplateGenerator(gen.generator)
        with caplog.at_level(logging.INFO, logger="hybridff.mm.templates"):
            system = ff.createSystem(top)
        nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
        charges.append([nb.getParticleParameters(i)[0]._value for i in range(nb.getNumParticles())])
    assert caplog.text.count("parameterizing") == 1  # the second came from the cache
    assert charges[0] == pytest.approx(charges[1], abs=1e-12)


@pytest.mark.parametrize("problem", ["not a folder", "lock held"])
def test_unusable_cache_warns_and_parameterizes_without_it(problem, tmp_path, caplog) -> None:
    from filelock import FileLock

    directory = tmp_path / "cache"
    pm = parameterized("CCO")
    key = cache_key(pm.smiles, pm.signature)
    if problem == "not a folder":
        directory.write_text("a file where the cache folder should be")
        cache, held = ParameterCache(directory), None
    else:
        directory.mkdir()
        cache = ParameterCache(directory, lock_timeout_s=0.2)
        held = FileLock(str(cache.path(key)) + ".lock")
        held.acquire()
    try:
        with caplog.at_level(logging.WARNING, logger="hybridff.mm.cache"):
            got = cache.get_or_create(key, lambda: pm)
    finally:
        if held is not None:
            held.release()
    assert got is pm
    assert f"parameter cache {directory} not usable" in caplog.text
    assert "parameterizing without it" in caplog.text
    if problem == "lock held":
        assert "another process has held its lock" in caplog.text
        assert not cache.path(key).exists()


# --------------------------------------------------------------------------- simulation outputs


def _md_options(steps: int):
    from hybridff.md.options import MDOptions

    return MDOptions(steps=steps, report_every=10, equilibration_steps=10, minimize_iterations=20,
                     checkpoint_every=20, platform="Reference", threads=1, seed=7)


def _log_steps(path: Path) -> list[int]:
    with open(path, newline="") as fh:
        return [int(row["step"]) for row in csv.DictReader(fh)]


def _dcd_frames(path: Path) -> int:
    return struct.unpack("<i", path.read_bytes()[8:12])[0]


def test_resume_after_a_stop_between_checkpoints(tmp_path, monkeypatch, caplog) -> None:
    """Killed at step 60 (last checkpoint 40) in the middle of writing the log and the DCD:
    the resumed run drops what came after the checkpoint and ends where an uninterrupted run
    ends, with each step logged once."""
    from hybridff.md.prepare import prepare_system
    from hybridff.md.reporters import Production
    from hybridff.md.resume import resume_md
    from hybridff.md.run import run_md

    once = tmp_path / "once"
    run_md(prepare_system(PARACETAMOL, "gasteiger", solvent="none", cache=False), once,
           _md_options(80), progress=False)

    stopped = tmp_path / "stopped"
    row = Production.row

    def stop_at_60(self, *args):
        if self.sim.currentStep == 60:
            raise KeyboardInterrupt
        return row(self, *args)

    monkeypatch.setattr(Production, "row", stop_at_60)
    with pytest.raises(KeyboardInterrupt):
        run_md(prepare_system(PARACETAMOL, "gasteiger", solvent="none", cache=False),
               stopped, _md_options(80), progress=False)
    monkeypatch.undo()
    summary = json.loads((stopped / "run.json").read_text())
    assert summary["status"] == "running" and summary["production"] is None
    assert _log_steps(stopped / "log.csv") == [10, 20, 30, 40, 50]
    assert _dcd_frames(stopped / "trajectory.dcd") == 6
    assert not (stopped / "final.pdb").exists()
    with open(stopped / "log.csv", "a") as fh:  # the stop also cut a row and a frame in two
        fh.write("70,0.1400,-12")
    with open(stopped / "trajectory.dcd", "ab") as fh:
        fh.write(os.urandom(100))

    with caplog.at_level(logging.WARNING, logger="hybridff.md.resume"):
        summary = resume_md(stopped, 40, progress=False)
    assert "stopped after its last checkpoint (step 40); dropped 2 log row(s) and 3 trajectory " \
           "frame(s)" in caplog.text
    assert summary["status"] == "finished" and summary["total_steps"] == 80
    assert _log_steps(stopped / "log.csv") == list(range(10, 81, 10))
    assert _dcd_frames(stopped / "trajectory.dcd") == 8
    size = (stopped / "trajectory.dcd").stat().st_size
    assert size == (once / "trajectory.dcd").stat().st_size  # whole frames only
    a = openmm.XmlSerializer.deserialize((once / "state.xml").read_text())
    b = openmm.XmlSerializer.deserialize((stopped / "state.xml").read_text())
    np.testing.assert_allclose(b.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
                               a.getPositions(asNumpy=True).value_in_unit(unit.nanometer), atol=1e-10)


# --------------------------------------------------------------------------- command line


def test_cli_bad_molecule_file_exits_cleanly_and_writes_nothing(paracetamol_mol, tmp_path, capsys) -> None:
    from hybridff.cli import main

    lines = _mol2_lines(paracetamol_mol, tmp_path)
    bad = tmp_path / "cut.mol2"
    bad.write_text("\n".join(lines[:20]) + "\n")
    out = tmp_path / "lig.xml"
    assert main(["parameterize", str(bad), "--charges", "gasteiger", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "hybridff parameterize: error:" in err and "cut.mol2, record 1" in err
    assert "truncated" in err and "Traceback" not in err
    assert not out.exists()


def test_cli_bad_model_file_exits_cleanly(tmp_path, capsys) -> None:
    from hybridff.cli import main

    model = tmp_path / "model.pt"
    model.write_bytes(b"\x00" * 100)
    code = main(["simulate", str(PARACETAMOL), "--solvent", "none", "--model", str(model),
                 "--steps", "10", "--no-progress", "-o", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert "model.pt: not a readable TorchScript model file" in err and "Traceback" not in err


# --------------------------------------------------------------------------- options and outputs


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of ``hybridff ARGV`` (argparse refusals exit through SystemExit)."""
    from hybridff.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


BAD_OPTIONS = {
    # name: (argv, message after "hybridff CMD: error: ")
    "simulate --timestep-fs 0": (
        ["simulate", "CCO", "-o", "{tmp}/run", "--timestep-fs", "0"],
        "argument --timestep-fs: a time step must be above 0 and at most 5 fs, got 0"),
    "simulate --friction -1": (
        ["simulate", "CCO", "-o", "{tmp}/run", "--friction", "-1"],
        "argument --friction: a Langevin friction must be 0 /ps or more, got -1"),
    "simulate --report-ps 0": (
        ["simulate", "CCO", "-o", "{tmp}/run", "--report-ps", "0"],
        "argument --report-ps: a report interval must be above 0 ps, got 0"),
    "simulate --steps 1.5": (
        ["simulate", "CCO", "-o", "{tmp}/run", "--steps", "1.5"],
        "argument --steps: a step count is a whole number, got '1.5'"),
    "train --epochs 0": (
        ["train", "CCO", "data.xyz", "-o", "{tmp}/m.pt", "--epochs", "0"],
        "argument --epochs: an epoch count must be 1 or more, got 0"),
    "train --hidden abc": (
        ["train", "CCO", "data.xyz", "-o", "{tmp}/m.pt", "--hidden", "abc"],
        "argument --hidden: hidden layer widths are whole numbers of 1 or more separated by "
        "commas, e.g. 64,64; got 'abc'"),
    "train --cutoff 5 (Angstrom meant)": (
        ["train", "CCO", "data.xyz", "-o", "{tmp}/m.pt", "--cutoff", "5"],
        "argument --cutoff: a descriptor cutoff must be 0.2 to 1.2 nm, got 5; the cutoff is in "
        "nm: 5 Angstrom is --cutoff 0.5"),
    "train --cutoff nan": (
        ["train", "CCO", "data.xyz", "-o", "{tmp}/m.pt", "--cutoff", "nan"],
        "argument --cutoff: a descriptor cutoff must be 0.2 to 1.2 nm, got nan"),
    "simulate --ml-precision half": (
        ["simulate", "CCO", "-o", "{tmp}/run", "--ml-precision", "half"],
        "argument --ml-precision: invalid choice: 'half' (choose from 'single', 'double')"),
    "evaluate --ml-precision half": (
        ["evaluate", "CCO", "data.xyz", "--model", "m.pt", "--ml-precision", "half"],
        "argument --ml-precision: invalid choice: 'half' (choose from 'single', 'double')"),
    "label --threads abc": (
        ["label", "CCO", "-o", "{tmp}/l.xyz", "--threads", "abc"],
        "argument --threads: a thread count is a whole number, got 'abc'"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_cli_option_out_of_range_is_one_line(case, tmp_path, capsys) -> None:
    argv, message = BAD_OPTIONS[case]
    code, err = _cli([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert code == 2
    assert err == f"hybridff {argv[0]}: error: {message} (see hybridff {argv[0]} -h)\n"
    assert list(tmp_path.iterdir()) == []  # refused before any work


def test_train_with_both_loss_weights_zero_is_refused(tmp_path, capsys) -> None:
    code, err = _cli(["train", str(PARACETAMOL), "data.xyz", "-o", str(tmp_path / "m.pt"),
                      "--energy-weight", "0", "--force-weight", "0"], capsys)
    assert code == 2
    assert "hybridff train: error: --energy-weight and --force-weight are both 0: nothing to " \
           "fit; give at least one a positive weight" in err


#: command -> its arguments with the output to check as {out} (a file; a folder for simulate
#: and evaluate --plots)
OUTPUT_OPTIONS = {
    "parameterize": ["parameterize", "CCO", "-o", "{out}.xml"],
    "parameterize --report": ["parameterize", "CCO", "-o", "{tmp}/ok.xml", "--report", "{out}.json"],
    "charges": ["charges", "CCO", "-o", "{out}.csv"],
    "label": ["label", "CCO", "-o", "{out}.xyz"],
    "fit": ["fit", "CCO", "data.xyz", "-o", "{out}.xml"],
    "fit --record": ["fit", "CCO", "data.xyz", "-o", "{tmp}/ok.xml", "--record", "{out}.json"],
    "train": ["train", "CCO", "data.xyz", "-o", "{out}.pt"],
    "evaluate --json": ["evaluate", "CCO", "data.xyz", "--model", "m.pt", "--json", "{out}.json"],
    "evaluate --plots": ["evaluate", "CCO", "data.xyz", "--model", "m.pt", "--plots", "{out}"],
    "simulate": ["simulate", "CCO", "-o", "{out}"],
}


@pytest.mark.parametrize("where", ["under a file", "read-only location"])
@pytest.mark.parametrize("command", list(OUTPUT_OPTIONS))
def test_unwritable_output_is_refused_before_any_work(command, where, tmp_path, capsys) -> None:
    """An output under a regular file (its folder cannot be created), or in a location where no
    file can be created (/proc, for root too): one line at once, nothing computed."""
    if where == "under a file":
        (tmp_path / "afile").write_text("x")
        out, reason = tmp_path / "afile" / "sub" / "out", f"{tmp_path / 'afile'} is a file, not a folder"
    else:
        out, reason = Path("/proc/hybridff-test/out"), "/proc is not writable"
    argv = [a.replace("{out}", str(out)).replace("{tmp}", str(tmp_path)) for a in OUTPUT_OPTIONS[command]]
    code, err = _cli(argv, capsys)
    name = argv[0]
    assert code == 2
    assert err.startswith(f"hybridff {name}: error: argument ")
    assert "cannot create the " in err and reason in err and err.count("\n") == 1
    assert not (tmp_path / "ok.xml").exists()


def test_output_that_is_a_folder_is_refused(tmp_path, capsys) -> None:
    code, err = _cli(["charges", "CCO", "-o", str(tmp_path)], capsys)
    assert code == 2 and f"argument -o/--output: {tmp_path} is a folder; give a file name" in err
    (tmp_path / "run").write_text("x")
    code, err = _cli(["simulate", "CCO", "-o", str(tmp_path / "run")], capsys)
    assert code == 2 and f"{tmp_path / 'run'} is a file, not a folder; give a folder name" in err


def test_missing_output_folders_are_created(paracetamol_mol, tmp_path, capsys) -> None:
    out = tmp_path / "new" / "deeper" / "charges.csv"
    code, _ = _cli(["charges", str(PARACETAMOL), "--method", "gasteiger", "-o", str(out)], capsys)
    assert code == 0 and len(out.read_text().splitlines()) == paracetamol_mol.GetNumAtoms() + 1


def test_error_message_of_os_value_and_openmm_errors() -> None:
    """The dispatcher's one line for errors that are not hybridff's own: what, where, what to
    do; only the first line of a multi-line message (C++ stack traces); None for a bug."""
    import errno

    from hybridff.cli import error_message

    assert error_message(OSError(errno.ENOSPC, "No space left on device", "/data/run/log.csv")) == \
        "/data/run/log.csv: No space left on device; the disk is full: free space or choose another location"
    assert error_message(IsADirectoryError(errno.EISDIR, "Is a directory", "mols")) == \
        "mols: Is a directory; give a file, not a folder"
    assert error_message(ValueError("could not convert string to float: 'x'\n  at line 3")) == \
        "could not convert string to float: 'x' (ValueError; first line of its message); check " \
        "the input files and options (-v shows where it came from)"
    assert error_message(openmm.OpenMMException("Illegal value for friction: -1\nframe #0 ...")) == \
        "Illegal value for friction: -1 (OpenMM; first line of its message); check the input " \
        "files and options (-v shows where it came from)"
    assert error_message(MoleculeInputError("x.sdf, record 1: empty")) == "x.sdf, record 1: empty"
    assert error_message(KeyError("bug")) is None


@pytest.mark.parametrize("error", ["OSError", "ValueError", "OpenMMException"])
def test_cli_turns_errors_into_one_line_and_v_shows_the_traceback(error, tmp_path, monkeypatch,
                                                                   capsys) -> None:
    """Raised inside a command's run: exit 2 and one line; with -v (before or after the
    command) the traceback too."""
    import hybridff.cli.charges as charges_cli

    exc = {"OSError": PermissionError(13, "Permission denied", "/data/x.csv"),
           "ValueError": ValueError("bad value"),
           "OpenMMException": openmm.OpenMMException("Illegal value\nC++ frame")}[error]

    def fail(args):
        raise exc

    monkeypatch.setattr(charges_cli, "run", fail)
    argv = ["charges", "CCO"]
    code, err = _cli(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("hybridff charges: error: ")
    assert "Traceback" not in err
    for verbose in (["-v"] + argv, argv + ["--verbose"]):
        code, err = _cli(verbose, capsys)
        assert code == 2 and "Traceback (most recent call last)" in err
        assert err.rstrip().splitlines()[-1].startswith("hybridff charges: error: ")


def test_package_errors_on_user_paths_are_typed() -> None:
    """The bare ValueErrors of option checks are the package's own (the CLI formats them);
    they still are ValueErrors."""
    from hybridff.exceptions import InvalidOptionError
    from hybridff.labels.samplers import mixed_frame_kinds
    from hybridff.mm.system import check_nonbonded_options
    from hybridff.training.trainer import TrainConfig, split_indices

    with pytest.raises(InvalidOptionError, match="switching distance 1.2 nm must be positive and below"):
        check_nonbonded_options(1.0, 1.2)
    with pytest.raises(InvalidOptionError, match="2 frames are too few for a validation fraction"):
        split_indices(2, 0.9, 0)
    with pytest.raises(InvalidOptionError, match="ensemble, epochs and batch_size must be >= 1"):
        TrainConfig(ensemble=0)
    with pytest.raises(InvalidOptionError, match="torsion_fraction must be a number from 0 to 1"):
        mixed_frame_kinds(4, torsion_fraction=2)
    assert issubclass(InvalidOptionError, ValueError)


# --------------------------------------------------------------------------- simulate run folders

#: a fast vacuum run: report every 0.1 ps = 50 steps of 2 fs
SIM = ["--solvent", "none", "--charges", "gasteiger", "--equilibration-ps", "0",
       "--minimize-iterations", "10", "--report-ps", "0.1", "--threads", "1", "--no-progress"]


def _dcd_header(path: Path) -> tuple[int, int, int]:
    """(frames, first step, interval) from a DCD header."""
    return struct.unpack("<3i", path.read_bytes()[8:20])


def _simulate(out: Path, *extra: str, molecule: str | None = str(PARACETAMOL), capsys=None
              ) -> tuple[int, str]:
    argv = ["simulate"] + ([molecule] if molecule else []) + SIM + list(extra) + ["-o", str(out)]
    return _cli(argv, capsys)


def test_simulate_refuses_a_folder_holding_a_run(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert _simulate(out, "--steps", "100", capsys=capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, err = _simulate(out, "--steps", "50", capsys=capsys)
    assert code == 2
    assert err == (f"hybridff simulate: error: output folder {out} already holds a run (log.csv, trajectory.dcd, "
                   "start.pdb, final.pdb, ...); continue it with --resume, replace it with "
                   "--overwrite, or choose another output folder\n")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    code, _ = _simulate(out, "--steps", "50", "--seed", "3", "--overwrite", capsys=capsys)
    assert code == 0
    assert json.loads((out / "run.json").read_text())["options"]["seed"] == 3
    assert _log_steps(out / "log.csv") == [50] and _dcd_header(out / "trajectory.dcd")[0] == 1
    code, err = _simulate(out, "--resume", "--overwrite", molecule=None, capsys=capsys)
    assert code == 2 and "argument --overwrite: not allowed with argument --resume" in err


def test_short_run_writes_its_last_frame_and_resumes(tmp_path, capsys) -> None:
    """20 steps with a 50-step report interval: a log row and a DCD frame at step 20 (not an
    empty DCD); --resume continues from there, reporting every 50 steps."""
    out = tmp_path / "run"
    assert _simulate(out, "--steps", "20", capsys=capsys)[0] == 0
    assert _log_steps(out / "log.csv") == [20]
    assert _dcd_header(out / "trajectory.dcd") == (1, 20, 50)
    assert _simulate(out, "--resume", "--steps", "80", molecule=None, capsys=capsys)[0] == 0
    assert _log_steps(out / "log.csv") == [20, 70, 100]
    assert _dcd_header(out / "trajectory.dcd") == (2, 20, 50)  # frames at 20 and 70
    atoms = app.PDBFile(str(out / "start.pdb")).topology.getNumAtoms()
    assert (out / "trajectory.dcd").stat().st_size == 276 + 2 * 3 * (8 + 4 * atoms)  # whole frames


def test_resume_after_an_empty_trajectory_of_an_older_run(tmp_path, capsys) -> None:
    """A short run of an earlier version left a 0-byte DCD and no first_report_step: resume
    starts the trajectory anew on the run's report grid."""
    out = tmp_path / "run"
    assert _simulate(out, "--steps", "20", capsys=capsys)[0] == 0
    (out / "trajectory.dcd").write_bytes(b"")
    summary = json.loads((out / "run.json").read_text())
    del summary["first_report_step"]
    (out / "run.json").write_text(json.dumps(summary))
    assert _simulate(out, "--resume", "--steps", "80", molecule=None, capsys=capsys)[0] == 0
    assert _log_steps(out / "log.csv") == [20, 50, 100]
    assert _dcd_header(out / "trajectory.dcd") == (2, 50, 50)


def test_resume_refuses_settings_it_cannot_honour(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert _simulate(out, "--steps", "50", "--timestep-fs", "1", capsys=capsys)[0] == 0
    code, err = _simulate(out, "--resume", "--steps", "50", "--report-ps", "0.2",
                          "--temperature", "350", molecule=None, capsys=capsys)
    assert code == 2
    assert err.startswith(f"hybridff simulate: error: --resume continues {out} with the settings it "
                          "was started with; --temperature 350 (the run's: 300); --report-ps 0.2 "
                          "(the run's: 0.1) cannot change on resume")
    assert "leave them out, or start a new run with --overwrite or another -o" in err
    code, err = _simulate(out, "--resume", "--steps", "50", "CCO", molecule=None, capsys=capsys)
    assert code == 2 and "molecule CCO (CCO; the run's: CC(=O)Nc1ccc(O)cc1)" in err
    assert _log_steps(out / "log.csv") == [50]  # nothing ran
    # the command line that started the run, with --resume: its settings are the run's
    code, _ = _simulate(out, "--steps", "50", "--timestep-fs", "1", "--resume", capsys=capsys)
    assert code == 0 and _log_steps(out / "log.csv") == [50, 100]
    # --ns counts in the run's time step (1 fs), not the default 2 fs
    code, _ = _simulate(out, "--resume", "--ns", "0.0001", molecule=None, capsys=capsys)
    assert code == 0 and _log_steps(out / "log.csv") == [50, 100, 150, 200]


# --------------------------------------------------------------------------- molecules at the CLI


@pytest.mark.parametrize("command", ["charges", "parameterize"])
def test_cli_molecule_inputs_exit_cleanly(command, tmp_path, capsys) -> None:
    from hybridff.cli import main

    empty = tmp_path / "empty.sdf"
    empty.write_text("")
    output = tmp_path / "out.xml"
    extra = ["-o", str(output)] if command == "parameterize" else []
    cases = {str(empty): "empty.sdf: the file is empty; give a file with at least one molecule",
             str(tmp_path): "is a folder, not a molecule file",
             "C" * 300 + "(": "(301 characters)' is neither an existing molecule file nor a SMILES"}
    for molecule, message in cases.items():
        assert main([command, molecule, *extra]) == 2
        err = capsys.readouterr().err
        assert f"hybridff {command}: error: " in err and message in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not output.exists()
