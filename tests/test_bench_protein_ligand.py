"""The protein-ligand System of ``benchmarks/bench_hybrid.py --protein`` is what it claims:
the villin protein in water, the ligand in the water away from it, no water overlapping it,
and the ML correction acting on the ligand's atoms only (built at small scale: a water shell
of the shipped box)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import openmm
import pytest
from openmm import app, unit

ROOT = Path(__file__).resolve().parents[1]
LIGAND = ROOT / "examples" / "data" / "paracetamol.sdf"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_hybrid", ROOT / "benchmarks" / "bench_hybrid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _saved(model, tmp_path: Path) -> Path:
    import torch

    path = tmp_path / "module.pt"
    torch.jit.save(model.module, str(path))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The builder run on a smaller copy of the villin box: the protein and every fifth water
    (same box), so the System is built and evaluated in a few seconds."""
    bench = _bench()
    pdb = app.PDBFile(str(bench.VILLIN_PDB))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    waters = [r for r in pdb.topology.residues() if r.name == "HOH"]
    modeller.delete([r for k, r in enumerate(waters) if k % 5])
    small = tmp_path_factory.mktemp("villin") / "villin_small.pdb"
    with open(small, "w") as handle:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, handle)
    system, topology, positions, pm, info = bench.build_protein_ligand(str(LIGAND), pdb=small)
    return bench, pdb, system, topology, positions, pm, info


def test_protein_and_ligand_are_in_the_system(built) -> None:
    bench, pdb, system, topology, positions, pm, info = built
    residues = list(topology.residues())
    protein = [r for r in residues if bench.is_amino_acid(r)]
    original = [r.name for r in pdb.topology.residues() if r.name not in ("HOH", "Cl")]
    assert [r.name for r in protein] == original  # every protein residue, in order
    assert info["protein_residues"] == len(protein) == 35  # villin headpiece HP35 (N68H)
    assert [r.name for r in residues].count("Cl") == 2  # its two chloride ions
    ligand = [r for r in residues if r.name == pm.residue_name]
    assert len(ligand) == 1 and len(list(ligand[0].atoms())) == pm.mol.GetNumAtoms() == 20
    assert system.getNumParticles() == topology.getNumAtoms() == info["atoms"]
    assert system.usesPeriodicBoundaryConditions()
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    assert nb.getNonbondedMethod() == openmm.NonbondedForce.PME
    # the ligand's own charges are hybridff's, the protein's amber14's
    lig_atoms = [a.index for a in ligand[0].atoms()]
    charges = [nb.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge) for i in lig_atoms]
    assert np.allclose(charges, pm.charges, atol=1e-6)


def test_ligand_sits_in_water_away_from_the_protein(built) -> None:
    bench, pdb, system, topology, positions, pm, info = built
    xyz = np.array(positions.value_in_unit(unit.nanometer))
    box = np.array(info["box_nm"])
    atoms = list(topology.atoms())
    lig = [a.index for a in atoms if a.residue.name == pm.residue_name]
    prot = [a.index for a in atoms if bench.is_amino_acid(a.residue)]
    water = [a.index for a in atoms if a.residue.name == "HOH"]

    def nearest(group: list[int]) -> float:
        d = xyz[group][:, None, :] - xyz[lig][None, :, :]
        d -= box * np.round(d / box)
        return float(np.sqrt((d * d).sum(-1)).min())

    assert nearest(prot) == pytest.approx(info["ligand_protein_min_distance_nm"], abs=1e-3)
    assert nearest(prot) > 1.0  # in the water, well outside the protein
    assert nearest(water) >= 0.25  # the overlapping waters were removed
    assert info["waters_removed"] > 0


def test_correction_acts_on_the_ligand_only_and_energy_is_finite(built, tmp_path,
                                                                 torch_single_thread) -> None:
    """The benchmark's correction (its default model, with random weights here: a fresh
    model's output layer starts at zero) acts on the ligand's atoms and nothing else."""
    bench, pdb, system, topology, positions, pm, info = built
    import torch

    from hybridff.ml.backend import add_ml_correction
    from hybridff.ml.modelfile import ModelFile

    fresh = bench.default_model(topology)
    module = torch.jit.load(_saved(fresh, tmp_path))  # a copy, then random weights
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.1)
    hybrid = openmm.XmlSerializer.clone(system)
    force = add_ml_correction(hybrid, topology, ModelFile(module, fresh.metadata))
    group = force.getForceGroup()
    context = openmm.Context(hybrid, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(positions)
    total = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert np.isfinite(total)
    state = context.getState(getEnergy=True, getForces=True, groups={group})
    forces = np.array(state.getForces().value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    lig = [a.index for a in topology.atoms() if a.residue.name == pm.residue_name]
    others = np.setdiff1d(np.arange(len(forces)), lig)
    assert np.isfinite(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    assert np.all(forces[others] == 0.0)
    assert np.all(np.abs(forces[lig]).sum(axis=1) > 0)  # every ligand atom feels it
