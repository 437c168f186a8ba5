"""The interface every QM engine implements."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from hybridff.exceptions import OptionalDependencyError


@dataclass
class QMResult:
    """Energy (kJ/mol) and forces (N, 3; kJ/mol/nm) of one conformation."""

    energy: float
    forces: np.ndarray


class QMEngine:
    """Base class: ``compute(numbers, positions_nm, charge, multiplicity) -> QMResult``."""

    #: registry name
    name = ""

    def compute(
        self,
        numbers: np.ndarray,
        positions_nm: np.ndarray,
        charge: int = 0,
        multiplicity: int = 1,
    ) -> QMResult:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Level of theory and program versions (stored with the labels)."""
        return {"method": self.name}


def optional_import(module: str, pip_name: str, what: str) -> ModuleType:
    """Import an optional dependency or raise an error carrying the install hint."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise OptionalDependencyError(
            f"{what} needs the optional package {pip_name!r}: pip install {pip_name} "
            "(or pip install 'hybridff[qm]')"
        ) from exc
