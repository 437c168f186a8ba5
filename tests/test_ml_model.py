"""The ML correction model alone: forces = -dE/dx, invariances, smooth cutoff, periodic images."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hybridff.ml.descriptors import DescriptorSpec, minimum_image  # noqa: E402
from hybridff.ml.model import EnsembleModel, energies_and_forces  # noqa: E402

# ethanol-like geometry (nm) with H C O species
ELEMENTS = (1, 6, 8)
SPECIES = [1, 1, 2, 0, 0, 0, 0, 0, 0]
POSITIONS = np.array(
    [
        [0.0000, 0.0000, 0.0000],
        [0.1520, 0.0000, 0.0000],
        [0.2000, 0.1340, 0.0000],
        [-0.0360, -0.1020, 0.0000],
        [-0.0370, 0.0510, 0.0880],
        [-0.0370, 0.0510, -0.0880],
        [0.1880, -0.0520, 0.0890],
        [0.1880, -0.0520, -0.0890],
        [0.2970, 0.1330, 0.0030],
    ]
)


pytestmark = pytest.mark.usefixtures("torch_single_thread")


def random_model(n_models: int = 2, cutoff: float = 0.5, seed: int = 0) -> EnsembleModel:
    """A model with random (non-zero) weights, float64."""
    gen = torch.Generator().manual_seed(seed)
    model = EnsembleModel(DescriptorSpec(elements=ELEMENTS, cutoff=cutoff), n_models=n_models)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.2)
    return model


def _energy(model, pos, box=None) -> float:
    species = torch.tensor(SPECIES)
    b = None if box is None else torch.tensor(box)
    with torch.no_grad():
        return float(model(torch.tensor(pos), species, b))


def _numeric_forces(model, pos: np.ndarray, box=None, h: float = 1e-5) -> np.ndarray:
    """-dE/dx by central differences (nm, kJ/mol)."""
    numeric = np.zeros_like(pos)
    for i in range(pos.shape[0]):
        for k in range(3):
            plus, minus = pos.copy(), pos.copy()
            plus[i, k] += h
            minus[i, k] -= h
            numeric[i, k] = -(_energy(model, plus, box) - _energy(model, minus, box)) / (2 * h)
    return numeric


@pytest.mark.parametrize("scripted", [False, True])
@pytest.mark.parametrize("periodic", [False, True])
def test_forces_match_finite_differences(scripted: bool, periodic: bool) -> None:
    model = random_model()
    if scripted:
        model = torch.jit.script(model)
    box = np.diag([1.3, 1.4, 1.5]) if periodic else None
    # shift near the box corner so some pairs cross the boundary
    pos = POSITIONS + (np.array([1.2, 1.32, 0.02]) if periodic else 0.0)
    species = torch.tensor(SPECIES)
    b = None if box is None else torch.tensor(box)
    _, forces = energies_and_forces(model, torch.tensor(pos)[None], species, b)
    forces = forces[0].numpy()
    numeric = _numeric_forces(model, pos, box)
    assert np.abs(forces).max() > 1.0  # a non-trivial model
    np.testing.assert_allclose(forces, numeric, rtol=1e-6, atol=1e-6)


def test_rotation_translation_permutation_invariance() -> None:
    model = random_model()
    e0 = _energy(model, POSITIONS)
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    assert _energy(model, POSITIONS @ q.T + np.array([0.3, -1.0, 2.0])) == pytest.approx(
        e0, abs=1e-9
    )
    # swap hydrogens 3 and 7, and the two carbons (same species)
    perm = [1, 0, 2, 7, 4, 5, 6, 3, 8]
    species = torch.tensor(SPECIES)[perm]
    e_perm = float(model(torch.tensor(POSITIONS[perm]), species))
    assert e_perm == pytest.approx(e0, abs=1e-9)


def test_energy_and_forces_continuous_at_cutoff() -> None:
    """A second atom crossing the cutoff: energy and force go smoothly to their far values."""
    model = random_model(cutoff=0.4)
    species = torch.tensor([1, 2])
    def ef(r: float) -> tuple[float, np.ndarray]:
        pos = torch.tensor([[[0.0, 0.0, 0.0], [r, 0.0, 0.0]]], dtype=torch.float64)
        e, f = energies_and_forces(model, pos, species)
        return float(e[0]), f[0].numpy()
    e_far, f_far = ef(0.6)
    np.testing.assert_allclose(f_far, 0.0, atol=1e-12)
    for eps in (1e-3, 1e-4, 1e-5):
        e_in, f_in = ef(0.4 - eps)
        e_out, f_out = ef(0.4 + eps)
        assert abs(e_out - e_far) < 1e-12
        assert abs(e_in - e_out) < 50 * eps**2 + 1e-12  # value and slope vanish at r_c
        assert np.abs(f_in - f_out).max() < 50 * eps


def test_split_molecule_same_energy_as_unwrapped() -> None:
    """Wrapping some atoms into the box across its edge does not change energy or forces."""
    model = random_model()
    box = np.array([[1.6, 0.0, 0.0], [0.3, 1.5, 0.0], [-0.2, 0.4, 1.7]])  # triclinic
    unwrapped = POSITIONS + np.array([1.5, 1.45, 1.65])  # straddles the a, b and c faces
    # wrap each atom into the primary cell by itself (what an engine may hand the model)
    frac = unwrapped @ np.linalg.inv(box)
    wrapped = (frac - np.floor(frac)) @ box
    assert not np.allclose(wrapped, unwrapped)
    species = torch.tensor(SPECIES)
    b = torch.tensor(box)
    e_u, f_u = energies_and_forces(model, torch.tensor(unwrapped)[None], species, b)
    e_w, f_w = energies_and_forces(model, torch.tensor(wrapped)[None], species, b)
    e_free, f_free = energies_and_forces(model, torch.tensor(POSITIONS)[None], species)
    assert float(e_w) == pytest.approx(float(e_u), abs=1e-9)
    assert float(e_w) == pytest.approx(float(e_free), abs=1e-9)
    np.testing.assert_allclose(f_w.numpy(), f_free.numpy(), atol=1e-8)


def test_minimum_image_triclinic() -> None:
    box = torch.tensor([[2.0, 0.0, 0.0], [0.5, 2.0, 0.0], [0.3, -0.4, 2.0]], dtype=torch.float64)
    vec = torch.tensor([[1.9, 1.8, 1.95]], dtype=torch.float64)
    wrapped = minimum_image(vec, box)
    # brute force over neighbouring images
    best = min(
        (vec + i * box[0] + j * box[1] + k * box[2]).norm()
        for i in (-1, 0, 1)
        for j in (-1, 0, 1)
        for k in (-1, 0, 1)
    )
    assert float(wrapped.norm()) == pytest.approx(float(best))


def test_float32_model_accepts_float64_positions() -> None:
    model = EnsembleModel(DescriptorSpec(elements=ELEMENTS), dtype=torch.float32)
    out = model(torch.tensor(POSITIONS, dtype=torch.float64), torch.tensor(SPECIES))
    assert out.dtype == torch.float32


def test_ensemble_members_and_mean() -> None:
    model = random_model(n_models=3)
    pos = torch.tensor(POSITIONS)[None]
    species = torch.tensor(SPECIES)
    members = model.member_energies(pos, species)
    assert members.shape == (3, 1)
    assert float(model(pos, species)[0]) == pytest.approx(float(members.mean()))
    assert float(members.std()) > 0.0  # independent random members disagree


@pytest.mark.parametrize("from_script", [False, True])
def test_fused_ensemble_equals_model(from_script: bool) -> None:
    """The inference form (members' networks batched) gives the same energies and forces."""
    from hybridff.ml.model import inference_module

    model = random_model(n_models=3)
    source = torch.jit.script(model) if from_script else model
    fused = inference_module(source)
    box = torch.tensor(np.diag([1.3, 1.4, 1.5]))
    pos = torch.tensor(np.stack([POSITIONS, POSITIONS[::-1] * 1.05 + 1.2]))
    species = torch.tensor(SPECIES)
    for b in (None, box):
        e_ref, f_ref = energies_and_forces(model, pos, species, b, per_member=True)
        e_fused, f_fused = energies_and_forces(fused, pos, species, b, per_member=True)
        np.testing.assert_allclose(e_fused.numpy(), e_ref.numpy(), rtol=1e-12, atol=1e-10)
        np.testing.assert_allclose(f_fused.numpy(), f_ref.numpy(), rtol=1e-10, atol=1e-9)


def _distorted_frames(n: int = 12, seed: int = 3) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.tensor(POSITIONS[None] + rng.normal(0.0, 0.01, (n, *POSITIONS.shape)))


def _bound_on(model: EnsembleModel, frames: torch.Tensor, species: torch.Tensor) -> None:
    with torch.no_grad():
        feats = model.features(frames, species)
        for member in model.members:
            member.set_bounds(member.atom_energies(feats, species), species)


def test_atom_energy_bounds_leave_training_frames_unchanged_and_cap_outside() -> None:
    """The safety net: identical on the frames it was set on; far outside them each atom's
    energy stays within the bound (the unbounded model runs off), and the fused inference form
    applies the same bound."""
    from hybridff.ml.model import BOUND_MARGIN, BOUND_WIDTH, inference_module

    species = torch.tensor(SPECIES)
    model = random_model(n_models=2)
    frames = _distorted_frames()
    with torch.no_grad():
        before = model.member_energies(frames, species)
        _bound_on(model, frames, species)
        after = model.member_energies(frames, species)
    torch.testing.assert_close(after, before, rtol=0, atol=0)

    squeezed = torch.tensor(POSITIONS[None] * 0.35)  # atoms far closer than in any frame
    with torch.no_grad():
        member = model.members[0]
        raw = member.atom_energies(model.features(squeezed, species), species)[0]
        bounded = model.member_energies(squeezed, species)[0, 0] - member.energy_shift
    low, high, width = member.atom_energy_low, member.atom_energy_high, member.atom_energy_width
    span = (high - low) / (1 + 2 * BOUND_MARGIN)
    assert torch.allclose(width, BOUND_WIDTH * span)
    ceiling = float((high + width)[species].sum())
    floor = float((low - width)[species].sum())
    outside = (raw > high[species] + width[species]) | (raw < low[species] - width[species])
    assert bool(outside.any()), "the test geometry must push some atom energy past its bound"
    assert floor <= float(bounded) <= ceiling

    fused = inference_module(model)
    for pos in (frames, squeezed):
        e_ref, f_ref = energies_and_forces(model, pos, species, per_member=True)
        e_fused, f_fused = energies_and_forces(fused, pos, species, per_member=True)
        np.testing.assert_allclose(e_fused.numpy(), e_ref.numpy(), rtol=1e-12, atol=1e-10)
        np.testing.assert_allclose(f_fused.numpy(), f_ref.numpy(), rtol=1e-10, atol=1e-9)


def test_bounded_forces_match_finite_differences_in_the_tail() -> None:
    """Where atom energies sit in the tanh tail, forces are still -dE/dx (scripted model)."""
    species = torch.tensor(SPECIES)
    model = random_model(n_models=1)
    _bound_on(model, _distorted_frames(), species)
    scripted = torch.jit.script(model)
    pos = POSITIONS * 0.8
    with torch.no_grad():
        member = model.members[0]
        raw = member.atom_energies(model.features(torch.tensor(pos)[None], species), species)[0]
    tail = (raw > member.atom_energy_high[species]) | (raw < member.atom_energy_low[species])
    assert bool(tail.any()), "the test geometry must put some atom in the bound's tail"
    _, forces = energies_and_forces(scripted, torch.tensor(pos)[None], species)
    numeric = _numeric_forces(scripted, pos)
    np.testing.assert_allclose(forces[0].numpy(), numeric, rtol=1e-6, atol=1e-6)
