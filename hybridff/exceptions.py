"""Exception types of hybridff.

Each subclasses the built-in exception a caller would naturally catch (``ValueError``,
``KeyError``, ``RuntimeError``, ``FileNotFoundError``), so ``except ValueError`` keeps working.
Messages say what went wrong, where (atom index and name, file and line) and what to do.
"""

from __future__ import annotations


class HybridFFError(Exception):
    """Base class of every error raised by hybridff."""


class MoleculeInputError(HybridFFError, ValueError):
    """A molecule could not be read or is not usable (bad file, NaN coordinates, ...)."""


class UnsupportedElementError(MoleculeInputError):
    """An atom's element is outside what the force field or model covers."""


class UnsupportedChemistryError(MoleculeInputError):
    """Chemistry the force field does not handle (radicals, ...)."""


class OverlappingAtomsError(MoleculeInputError):
    """Two atoms (nearly) on top of each other: a broken structure that would blow up."""


class AtomTypingError(HybridFFError, ValueError):
    """No atom-typing rule matched an atom."""


class MissingParameterError(HybridFFError, KeyError):
    """A bonded or nonbonded parameter is missing and could not be filled by analogy."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ChargeAssignmentError(HybridFFError, RuntimeError):
    """Partial charges could not be computed."""


class ForceFieldNotFoundError(HybridFFError, FileNotFoundError):
    """A named force-field file does not exist."""


class NonNeutralSystemError(HybridFFError, ValueError):
    """A periodic (Ewald/PME) system carries a net charge."""


class UnknownNameError(HybridFFError, KeyError):
    """A name looked up in a registry (charge method, QM engine, backend) is not known."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ModelCompatibilityError(HybridFFError, ValueError):
    """A trained model does not fit the molecule or force field it is applied to."""


class ExternalToolError(HybridFFError, RuntimeError):
    """An external program (antechamber, sqm, tleap, parmchk2) failed or is missing."""


class DataFormatError(HybridFFError, ValueError):
    """A data file (extxyz, label file, cache entry) is malformed or inconsistent."""


class OptionalDependencyError(HybridFFError, ImportError):
    """An optional dependency is not installed; the message carries the install hint."""


class SimulationError(HybridFFError, RuntimeError):
    """A simulation could not be set up or became unstable (NaN energies, bad settings)."""


class ClusterError(HybridFFError, RuntimeError):
    """Distributed work cannot go on: no Dask workers left, or the scheduler is unreachable."""


class OutputBusyError(HybridFFError, RuntimeError):
    """Another run is writing the same output file (its lock is held)."""


class InvalidOptionError(HybridFFError, ValueError):
    """An option or setting is outside what works (a range, a combination, an unknown value)."""
