"""Drop-in use with OpenMM: the template generator, its cache, and the parameterize CLI."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import openmm
import pytest
from openmm import app, unit

from hybridff.mm.cache import ParameterCache, cache_key
from hybridff.mm.parameters import parameterize
from hybridff.mm.system import create_system, molecules_topology
from hybridff.mm.templates import HybridTemplateGenerator

ROOT = Path(__file__).resolve().parents[1]
PARACETAMOL = ROOT / "examples" / "data" / "paracetamol.sdf"


def _energy(system, positions) -> float:
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(positions)
    return ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def test_generator_with_openmm_water_and_protein_files(tmp_path):
    pm = parameterize(PARACETAMOL, "gasteiger")
    top, pos = molecules_topology([pm])
    gen = HybridTemplateGenerator(PARACETAMOL, charge_method="gasteiger", cache=tmp_path)
    ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml", "hybridff-gaff2.xml")
    ff.registerTemplateGenerator(gen.generator)
    # vacuum: same energy as the Python route
    system = ff.createSystem(top, nonbondedMethod=app.NoCutoff)
    reference, _, _ = create_system(pm)
    assert _energy(system, pos * unit.nanometer) == pytest.approx(
        _energy(reference, pos * unit.nanometer), rel=1e-9)
    # solvated with OpenMM's own water file, PME and switching carried through
    modeller = app.Modeller(top, pos * unit.nanometer)
    modeller.addSolvent(ff, model="tip3p", boxSize=openmm.Vec3(2.6, 2.6, 2.6) * unit.nanometer)
    system = ff.createSystem(modeller.topology, nonbondedMethod=app.PME,
                             nonbondedCutoff=1.0 * unit.nanometer, switchDistance=0.9 * unit.nanometer)
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    assert nb.getUseSwitchingFunction() and nb.getSwitchingDistance() == 0.9 * unit.nanometer
    assert sum(nb.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge)
               for i in range(nb.getNumParticles())) == pytest.approx(0.0, abs=1e-6)


def test_generator_matches_residue_with_other_atom_order_and_names(tmp_path):
    pm = parameterize("OC(=O)c1ccccc1O", "gasteiger")  # salicylic acid
    perm = np.random.default_rng(3).permutation(pm.mol.GetNumAtoms())
    top = app.Topology()
    res = top.addResidue("SAL", top.addChain())
    atoms = {}
    for i in perm:
        a = pm.mol.GetAtomWithIdx(int(i))
        atoms[int(i)] = top.addAtom(f"X{i}", app.Element.getByAtomicNumber(a.GetAtomicNum()), res)
    for b in pm.mol.GetBonds():
        top.addBond(atoms[b.GetBeginAtomIdx()], atoms[b.GetEndAtomIdx()])
    pos = pm.mol.GetConformer().GetPositions()[perm] * 0.1
    gen = HybridTemplateGenerator(pm.mol, charge_method="gasteiger", cache=False)
    ff = app.ForceField("hybridff-gaff2.xml")
    ff.registerTemplateGenerator(gen.generator)
    system = ff.createSystem(top, nonbondedMethod=app.NoCutoff)
    ref, _, refpos = create_system(pm)
    assert _energy(system, pos * unit.nanometer) == pytest.approx(_energy(ref, refpos), rel=1e-9)
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    charges = sorted(round(nb.getParticleParameters(i)[0]._value, 6) for i in range(nb.getNumParticles()))
    pmc = next(iter(gen.parameterized.values()))
    assert charges == sorted(round(float(q), 6) for q in pmc.charges)


def test_unknown_residue_is_not_claimed():
    gen = HybridTemplateGenerator("CCO", cache=False)
    ff = app.ForceField("hybridff-gaff2.xml")
    ff.registerTemplateGenerator(gen.generator)
    pm = parameterize("CCN", "gasteiger")
    top, _ = molecules_topology([pm])
    with pytest.raises(ValueError, match="No template found"):
        ff.createSystem(top)


def test_cache_hit_corrupt_entry_and_key(tmp_path, caplog):
    gen = HybridTemplateGenerator("CCO", charge_method="gasteiger", cache=tmp_path)
    pm = gen.parameterize_molecule(gen.molecules[0])
    key = cache_key(pm.smiles, pm.signature)
    path = ParameterCache(tmp_path).path(key)
    assert path.is_file()
    again = HybridTemplateGenerator("OCC", charge_method="gasteiger", cache=tmp_path)
    hit = again.parameterize_molecule(again.molecules[0])
    np.testing.assert_allclose(sorted(hit.charges), sorted(pm.charges))
    assert cache_key(pm.smiles, replace(pm.signature, charge_method="am1bcc")) != key
    assert cache_key(pm.smiles, replace(pm.signature, pair_order="index")) != key
    path.write_text("{ truncated")
    third = HybridTemplateGenerator("CCO", charge_method="gasteiger", cache=tmp_path)
    third.parameterize_molecule(third.molecules[0])
    assert "corrupt cache entry" in caplog.text
    json.loads(path.read_text())  # rewritten whole


def _worker(cache_dir: str) -> list[float]:
    gen = HybridTemplateGenerator("CC(=O)Nc1ccc(O)cc1", charge_method="gasteiger", cache=cache_dir)
    return [float(q) for q in gen.parameterize_molecule(gen.molecules[0]).charges]


def test_two_processes_writing_the_cache_at_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_worker, [str(tmp_path)] * 2)
    assert results[0] == pytest.approx(results[1])
    entries = list(tmp_path.glob("*.json"))
    assert len(entries) == 1
    json.loads(entries[0].read_text())
    assert not list(tmp_path.glob(".*.json.*"))  # no temporary files left behind


def test_parameterize_cli_writes_xml_plain_openmm_loads(tmp_path):
    out, report = tmp_path / "lig.xml", tmp_path / "lig.json"
    proc = subprocess.run([sys.executable, "-m", "hybridff", "parameterize", str(PARACETAMOL),
                           "--charges", "gasteiger", "-o", str(out), "--report", str(report)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    ff = app.ForceField("hybridff-gaff2.xml", str(out))
    pm = parameterize(PARACETAMOL, "gasteiger")
    top, pos = molecules_topology([pm])
    system = ff.createSystem(top, nonbondedMethod=app.NoCutoff)
    ref, _, _ = create_system(pm)
    assert _energy(system, pos * unit.nanometer) == pytest.approx(
        _energy(ref, pos * unit.nanometer), rel=1e-9)
    data = json.loads(report.read_text())
    assert [a["type"] for a in data["atoms"]][:4] == ["c3", "c", "o", "ns"]
    assert sum(a["charge"] for a in data["atoms"]) == pytest.approx(0.0, abs=1e-6)
    assert any(t["kind"] == "proper" and "same as" in t["source"] for t in data["filled_by_analogy"])


def test_parameterize_cli_warns_about_net_charge_and_reports_errors(tmp_path):
    smi = tmp_path / "ions.smi"
    smi.write_text("CC(=O)[O-] acetate\n")
    proc = subprocess.run([sys.executable, "-m", "hybridff", "parameterize", str(smi),
                           "--charges", "gasteiger", "-o", str(tmp_path / "a.xml")],
                          capture_output=True, text=True)
    assert proc.returncode == 0
    assert "net charge of -1 e" in proc.stderr and "neutralize" in proc.stderr
    bad = tmp_path / "bad.smi"
    bad.write_text("C[Si](C)(C)C\n")
    proc = subprocess.run([sys.executable, "-m", "hybridff", "parameterize", str(bad),
                           "-o", str(tmp_path / "b.xml")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Si is not supported" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "b.xml").exists()
