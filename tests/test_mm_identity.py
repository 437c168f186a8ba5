"""One MM identity: every route to a molecule's MM System gives the same System, whatever the
input atom order, and equals what a plain ``openmm.app.ForceField`` builds from the CLI's XML.

Routes: ``parameterize`` + ``create_system`` (Python API), the template generator in a plain
``ForceField`` (drop-in), ``build_mm`` (what ``label``/``train``/``evaluate`` subtract, which is
``prepare_system``, what ``simulate`` runs). Molecules: the first 300 usable molecules of
RDKit's NCI set plus drug-like molecules whose conjugated pair types depend on atom order
under antechamber's labelling (issue 15). Each in its input order and in a seeded random
permutation of its atoms; energies per force group compared at the same coordinates.
"""

from __future__ import annotations

import copy
import io
import os

import numpy as np
import openmm
import pytest
import rdkit.RDConfig
from openmm import app, unit
from rdkit import Chem

from hybridff.exceptions import HybridFFError
from hybridff.io.molecule import load_molecule
from hybridff.mm.forcefield_files import forcefield_path
from hybridff.mm.graph import symmetry_classes
from hybridff.mm.parameters import parameterize
from hybridff.mm.system import create_system, molecules_topology
from hybridff.mm.templates import HybridTemplateGenerator
from hybridff.training.residuals import build_mm

#: drug-like molecules named in issue 15 (typed differently by input-order pair labelling)
DRUG_LIKE = {
    "indole": "c1ccc2[nH]ccc2c1",
    "1-methylimidazole": "Cn1ccnc1",
    "3-phenylpyrazole": "c1ccc(cc1)-c1cc[nH]n1",
    "metronidazole": "Cc1ncc([N+](=O)[O-])n1CCO",
    "ondansetron": "Cc1nccn1CC1CCc2c(C1=O)c1ccccc1n2C",
    "tolmetin": "Cc1ccc(cc1)C(=O)c1ccc(CC(=O)O)n1C",
    "2-methyl-1,4-benzoquinone": "CC1=CC(=O)C=CC1=O",
    "sorbic acid": "CC=CC=CC(=O)O",
    "imatinib": "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1",
    "gefitinib": "COc1cc2ncnc(Nc3ccc(F)c(Cl)c3)c2cc1OCCCN1CCOCC1",
}
#: NCI molecules in the default suite; the slow test (run by CI) takes 300
N_NCI_DEFAULT = int(os.environ.get("HYBRIDFF_TEST_N_NCI", "40"))
N_NCI_SLOW = 300
#: relative agreement asked for, per force group (absolute floor 1e-6 kJ/mol)
RTOL = 1e-6


def nci_molecules(n: int) -> list[tuple[str, str]]:
    """The first ``n`` NCI molecules hybridff takes (single fragment, supported elements)."""
    path = os.path.join(rdkit.RDConfig.RDDataDir, "NCI/first_5K.smi")
    out = []
    with open(path) as handle:
        for line in handle:
            smiles, name = line.split()[:2]
            mol = Chem.MolFromSmiles(smiles)
            if mol is None or len(Chem.GetMolFrags(mol)) > 1 or mol.GetNumHeavyAtoms() > 40:
                continue
            out.append((name, smiles))
            if len(out) == n + 40:  # a margin for molecules GAFF2 cannot type
                break
    return out


def permuted(mol: Chem.Mol, seed: int) -> tuple[Chem.Mol, list[int]]:
    """``mol`` with its atoms in a random order (atom k of the result is atom ``order[k]`` of
    ``mol``; coordinates and names travel with the atoms), and ``order``."""
    order = np.random.default_rng(seed).permutation(mol.GetNumAtoms()).tolist()
    return Chem.RenumberAtoms(mol, order), order


def group_energies(system: openmm.System, positions_nm: np.ndarray,
                   bonded: set[tuple[int, int]]) -> dict[str, float]:
    """Energy (kJ/mol) of each term of ``system`` at ``positions_nm``; torsions split into
    propers and impropers (``bonded``: bonded atom pairs, both directions)."""
    system = copy.deepcopy(system)
    for force in list(system.getForces()):
        if isinstance(force, openmm.PeriodicTorsionForce):
            impropers = openmm.PeriodicTorsionForce()
            for t in range(force.getNumTorsions()):
                a, b, c, d, n, phase, k = force.getTorsionParameters(t)
                if (a, b) not in bonded:
                    impropers.addTorsion(a, b, c, d, n, phase, k)
                    force.setTorsionParameters(t, a, b, c, d, n, phase, 0.0)
            impropers.setName("impropers")
            system.addForce(impropers)
    names = {}
    for group, force in enumerate(system.getForces()):
        force.setForceGroup(group)
        names[group] = force.getName() if force.getName() == "impropers" else type(force).__name__
    context = openmm.Context(system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions_nm)
    return {name: context.getState(getEnergy=True, groups={g}).getPotentialEnergy()
            .value_in_unit(unit.kilojoule_per_mole)
            for g, name in names.items() if name != "CMMotionRemover"}


def bonded_pairs(mol: Chem.Mol) -> set[tuple[int, int]]:
    pairs = set()
    for b in mol.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        pairs |= {(i, j), (j, i)}
    return pairs


def routes(mol: Chem.Mol) -> dict[str, tuple[openmm.System, np.ndarray]]:
    """(System, positions nm in ``mol``'s atom order) of ``mol`` by every route."""
    out = {}
    pm = parameterize(mol, "gasteiger")
    system, _, positions = create_system(pm)
    out["parameterize + create_system"] = (system, positions.value_in_unit(unit.nanometer))
    topology, xyz = molecules_topology([pm])
    generator = HybridTemplateGenerator([mol], charge_method="gasteiger", cache=False)
    forcefield = app.ForceField(str(forcefield_path("hybridff-gaff2.xml")))
    forcefield.registerTemplateGenerator(generator.generator)
    out["template generator"] = (forcefield.createSystem(topology), xyz)
    mm = build_mm(mol, charge_method="gasteiger", cache=False)
    out["build_mm (train/evaluate/simulate)"] = (mm.system, mm.positions)
    return out


def cli_xml_system(mol: Chem.Mol) -> tuple[openmm.System, np.ndarray]:
    """A plain ``openmm.app.ForceField`` from the XML ``hybridff parameterize`` writes."""
    pm = parameterize(mol, "gasteiger")
    forcefield = app.ForceField(str(forcefield_path("hybridff-gaff2.xml")),
                                io.StringIO(pm.to_ffxml()))
    topology, xyz = molecules_topology([pm])
    return forcefield.createSystem(topology), xyz


#: what choosing between symmetry-equivalent atoms may move an improper energy (kJ/mol)
SYMMETRIC_IMPROPER_TOL = 0.2
#: the differences seen on such molecules (printed by the NCI tests)
SYMMETRIC_SEEN: list[float] = []


def compare(name: str, reference: dict[str, float], got: dict[str, float], what: str,
            symmetric: bool = False) -> list[str]:
    bad = []
    for term, e_ref in reference.items():
        e = got.get(term)
        tol = RTOL * max(abs(e_ref), 1.0)
        if term == "impropers" and symmetric:
            tol = SYMMETRIC_IMPROPER_TOL
            if e is not None:
                SYMMETRIC_SEEN.append(abs(e - e_ref))
        if e is None or abs(e - e_ref) > tol:
            bad.append(f"{name} {what}: {term} {e} vs {e_ref} kJ/mol")
    return bad


def has_symmetric_improper(mol: Chem.Mol) -> bool:
    """Whether an atom with three or more neighbours has two that are equivalent for OpenMM's
    template matching, which sees elements and connectivity only (the two O of a nitro group,
    the two H of an amine, the two ortho carbons of a para-substituted ring)."""
    classes = symmetry_classes(mol)
    for atom in mol.GetAtoms():
        neighbours = [classes[n.GetIdx()] for n in atom.GetNeighbors()]
        if len(neighbours) >= 3 and len(set(neighbours)) < len(neighbours):
            return True
    return False


def check_molecule(name: str, smiles: str, seed: int) -> list[str]:
    """Differences between all routes and atom orders of one molecule (empty: identical).

    The permuted molecule is evaluated at the same coordinates, atom for atom. Every term
    must agree to 1e-6 (relative); improper torsions too, except where two symmetry-
    equivalent atoms meet in one: which of them comes first is then a choice between the
    molecule's symmetric images, made by OpenMM's template matching, worth at most
    ``SYMMETRIC_IMPROPER_TOL`` (see docs/forcefield.md).
    """
    mol = load_molecule(smiles)
    bonded = bonded_pairs(mol)
    system, xyz = cli_xml_system(mol)
    reference = group_energies(system, xyz, bonded)
    other, order = permuted(mol, seed)
    other_bonded = bonded_pairs(other)
    symmetric = has_symmetric_improper(mol)
    bad = []
    for label, m, positions, pairs in (("input order", mol, xyz, bonded),
                                       ("permuted", other, xyz[order], other_bonded)):
        for route, (sys_, _) in routes(m).items():
            bad += compare(name, reference, group_energies(sys_, positions, pairs),
                           f"{label}, {route}", symmetric=symmetric and label == "permuted")
    return bad


@pytest.mark.parametrize("name", sorted(DRUG_LIKE))
def test_drug_like_molecules_one_mm_in_every_route_and_order(name: str) -> None:
    assert not check_molecule(name, DRUG_LIKE[name], seed=7)


def check_nci(n: int) -> None:
    checked, bad, skipped = 0, [], []
    for k, (name, smiles) in enumerate(nci_molecules(n)):
        if checked == n:
            break
        try:
            bad += check_molecule(f"NCI {name} {smiles}", smiles, seed=k)
        except HybridFFError as exc:  # outside GAFF2's coverage: not this test's subject
            skipped.append(f"{name}: {str(exc)[:80]}")
            continue
        checked += 1
    seen = np.array(SYMMETRIC_SEEN or [0.0])
    print(f"{checked} NCI molecules; improper energy moved by the choice between symmetry-"
          f"equivalent atoms: median {np.median(seen):.2g}, max {seen.max():.2g} kJ/mol over "
          f"{len(SYMMETRIC_SEEN)} route evaluations")
    assert checked == n, f"only {checked} molecules could be parameterized: {skipped[:5]}"
    assert not bad, f"{len(bad)} differences, e.g. " + "; ".join(bad[:5])


def test_nci_molecules_one_mm_in_every_route_and_order() -> None:
    check_nci(N_NCI_DEFAULT)


@pytest.mark.slow
def test_300_nci_molecules_one_mm_in_every_route_and_order() -> None:
    check_nci(N_NCI_SLOW)
