"""Renumbering a molecule's atoms must not change its physics (with canonical pair typing)."""

from __future__ import annotations

import numpy as np
import openmm
import pytest
from rdkit import Chem

from hybridff.mm.parameters import parameterize
from hybridff.mm.system import create_system

MOLECULES = {
    "toluene": "Cc1ccccc1",
    "ibuprofen": "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "indole": "c1ccc2[nH]ccc2c1",
    "nitrobenzoate": "O=C([O-])c1ccccc1[N+](=O)[O-]",
    "thiophene_ester": "CCOC(=O)c1cccs1",
    "pyridone": "O=c1cccc[nH]1",
}


def _terms(pm, order: list[int]) -> tuple[dict[str, float], list]:
    """Energy per group with impropers split off, and the impropers as (centre, outer, k)
    in the original molecule's atom numbering (``order[i]``: original index of atom i)."""
    system, _, positions = create_system(pm)
    impropers = []
    for f in system.getForces():
        if isinstance(f, openmm.PeriodicTorsionForce):
            propers = openmm.PeriodicTorsionForce()
            for i in range(f.getNumTorsions()):
                a, b, c, d, n, phase, k = f.getTorsionParameters(i)
                if pm.mol.GetBondBetweenAtoms(a, c) is not None:  # c bonded to a, b, d
                    impropers.append((order[c], tuple(sorted(order[x] for x in (a, b, d))),
                                      n, round(k._value, 9)))
                else:
                    propers.addTorsion(a, b, c, d, n, phase, k)
            propers.setForceGroup(9)
            system.addForce(propers)
            f.setForceGroup(10)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(positions)
    energies = {}
    for f in system.getForces():
        g = f.getForceGroup()
        if g != 10:
            energies[g] = ctx.getState(getEnergy=True, groups={g}).getPotentialEnergy()._value
    return energies, sorted(impropers)


@pytest.mark.parametrize("name", sorted(MOLECULES))
def test_canonical_pair_typing_is_independent_of_atom_order(name):
    pm = parameterize(MOLECULES[name], "gasteiger", pair_order="canonical")
    rng = np.random.default_rng(11)
    for _ in range(2):
        perm = [int(i) for i in rng.permutation(pm.mol.GetNumAtoms())]
        renumbered = parameterize(Chem.RenumberAtoms(pm.mol, perm), charges=pm.charges[perm],
                                  pair_order="canonical")
        assert renumbered.atom_types == [pm.atom_types[i] for i in perm]
        # Everything but the impropers is identical. Impropers are the same terms on the same
        # atoms, but ties between equal outer types are broken by atom index (Amber's rule),
        # so their dihedral, hence energy away from planarity, follows the input order.
        ref_e, ref_imp = _terms(pm, list(range(pm.mol.GetNumAtoms())))
        new_e, new_imp = _terms(renumbered, perm)
        assert new_imp == ref_imp
        assert new_e == pytest.approx(ref_e, rel=1e-9, abs=1e-9)


def test_index_pair_typing_follows_input_order_like_antechamber():
    """GAFF2 2.2 fits cc and cd separately, so antechamber-style labels can change energies."""
    pm = parameterize(MOLECULES["indole"], "gasteiger", pair_order="index")
    perm = list(reversed(range(pm.mol.GetNumAtoms())))
    renumbered = parameterize(Chem.RenumberAtoms(pm.mol, perm), charges=pm.charges[perm],
                              pair_order="index")
    swapped = {(a, b) for a, b in zip([pm.atom_types[i] for i in perm], renumbered.atom_types,
                                      strict=True) if a != b}
    assert swapped <= {("cc", "cd"), ("cd", "cc")}
