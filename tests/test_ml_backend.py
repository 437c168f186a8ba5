"""The correction inside OpenMM: TorchForce and PythonForce reproduce the model, lambda, groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
openmm = pytest.importorskip("openmm")

from openmm import app, unit  # noqa: E402
from test_ml_model import ELEMENTS, POSITIONS, SPECIES, random_model  # noqa: E402

from hybridff.exceptions import (  # noqa: E402
    DataFormatError,
    ModelCompatibilityError,
    UnknownNameError,
)
from hybridff.ml.backend import BACKENDS, add_ml_correction, select_ml_atoms  # noqa: E402
from hybridff.ml.model import energies_and_forces  # noqa: E402
from hybridff.ml.modelfile import ModelFile, build_metadata, load_model, save_model  # noqa: E402
from hybridff.mm.parameters import parameterize  # noqa: E402

BACKEND_NAMES = ["torch", "python"]
SYMBOLS = {0: "H", 1: "C", 2: "O"}


pytestmark = pytest.mark.usefixtures("torch_single_thread")


def make_model_file(n_models: int = 2, **extra) -> ModelFile:
    model = random_model(n_models=n_models)
    meta = build_metadata(model, model_spec(), **extra)
    return ModelFile(module=torch.jit.script(model), metadata=meta)


def model_spec():
    from hybridff.ml.descriptors import DescriptorSpec

    return DescriptorSpec(elements=ELEMENTS)


def make_system(periodic: bool = False, n_water: int = 2):
    """Ethanol-like residue + waters + an ion: a plain-particle System with a bond force."""
    top = app.Topology()
    chain = top.addChain()
    res = top.addResidue("MOL", chain)
    for i, s in enumerate(SPECIES):
        top.addAtom(f"{SYMBOLS[s]}{i}", app.Element.getBySymbol(SYMBOLS[s]), res)
    positions = [list(p) for p in POSITIONS]
    for w in range(n_water):
        wres = top.addResidue("HOH", chain)
        for name, sym in (("O", "O"), ("H1", "H"), ("H2", "H")):
            top.addAtom(name, app.Element.getBySymbol(sym), wres)
        base = np.array([0.6 + 0.3 * w, 0.1, 0.0])
        positions += [base, base + [0.096, 0, 0], base + [0, 0.096, 0]]
    ion = top.addResidue("NA", chain)
    top.addAtom("NA", app.Element.getBySymbol("Na"), ion)
    positions.append([-0.5, 0.0, 0.0])
    system = openmm.System()
    for atom in top.atoms():
        system.addParticle(atom.element.mass)
    bonds = openmm.HarmonicBondForce()
    bonds.addBond(0, 1, 0.15, 1000.0)
    system.addForce(bonds)
    if periodic:
        box = [openmm.Vec3(2.0, 0, 0), openmm.Vec3(0, 2.1, 0), openmm.Vec3(0, 0, 2.2)]
        system.setDefaultPeriodicBoxVectors(*box)
        top.setPeriodicBoxVectors(box)
        bonds.setUsesPeriodicBoundaryConditions(True)
    return system, top, np.array(positions, dtype=np.float64)


def group_state(system, positions, group: int, lambda_value: float | None = None):
    integrator = openmm.VerletIntegrator(0.001)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    if lambda_value is not None:
        context.setParameter("lambda_ml", lambda_value)
    state = context.getState(getEnergy=True, getForces=True, groups={group})
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return energy, np.asarray(forces)


def reference(model_file: ModelFile, positions: np.ndarray, box=None):
    pos = torch.tensor(positions[: len(SPECIES)])[None]
    b = None if box is None else torch.tensor(box)
    e, f = energies_and_forces(model_file.module, pos, torch.tensor(SPECIES), b)
    return float(e[0]), f[0].numpy()


#: (energy, force) tolerances of each precision against the float64 model, relative and absolute
PRECISION_TOLERANCE = {"double": (1e-9, 1e-7), "single": (1e-5, 1e-3)}


@pytest.mark.parametrize("precision", ["double", "single"])
@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("periodic", [False, True])
def test_openmm_matches_model(backend: str, periodic: bool, precision: str) -> None:
    model_file = make_model_file()
    system, top, positions = make_system(periodic=periodic)
    if periodic:  # put the molecule across the box corner: OpenMM may wrap atoms apart
        positions[: len(SPECIES)] += np.array([1.95, 2.05, 2.15])
    force = add_ml_correction(system, top, model_file, backend=backend, precision=precision)
    assert force.getName().endswith(f"{precision})")
    assert force.getForceGroup() == 1  # the bond force holds group 0
    assert force.usesPeriodicBoundaryConditions() == periodic
    energy, forces = group_state(system, positions, force.getForceGroup())
    box = np.diag([2.0, 2.1, 2.2]) if periodic else None
    e_ref, f_ref = reference(model_file, positions, box)
    assert abs(e_ref) > 1e-3
    tol_e, tol_f = PRECISION_TOLERANCE[precision]
    assert energy == pytest.approx(e_ref, rel=tol_e, abs=tol_e)
    np.testing.assert_allclose(forces[: len(SPECIES)], f_ref, rtol=tol_f, atol=tol_f)
    np.testing.assert_array_equal(forces[len(SPECIES) :], 0.0)  # water and ion untouched


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_lambda_scales_correction(backend: str) -> None:
    model_file = make_model_file()
    system, top, positions = make_system()
    force = add_ml_correction(system, top, model_file, backend=backend, lambda_ml=0.5,
                              precision="double")
    group = force.getForceGroup()
    e_half, f_half = group_state(system, positions, group)
    e_ref, f_ref = reference(model_file, positions)
    assert e_half == pytest.approx(0.5 * e_ref, rel=1e-9)
    np.testing.assert_allclose(f_half[: len(SPECIES)], 0.5 * f_ref, rtol=1e-7, atol=1e-8)
    e_zero, f_zero = group_state(system, positions, group, lambda_value=0.0)
    assert e_zero == 0.0
    np.testing.assert_allclose(f_zero, 0.0, atol=1e-12)


def test_force_group_and_region_selection() -> None:
    model_file = make_model_file()
    system, top, positions = make_system()
    assert select_ml_atoms(top) == list(range(len(SPECIES)))
    assert select_ml_atoms(top, "MOL") == list(range(len(SPECIES)))
    force = add_ml_correction(system, top, model_file, atoms=[0, 1, 2], force_group=7)
    assert force.getForceGroup() == 7
    with pytest.raises(ModelCompatibilityError, match="no residue named 'LIG'"):
        select_ml_atoms(top, "LIG")
    with pytest.raises(ModelCompatibilityError, match="outside"):
        select_ml_atoms(top, [0, 999])


def test_refuses_uncovered_element() -> None:
    model_file = make_model_file()
    system, top, _ = make_system()
    na = top.getNumAtoms() - 1
    with pytest.raises(ModelCompatibilityError, match=rf"atom {na} \(NA, residue NA .*element Na"):
        add_ml_correction(system, top, model_file, atoms=[0, 1, na])
    assert system.getNumForces() == 1  # nothing added on refusal


def test_refuses_mm_mismatch() -> None:
    model_file = make_model_file(
        mm={"forcefield": "hybridff-gaff2", "forcefield_hash": "abc", "charge_method": "am1bcc"}
    )
    system, top, _ = make_system()
    with pytest.raises(ModelCompatibilityError, match="charge_method='am1bcc'.*'gasteiger'"):
        add_ml_correction(system, top, model_file, mm_signature={"charge_method": "gasteiger"})
    with pytest.raises(ModelCompatibilityError, match="forcefield_hash"):
        add_ml_correction(system, top, model_file, mm_signature={"forcefield_hash": "zzz"})
    add_ml_correction(system, top, model_file, mm_signature={"charge_method": "am1bcc"})

    pm = parameterize("CCO", charge_method="gasteiger")
    same_forcefield = make_model_file(mm={"forcefield": pm.forcefield, "charge_method": "am1bcc",
                                          "forcefield_hash": pm.forcefield_sha256})
    with pytest.raises(ModelCompatibilityError, match="charge_method='am1bcc'"):
        add_ml_correction(system, top, same_forcefield, mm_signature=pm)


def test_refuses_a_model_trained_with_another_ml_charge_model(caplog) -> None:
    pm = parameterize("CCO", charge_method="ml")
    signature = pm.mm_signature().to_dict()
    assert len(signature["charge_model_sha256"]) == 64  # the shipped charge model's SHA256
    trained = {**signature, "charge_model_sha256": "0" * 64}
    system, top, _ = make_system()
    with pytest.raises(ModelCompatibilityError, match="charge_model_sha256='0000") as err:
        add_ml_correction(system, top, make_model_file(mm=trained), mm_signature=pm)
    assert "another ML charge model file" in str(err.value) and "model=FILE" in str(err.value)
    add_ml_correction(system, top, make_model_file(mm=signature), mm_signature=pm)
    # a full signature with a field missing is refused, never taken as "matches"
    holed = {k: v for k, v in signature.items() if k != "charge_model_sha256"}
    with pytest.raises(DataFormatError, match="missing.*charge_model_sha256"):
        add_ml_correction(system, top, make_model_file(mm=holed), mm_signature=pm)
    # a model of an older hybridff (legacy keys, no charge-model hash, pairs by input order):
    # accepted on an index-labelled MM, with a warning naming what could not be checked
    legacy_pm = parameterize("CCO", charge_method="ml", pair_order="index")
    older = {"forcefield": pm.forcefield, "forcefield_hash": pm.forcefield_sha256,
             "charge_method": "ml"}
    with caplog.at_level("WARNING", logger="hybridff.mm.signature"):
        add_ml_correction(system, top, make_model_file(mm=older), mm_signature=legacy_pm)
    assert "could not check charge_model_sha256" in caplog.text
    with pytest.raises(ModelCompatibilityError, match="pair_order='index'"):
        add_ml_correction(system, top, make_model_file(mm=older), mm_signature=pm)


def test_refuses_ml_only_model() -> None:
    system, top, _ = make_system()
    with pytest.raises(ModelCompatibilityError, match="count the physics twice"):
        add_ml_correction(system, top, make_model_file(kind="ml_only"))


def test_refuses_small_box() -> None:
    model_file = make_model_file()
    system, top, _ = make_system(periodic=True)
    system.setDefaultPeriodicBoxVectors(
        openmm.Vec3(0.9, 0, 0), openmm.Vec3(0, 2.0, 0), openmm.Vec3(0, 0, 2.0)
    )
    with pytest.raises(ModelCompatibilityError, match="half the smallest box height"):
        add_ml_correction(system, top, model_file)


def test_unknown_backend_lists_known() -> None:
    system, top, _ = make_system()
    with pytest.raises(UnknownNameError, match="known backends: python, torch"):
        add_ml_correction(system, top, make_model_file(), backend="jax")
    assert set(BACKENDS) >= {"torch", "python"}


def test_model_file_round_trip_and_corruption(tmp_path) -> None:
    model_file = make_model_file(n_models=3, training_set_sha256="0" * 64)
    path = save_model(tmp_path / "m.pt", model_file.module, model_file.metadata)
    loaded = load_model(path)
    assert loaded.metadata == model_file.metadata
    assert loaded.metadata["ensemble_size"] == 3
    pos = torch.tensor(POSITIONS)
    species = torch.tensor(SPECIES)
    assert float(loaded.module(pos, species)) == pytest.approx(
        float(model_file.module(pos, species)), abs=1e-12
    )
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temporary behind
    broken = tmp_path / "broken.pt"
    broken.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(DataFormatError, match="not a readable TorchScript model"):
        load_model(broken)
    with pytest.raises(DataFormatError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    plain = tmp_path / "plain.pt"
    torch.jit.save(model_file.module, str(plain))
    with pytest.raises(DataFormatError, match="without hybridff metadata"):
        load_model(plain)


def test_python_backend_system_round_trips_xml(tmp_path) -> None:
    """A System with the PythonForce (model from a path) round-trips through XmlSerializer."""
    model_file = make_model_file()
    path = save_model(tmp_path / "m.pt", model_file.module, model_file.metadata)
    system, top, positions = make_system()
    force = add_ml_correction(system, top, str(path), backend="python")
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    e1, _ = group_state(system, positions, force.getForceGroup())
    e2, _ = group_state(copy, positions, force.getForceGroup())
    assert e1 == pytest.approx(e2, abs=1e-10)


def test_torch_backend_system_serializes() -> None:
    """Serializing works; deserializing a TorchForce segfaults in acellera-openmmtorch-cpu
    1.10 (even for a trivial module), so it is not exercised here (see docs/ml-correction.md)."""
    system, top, _ = make_system()
    add_ml_correction(system, top, make_model_file())
    assert "TorchForce" in openmm.XmlSerializer.serialize(system)


def test_solvated_ligand_split_across_box_matches_vacuum_model() -> None:
    """hybridff MM System of paracetamol in TIP3P (PME) + TorchForce: the correction of a
    ligand whose atoms are put on both sides of the box equals the model on the intact
    ligand, and the MM forces are untouched."""
    from pathlib import Path

    from hybridff.ml.descriptors import DescriptorSpec
    from hybridff.ml.model import EnsembleModel
    from hybridff.mm.parameters import parameterize
    from hybridff.mm.system import build_system, make_forcefield, molecules_topology
    from hybridff.units import strip_positions

    sdf = Path(__file__).resolve().parents[1] / "examples" / "data" / "paracetamol.sdf"
    pm = parameterize(sdf)
    ff = make_forcefield([pm], extra_files=("amber14/tip3p.xml",))
    top, pos = molecules_topology([pm])
    modeller = app.Modeller(top, pos * unit.nanometer)
    modeller.addSolvent(ff, model="tip3p", padding=1.0 * unit.nanometer)
    system = build_system(ff, modeller.topology, "PME")
    positions = strip_positions(modeller.positions)
    box = np.array([list(v.value_in_unit(unit.nanometer))
                    for v in system.getDefaultPeriodicBoxVectors()])

    elements = (1, 6, 7, 8)
    spec = DescriptorSpec(elements=elements)
    model = EnsembleModel(spec)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.2)
    model_file = ModelFile(torch.jit.script(model), build_metadata(model, spec))
    force = add_ml_correction(system, modeller.topology, model_file, precision="double")
    assert force.usesPeriodicBoundaryConditions()
    n_lig = pm.mol.GetNumAtoms()
    ligand = positions[:n_lig].copy()
    split = positions.copy()
    split[:n_lig] = ligand - ligand.mean(0) + box.diagonal()  # centred on the box corner
    split[: n_lig : 2] -= box[0]  # every other atom one box length away along a
    split[1 : n_lig : 3] -= box[2]

    energy, forces = group_state(system, split, force.getForceGroup())
    species = torch.tensor([elements.index(a.GetAtomicNum()) for a in pm.mol.GetAtoms()])
    e_ref, f_ref = energies_and_forces(model_file.module, torch.tensor(ligand)[None], species)
    assert energy == pytest.approx(float(e_ref[0]), rel=1e-9)
    np.testing.assert_allclose(forces[:n_lig], f_ref[0].numpy(), rtol=1e-7, atol=1e-7)
    np.testing.assert_array_equal(forces[n_lig:], 0.0)


def test_torch_backend_import_prints_no_simtk_notice() -> None:
    """openmm-torch imports simtk.openmm, which logs a deprecation line on the root logger on
    every run; hybridff's import of it leaves that line out (other warnings still show)."""
    import subprocess
    import sys

    code = ("import logging; logging.basicConfig(); "
            "from hybridff.ml.backend import _import_openmmtorch; _import_openmmtorch(); "
            "logging.getLogger().warning('still shown')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=str(Path(__file__).resolve().parents[1]))
    assert "simtk" not in proc.stderr and "still shown" in proc.stderr


@pytest.mark.parametrize("painn", [False, True])
def test_single_precision_keeps_a_large_energy_shift_exact(painn: bool) -> None:
    """A correction's constant shift can be 1e5 kJ/mol, where float32 resolves only 0.01: the
    single-precision form adds it in float64, so energy differences keep float32's relative
    precision of the (small) varying part, and the float32 network's forces match."""
    from hybridff.ml.model import inference_module

    if painn:
        from test_painn import random_painn

        model = random_painn()
    else:
        model = random_model(n_models=2)
    for name, buffer in model.named_buffers():
        if name.endswith("energy_shift"):
            buffer.fill_(-123456.789)
    single = inference_module(torch.jit.script(model), "single")
    double = inference_module(torch.jit.script(model), "double")
    species = torch.tensor(SPECIES)
    base = torch.tensor(POSITIONS, dtype=torch.float64)
    shifted = base + 0.003 * torch.sin(torch.arange(base.numel(), dtype=torch.float64)).reshape(
        base.shape)
    e_single = [float(single(x, species, None)) for x in (base, shifted)]
    e_double = [float(double(x, species, None)) for x in (base, shifted)]
    assert e_double[0] == pytest.approx(-123456.789, abs=2000.0)  # the shift dominates
    assert abs(e_double[1] - e_double[0]) > 1e-3  # the geometry change is seen ...
    for s, d in zip(e_single, e_double, strict=True):  # ... to float32 rounding of the varying
        assert s == pytest.approx(d, abs=1e-4 + 1e-5 * abs(d + 123456.789))  # part, not of -1e5
    for module in (single, double):
        assert module(base, species, None).dtype == torch.float64
    _, f_single = energies_and_forces(single, base[None], species)
    _, f_double = energies_and_forces(double, base[None], species)
    np.testing.assert_allclose(f_single.numpy(), f_double.numpy(), rtol=1e-4, atol=1e-3)


def test_unknown_precision_is_refused_before_the_system_changes() -> None:
    model_file = make_model_file()
    system, top, _ = make_system()
    n_forces = system.getNumForces()
    with pytest.raises(ValueError, match="precision must be one of single, double, not 'half'"):
        add_ml_correction(system, top, model_file, precision="half")
    assert system.getNumForces() == n_forces


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_first_puts_the_correction_first_and_changes_nothing_else(backend: str) -> None:
    model_file = make_model_file()
    last_system, top, positions = make_system(periodic=True)
    first_system, _, _ = make_system(periodic=True)
    first_system.getForce(0).setName("bonds of the test")
    last = add_ml_correction(last_system, top, model_file, backend=backend, precision="double")
    first = add_ml_correction(first_system, top, model_file, backend=backend, precision="double",
                              first=True)
    forces = first_system.getForces()
    assert forces[0].getName() == first.getName() and len(forces) == 2
    assert forces[1].getName() == "bonds of the test" and forces[1].getForceGroup() == 0
    assert first.getForceGroup() == last.getForceGroup() == 1
    for group in (0, 1):
        e_first, f_first = group_state(first_system, positions, group)
        e_last, f_last = group_state(last_system, positions, group)
        assert e_first == pytest.approx(e_last, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(f_first, f_last, rtol=1e-12, atol=1e-12)
    # a System already holding an ML Force gets the next one last (ML Forces are not copied)
    again = add_ml_correction(first_system, top, model_file, backend=backend, precision="double",
                              first=True, parameter_name="lambda_two")
    assert first_system.getForces()[-1].getName() == again.getName()
