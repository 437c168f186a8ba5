"""The MM identity of a molecule: everything that decides its MM parameters, in one record.

An :class:`MMSignature` is the cache key of a parameterized molecule, is stored with it, is
written into every trained model (``metadata["mm"]``) and is compared whenever a correction
is added to a System: a delta-learned correction only fits the MM it was trained against.

It holds the force-field file (name and SHA256; the typing rules live in the same file),
where the atom types came from (the file's rules, or a hash of user-given types), the
labelling of conjugated pair types, the charge method with every option that changes a
charge (defaults filled in), the ML charge model's SHA256 or a hash of user-given charges,
and any refit of the bonded terms. A field that cannot be checked never passes silently.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from rdkit import Chem

from hybridff.exceptions import DataFormatError, InvalidOptionError, ModelCompatibilityError

logger = logging.getLogger(__name__)

#: version of the signature's layout; models and cache entries without it are "legacy"
SCHEMA = 2
#: labellings of conjugated pair types (cc/cd, ce/cf, nc/nd, ...); see docs/atom-typing.md
PAIR_ORDERS = ("canonical", "index")
#: parameters never depend on input atom order unless ``"index"`` (antechamber's) is asked for
DEFAULT_PAIR_ORDER = "canonical"
#: what every model trained before the signature existed used (``hybridff train`` labelled
#: pairs by input atom order then)
LEGACY_PAIR_ORDER = "index"
#: charge-method options that do not change a charge (time limits, debugging folders)
NON_SEMANTIC_CHARGE_OPTIONS = frozenset({"timeout", "keep_files"})


@dataclass(frozen=True)
class MMSignature:
    """What decides the MM parameters of one molecule (see the module docstring)."""

    forcefield: str
    forcefield_sha256: str
    #: ``"rules"``: the force-field file's typing rules; ``"given:<sha256>"``: types given by
    #: the caller (hash over atoms in canonical order)
    atom_types: str
    pair_order: str
    charge_method: str
    #: canonical JSON of the charge options that change charges, defaults filled in
    charge_options: str
    #: SHA256 of the ML charge model file (charge method ``ml``), else None
    charge_model_sha256: str | None
    #: SHA256 of user-given charges (charge method ``file``; canonical atom order), else None
    charges_sha256: str | None
    #: SHA256 of a bespoke refit of the bonded terms, None for the force field as shipped
    refit: str | None = None
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "MM signature") -> MMSignature:
        """Read a stored signature; a missing or unknown field is a :class:`DataFormatError`."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        unknown = sorted(set(data) - set(names))
        if missing or unknown:
            raise DataFormatError(
                f"{where}: not a complete MM signature (missing {missing or 'nothing'}, unknown "
                f"{unknown or 'nothing'}); it was written by another hybridff version")
        if int(data["schema"]) != SCHEMA:
            raise DataFormatError(f"{where}: MM signature schema {data['schema']}, this hybridff "
                                  f"reads {SCHEMA}")
        return cls(**{n: data[n] for n in names})

    def key(self) -> str:
        """SHA256 of the whole signature (part of the parameter cache's key)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def differences(self, other: MMSignature) -> list[str]:
        """``field: mine != other's`` for every field that differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k}={mine[k]!r} (trained) vs {theirs[k]!r} (this System)"
                for k in mine if mine[k] != theirs[k]]

    def describe(self) -> str:
        """One line for people: force field, typing, charges."""
        extra = f", refit {self.refit[:12]}" if self.refit else ""
        return (f"{self.forcefield} ({self.forcefield_sha256[:12]}), {self.pair_order} pair "
                f"labels, {self.charge_method} charges {self.charge_options}{extra}")


def canonical_atom_order(mol: Chem.Mol) -> list[int]:
    """Atom indices of ``mol`` sorted by RDKit's canonical rank (input-order independent up to
    symmetry-equivalent atoms)."""
    ranks = list(Chem.CanonicalRankAtoms(mol, breakTies=True))
    return sorted(range(mol.GetNumAtoms()), key=ranks.__getitem__)


def _sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()


def values_sha256(mol: Chem.Mol, values: Any, decimals: int | None = None) -> str:
    """Hash of per-atom values (types or charges) taken in canonical atom order."""
    order = canonical_atom_order(mol)
    items = [values[i] for i in order]
    if decimals is not None:
        items = [round(float(v), decimals) + 0.0 for v in items]
    return _sha256_json(items)


def refit_sha256(record: dict[str, Any]) -> str:
    """Hash of a bespoke refit record's parameters (:mod:`hybridff.mm.bespoke`): what the
    signature's ``refit`` field holds."""
    keys = ("version", "smiles", "n_atoms", "bonds", "angles", "propers")
    if int(record.get("version", -1)) >= 2:
        keys += ("cross",)
    payload = {k: record[k] for k in keys}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def charge_options_json(method: str, options: dict[str, Any]) -> str:
    """Canonical JSON of the options of charge ``method`` that change charges.

    Defaults of the method's function are filled in, so ``optimize=True`` given or left out
    gives the same text; ``model`` (ML charges: the file's SHA256 is recorded instead),
    ``charges`` (user charges: their hash is recorded instead) and options that change no
    charge (:data:`NON_SEMANTIC_CHARGE_OPTIONS`) are left out.
    """
    from hybridff.charges import get_charge_method

    bound: dict[str, Any] = dict(options)
    try:
        sig = inspect.signature(get_charge_method(method))
        params = list(sig.parameters.values())
        for p in params[1:]:  # the first parameter is the molecule
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            if p.name not in bound and p.default is not inspect.Parameter.empty:
                bound[p.name] = p.default
    except (TypeError, ValueError):  # a callable without an inspectable signature
        pass
    drop = NON_SEMANTIC_CHARGE_OPTIONS | {"model", "charges"}
    kept = {k: _jsonable(v) for k, v in sorted(bound.items()) if k not in drop}
    return json.dumps(kept, sort_keys=True, separators=(",", ":"))


def make_signature(
    mol: Chem.Mol,
    forcefield: str,
    forcefield_sha256: str,
    charge_method: str,
    charge_options: dict[str, Any],
    pair_order: str = DEFAULT_PAIR_ORDER,
    atom_types: list[str] | None = None,
    charges: np.ndarray | None = None,
    refit: str | None = None,
) -> MMSignature:
    """The signature of ``mol`` parameterized with these settings.

    ``atom_types``: types given by the caller (None: the force field's rules). ``charges``:
    the charges the ``file`` method assigned (needed for that method only).
    """
    if pair_order not in PAIR_ORDERS:
        raise InvalidOptionError(f"pair_order must be one of {PAIR_ORDERS}, not {pair_order!r}")
    model_sha = None
    if charge_method == "ml":
        from hybridff.charges.model.file import charge_model_sha256

        model_sha = charge_model_sha256(charge_options.get("model"))
    charges_sha = None
    if charge_method == "file":
        if charges is None:
            raise InvalidOptionError("the MM signature of user-given charges needs the charges")
        charges_sha = values_sha256(mol, np.asarray(charges, dtype=float), decimals=6)
    types = "rules" if atom_types is None else f"given:{values_sha256(mol, list(atom_types))}"
    return MMSignature(
        forcefield=forcefield, forcefield_sha256=forcefield_sha256, atom_types=types,
        pair_order=pair_order, charge_method=charge_method,
        charge_options=charge_options_json(charge_method, charge_options),
        charge_model_sha256=model_sha, charges_sha256=charges_sha, refit=refit)


# ----------------------------------------------------------------- models trained against one

#: legacy model metadata key -> signature field (models written before the signature existed)
LEGACY_KEYS = {"forcefield": "forcefield", "forcefield_hash": "forcefield_sha256",
                "charge_method": "charge_method", "charge_model_hash": "charge_model_sha256"}


def is_legacy(trained: dict[str, Any] | None) -> bool:
    """Whether a model's ``metadata["mm"]`` predates the full signature."""
    return not trained or "schema" not in trained


def trained_build_options(trained: dict[str, Any] | None,
                          refit: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings that rebuild the MM a model was trained against: ``charge_method``,
    ``pair_order``, ``refit`` (the record ``refit``, a model's ``metadata["mm_refit"]``, when
    its signature names one) and the charge options (for ``parameterize``/``prepare_system``)."""
    trained = trained or {}
    if trained.get("refit"):
        if refit is None or refit_sha256(refit) != trained["refit"]:
            raise DataFormatError(
                "the model was trained against a bespoke refit of the bonded terms, but it does "
                "not carry that refit (metadata 'mm_refit' missing or altered); retrain it")
    if is_legacy(trained):
        options: dict[str, Any] = {"pair_order": LEGACY_PAIR_ORDER}
        if trained.get("charge_method"):
            options["charge_method"] = trained["charge_method"]
        return options
    options = {"pair_order": trained["pair_order"], "charge_method": trained["charge_method"]}
    if trained.get("refit"):
        options["refit"] = refit
    options.update(json.loads(trained["charge_options"]))
    return options


def check_trained_against(trained: dict[str, Any] | None, actual: MMSignature,
                          what: str = "the ML model") -> None:
    """Refuse ``actual`` if it is not the MM ``trained`` (a model's ``metadata["mm"]``) names.

    A full signature must match field by field. A legacy record is compared on the fields it
    has, and a warning names the fields that could not be checked.
    """
    advice = ("a delta-learned correction only fits the MM it was trained on: build the System "
              "with the model's settings (hybridff simulate/evaluate do), or retrain it "
              "(hybridff train) for this MM")
    if trained and not is_legacy(trained):
        expected = MMSignature.from_dict(trained, where=f"{what}'s MM signature")
        diffs = expected.differences(actual)
        if diffs:
            if expected.charge_model_sha256 != actual.charge_model_sha256 and expected.charge_model_sha256:
                advice += ("; it was trained with another ML charge model file: build the MM "
                           "with that file (parameterize(..., charge_method='ml', model=FILE); "
                           "docs/charges.md says where the previously shipped one is)")
            raise ModelCompatibilityError(
                f"{what} was trained against other MM parameters: {'; '.join(diffs)}; {advice}")
        return
    trained = trained or {}
    have = actual.to_dict()
    for old, new in LEGACY_KEYS.items():
        if old in trained and trained[old] is not None and trained[old] != have[new]:
            raise ModelCompatibilityError(
                f"{what} was trained against MM {old}={trained[old]!r}, but this System uses "
                f"{have[new]!r}; {advice}")
    if actual.pair_order != LEGACY_PAIR_ORDER:
        raise ModelCompatibilityError(
            f"{what} was written by an older hybridff, whose training labelled conjugated pair "
            f"types by input atom order (pair_order='index'), but this System uses "
            f"pair_order={actual.pair_order!r}; build it with pair_order='index' or retrain")
    unchecked = [new for old, new in LEGACY_KEYS.items() if old not in trained]
    if actual.charge_method != "ml" and "charge_model_sha256" in unchecked:
        unchecked.remove("charge_model_sha256")
    unchecked += ["atom_types", "charge_options", "charges_sha256", "refit"]
    logger.warning(
        "%s was written by an older hybridff and records only part of its MM signature: "
        "could not check %s; if any of them changed since it was trained, retrain it",
        what, ", ".join(unchecked))
