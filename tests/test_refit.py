"""The bespoke bonded refit (hybridff.mm.refit): recovery of known parameters, geometric
derivatives, equal parameters for equivalent terms, bounded single-minimum bond and angle
terms, and a lower held-out force error than GAFF2's on paracetamol's xTB frames."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from hybridff.data import read_extxyz
from hybridff.mm.graph import symmetry_classes
from hybridff.mm.refit import (
    RefitOptions,
    RefitResult,
    angle_geometry,
    bond_geometry,
    dihedral_geometry,
    fit_bonded,
    periodic_torsion_energy_forces,
)
from hybridff.parameters import parameterize
from hybridff.training.residuals import build_mm, mm_energies_forces

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
#: kJ/mol/nm -> kcal/mol/Å
TO_KCAL_A = 0.1 / 4.184


def _terms(pm):
    return pm.canonical_terms()


def _frames(mol: Chem.Mol, conformers: int, copies: int, sigma_nm: float, seed: int
            ) -> np.ndarray:
    """Embedded conformers (torsions vary) with Gaussian displacements (bonds, angles vary)."""
    work = Chem.Mol(mol)
    ids = AllChem.EmbedMultipleConfs(work, numConfs=conformers, randomSeed=seed)
    base = np.array([work.GetConformer(i).GetPositions() * 0.1 for i in ids])
    rng = np.random.default_rng(seed)
    return np.concatenate([base + rng.normal(scale=sigma_nm, size=base.shape)
                           for _ in range(copies)])


def _class_key(atoms, classes):
    c = tuple(classes[a] for a in atoms)
    return min(c, c[::-1])


def _truth(terms: dict, classes: list[int]) -> RefitResult:
    """GAFF2 modified per group of equivalent terms: r0 / θ0 shifted, k scaled, cubic and
    quartic terms inside the bound, torsions changed (n = 1..3)."""
    bonds, angles, propers = {}, {}, {}
    for atoms, (r0, k) in terms["bonds"].items():
        k = 1.15 * k
        c4 = 120.0 * k
        bonds[atoms] = (r0 + 0.002, k, -0.5 * 4 / 3 * math.sqrt(k * c4), c4)
    for atoms, (theta0, k) in terms["angles"].items():
        k = 0.85 * k
        c4 = 0.3 * k
        angles[atoms] = (theta0 + 0.03, k, 0.4 * 4 / 3 * math.sqrt(k * c4), c4)
    for atoms in terms["Proper"]:
        h = (sum(_class_key(atoms, classes)) % 5) / 5.0  # a different torsion per group
        propers[atoms] = [(1, math.pi, 1.5 + h), (2, 0.0, 0.8 * h), (3, 0.0, 0.6 + h)]
    return RefitResult(bonds, angles, propers)


def _assert_bounded(result: RefitResult) -> None:
    """Every bond and angle term: k > 0, c4 > 0, 9 c3² < 16 k c4, and on a wide grid one
    minimum (at r0 / θ0, energy 0) with the energy rising on both sides."""
    for table, grid in ((result.bonds, lambda q0: np.linspace(0.5 * q0, 3.0 * q0, 4001)),
                        (result.angles, lambda q0: np.linspace(0.0, math.pi, 4001))):
        for atoms, (q0, k, c3, c4) in table.items():
            assert k > 0, (atoms, k)
            if c3 or c4:
                assert c4 > 0 and 9 * c3**2 < 16 * k * c4, (atoms, k, c3, c4)
            q = grid(q0)
            d = q - q0
            e = 0.5 * k * d**2 + c3 * d**3 + c4 * d**4
            assert e.min() >= -1e-9, atoms
            slope = np.diff(e)
            below, above = q[1:] <= q0, q[:-1] >= q0
            assert np.all(slope[below] <= 1e-12) and np.all(slope[above] >= -1e-12), atoms


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("geometry,width", [(bond_geometry, 2), (angle_geometry, 3),
                                            (dihedral_geometry, 4)])
def test_geometric_derivatives_match_finite_differences(geometry, width):
    rng = np.random.default_rng(7)
    x = rng.normal(scale=0.15, size=(3, 6, 3))
    idx = np.array([rng.permutation(6)[:width] for _ in range(5)])
    _, grad = geometry(x, idx)
    h = 1e-6
    for t in range(len(idx)):
        for k in range(width):
            for a in range(3):
                xp, xm = x.copy(), x.copy()
                xp[:, idx[t, k], a] += h
                xm[:, idx[t, k], a] -= h
                qp = geometry(xp, idx[t:t + 1])[0][:, 0]
                qm = geometry(xm, idx[t:t + 1])[0][:, 0]
                if width == 4:  # φ wraps at ±π
                    diff = np.angle(np.exp(1j * (qp - qm)))
                else:
                    diff = qp - qm
                np.testing.assert_allclose(diff / (2 * h), grad[:, t, k, a], atol=1e-6)


def test_energy_forces_are_minus_the_gradient():
    pm = parameterize("CCO", "gasteiger")
    truth = _truth(_terms(pm), symmetry_classes(pm.mol))
    x = _frames(pm.mol, 2, 1, 0.005, 3)
    _, forces = truth.energy_forces(x)
    h = 1e-6
    for i in range(x.shape[1]):
        for a in range(3):
            xp, xm = x.copy(), x.copy()
            xp[:, i, a] += h
            xm[:, i, a] -= h
            fd = -(truth.energy_forces(xp)[0] - truth.energy_forces(xm)[0]) / (2 * h)
            np.testing.assert_allclose(fd, forces[:, i, a], rtol=1e-5, atol=1e-3)


# ----------------------------------------------------------------------------- paracetamol


@pytest.fixture(scope="module")
def paracetamol():
    """GAFF2 (Gasteiger) paracetamol in the SDF's atom order, its terms, and the bonded
    targets (QM minus nonbonded and impropers) of the xTB train / test frames."""
    mm = build_mm(str(DATA / "paracetamol.sdf"), charge_method="gasteiger")
    pm = mm.parameterized
    terms = _terms(pm)
    sets = {}
    for name in ("train", "test"):
        frames = read_extxyz(DATA / f"paracetamol_gfn2xtb_{name}.xyz", numbers=mm.numbers)
        e_nb, f_nb = mm_energies_forces(mm.system, frames.positions, groups={3})
        e_imp, f_imp = periodic_torsion_energy_forces(frames.positions, terms["Improper"])
        e_b, f_b = mm_energies_forces(mm.system, frames.positions, groups={0, 1, 2})
        sets[name] = {"x": frames.positions,
                      "e": frames.energies - e_nb - e_imp, "f": frames.forces - f_nb - f_imp,
                      "e_gaff2": e_b - e_imp, "f_gaff2": f_b - f_imp}
    start = time.perf_counter()
    result = fit_bonded(pm.mol, terms, symmetry_classes(pm.mol), sets["train"]["x"],
                        sets["train"]["e"], sets["train"]["f"])
    seconds = time.perf_counter() - start
    return {"mm": mm, "pm": pm, "terms": terms, "sets": sets, "result": result,
            "seconds": seconds}


def test_numpy_terms_match_openmm(paracetamol):
    """GAFF2's own terms through RefitResult (harmonic: c3 = c4 = 0) and the numpy torsions
    give OpenMM's bonded energies and forces: the conventions (keys, phases) agree."""
    terms, mm = paracetamol["terms"], paracetamol["mm"]
    x = paracetamol["sets"]["test"]["x"][:5]
    gaff2 = RefitResult({a: (r0, k, 0.0, 0.0) for a, (r0, k) in terms["bonds"].items()},
                        {a: (t0, k, 0.0, 0.0) for a, (t0, k) in terms["angles"].items()},
                        terms["Proper"])
    e, f = gaff2.energy_forces(x)
    e_imp, f_imp = periodic_torsion_energy_forces(x, terms["Improper"])
    e_mm, f_mm = mm_energies_forces(mm.system, x, groups={0, 1, 2})
    np.testing.assert_allclose(e + e_imp, e_mm, atol=1e-6)
    np.testing.assert_allclose(f + f_imp, f_mm, atol=1e-5)


def test_refit_beats_gaff2_on_held_out_paracetamol_frames(paracetamol):
    test, result = paracetamol["sets"]["test"], paracetamol["result"]
    e_fit, f_fit = result.energy_forces(test["x"])

    def rmse(e, f):
        de = test["e"] - e
        de = de - de.mean()
        return (float(np.sqrt(np.mean(de**2))) / 4.184,
                float(np.sqrt(np.mean((test["f"] - f) ** 2))) * TO_KCAL_A)

    e0, f0 = rmse(test["e_gaff2"], test["f_gaff2"])
    e1, f1 = rmse(e_fit, f_fit)
    print(f"paracetamol xTB held-out: force {f0:.2f} -> {f1:.2f} kcal/mol/Å (ratio {f1 / f0:.3f}), "
          f"energy {e0:.2f} -> {e1:.2f} kcal/mol (ratio {e1 / e0:.3f}); fit "
          f"{paracetamol['seconds']:.2f} s")
    assert f1 < 0.6 * f0  # measured 0.53 (the probe: 0.54)
    assert e1 < 0.8 * e0  # measured 0.67
    m = result.metrics
    assert m["force_rmse_refit"] < 0.6 * m["force_rmse_gaff2"]
    assert m["energy_rmse_refit"] < m["energy_rmse_gaff2"]
    # the offset makes the energies absolute: target ≈ energy + offset on the training frames
    train = paracetamol["sets"]["train"]
    e_train = result.energy_forces(train["x"])[0] + m["offset"]
    assert abs(np.mean(train["e"] - e_train)) < 1e-6 * abs(m["offset"]) + 1e-6
    assert np.sqrt(np.mean((train["e"] - e_train) ** 2)) == pytest.approx(
        m["energy_rmse_refit"], rel=1e-6)


def test_every_term_present_and_equivalent_terms_equal(paracetamol):
    terms, result = paracetamol["terms"], paracetamol["result"]
    classes = symmetry_classes(paracetamol["pm"].mol)
    assert set(result.bonds) == set(terms["bonds"])
    assert set(result.angles) == set(terms["angles"])
    assert set(result.propers) == set(terms["Proper"])
    for table in (result.bonds, result.angles, result.propers):
        groups: dict = {}
        for atoms, value in table.items():
            groups.setdefault(_class_key(atoms, classes), []).append(value)
        assert any(len(v) > 1 for v in groups.values())
        for values in groups.values():
            assert all(v == values[0] for v in values)
    for parts in result.propers.values():
        for n, phase, k in parts:
            assert isinstance(n, int) and phase in (0.0, math.pi) and k >= 0


def test_paracetamol_terms_are_bounded(paracetamol):
    _assert_bounded(paracetamol["result"])


# ----------------------------------------------------------------------------- synthetic


@pytest.fixture(scope="module")
def ethanol():
    pm = parameterize("CCO", "gasteiger")
    terms, classes = _terms(pm), symmetry_classes(pm.mol)
    truth = _truth(terms, classes)
    x = _frames(pm.mol, 30, 4, 0.006, 11)
    e, f = truth.energy_forces(x)
    return {"pm": pm, "terms": terms, "classes": classes, "truth": truth, "x": x,
            "e": e - 1234.5, "f": f}


def test_recovers_known_parameters(ethanol):
    """Noise-free data made with known anharmonic parameters and no prior: recovered to
    1e-5 nm / 1e-4 rad in r0 / θ0, 0.1 % in k, 1 % in c3 and c4, 0.01 kJ/mol in the torsion
    of the single C-C-O-H term, and the energies and forces of fresh frames to 1e-4."""
    options = RefitOptions(regularization=0.0, shift_regularization=0.0)
    result = fit_bonded(ethanol["pm"].mol, ethanol["terms"], ethanol["classes"], ethanol["x"],
                        ethanol["e"], ethanol["f"], options)
    truth = ethanol["truth"]
    for fitted, true, tol_q in ((result.bonds, truth.bonds, 1e-5),
                                (result.angles, truth.angles, 1e-4)):
        for atoms, (q0, k, c3, c4) in true.items():
            q, kk, cc3, cc4 = fitted[atoms]
            assert q == pytest.approx(q0, abs=tol_q), atoms
            assert kk == pytest.approx(k, rel=1e-3), atoms
            assert cc3 == pytest.approx(c3, rel=1e-2), atoms
            assert cc4 == pytest.approx(c4, rel=1e-2), atoms
    classes = ethanol["classes"]
    single = [a for a in truth.propers
              if sum(_class_key(b, classes) == _class_key(a, classes) for b in truth.propers) == 1]
    assert single
    for atoms in single:
        got = {n: (p, k) for n, p, k in result.propers[atoms] if k > 1e-6}
        want = {n: (p, k) for n, p, k in truth.propers[atoms] if k > 1e-6}
        assert set(got) == set(want)
        for n, (p, k) in want.items():
            assert got[n][0] == p and got[n][1] == pytest.approx(k, abs=1e-2)
    x = _frames(ethanol["pm"].mol, 5, 2, 0.006, 99)
    e_true, f_true = truth.energy_forces(x)
    e_fit, f_fit = result.energy_forces(x)
    assert np.abs(e_fit + result.metrics["offset"] - (e_true - 1234.5)).max() < 1e-4 * np.ptp(e_true)
    assert np.abs(f_fit - f_true).max() < 1e-4 * np.abs(f_true).max()
    assert result.metrics["force_rmse_refit"] < 1e-4 * result.metrics["force_rmse_gaff2"]


def test_default_prior_stays_close_and_harmonic_option(ethanol):
    """With the default prior the fit is still close on noise-free data; without
    ``anharmonic`` c3 = c4 = 0 and r0 / k are still fitted."""
    args = (ethanol["pm"].mol, ethanol["terms"], ethanol["classes"], ethanol["x"],
            ethanol["e"], ethanol["f"])
    default = fit_bonded(*args)
    assert default.metrics["force_rmse_refit"] < 0.1 * default.metrics["force_rmse_gaff2"]
    harmonic = fit_bonded(*args, RefitOptions(anharmonic=False))
    assert all(c3 == 0.0 and c4 == 0.0 for table in (harmonic.bonds, harmonic.angles)
               for _, _, c3, c4 in table.values())
    assert harmonic.metrics["force_rmse_refit"] < 0.7 * harmonic.metrics["force_rmse_gaff2"]
    for atoms, (r0, _, _, _) in harmonic.bonds.items():  # truth: +2 pm, and c3 < 0 lengthens
        assert r0 > ethanol["terms"]["bonds"][atoms][0] + 0.001
    _assert_bounded(default)
    _assert_bounded(harmonic)


def test_unbounded_data_give_bounded_terms():
    """Data from terms that break the bound (negative quartic: no minimum far out; strong
    cubic: a second minimum) still give bounded one-minimum terms; the near-linear angle of
    acetonitrile stays harmonic about GAFF2's θ0."""
    pm = parameterize("CC#N", "gasteiger")
    terms, classes = _terms(pm), symmetry_classes(pm.mol)
    bad = RefitResult(
        {a: (r0 + 0.001, k, -2.0 * k * 20, -40.0 * k) for a, (r0, k) in terms["bonds"].items()},
        {a: (t0, k, 3.0 * k, 0.01 * k) for a, (t0, k) in terms["angles"].items()},
        terms["Proper"])
    x = _frames(pm.mol, 4, 40, 0.012, 5)
    e, f = bad.energy_forces(x)
    result = fit_bonded(pm.mol, terms, classes, x, e, f)
    _assert_bounded(result)
    assert result.metrics["bounded_groups"] > 0
    assert result.metrics["force_rmse_refit"] < 0.8 * result.metrics["force_rmse_gaff2"]
    linear = [a for a, (t0, _) in terms["angles"].items() if t0 > math.radians(170)]
    assert linear
    for atoms in linear:
        t0, k, c3, c4 = result.angles[atoms]
        assert t0 == terms["angles"][atoms][0] and k > 0 and c3 == c4 == 0.0
