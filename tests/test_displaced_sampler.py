"""The conformers sampler (other ETKDG conformers, MM-relaxed, randomly displaced) and the
displacement helper: seeded, prefix-stable, the displacement it says, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from hybridff.exceptions import InvalidOptionError, UnknownNameError
from hybridff.labels.displaced import displace
from hybridff.labels.samplers import SAMPLERS, sample_conformations, sampler_options
from hybridff.training.residuals import build_mm


@pytest.fixture(scope="module")
def ethanol():
    return build_mm("CCO", charge_method="gasteiger", cache=False)


def _sample(mm, n, **options):
    return sample_conformations("conformers", mm.system, mm.positions, n,
                                mol=mm.parameterized.mol, **options)


def test_displace_is_seeded_prefix_stable_and_of_the_stated_size() -> None:
    frames = np.zeros((400, 9, 3))
    a = displace(frames, 0.006, seed=5)
    assert np.array_equal(a[:7], displace(frames[:7], 0.006, seed=5))
    assert not np.array_equal(a, displace(frames, 0.006, seed=6))
    assert np.std(a) == pytest.approx(0.006, rel=0.03)
    for bad in (0.0, -0.001, 0.2, "x"):
        with pytest.raises(InvalidOptionError, match="displacement_nm"):
            displace(frames, bad, seed=5)


def test_conformers_sampler_cycles_relaxed_conformers_with_displacements(ethanol) -> None:
    assert "conformers" in SAMPLERS
    assert {"n_conformers", "displacement_nm"} <= set(sampler_options("conformers"))
    sampled = _sample(ethanol, 8, seed=3, n_conformers=3)
    assert sampled.positions.shape == (8, 9, 3)
    assert [i["conformer"] for i in sampled.info] == [0, 1, 2, 0, 1, 2, 0, 1]
    assert sampled.settings == {"n_conformers": 3, "displacement_nm": 0.006}
    # prefix-stable and seeded (what lets `hybridff label` resume a file)
    assert np.array_equal(_sample(ethanol, 4, seed=3, n_conformers=3).positions,
                          sampled.positions[:4])
    assert not np.allclose(_sample(ethanol, 4, seed=4, n_conformers=3).positions,
                           sampled.positions[:4])
    # frames 0 and 3 share a relaxed conformer: they differ by two independent displacements
    diff = sampled.positions[3] - sampled.positions[0]
    assert np.std(diff) == pytest.approx(0.006 * np.sqrt(2), rel=0.35)
    # the bonds stay bonds: displaced by 0.06 A, not broken
    bonds = np.array(ethanol.bonds)
    lengths = np.linalg.norm(sampled.positions[:, bonds[:, 0]] - sampled.positions[:, bonds[:, 1]],
                             axis=-1)
    assert 0.07 < lengths.min() and lengths.max() < 0.2


def test_conformers_sampler_bad_options_give_one_line_errors(ethanol) -> None:
    with pytest.raises(InvalidOptionError, match="n_conformers"):
        _sample(ethanol, 2, n_conformers=0)
    with pytest.raises(InvalidOptionError, match="displacement_nm"):
        _sample(ethanol, 2, displacement_nm=0.5)
    with pytest.raises(UnknownNameError, match="takes no option 'torsion_fraction'"):
        _sample(ethanol, 2, torsion_fraction=0.5)
