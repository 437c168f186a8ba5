"""The MM of a molecule: its identity (signature) and its graph.

- :mod:`hybridff.mm.signature`: :class:`~hybridff.mm.signature.MMSignature`, the one record of
  what decides a molecule's MM parameters (cache key, model metadata, compatibility checks).
- :mod:`hybridff.mm.graph`: :class:`~hybridff.mm.graph.MoleculeGraph`, which residue of a
  Topology is which molecule.
"""
