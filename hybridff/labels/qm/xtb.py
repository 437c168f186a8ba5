"""GFN2-xTB energies and forces with tblite (Hartree/Bohr converted here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hybridff.exceptions import ExternalToolError
from hybridff.labels.qm.base import QMEngine, optional_import


class XTBEngine(QMEngine):
    """tblite's GFN2-xTB (or another tblite method via ``method=``) in vacuum."""

    name = "xtb"

    def __init__(self, method: str = "GFN2-xTB", accuracy: float = 1.0,
                 max_iterations: int = 250) -> None:
        self.interface = optional_import("tblite.interface", "tblite", "the xtb QM method")
        self.method = method
        self.accuracy = float(accuracy)
        self.max_iterations = int(max_iterations)

    def raw_with_dipole(self, numbers: np.ndarray, positions_bohr: np.ndarray, charge: int = 0,
                        multiplicity: int = 1) -> tuple[float, np.ndarray, np.ndarray]:
        """Energy (Hartree), gradient (Hartree/Bohr) and dipole (e*Bohr, about the origin)."""
        calc = self.interface.Calculator(
            self.method, np.asarray(numbers, dtype=np.int32),
            np.asarray(positions_bohr, dtype=np.float64), charge=float(charge),
            uhf=int(multiplicity) - 1,
        )
        calc.set("verbosity", 0)
        calc.set("accuracy", self.accuracy)
        calc.set("max-iter", self.max_iterations)
        try:
            res = calc.singlepoint()
        except RuntimeError as exc:
            raise ExternalToolError(f"tblite {self.method} failed: {exc}") from exc
        return (float(res.get("energy")), np.array(res.get("gradient"), dtype=np.float64),
                np.array(res.get("dipole"), dtype=np.float64))

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            program_version = version("tblite")
        except PackageNotFoundError:
            program_version = "unknown"
        return {"method": "xtb", "level": self.method, "program": "tblite",
                "version": program_version}
