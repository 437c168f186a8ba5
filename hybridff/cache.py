"""On-disk cache of parameterized molecules: content-keyed, atomic writes, file locks.

Key: SHA-256 of (canonical isomeric SMILES, force-field file hash, charge method, hybridff
version). Entries are JSON files written to a temporary file and renamed into place under a
lock, so concurrent runs never see a half-written entry. A corrupt entry is reported and
recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
from filelock import FileLock
from rdkit import Chem

from hybridff import __version__
from hybridff.fileio import atomic_write_text
from hybridff.molecule import prepare
from hybridff.parameters import FilledTerm, ParameterizedMolecule

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path(os.environ.get("HYBRIDFF_CACHE", Path.home() / ".cache" / "hybridff"))


def cache_key(smiles: str, forcefield_sha256: str, charge_method: str,
              pair_order: str = "canonical") -> str:
    """Content hash identifying one parameterization."""
    text = json.dumps([smiles, forcefield_sha256, charge_method, pair_order, __version__])
    return hashlib.sha256(text.encode()).hexdigest()


def _serialize(pm: ParameterizedMolecule) -> str:
    return json.dumps({
        "hybridff_version": __version__,
        "molblock": Chem.MolToMolBlock(pm.mol),
        "names": pm.names,
        "atom_types": pm.atom_types,
        "charges": [float(q) for q in pm.charges],
        "charge_method": pm.charge_method,
        "pair_order": pm.pair_order,
        "forcefield": pm.forcefield,
        "forcefield_sha256": pm.forcefield_sha256,
        "filled_terms": [asdict(t) for t in pm.filled_terms],
    })


def _deserialize(text: str) -> ParameterizedMolecule:
    d = json.loads(text)
    mol = Chem.MolFromMolBlock(d["molblock"], removeHs=False)
    if mol is None:
        raise ValueError("molblock unreadable")
    mol = prepare(mol)
    charges = np.asarray(d["charges"], dtype=np.float64)
    if len(d["names"]) != mol.GetNumAtoms() or charges.shape != (mol.GetNumAtoms(),):
        raise ValueError("atom count mismatch")
    for atom, name in zip(mol.GetAtoms(), d["names"], strict=True):
        atom.SetProp("_hybridff_name", name)
    return ParameterizedMolecule(
        mol=mol, names=d["names"], atom_types=d["atom_types"], charges=charges,
        charge_method=d["charge_method"], pair_order=d["pair_order"], forcefield=d["forcefield"],
        forcefield_sha256=d["forcefield_sha256"],
        filled_terms=[FilledTerm(t["kind"], tuple(t["classes"]), t["values"], t["source"])
                      for t in d["filled_terms"]])


class ParameterCache:
    """A folder of parameterized molecules keyed by content hash."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory) if directory is not None else DEFAULT_CACHE_DIR

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def get(self, key: str) -> ParameterizedMolecule | None:
        """The cached entry, or None if absent or unreadable (a corrupt file is reported)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return _deserialize(path.read_text())
        except Exception as exc:  # any damage: recompute, never trust it
            logger.warning("ignoring corrupt cache entry %s (%s); it will be recomputed", path, exc)
            return None

    def put(self, key: str, pm: ParameterizedMolecule) -> None:
        atomic_write_text(self.path(key), _serialize(pm))

    def get_or_create(self, key: str, create: Callable[[], ParameterizedMolecule]
                      ) -> ParameterizedMolecule:
        """Cached entry for ``key``, computing and storing it (under a lock) when missing."""
        found = self.get(key)
        if found is not None:
            return found
        self.directory.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path(key)) + ".lock", timeout=600):
            found = self.get(key)  # another process may have written it meanwhile
            if found is not None:
                return found
            pm = create()
            self.put(key, pm)
            return pm
