"""The message-passing correction (``--architecture painn``): forces = -dE/dx, invariances,
smooth cutoff, periodic images, bounds, OpenMM backends, the model file and a small training run."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_ml_backend import PRECISION_TOLERANCE, group_state, make_system  # noqa: E402
from test_ml_model import ELEMENTS, POSITIONS, SPECIES, _energy, _numeric_forces  # noqa: E402

from hybridff.ml.model import energies_and_forces, inference_module  # noqa: E402
from hybridff.ml.painn import MessagePassingEnsemble, MessagePassingSpec  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def random_painn(n_models: int = 2, cutoff: float = 0.5, seed: int = 0) -> MessagePassingEnsemble:
    """A float64 message-passing ensemble with random, non-zero weights (the readout too)."""
    torch.manual_seed(seed)
    spec = MessagePassingSpec(elements=ELEMENTS, cutoff=cutoff, features=8, interactions=2,
                              radial_basis=6)
    model = MessagePassingEnsemble(spec, n_models=n_models)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    return model


def test_untrained_model_is_exactly_zero() -> None:
    spec = MessagePassingSpec(elements=ELEMENTS)
    model = MessagePassingEnsemble(spec, n_models=2)
    assert _energy(model, POSITIONS) == 0.0


@pytest.mark.parametrize("periodic", [False, True])
def test_forces_match_finite_differences(periodic: bool) -> None:
    model = torch.jit.script(random_painn())
    box = np.diag([1.3, 1.4, 1.5]) if periodic else None
    pos = POSITIONS + (np.array([1.25, 1.35, 0.0]) if periodic else 0.0)  # across the box edge
    _, forces = energies_and_forces(model, torch.tensor(pos)[None], torch.tensor(SPECIES),
                                    None if box is None else torch.tensor(box))
    numeric = _numeric_forces(model, pos, box, h=1e-7)  # random weights: a steep surface
    assert np.abs(numeric).max() > 1.0  # the test has something to compare
    np.testing.assert_allclose(forces[0].numpy(), numeric, rtol=1e-6, atol=1e-3)


def test_rotation_translation_permutation_invariance() -> None:
    model = random_painn()
    species = torch.tensor(SPECIES)
    e0 = float(model(torch.tensor(POSITIONS), species))
    rng = np.random.default_rng(1)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    moved = POSITIONS @ rotation.T + np.array([0.3, -0.2, 0.7])
    assert float(model(torch.tensor(moved), species)) == pytest.approx(e0, rel=1e-10)
    # swap two hydrogens (species 0) and the two carbons (species 1): same energy
    order = [1, 0, 2, 4, 3, 5, 6, 7, 8]
    swapped = float(model(torch.tensor(POSITIONS[order]), torch.tensor(SPECIES)[order]))
    assert swapped == pytest.approx(e0, rel=1e-10)
    # forces rotate with the molecule
    _, f0 = energies_and_forces(model, torch.tensor(POSITIONS)[None], species)
    _, f1 = energies_and_forces(model, torch.tensor(moved)[None], species)
    np.testing.assert_allclose(f1[0].numpy(), f0[0].numpy() @ rotation.T, atol=1e-8)


def test_energy_and_forces_continuous_at_cutoff() -> None:
    """Two atoms pulled through the cutoff: energy and force go smoothly to their far values."""
    model = random_painn(cutoff=0.4)
    species = torch.tensor([1, 2])
    energies, forces = [], []
    for d in (0.3999, 0.39999, 0.4001):
        pos = torch.tensor([[0.0, 0.0, 0.0], [d, 0.0, 0.0]])[None]
        e, f = energies_and_forces(model, pos, species)
        energies.append(float(e[0]))
        forces.append(float(f[0, 1, 0]))
    assert abs(energies[1] - energies[2]) < 1e-6
    assert abs(forces[1]) < 1e-3 and forces[2] == 0.0
    assert abs(energies[0] - energies[2]) < 1e-4


def test_bounds_cap_atom_energies_outside_the_training_range() -> None:
    model = random_painn(n_models=1)
    species = torch.tensor(SPECIES)
    rng = np.random.default_rng(2)
    frames = torch.tensor(POSITIONS[None] + rng.normal(0, 0.005, (6, *POSITIONS.shape)))
    member = model.members[0]
    with torch.no_grad():
        before = model(frames, species).clone()
        member.set_bounds(member.atom_energies(frames, species), species)
        after = model(frames, species)
        # squeezed far from anything seen: each atom's energy stays within its tail
        squeezed = torch.tensor(POSITIONS * 0.5)[None]
        atoms = member.total_energy(member.atom_energies(squeezed, species), species)
    low = (member.atom_energy_low - member.atom_energy_width)[species].sum()
    high = (member.atom_energy_high + member.atom_energy_width)[species].sum()
    # on most training frames nothing changes (each atom's range widens by a margin)
    torch.testing.assert_close(after, before)
    assert low + member.energy_shift <= atoms[0] <= high + member.energy_shift


@pytest.mark.parametrize("precision", ["double", "single"])
@pytest.mark.parametrize("backend", ["torch", "python"])
def test_openmm_backends_reproduce_the_model(backend: str, precision: str, tmp_path) -> None:
    """Saved, loaded and added to a System, TorchForce and PythonForce give the model's
    energy and forces (the inference form is the scripted ensemble itself; in single
    precision, a float32 copy, to float32 rounding)."""
    from hybridff.ml.backend import add_ml_correction
    from hybridff.ml.modelfile import build_metadata, load_model, save_model

    model = random_painn()
    path = save_model(tmp_path / "painn.pt", model,
                      build_metadata(model, MessagePassingSpec(elements=ELEMENTS)))
    loaded = load_model(path)
    assert loaded.metadata["descriptor"]["architecture"] == "painn"
    assert not hasattr(loaded.module, "descriptor")
    system, top, positions = make_system(periodic=True)
    force = add_ml_correction(system, top, loaded, backend=backend, precision=precision)
    energy, forces = group_state(system, positions, force.getForceGroup())
    box = torch.tensor(np.diag([2.0, 2.1, 2.2]))
    e_ref, f_ref = energies_and_forces(inference_module(loaded.module),
                                       torch.tensor(positions[: len(SPECIES)])[None],
                                       torch.tensor(SPECIES), box)
    assert abs(float(e_ref[0])) > 1e-3
    tol_e, tol_f = PRECISION_TOLERANCE[precision]
    assert energy == pytest.approx(float(e_ref[0]), rel=tol_e, abs=tol_e)
    np.testing.assert_allclose(forces[: len(SPECIES)], f_ref[0].numpy(), rtol=tol_f, atol=tol_f)
    np.testing.assert_array_equal(forces[len(SPECIES):], 0.0)


def test_training_fits_a_known_pair_potential() -> None:
    """A small honest fit: frames of a smooth made-up potential (harmonic pairs) are learnt far
    below the spread of their forces, and the trained model is float64 and bounded."""
    from hybridff.training.trainer import TrainConfig, train_correction

    rng = np.random.default_rng(0)
    frames = POSITIONS[None] + rng.normal(0, 0.01, (60, *POSITIONS.shape))
    pos = torch.tensor(frames, requires_grad=True)
    d = torch.cdist(pos, pos)
    mask = torch.triu(torch.ones(9, 9, dtype=torch.bool), 1)
    energy = (500.0 * (d - torch.tensor(np.linalg.norm(
        POSITIONS[:, None] - POSITIONS[None], axis=-1))) ** 2)[:, mask].sum(-1)
    forces = -torch.autograd.grad(energy.sum(), pos)[0]
    numbers = np.array([ELEMENTS[s] for s in SPECIES])
    config = TrainConfig(architecture="painn", features=16, interactions=2, epochs=100,
                         batch_size=8, learning_rate=5e-3, progress=False, seed=1)
    result = train_correction(numbers, frames, energy.detach().numpy(), forces.numpy(), config)
    assert result.model.dtype_ref.dtype == torch.float64
    assert bool(result.model.members[0].bounded)
    before = result.metrics["validation"]["before"]["force_rmse_kcal_mol_A"]
    after = result.metrics["validation"]["after"]["force_rmse_kcal_mol_A"]
    assert after < 0.3 * before, (before, after)  # 0.19 when written


def test_unknown_architecture_is_refused() -> None:
    from hybridff.exceptions import InvalidOptionError
    from hybridff.training.trainer import TrainConfig

    with pytest.raises(InvalidOptionError, match="unknown architecture 'mace'.*painn"):
        TrainConfig(architecture="mace")
