"""A correction runs on the exact MM it was trained against, and only on its own molecule.

End to end (GFN2-xTB labels of indole, a brief training): the MM part of the System that
``hybridff simulate --model`` runs equals, term by term, the MM the trainer subtracted, on the
training frames. A correction is refused on another molecule (Python and CLI), on an MM with
another charge model or pair labelling (also from a cache hit), and in a protein + ligand
System the default selection is the ligand alone. Different charge options never share a
cache entry.
"""

from __future__ import annotations

import dataclasses
import gc
import io
from xml.etree import ElementTree as ET

import numpy as np
import openmm
import pytest
from openmm import app, unit

pytest.importorskip("torch")
pytest.importorskip("tblite.interface")
pytest.importorskip("openmmtorch")

from hybridff.cli import main  # noqa: E402
from hybridff.exceptions import ModelCompatibilityError  # noqa: E402
from hybridff.io.frames import read_extxyz  # noqa: E402
from hybridff.io.molecule import load_molecule  # noqa: E402
from hybridff.ml.backend import add_ml_correction, model_molecule, select_ml_atoms  # noqa: E402
from hybridff.ml.modelfile import load_model  # noqa: E402
from hybridff.mm.cache import ParameterCache, cache_key  # noqa: E402
from hybridff.mm.forcefield_files import forcefield_path  # noqa: E402
from hybridff.mm.graph import MoleculeGraph  # noqa: E402
from hybridff.mm.parameters import parameterize  # noqa: E402
from hybridff.mm.signature import make_signature, trained_build_options  # noqa: E402
from hybridff.mm.system import FORCE_GROUPS, molecules_topology  # noqa: E402
from hybridff.mm.templates import HybridTemplateGenerator  # noqa: E402
from hybridff.training.residuals import build_mm, mm_energies_forces  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")

INDOLE = "c1ccc2[nH]ccc2c1"
MM_TERMS = ("HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "NonbondedForce",
            "CustomBondForce", "CustomAngleForce")


@pytest.fixture(scope="module")
def indole_model(tmp_path_factory):
    """GFN2-xTB labels of indole (30 frames) and a correction trained briefly on them, on
    top of the bespoke MM refitted to them."""
    folder = tmp_path_factory.mktemp("indole")
    data, model = folder / "indole.xyz", folder / "indole.pt"
    assert main(["label", INDOLE, "--n", "30", "-o", str(data), "--seed", "3",
                 "--no-progress"]) == 0
    assert main(["train", INDOLE, str(data), "-o", str(model), "--epochs", "2",
                 "--charges", "gasteiger", "--no-progress"]) == 0
    return data, model


def _term_energies(system: openmm.System, frames: np.ndarray) -> dict[str, np.ndarray]:
    groups = {type(f).__name__: f.getForceGroup() for f in system.getForces()}
    assert set(MM_TERMS) <= set(groups), "the bespoke MM has anharmonic bond and angle terms"
    return {term: mm_energies_forces(system, frames, groups={groups[term]})[0]
            for term in MM_TERMS}


def _bond_terms(system: openmm.System) -> dict[tuple[int, int], tuple[float, float]]:
    force = next(f for f in system.getForces() if isinstance(f, openmm.HarmonicBondForce))
    out = {}
    for b in range(force.getNumBonds()):
        i, j, r0, k = force.getBondParameters(b)
        out[(min(i, j), max(i, j))] = (r0.value_in_unit(unit.nanometer),
                                       k.value_in_unit(unit.kilojoule_per_mole / unit.nanometer**2))
    return out


def test_simulate_runs_the_mm_the_trainer_subtracted(indole_model, tmp_path) -> None:
    data, model_path = indole_model
    model = load_model(model_path)
    assert model.metadata["molecule"]["smiles"] == INDOLE
    assert model.metadata["mm"]["pair_order"] == "canonical"
    run = tmp_path / "run"
    assert main(["simulate", INDOLE, "--model", str(model_path), "--solvent", "none",
                 "--steps", "4", "--report-ps", "0.004", "--equilibration-ps", "0",
                 "--minimize-iterations", "0", "--no-progress", "-o", str(run)]) == 0
    # the System that ran, its ML force left out (openmm-torch 1.10 cannot read it back)
    root = ET.fromstring((run / "system.xml").read_text())
    forces = root.find("Forces")
    ml = [f for f in forces if f.get("type") == "TorchForce"]
    assert len(ml) == 1
    forces.remove(ml[0])
    running = openmm.XmlSerializer.deserialize(ET.tostring(root, encoding="unicode"))
    frames = read_extxyz(data).positions
    assert model.metadata["mm_refit"]["smiles"] == INDOLE  # trained on the bespoke MM
    options = trained_build_options(model.metadata["mm"], model.metadata["mm_refit"])
    subtracted = build_mm(INDOLE, charge_method=options.pop("charge_method"),
                          pair_order=options.pop("pair_order"), **options)
    for force in running.getForces():  # the file keeps no force groups of its own meaning
        force.setForceGroup(FORCE_GROUPS.get(type(force).__name__, 7))
    ran, trained = _term_energies(running, frames), _term_energies(subtracted.system, frames)
    for term in MM_TERMS[1:]:
        # (constrained X-H bonds sit at the fitted minimum: their anharmonic terms give 0)
        if term != "CustomBondForce":
            np.testing.assert_allclose(ran[term], trained[term], rtol=1e-6, atol=1e-6,
                                       err_msg=term)
    # bonds: the run constrains X-H bonds (their terms then drop out); every other bond term
    # is the trainer's, parameter for parameter
    ran_bonds, trained_bonds = _bond_terms(running), _bond_terms(subtracted.system)
    constrained = {tuple(sorted(running.getConstraintParameters(c)[:2]))
                   for c in range(running.getNumConstraints())}
    assert constrained and ran_bonds == {b: v for b, v in trained_bonds.items()
                                         if b not in constrained}
    for (i, j), (r0, _) in trained_bonds.items():
        if (i, j) in constrained:
            c = [c for c in range(running.getNumConstraints())
                 if tuple(sorted(running.getConstraintParameters(c)[:2])) == (i, j)][0]
            assert running.getConstraintParameters(c)[2].value_in_unit(unit.nanometer) == \
                pytest.approx(r0, rel=1e-12)
    assert subtracted.signature.to_dict() == model.metadata["mm"]


def test_correction_refused_on_another_molecule(indole_model, tmp_path, capsys) -> None:
    _, model_path = indole_model
    other = parameterize("c1ccc2[nH]cnc2c1", "gasteiger")  # benzimidazole: same elements
    system, topology, _ = _system_of(other)
    with pytest.raises(ModelCompatibilityError, match=r"c1ccc2\[nH\]ccc2c1"):
        add_ml_correction(system, topology, model_path, mm_signature=other)
    with pytest.raises(ModelCompatibilityError, match="is not the molecule the ML model was "
                                                      "trained on"):
        add_ml_correction(system, topology, model_path, atoms="MOL", mm_signature=other)
    code = main(["simulate", "c1ccc2[nH]cnc2c1", "--model", str(model_path), "--solvent", "none",
                 "--steps", "2", "--no-progress", "-o", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert "c1ccc2[nH]ccc2c1" in err and "not the molecule" in err


def _system_of(pm):
    forcefield = app.ForceField(str(forcefield_path("hybridff-gaff2.xml")))
    forcefield.loadFile(io.StringIO(pm.to_ffxml()))
    topology, xyz = molecules_topology([pm])
    return forcefield.createSystem(topology), topology, xyz


def _peptide_and(pm) -> tuple[openmm.System, app.Topology, list[int]]:
    """A topology of three alanine-like residues, the ligand, two waters (plain particles)."""
    topology = app.Topology()
    chain = topology.addChain()
    previous = None
    for _ in range(3):
        res = topology.addResidue("ALA", chain)
        atoms = {name: topology.addAtom(name, app.Element.getBySymbol(name[0]), res)
                 for name in ("N", "H", "CA", "HA", "CB", "HB1", "HB2", "HB3", "C", "O")}
        for a, b in (("N", "H"), ("N", "CA"), ("CA", "HA"), ("CA", "CB"), ("CB", "HB1"),
                     ("CB", "HB2"), ("CB", "HB3"), ("CA", "C"), ("C", "O")):
            topology.addBond(atoms[a], atoms[b])
        if previous is not None:
            topology.addBond(previous, atoms["N"])
        previous = atoms["C"]
    ligand_top, _ = molecules_topology([pm])
    res = topology.addResidue("LIG", chain)
    new = [topology.addAtom(a.name, a.element, res) for a in ligand_top.atoms()]
    for a, b in ligand_top.bonds():
        topology.addBond(new[a.index], new[b.index])
    for _ in range(2):
        water = topology.addResidue("HOH", chain)
        o = topology.addAtom("O", app.Element.getBySymbol("O"), water)
        for h in ("H1", "H2"):
            topology.addBond(o, topology.addAtom(h, app.Element.getBySymbol("H"), water))
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    return system, topology, [a.index for a in new]


def test_protein_ligand_default_selection_is_the_ligand(indole_model) -> None:
    _, model_path = indole_model
    model = load_model(model_path)
    pm = parameterize(INDOLE, "gasteiger", refit=model.metadata["mm_refit"])
    system, topology, ligand = _peptide_and(pm)
    assert select_ml_atoms(topology, None, model_molecule(model)) == ligand
    force = add_ml_correction(system, topology, model, mm_signature=pm)
    assert force.getName().startswith("hybridff ML correction")
    ethanol = MoleculeGraph((6, 6, 8), ((0, 1), (1, 2)))  # heavy atoms only: in no residue
    with pytest.raises(ModelCompatibilityError, match="residues present: .*ALA"):
        select_ml_atoms(topology, None, ("CCO", ethanol))


def test_refused_against_other_charges_or_labelling_also_from_the_cache(indole_model,
                                                                      tmp_path) -> None:
    _, model_path = indole_model
    model = load_model(model_path)
    mol = load_molecule(INDOLE)
    # the drop-in route: the generator's signature is checked with no extra argument
    for settings, what in (({"charge_method": "ml"}, "charge_method"),
                           ({"charge_method": "gasteiger", "pair_order": "index"}, "pair_order")):
        for _attempt in range(2):  # the second time from the on-disk cache
            generator = HybridTemplateGenerator([mol], cache=tmp_path / "cache", **settings)
            forcefield = app.ForceField(str(forcefield_path("hybridff-gaff2.xml")))
            forcefield.registerTemplateGenerator(generator.generator)
            topology, _ = molecules_topology([parameterize(mol, "gasteiger")])
            system = forcefield.createSystem(topology)
            with pytest.raises(ModelCompatibilityError, match=what):
                add_ml_correction(system, topology, model)
            del generator, forcefield
            gc.collect()  # the check reads the generators alive in this process
        assert len(list((tmp_path / "cache").glob("*.json"))) >= 1
    for refit in (None, model.metadata["mm_refit"]):  # GAFF2 refused, the bespoke MM accepted
        generator = HybridTemplateGenerator([mol], charge_method="gasteiger", refit=refit,
                                            cache=tmp_path / "cache")
        forcefield = app.ForceField(str(forcefield_path("hybridff-gaff2.xml")))
        forcefield.registerTemplateGenerator(generator.generator)
        topology, _ = molecules_topology([parameterize(mol, "gasteiger")])
        system = forcefield.createSystem(topology)
        if refit is None:
            with pytest.raises(ModelCompatibilityError, match="refit="):
                add_ml_correction(system, topology, model)
        else:
            add_ml_correction(system, topology, model)  # the MM it was trained on: accepted
        del generator, forcefield
        gc.collect()


def test_charge_options_never_share_a_cache_entry(tmp_path) -> None:
    mol = load_molecule("CC(=O)O")
    base = {"forcefield": "hybridff-gaff2.xml", "forcefield_sha256": "f" * 64}
    signatures = [
        make_signature(mol, **base, charge_method="am1bcc", charge_options={}),
        make_signature(mol, **base, charge_method="am1bcc", charge_options={"optimize": False}),
        make_signature(mol, **base, charge_method="ml", charge_options={}),
        make_signature(mol, **base, charge_method="gasteiger", charge_options={}),
        make_signature(mol, **base, charge_method="gasteiger", charge_options={"iterations": 6}),
        make_signature(mol, **base, charge_method="file", charge_options={},
                       charges=np.zeros(mol.GetNumAtoms())),
        make_signature(mol, **base, charge_method="file", charge_options={},
                       charges=np.r_[0.1, -0.1, np.zeros(mol.GetNumAtoms() - 2)]),
        make_signature(mol, **base, charge_method="gasteiger", charge_options={},
                       pair_order="index"),
    ]
    keys = {cache_key("CC(=O)O", s) for s in signatures}
    assert len(keys) == len(signatures)
    # defaults given or left out, and options that change no charge, are the same entry
    assert make_signature(mol, **base, charge_method="am1bcc",
                          charge_options={"optimize": True, "timeout": 5}) == signatures[0]
    # an entry is only ever returned for its own signature
    pm = parameterize(mol, "gasteiger")
    cache = ParameterCache(tmp_path)
    cache.put(cache_key(pm.smiles, pm.signature), pm)
    moved = cache.path(cache_key(pm.smiles, signatures[4]))
    cache.path(cache_key(pm.smiles, pm.signature)).rename(moved)
    assert cache.get(cache_key(pm.smiles, signatures[4])) is None
    assert dataclasses.replace(pm.signature) == pm.signature
