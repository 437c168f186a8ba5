"""The symmetry functions against their definition, summed atom by atom (an independent O(N^3)
reference in NumPy), and the inference descriptor against the one a model file was saved with."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import torch

from hybridff.ml.descriptors import DescriptorSpec, SymmetryFunctions, symmetric_monomials


def reference_features(positions: np.ndarray, species: np.ndarray, spec: DescriptorSpec) -> np.ndarray:
    """G_R and G_A of the module docstring by explicit sums over neighbours j and pairs (j, k)."""
    n_atoms, n_el = len(positions), len(spec.elements)

    def fc(r: float) -> float:
        return 0.5 * (np.cos(np.pi * r / spec.cutoff) + 1.0) if r < spec.cutoff else 0.0

    pairs = [(e, g) for e in range(n_el) for g in range(e, n_el)]
    out = []
    for i in range(n_atoms):
        radial = np.zeros((n_el, len(spec.radial_shifts)))
        angular = np.zeros((spec.max_angular_order, len(pairs), len(spec.angular_shifts)))
        others = [j for j in range(n_atoms) if j != i]
        for j in others:
            r = np.linalg.norm(positions[j] - positions[i])
            for s, shift in enumerate(spec.radial_shifts):
                radial[species[j], s] += np.exp(-spec.radial_eta * (r - shift) ** 2) * fc(r)
        for j, k in itertools.product(others, others):
            rij, rik = positions[j] - positions[i], positions[k] - positions[i]
            dj, dk = np.linalg.norm(rij), np.linalg.norm(rik)
            cos = rij @ rik / (dj * dk)
            e, g = species[j], species[k]
            if e > g:
                continue  # block (e, g), e <= g: j in e, k in g (all ordered pairs when e == g)
            for a, shift in enumerate(spec.angular_shifts):
                w = (np.exp(-spec.angular_eta * (dj - shift) ** 2) * fc(dj)
                     * np.exp(-spec.angular_eta * (dk - shift) ** 2) * fc(dk))
                for n in range(1, spec.max_angular_order + 1):
                    angular[n - 1, pairs.index((e, g)), a] += w * cos**n
        out.append(np.concatenate([radial.ravel(), angular.ravel()]))
    return np.array(out)


def test_symmetric_monomials_count_every_tensor_component() -> None:
    exponents, weights, orders = symmetric_monomials(3)
    for n in (1, 2, 3):
        chosen = orders == n - 1
        assert int(chosen.sum()) == (n + 1) * (n + 2) // 2  # 3, 6, 10 distinct components
        assert float(weights[chosen].sum()) == 3**n  # ... standing for all 3^n of them
        assert bool((exponents[chosen].sum(1) == n).all())


def test_features_match_explicit_sums() -> None:
    rng = np.random.default_rng(7)
    spec = DescriptorSpec(elements=(1, 6, 8))
    positions = rng.uniform(0.0, 0.45, size=(9, 3))  # some pairs beyond the 0.5 nm cutoff
    species = np.array([0, 1, 2, 1, 0, 0, 2, 1, 0])
    expected = reference_features(positions, species, spec)
    got = SymmetryFunctions(spec)(torch.tensor(positions)[None], torch.tensor(species))[0].numpy()
    assert got.shape == (9, spec.n_features)
    assert (np.abs(expected) > 1e-3).sum() > 100  # the reference is not trivially zero
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("max_order", [1, 2, 3, 4])
def test_like_rebuilds_a_saved_descriptor(max_order: int) -> None:
    spec = DescriptorSpec(elements=(1, 6, 7, 8), max_angular_order=max_order, cutoff=0.45)
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(SymmetryFunctions(spec)), buffer)
    buffer.seek(0)
    saved = torch.jit.load(buffer)
    rebuilt = torch.jit.script(SymmetryFunctions.like(saved))
    positions = torch.rand(2, 7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    species = torch.tensor([0, 1, 2, 3, 1, 0, 0])
    torch.testing.assert_close(rebuilt(positions, species), saved(positions, species),
                               rtol=1e-12, atol=1e-12)
