"""Shared helpers of the classical-layer tests: tool detection, molecules parameterized once."""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openmm
import pytest
from openmm import app, unit

from hybridff.exceptions import ExternalToolError
from hybridff.io.molecule import load_molecule
from hybridff.mm.ambertools import find_program
from hybridff.mm.parameters import ParameterizedMolecule, parameterize
from hybridff.mm.system import make_forcefield

pytest_plugins = ["strict_skips"]


@pytest.fixture(scope="session", autouse=True)
def private_parameter_cache(tmp_path_factory):
    """Every test's default parameter cache is a fresh folder, never the user's
    ``~/.cache/hybridff`` (entries written there by other code must not decide a test)."""
    before = os.environ.get("HYBRIDFF_CACHE")
    os.environ["HYBRIDFF_CACHE"] = str(tmp_path_factory.mktemp("hybridff-cache"))
    yield
    if before is None:
        os.environ.pop("HYBRIDFF_CACHE", None)
    else:
        os.environ["HYBRIDFF_CACHE"] = before


@pytest.fixture(scope="module")
def cluster():
    """A local Dask cluster of 2 worker processes (one thread each) on loopback, per test
    module (tests/dask_helpers.py)."""
    from dask_helpers import local_cluster

    with local_cluster() as local:
        yield local


@pytest.fixture(scope="module")
def smi(request, tmp_path_factory) -> Path:
    """The test module's ``SMI`` (a many-molecule input) written to ``ligands.smi``."""
    path = tmp_path_factory.mktemp("input") / "ligands.smi"
    path.write_text(request.module.SMI)
    return path


@pytest.fixture(scope="module")
def torch_single_thread():
    """Run a module's torch work on one thread (OpenMM's CPU threads share the 2 cores);
    the previous setting is restored afterwards, so no global state leaks between modules."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def have_program(name: str) -> bool:
    """Whether an AmberTools program is found (PATH, then this interpreter's bin/)."""
    try:
        find_program(name)
    except ExternalToolError:
        return False
    return True


def hybridff_typer() -> Callable | None:
    """hybridff's own GAFF2 typer, or None while ``hybridff.mm.atomtyping`` does not exist.

    ``HYBRIDFF_TEST_TYPES=antechamber`` forces antechamber's types (to test parameter
    assignment apart from typing).
    """
    if os.environ.get("HYBRIDFF_TEST_TYPES", "").lower() == "antechamber":
        return None
    try:
        from hybridff.mm.atomtyping import assign_atom_types
    except ImportError:
        return None
    return assign_atom_types


@functools.cache
def parameterized(smiles: str, charge_method: str = "gasteiger") -> ParameterizedMolecule:
    """``smiles`` parameterized once per session: hybridff's typer, else antechamber's types.

    The returned object is shared between tests: do not modify it. Pairs are labelled as
    antechamber does (``pair_order="index"``), since the solvated case is compared with tleap.
    """
    if hybridff_typer() is not None:
        return parameterize(smiles, charge_method, pair_order="index")
    if not have_program("antechamber"):
        pytest.skip("neither hybridff.mm.atomtyping nor antechamber is available to type atoms")
    from amber_reference import antechamber_types

    mol = load_molecule(smiles)
    with tempfile.TemporaryDirectory(prefix="hybridff-test-") as tmp:
        types = antechamber_types(mol, Path(tmp))
    return parameterize(mol, charge_method, atom_types=types, pair_order="index")


@dataclass
class Solvated:
    """A ligand in a cubic TIP3P box: what both the hybridff and the tleap route start from."""

    pm: ParameterizedMolecule
    forcefield: app.ForceField
    topology: app.Topology
    positions_nm: np.ndarray
    box_nm: float

    @property
    def box_vectors(self) -> list[openmm.Vec3]:
        b = self.box_nm
        return [openmm.Vec3(b, 0, 0), openmm.Vec3(0, b, 0), openmm.Vec3(0, 0, b)]


@functools.cache
def solvated(smiles: str, box_nm: float) -> Solvated:
    """``smiles`` centred in a cubic TIP3P box of edge ``box_nm`` (Modeller.addSolvent)."""
    from hybridff.mm.system import molecules_topology

    pm = parameterized(smiles)
    ff = make_forcefield([pm], extra_files=["amber14/tip3p.xml"])
    top, pos = molecules_topology([pm])
    modeller = app.Modeller(top, pos * unit.nanometer)
    modeller.addSolvent(ff, model="tip3p", boxSize=openmm.Vec3(box_nm, box_nm, box_nm) * unit.nanometer,
                        neutralize=False)
    positions = np.asarray(modeller.getPositions().value_in_unit(unit.nanometer))
    return Solvated(pm, ff, modeller.topology, positions, box_nm)


@pytest.fixture(scope="session")
def paracetamol() -> ParameterizedMolecule:
    """Paracetamol, gasteiger charges (amide, phenol, aromatic ring: every bonded term)."""
    return parameterized("CC(=O)Nc1ccc(O)cc1")
