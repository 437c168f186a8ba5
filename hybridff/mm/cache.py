"""On-disk cache of parameterized molecules: content-keyed, atomic writes, file locks.

Key: SHA-256 of (canonical isomeric SMILES, the MM signature: force-field file hash, typing,
pair labelling, charge method with all its options, charge model or user charges' hash, any
refit; hybridff version); every entry stores its signature and is only used when it is the
one asked for. Entries are JSON files written to a temporary file and renamed into place under a
lock, so concurrent runs never see a half-written entry. A corrupt entry (unreadable, not
finite, or not the molecule and settings of its key) is reported and recomputed, never
trusted. A cache that cannot be written or locked is reported and skipped: the molecule is
parameterized without it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout
from rdkit import Chem

from hybridff import __version__
from hybridff.io.files import atomic_write_text
from hybridff.io.molecule import prepare
from hybridff.mm.analogy import FilledTerm
from hybridff.mm.parameters import ParameterizedMolecule, parameters_key
from hybridff.mm.signature import MMSignature

logger = logging.getLogger(__name__)

def default_cache_dir() -> Path:
    """``$HYBRIDFF_CACHE``, else ``~/.cache/hybridff`` (read when a cache is made, not at import)."""
    return Path(os.environ.get("HYBRIDFF_CACHE", Path.home() / ".cache" / "hybridff"))


def cache_key(smiles: str, signature: MMSignature) -> str:
    """Content hash identifying one parameterization (molecule + MM signature + version)."""
    return parameters_key(smiles, signature)


def _serialize(pm: ParameterizedMolecule) -> str:
    return json.dumps({
        "hybridff_version": __version__,
        "molblock": Chem.MolToMolBlock(pm.mol),  # for people; the binary form is read back
        # RDKit's binary form keeps the molecule exactly: a molblock read back perceives
        # stereo from the 3D conformer, turning an unspecified centre into a specified one
        "mol_binary": base64.b64encode(pm.mol.ToBinary(Chem.PropertyPickleOptions.AllProps)
                                       ).decode("ascii"),
        "names": pm.names,
        "atom_types": pm.atom_types,
        "charges": [float(q) for q in pm.charges],
        "mm_signature": pm.signature.to_dict(),
        "refit": pm.refit,
        "filled_terms": [asdict(t) for t in pm.filled_terms],
    })


def _deserialize(text: str) -> ParameterizedMolecule:
    d = json.loads(text)
    if "mol_binary" in d:
        mol = Chem.Mol(base64.b64decode(d["mol_binary"], validate=True))
    else:  # entries of earlier hybridff versions
        mol = Chem.MolFromMolBlock(d["molblock"], removeHs=False)
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError("molecule unreadable")
    mol = prepare(mol)
    charges = np.asarray(d["charges"], dtype=np.float64)
    if len(d["names"]) != mol.GetNumAtoms() or charges.shape != (mol.GetNumAtoms(),):
        raise ValueError("atom count mismatch")
    if not np.isfinite(charges).all():
        raise ValueError(f"non-finite charge on atom {int(np.argmin(np.isfinite(charges)))}")
    for atom, name in zip(mol.GetAtoms(), d["names"], strict=True):
        atom.SetProp("_hybridff_name", name)
    if "mm_signature" not in d:
        raise ValueError("written by an older hybridff: no MM signature")
    return ParameterizedMolecule(
        mol=mol, names=d["names"], atom_types=d["atom_types"], charges=charges,
        signature=MMSignature.from_dict(d["mm_signature"], where="cache entry"),
        refit=d.get("refit"),
        filled_terms=[FilledTerm(t["kind"], tuple(t["classes"]), t["values"], t["source"])
                      for t in d["filled_terms"]])


class ParameterCache:
    """A folder of parameterized molecules keyed by content hash."""

    def __init__(self, directory: str | os.PathLike | None = None, lock_timeout_s: float = 600.0):
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.lock_timeout_s = float(lock_timeout_s)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def get(self, key: str) -> ParameterizedMolecule | None:
        """The cached entry, or None if absent or unreadable (a corrupt file is reported)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            pm = _deserialize(path.read_text())
            found = cache_key(pm.smiles, pm.signature)
            if found != key:
                raise ValueError(f"it holds {pm.smiles} ({pm.signature.describe()}), not the "
                                 "molecule and settings of its key")
        except Exception as exc:  # any damage: recompute, never trust it
            logger.warning("ignoring corrupt cache entry %s (%s); it will be recomputed and "
                           "rewritten", path, exc)
            return None
        return pm

    def put(self, key: str, pm: ParameterizedMolecule) -> None:
        atomic_write_text(self.path(key), _serialize(pm))

    def get_or_create(self, key: str, create: Callable[[], ParameterizedMolecule]
                      ) -> ParameterizedMolecule:
        """Cached entry for ``key``, computing and storing it (under a lock) when missing."""
        found = self.get(key)
        if found is not None:
            return found
        lock_path = str(self.path(key)) + ".lock"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock = FileLock(lock_path, timeout=self.lock_timeout_s)
            lock.acquire()
        except (OSError, Timeout) as exc:
            reason = (f"another process has held its lock {lock_path} for "
                      f"{self.lock_timeout_s:.0f} s" if isinstance(exc, Timeout) else str(exc))
            logger.warning("parameter cache %s not usable (%s); parameterizing without it "
                           "(set HYBRIDFF_CACHE or cache= to a writable folder, or cache=False)",
                           self.directory, reason)
            return create()
        try:
            found = self.get(key)  # another process may have written it meanwhile
            if found is not None:
                return found
            pm = create()
            try:
                self.put(key, pm)
            except OSError as exc:
                logger.warning("could not write the parameter cache entry %s (%s); the result "
                               "is used but not cached", self.path(key), exc)
            return pm
        finally:
            lock.release()
