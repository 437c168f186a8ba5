"""The MM of a molecule: typing, parameter tables, assignment, the System, its identity.

- :mod:`hybridff.mm.atomtyping`: GAFF2 atom types from SMARTS rules in the XML.
- :mod:`hybridff.mm.forcefield_files`: where the shipped ForceField XML files live.
- :mod:`hybridff.mm.tables`: read-only lookup tables of a ForceField XML.
- :mod:`hybridff.mm.ambertools`: the one AmberTools runner (parmchk2, mol2, frcmod, parm
  files, antechamber's types).
- :mod:`hybridff.mm.forcefield_build`: the shipped GAFF2 ForceField XML, built from
  ``gaff2.dat`` and the typing rules.
- :mod:`hybridff.mm.parameters`: :func:`~hybridff.mm.parameters.parameterize`, a molecule's
  types, charges and terms filled by analogy (:mod:`hybridff.mm.analogy`, parmchk2);
  :mod:`hybridff.mm.ffxml` writes them as a per-molecule ForceField XML.
- :mod:`hybridff.mm.system`: the route to an OpenMM System through OpenMM's ``ForceField``.
- :mod:`hybridff.mm.templates`: the template generator; :mod:`hybridff.mm.cache` its cache.
- :mod:`hybridff.mm.refit`, :mod:`hybridff.mm.bespoke`: bespoke refits of the bonded terms.
- :mod:`hybridff.mm.signature`: :class:`~hybridff.mm.signature.MMSignature`, the one record of
  what decides a molecule's MM parameters (cache key, model metadata, compatibility checks).
- :mod:`hybridff.mm.graph`: :class:`~hybridff.mm.graph.MoleculeGraph`, which residue of a
  Topology is which molecule.
"""
