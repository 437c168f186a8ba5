"""Hand-derived forces of the symmetry-function correction (hybridff.ml.analytic) against
autograd on the same model and against finite differences of its own energy."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
openmm = pytest.importorskip("openmm")

from openmm import unit  # noqa: E402
from test_ml_backend import make_model_file, make_system  # noqa: E402
from test_ml_model import SPECIES  # noqa: E402

from hybridff.ml.analytic import analytic_forces  # noqa: E402
from hybridff.ml.backend import add_ml_correction  # noqa: E402
from hybridff.ml.descriptors import DescriptorSpec  # noqa: E402
from hybridff.ml.model import EnsembleModel, inference_module  # noqa: E402
from hybridff.ml.painn import MessagePassingEnsemble, MessagePassingSpec  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")

ELEMENTS = (1, 6, 7, 8)
REGION = [1] * 7 + [0] * 6 + [2, 3, 3]  # 16 atoms of H, C, N, O


def random_model(n_models: int, hidden: tuple[int, ...], seed: int = 0) -> EnsembleModel:
    """A model whose every weight, normalisation, scale and shift is random and non-trivial."""
    gen = torch.Generator().manual_seed(seed)
    model = EnsembleModel(DescriptorSpec(elements=ELEMENTS), hidden=hidden, n_models=n_models)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
        for member in model.members:
            member.feature_mean.copy_(torch.randn(member.feature_mean.shape, generator=gen,
                                                  dtype=torch.float64))
            member.feature_std.copy_(0.5 + torch.rand(member.feature_std.shape, generator=gen,
                                                      dtype=torch.float64))
            member.energy_scale.fill_(2.5)
            member.energy_shift.fill_(-4321.0)
    return model


def region_positions(seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.35 * torch.rand(len(REGION), 3, generator=gen, dtype=torch.float64)


def autograd_reference(module, pos: torch.Tensor, box):
    p = pos.clone().requires_grad_(True)
    energy = module(p, torch.tensor(REGION), box)
    (grad,) = torch.autograd.grad(energy, p)
    return float(energy), -grad


def narrow_bounds(model: EnsembleModel, pos: torch.Tensor) -> None:
    """Bounds from half of each atom's energy: several atoms then lie outside them."""
    species = torch.tensor(REGION)
    with torch.no_grad():
        feats = model.features(pos, species)
        for member in model.members:
            member.set_bounds(0.5 * member.atom_energies(feats, species), species)


@pytest.mark.parametrize(("n_models", "hidden", "periodic", "bounded"), [
    (1, (32, 32), False, False),
    (3, (32, 32), True, True),
    (2, (16,), False, True),
    (1, (8, 8, 8), True, False),
])
def test_matches_autograd_in_double(n_models, hidden, periodic, bounded) -> None:
    model = random_model(n_models, hidden)
    pos = region_positions()
    if bounded:
        narrow_bounds(model, pos)
        member = model.members[0]
        species = torch.tensor(REGION)
        with torch.no_grad():
            atom_e = member.atom_energies(model.features(pos, species), species)[0]
        high = member.atom_energy_high[species]
        low = member.atom_energy_low[species]
        assert bool(((atom_e > high) | (atom_e < low)).any())  # the tanh tails are exercised
    box = None
    if periodic:  # the region straddles the x and z faces of a triclinic box
        box = torch.tensor([[1.1, 0.0, 0.0], [0.2, 1.2, 0.0], [-0.1, 0.3, 1.3]], dtype=torch.float64)
        pos = pos + torch.tensor([0.95, 0.4, 1.2], dtype=torch.float64)
    module = inference_module(torch.jit.script(model), "double")
    e_ref, f_ref = autograd_reference(module, pos, box)
    analytic = torch.jit.script(analytic_forces(module, REGION))
    energy, forces = analytic(pos, box)
    assert energy.dtype == torch.float64 and forces.dtype == torch.float64
    assert float(energy) == pytest.approx(e_ref, rel=1e-12, abs=1e-9)
    assert float(f_ref.abs().max()) > 10.0  # forces large enough to mean something
    np.testing.assert_allclose(forces.numpy(), f_ref.numpy(), rtol=1e-9, atol=1e-9)


def test_single_precision_matches_double_model() -> None:
    model = random_model(2, (32, 32))
    pos = region_positions(seed=2)
    narrow_bounds(model, pos)
    e_ref, f_ref = autograd_reference(inference_module(torch.jit.script(model), "double"), pos, None)
    single = inference_module(torch.jit.script(model), "single")
    energy, forces = torch.jit.script(analytic_forces(single, REGION))(pos, None)
    assert float(energy) == pytest.approx(e_ref, rel=1e-6)  # the -4321 shift kept in float64
    scale = float(f_ref.abs().max())
    np.testing.assert_allclose(forces.numpy(), f_ref.numpy(), atol=2e-5 * scale)


def test_forces_are_minus_the_gradient_by_finite_differences() -> None:
    model = random_model(2, (32, 32), seed=3)
    pos = region_positions(seed=4)
    narrow_bounds(model, pos)
    analytic = analytic_forces(inference_module(torch.jit.script(model), "double"), REGION)
    _, forces = analytic(pos, None)
    h = 1e-5
    for atom in (0, 7, 13, 15):
        for axis in range(3):
            plus, minus = pos.clone(), pos.clone()
            plus[atom, axis] += h
            minus[atom, axis] -= h
            numeric = -(float(analytic(plus, None)[0]) - float(analytic(minus, None)[0])) / (2 * h)
            assert float(forces[atom, axis]) == pytest.approx(numeric, rel=1e-6, abs=1e-5)


def test_forces_vanish_smoothly_at_the_cutoff() -> None:
    """Two atoms: energy and forces are continuous as their distance crosses the cutoff."""
    model = EnsembleModel(DescriptorSpec(elements=(6,)), n_models=1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.full(p.shape, 0.1, dtype=p.dtype))
    analytic = analytic_forces(inference_module(torch.jit.script(model), "double"), [0, 0])
    cutoff = float(DescriptorSpec(elements=(6,)).cutoff)

    def largest_force(distance: float) -> float:
        pos = torch.tensor([[0.0, 0.0, 0.0], [distance, 0.0, 0.0]], dtype=torch.float64)
        return float(analytic(pos, None)[1].abs().max())

    assert largest_force(cutoff + 1e-6) == 0.0
    # inside, the force falls to zero linearly as the distance reaches the cutoff
    near, nearer = largest_force(cutoff - 1e-3), largest_force(cutoff - 1e-5)
    assert 0.0 < nearer < 2e-2 * near


def test_message_passing_has_no_analytic_form() -> None:
    model = MessagePassingEnsemble(MessagePassingSpec(elements=ELEMENTS, features=8,
                                                      interactions=1, radial_basis=4))
    assert analytic_forces(inference_module(torch.jit.script(model), "double"), REGION) is None
    assert analytic_forces(inference_module(torch.jit.script(model), "single"), REGION) is None


def test_torch_backend_returns_forces_and_keeps_the_lambda_derivative() -> None:
    """TorchForce runs the analytic form (outputsForces) and dE/dlambda still reaches OpenMM."""
    model_file = make_model_file()
    system, top, positions = make_system()
    force = add_ml_correction(system, top, model_file, precision="double", lambda_ml=0.7)
    assert force.getOutputsForces()
    force.addEnergyParameterDerivative("lambda_ml")
    context = openmm.Context(system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    group = {force.getForceGroup()}
    state = context.getState(getEnergy=True, getParameterDerivatives=True, groups=group)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    derivative = state.getEnergyParameterDerivatives()["lambda_ml"]
    assert abs(energy) > 1e-3
    assert derivative == pytest.approx(energy / 0.7, rel=1e-9)
    assert len(SPECIES) < system.getNumParticles()


def test_every_tensor_is_a_buffer_so_the_module_moves_to_a_device() -> None:
    """openmm-torch moves the module to its device (CUDA) with ``.to``, which moves buffers
    only: a tensor held any other way would stay behind on the CPU."""
    analytic = analytic_forces(inference_module(torch.jit.script(random_model(2, (16, 16))),
                                                "single"), REGION)
    for module in analytic.modules():
        for name, value in vars(module).items():
            if name.startswith("_"):
                continue
            assert not isinstance(value, torch.Tensor | list | tuple | dict), (type(module), name)
    moved = analytic.to(torch.float64)  # every buffer follows a .to(), as to a device
    assert all(b.dtype in (torch.float64, torch.long) for b in moved.buffers())
