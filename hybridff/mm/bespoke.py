"""A molecule's bespoke MM: its bonded terms refitted to its QM frames, as a stored record.

:func:`fit_bespoke` refits the bonds, angles and proper torsions of a molecule's GAFF2 MM
(:func:`hybridff.mm.refit.fit_bonded`; charges, Lennard-Jones and impropers stay) to QM
energies and forces. The result travels as a *refit record*: JSON, keyed by canonical atom
positions so that it applies to the molecule in any atom order, hashed into the MM signature
(``refit``), written into every model trained on top of it and turned into a drop-in
ForceField XML by :meth:`hybridff.mm.parameters.ParameterizedMolecule.to_ffxml` (harmonic terms
at the fitted minimum plus ``CustomBondForce`` / ``CustomAngleForce`` cubic and quartic terms
and a ``CustomCompoundBondForce`` of stretch-bend and bond-bond terms).

Record versions: 4 adds a bond's Morse exponent (``[r0, k, c3, c4, lo, hi, a]``: beyond
[lo, hi] the bond follows a Morse curve; bonds without it, and angles, keep six values);
3 adds each bond's and angle's training range (``[x0, k, c3, c4, lo, hi]``:
beyond [lo, hi] of ``q - x0`` the term is harmonic, :func:`hybridff.mm.refit.anharmonic_energy_slope`);
2 adds ``cross`` (stretch-bend / bond-bond terms, ``[[a, j, b], [θ0, r10, r20,
k_sb1, k_sb2, k_bb]]``, the atom order of each angle kept: r1 is the a-j bond); version-1
records (no cross terms) still read, and hash as they always did.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rdkit import Chem

from hybridff.exceptions import DataFormatError, InvalidOptionError
from hybridff.mm.energies import FORCE_GROUPS, mm_energies_forces
from hybridff.mm.graph import symmetry_classes
from hybridff.mm.refit import RefitOptions, fit_bonded, periodic_torsion_energy_forces
from hybridff.mm.signature import canonical_atom_order, refit_sha256  # noqa: F401  (its home)

#: layout version of a refit record (written); every version in READ_VERSIONS is read
RECORD_VERSION = 4
READ_VERSIONS = (1, 2, 3, 4)


def record_from_result(result: Any, mol: Chem.Mol) -> dict[str, Any]:
    """A refit record (canonical atom positions) from a :class:`~hybridff.mm.refit.RefitResult`
    whose keys are ``mol``'s atom indices."""
    rank = {i: k for k, i in enumerate(canonical_atom_order(mol))}

    def rows(table: dict) -> list:
        return sorted([[rank[a] for a in atoms], [float(v) for v in values]]
                      for atoms, values in table.items())

    from hybridff.io.molecule import canonical_smiles

    return {
        "version": RECORD_VERSION,
        "smiles": canonical_smiles(mol),
        "n_atoms": mol.GetNumAtoms(),
        "bonds": rows(result.bonds),
        "angles": rows(result.angles),
        "propers": sorted([[rank[a] for a in atoms], [[int(n), float(p), float(k)]
                                                       for n, p, k in parts]]
                          for atoms, parts in result.propers.items()),
        "cross": rows(result.cross),
        "metrics": {k: float(v) for k, v in result.metrics.items()},
    }


def record_in_atom_order(record: dict[str, Any], mol: Chem.Mol
                         ) -> dict[str, dict[tuple[int, ...], Any]]:
    """A record's terms in ``mol``'s atom indices: ``bonds`` / ``angles`` (atoms) -> (x0, k,
    c3, c4); ``Proper`` (atoms) -> [(periodicity, phase, k), ...]; ``cross`` (a, j, b) ->
    (θ0, r10, r20, k_sb1, k_sb2, k_bb) (empty for a version-1 record)."""
    from hybridff.io.molecule import canonical_smiles

    if (int(record.get("version", -1)) not in READ_VERSIONS
            or record.get("n_atoms") != mol.GetNumAtoms()
            or record.get("smiles") != canonical_smiles(mol)):
        raise DataFormatError(
            f"refit record of version {record.get('version')} for {record.get('smiles')} does "
            f"not fit this hybridff (versions {', '.join(map(str, READ_VERSIONS))}) or this "
            f"molecule ({canonical_smiles(mol)}); refit it (hybridff fit / hybridff train)")
    order = canonical_atom_order(mol)
    return {
        "bonds": {tuple(order[k] for k in atoms): tuple(values) for atoms, values in record["bonds"]},
        "angles": {tuple(order[k] for k in atoms): tuple(values)
                   for atoms, values in record["angles"]},
        "Proper": {tuple(order[k] for k in atoms): [(int(n), p, k_) for n, p, k_ in parts]
                   for atoms, parts in record["propers"]},
        "cross": {tuple(order[k] for k in atoms): tuple(values)
                  for atoms, values in record.get("cross", [])},
    }


def kept_terms_energy_forces(mm: Any, positions_nm: np.ndarray,
                             terms: dict[str, Any] | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Energy (F,) and forces (F, N, 3) of the MM terms a refit keeps: nonbonded and impropers
    (``mm``: a :class:`hybridff.training.residuals.MMSetup` of the GAFF2 MM; ``terms``: its
    ``canonical_terms()``, computed here when not given)."""
    terms = terms if terms is not None else mm.parameterized.canonical_terms()
    e_nb, f_nb = mm_energies_forces(mm.system, positions_nm, groups={FORCE_GROUPS["NonbondedForce"]})
    e_imp, f_imp = periodic_torsion_energy_forces(positions_nm, terms["Improper"])
    return e_nb + e_imp, f_nb + f_imp


def fit_bespoke(mm: Any, positions_nm: np.ndarray, energies: np.ndarray, forces: np.ndarray,
                options: RefitOptions | None = None) -> dict[str, Any]:
    """Refit the bonded terms of ``mm`` (a GAFF2 :class:`~hybridff.training.residuals.MMSetup`)
    to QM ``energies`` (F,) kJ/mol and ``forces`` (F, N, 3) kJ/mol/nm at ``positions_nm``;
    returns the refit record."""
    pm = mm.parameterized
    if pm.signature.refit is not None:
        raise InvalidOptionError("refit the force field's own terms: give the GAFF2 MM, not a refit one")
    terms = pm.canonical_terms()
    e_kept, f_kept = kept_terms_energy_forces(mm, positions_nm, terms)
    result = fit_bonded(pm.mol, terms, symmetry_classes(pm.mol), positions_nm,
                        energies - e_kept, forces - f_kept, options)
    return record_from_result(result, pm.mol)
