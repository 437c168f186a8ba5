"""A bespoke MM baseline: one molecule's bonded terms refitted to QM energies and forces.

:func:`fit_bonded` refits bonds, angles and proper torsions (impropers, charges and
Lennard-Jones stay GAFF2's) to the labelled frames of one molecule, one parameter set per
group of symmetry-equivalent terms, regularized toward GAFF2:

* bonds and angles: ``E = 0.5 k d^2 + c3 d^3 + c4 d^4`` with ``d = r - r0`` (``θ - θ0``),
* proper torsions: OpenMM's ``k (1 + cos(n φ - phase))`` with phase 0 or π and ``k >= 0``.

**Method.** The energy of a group is linear in polynomial coefficients about GAFF2's minimum,
``Σ_m a_m (q - q0_GAFF2)^m`` (m = 1..4; 1..2 without ``anharmonic``), and in Fourier
coefficients ``Σ_n k_n cos(n φ)`` (signed ``k_n``), and so are its forces (through the
geometric derivatives dr/dx, dθ/dx, dφ/dx written here in numpy). A free energy offset per
data set is fitted too. The loss is

    L(c) = w_E / (F σ_E²) Σ_f ΔE_f² + 1 / (3 N F σ_F²) Σ_{f,i,α} ΔF_{fiα}²
           + λ Σ_j H_jj (c_j - c_j^GAFF2)²

with σ_E the standard deviation of the target energies, σ_F the RMS of the target forces,
``w_E = energy_weight`` and ``λ = regularization`` (``shift_regularization`` for the linear
coefficients a1 = -k δ, which shift r0 / θ0). ``H_jj`` is the data term's curvature along
coefficient j (the weighted sum of squares of its feature): the prior is a ridge on
standardized features, so ``λ`` is dimensionless and one value serves bonds, angles and
torsions alike: moving a coefficient away from GAFF2 costs λ times the data loss the same
move would cause on its own (the default 1e-3 restrains only what the data cannot tell
apart, e.g. Fourier terms of a methyl rotor, cubic vs linear terms). Shifts get a stronger
pull (0.1): the angles of a planar ring sum to a constant, so their shifts are determined
only by out-of-plane motion and otherwise trade off against impropers; left at 1e-3,
aromatic θ0 moved by up to 23° on paracetamol's MD frames and its torsion-scan energies got
worse than GAFF2's. These defaults (and ``energy_weight``) were chosen on paracetamol's
GFN2-xTB files in ``examples/data`` (train; scored on test, 1200K and torsion). The normal equations are accumulated frame chunk by frame chunk, so memory does not
grow with the number of frames.

**Bounds.** Every bond and angle term must have exactly one stationary point, a minimum, and
be bounded below at any distance: ``k > 0``, ``c4 > 0`` and ``9 c3² < 16 k c4``, so that
``dE/dd = d (k + 3 c3 d + 4 c4 d²)`` vanishes at ``d = 0`` only. The least-squares solution
is kept where every term meets ``|c3| < margin · (4/3) sqrt(k c4)`` after re-centring at its
minimum. Otherwise the groups that break it (an active set, grown while others then break
it) are given a parametrization that meets it by construction, ``r0 = r0_GAFF2 + L u``,
``k = k_GAFF2 κ``, ``c4 = k_GAFF2 / L² γ``, ``c3 = margin (4/3) sqrt(k c4) s`` with box bounds
``|u| <= 5``, ``0.02 <= κ <= 50``, ``0 < γ <= 1e4``, ``|s| <= 1`` (L = 0.01 nm, 0.1 rad),
and the same quadratic loss is minimized over it (the other coefficients eliminated exactly
by a Schur complement; bounded trust-region least squares, analytic Jacobian). Angles within ``linear_angle`` of π (sp atoms) stay harmonic with θ0
unchanged (only k > 0 is fitted); without ``anharmonic`` only ``k > 0`` is enforced.

**Beyond the data.** The cubic and quartic coefficients are known only over the stretches
and bends the training frames visit; a quartic fitted to a carboxylic C-OH bond's 0.006 nm
of thermal motion gave 91 kcal/mol/Å on a held-out conformer stretched by 0.052 nm. Each
bond and angle term therefore keeps its training range [lo, hi] of ``d`` (over the frames and
the group's terms), and beyond it its cubic and quartic part continues along its tangent at
the edge (:func:`anharmonic_energy_slope`): energy and force stay continuous, the term is
harmonic with the fitted k out there, and it still has one minimum (dE/dd keeps the sign of
d inside the range and grows linearly outside). Fitting is unchanged: every training frame
lies inside the range.

**Cross terms** (``cross_terms``, on by default; class II force fields and MMFF94 have them):
every angle group that is not linear gets a stretch-bend and a bond-bond term,

    E = (θ - θ0) (k_sb1 (r1 - r10) + k_sb2 (r2 - r20)) + k_bb (r1 - r10) (r2 - r20),

r1, r2 the angle's two bonds, with reference values θ0, r10, r20 fixed at GAFF2's (stored
with each term; the terms vanish there). ``k_sb1 = k_sb2`` where the two outer atoms are
symmetry-equivalent; otherwise each bond has its own constant, as in MMFF94 (r1 is the bond to
the outer atom of the lower class in the group's class tuple). They are further linear
columns of the same fit, prior 0 under the same standardized ridge λ. The energy stays bounded
below: θ lies in [0, π] and the quartic bond terms outgrow the bilinear ones. It must also
keep one basin: near the minimum the cross terms must not make the bonded energy non-convex,
and far from it they must not open a second low valley (a bond stretched far, where its cubic
term has softened it, with a neighbour compressed: unchecked, a fitted bond-bond term made such
a valley about 0.09 nm out on paracetamol's aromatic C-C bonds, 15 kJ/mol beyond a barrier).
The rule: all bond, angle and cross terms together are a sum of one block per cross-term angle
(θ, r1, r2), holding the angle, each bond divided by the number of cross-term angles it takes
part in (so that the blocks add up to the whole) and the cross terms. Each term counts with
the curvature κ = min(k - c3²/(2 c4), its curvature at GAFF2's reference): the first, the
smallest ``2 E(e) / e²`` of the term (``k`` if harmonic), gives ``E(e) >= ½ κ e²`` at any
displacement e from its minimum. A block must be positive definite with margin: scaled to unit
diagonal, its smallest eigenvalue is at least ``1 - bound_margin`` (0.1), i.e. the couplings C
scaled by the diagonal D, ``D^-1/2 C D^-1/2``, have no eigenvalue below ``-bound_margin``. Then
each block's energy is bounded below by a positive definite quadratic form (up to the small
shifts between the fitted minima and GAFF2's references, about which the cross terms are
written): convex at the reference, one basin far out. A group whose block breaks the rule has
its cross constants scaled down by ``t = bound_margin / (-λ_min)`` (all members alike), those
are held there and the rest of the fit is solved again; what still breaks it then (the
re-solve moved a curvature) is scaled down without a further re-solve. On paracetamol's xTB
frames (Gasteiger charges, as in ``tests/test_refit.py``) the rule shrinks 8 of 19 groups and
costs held-out force error 3.66 -> 3.91 kcal/mol/Å (6.08 without cross terms).

After the fit each polynomial is re-centred at its minimum near the GAFF2 value, giving
(r0, k, c3, c4); the constant terms (polynomial minima, torsion constants) go into the
offset reported in ``metrics["offset"]``: target ≈ ``energy_forces(x)[0] + offset``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
from rdkit import Chem
from scipy.optimize import least_squares
from threadpoolctl import threadpool_limits

from hybridff.exceptions import DataFormatError

#: characteristic displacement of the bounded parametrization (bonds nm, angles rad)
_LENGTH = {"bond": 0.01, "angle": 0.1}
_PHASE_TOL = 1e-6


@dataclass
class RefitOptions:
    """Settings of :func:`fit_bonded` (see the module docstring for the loss)."""

    #: λ, pull toward GAFF2 on standardized features (dimensionless; 0 = plain least squares)
    regularization: float = 1e-3
    #: λ of the linear coefficients (a1 = -k δ: the shift of r0 / θ0); stronger, since shifts
    #: trade off against each other (the angles of a ring) and against impropers and torsions
    shift_regularization: float = 0.1
    #: weight of the (σ_E-normalized) energy term relative to the (σ_F-normalized) force term
    energy_weight: float = 0.1
    #: cubic + quartic bond and angle terms (else harmonic: r0, k; θ0, k)
    anharmonic: bool = True
    #: Fourier periodicities fitted for every proper torsion (GAFF2's own are always added)
    torsion_periodicities: tuple[int, ...] = (1, 2, 3, 4)
    #: angles with GAFF2's θ0 within this of π (rad; default 10°) stay harmonic about θ0
    linear_angle: float = math.radians(10.0)
    #: |c3| is kept below margin * (4/3) sqrt(k c4) (< 1: strictly one minimum)
    bound_margin: float = 0.9
    #: frames per chunk of the normal-equation accumulation
    chunk_frames: int = 64
    #: stretch-bend and bond-bond terms per non-linear angle group (module docstring)
    cross_terms: bool = True


@dataclass
class RefitResult:
    """Refitted bonded terms of one molecule (keys: the atom tuples of the input ``terms``).

    ``bonds`` (i, j) -> (r0 nm, k kJ/mol/nm², c3 kJ/mol/nm³, c4 kJ/mol/nm⁴, lo nm, hi nm) with
    ``E = 0.5 k d² + c3 d³ + c4 d⁴``, ``d = r - r0``, inside the training frames' range
    [lo, hi] of d and harmonic with the same k beyond it (:func:`anharmonic_energy_slope`);
    ``angles`` (i, j, k) -> (θ0 rad, k, c3, c4, lo, hi), the same in ``θ - θ0``
    (kJ/mol/rad^m); ``propers`` (a, b, c, d) -> [(periodicity,
    phase 0 or π, k >= 0 kJ/mol), ...] in OpenMM's ``k (1 + cos(n φ - phase))``; ``cross``
    (a, j, b) -> (θ0 rad, r10 nm, r20 nm, k_sb1 kJ/mol/nm/rad, k_sb2, k_bb kJ/mol/nm²) with
    ``E = (θ - θ0) (k_sb1 (r1 - r10) + k_sb2 (r2 - r20)) + k_bb (r1 - r10) (r2 - r20)``,
    r1 = |a - j|, r2 = |b - j| (key order matters).
    """

    bonds: dict[tuple[int, int], tuple[float, ...]]
    angles: dict[tuple[int, int, int], tuple[float, ...]]
    propers: dict[tuple[int, int, int, int], list[tuple[int, float, float]]]
    #: training RMSE of the bonded target, GAFF2 vs refit (``energy_rmse_*`` kJ/mol, each with
    #: its best offset; ``force_rmse_*`` kJ/mol/nm), ``offset`` (kJ/mol), term and group
    #: counts, ``bounded_groups`` (groups fitted in the bounded parametrization),
    #: ``terms_at_bound``, ``cross_groups_shrunk``, largest shifts of r0 (nm) and θ0 (rad),
    #: ``seconds``
    metrics: dict[str, float] = field(default_factory=dict)
    cross: dict[tuple[int, int, int], tuple[float, float, float, float, float, float]] = field(
        default_factory=dict)

    def energy_forces(self, positions_nm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Energy (F,) kJ/mol and forces (F, N, 3) kJ/mol/nm of the refitted bonded terms
        (without the offset) at frames (F, N, 3) nm (or one (N, 3) frame: F = 1)."""
        x = _frames(positions_nm)
        energy = np.zeros(len(x))
        forces = np.zeros(x.shape)
        for table, geometry in ((self.bonds, bond_geometry), (self.angles, angle_geometry)):
            if not table:
                continue
            idx = np.array(list(table), dtype=int)
            p = np.array([_with_range(v) for v in table.values()], dtype=float)
            q, dq = geometry(x, idx)
            e, de = anharmonic_energy_slope(q - p[:, 0], *p[:, 1:].T)
            energy += np.sum(e, axis=1)
            _scatter(forces, idx, -de[..., None, None] * dq)
        e, f = periodic_torsion_energy_forces(x, self.propers)
        e_c, f_c = cross_energy_forces(x, self.cross)
        return energy + e + e_c, forces + f + f_c


def _with_range(value: tuple[float, ...]) -> tuple[float, ...]:
    """A bond/angle value as (x0, k, c3, c4, lo, hi); records before version 3 have no data
    range (the polynomial holds everywhere)."""
    return tuple(value) if len(value) == 6 else (*value[:4], -math.inf, math.inf)


def anharmonic_energy_slope(d: np.ndarray, k: np.ndarray, c3: np.ndarray, c4: np.ndarray,
                            lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy and dE/dd of a refitted bond or angle term at ``d = q - x0``: ``0.5 k d² + c3 d³
    + c4 d⁴`` inside the training data's range [lo, hi]; beyond it the cubic and quartic part
    continues along its tangent, so the term is harmonic with the fitted k there (what the data
    cannot tell, the polynomial does not guess). ANHARMONIC_ENERGY is the same in OpenMM."""
    dc = np.clip(d, lo, hi)
    slope = 3 * c3 * dc**2 + 4 * c4 * dc**3
    return 0.5 * k * d**2 + c3 * dc**3 + c4 * dc**4 + slope * (d - dc), k * d + slope


#: :func:`anharmonic_energy_slope`'s cubic and quartic part as an OpenMM expression in ``q``
ANHARMONIC_ENERGY = ("c3*dc^3 + c4*dc^4 + (3*c3*dc^2 + 4*c4*dc^3)*(d - dc); "
                     "dc = min(max(d, lo), hi); d = {q} - x0")


def _data_range(g: _Group, x: np.ndarray, x0: float) -> tuple[float, float]:
    """(min, max) over the frames and the group's terms of ``q - x0``."""
    geometry = bond_geometry if g.kind == "bond" else angle_geometry
    q, _ = geometry(x, np.array(g.members, dtype=int))
    return float(np.min(q - x0)), float(np.max(q - x0))


# ----------------------------------------------------------------------------- geometry


def _frames(positions_nm: np.ndarray) -> np.ndarray:
    x = np.asarray(positions_nm, dtype=np.float64)
    return x[None] if x.ndim == 2 else x


def _scatter(out: np.ndarray, idx: np.ndarray, values: np.ndarray) -> None:
    """out[f, idx[t, k]] += values[f, t, k] (out (F, N, 3), values (F, T, K, 3))."""
    flat = idx.reshape(-1)
    np.add.at(out.transpose(1, 0, 2), flat,
              values.reshape(values.shape[0], -1, 3).transpose(1, 0, 2))


def bond_geometry(x: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bond lengths (F, T) of atom pairs ``idx`` (T, 2) and their gradients (F, T, 2, 3)."""
    b = x[:, idx[:, 1]] - x[:, idx[:, 0]]
    r = np.linalg.norm(b, axis=-1)
    u = b / r[..., None]
    return r, np.stack([-u, u], axis=2)


def angle_geometry(x: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angles (F, T) of triples ``idx`` (T, 3) (vertex in the middle), rad, and gradients
    (F, T, 3, 3). At exactly linear geometries the gradient's direction is undefined; it is
    set to zero there (only the harmonic term about π is fitted for such angles)."""
    u = x[:, idx[:, 0]] - x[:, idx[:, 1]]
    v = x[:, idx[:, 2]] - x[:, idx[:, 1]]
    lu = np.linalg.norm(u, axis=-1)[..., None]
    lv = np.linalg.norm(v, axis=-1)[..., None]
    uh, vh = u / lu, v / lv
    cos = np.sum(uh * vh, axis=-1)
    sin = np.linalg.norm(np.cross(uh, vh), axis=-1)
    theta = np.arctan2(sin, cos)
    inv = np.where(sin > 1e-10, 1.0 / np.maximum(sin, 1e-10), 0.0)[..., None]
    gi = (cos[..., None] * uh - vh) * inv / lu
    gk = (cos[..., None] * vh - uh) * inv / lv
    return theta, np.stack([gi, -(gi + gk), gk], axis=2)


def dihedral_geometry(x: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dihedral angles (F, T) of quadruples ``idx`` (T, 4), rad in (-π, π], and gradients
    (F, T, 4, 3)."""
    b1 = x[:, idx[:, 1]] - x[:, idx[:, 0]]
    b2 = x[:, idx[:, 2]] - x[:, idx[:, 1]]
    b3 = x[:, idx[:, 3]] - x[:, idx[:, 2]]
    m = np.cross(b1, b2)
    n = np.cross(b2, b3)
    l2 = np.linalg.norm(b2, axis=-1)
    phi = np.arctan2(l2 * np.sum(b1 * n, axis=-1), np.sum(m * n, axis=-1))
    m2 = np.maximum(np.sum(m * m, axis=-1), 1e-300)[..., None]
    n2 = np.maximum(np.sum(n * n, axis=-1), 1e-300)[..., None]
    ga = -l2[..., None] * m / m2
    gd = l2[..., None] * n / n2
    p = (np.sum(b1 * b2, axis=-1) / l2**2)[..., None]
    q = (np.sum(b3 * b2, axis=-1) / l2**2)[..., None]
    gb = -(1.0 + p) * ga + q * gd
    gc = -(1.0 + q) * gd + p * ga
    return phi, np.stack([ga, gb, gc, gd], axis=2)


def periodic_torsion_energy_forces(
    positions_nm: np.ndarray, torsions: dict[tuple[int, ...], list[tuple[int, float, float]]]
) -> tuple[np.ndarray, np.ndarray]:
    """Energy (F,) and forces (F, N, 3) of OpenMM periodic torsions ``(a, b, c, d) ->
    [(periodicity, phase rad, k kJ/mol), ...]``, ``k (1 + cos(n φ - phase))`` (e.g. the
    ``Improper`` terms that stay GAFF2's, to take off the QM target)."""
    x = _frames(positions_nm)
    energy = np.zeros(len(x))
    forces = np.zeros(x.shape)
    rows = [(atoms, n, phase, k) for atoms, parts in torsions.items() for n, phase, k in parts]
    if not rows:
        return energy, forces
    idx = np.array([r[0] for r in rows], dtype=int)
    n = np.array([r[1] for r in rows], dtype=float)
    phase = np.array([r[2] for r in rows], dtype=float)
    k = np.array([r[3] for r in rows], dtype=float)
    phi, dphi = dihedral_geometry(x, idx)
    energy += np.sum(k * (1.0 + np.cos(n * phi - phase)), axis=1)
    de = -k * n * np.sin(n * phi - phase)
    _scatter(forces, idx, -de[..., None, None] * dphi)
    return energy, forces


def _cross_geometry(x: np.ndarray, idx: np.ndarray, refs: np.ndarray
                    ) -> tuple[np.ndarray, ...]:
    """(θ - θ0, r1 - r10, r2 - r20) (each (F, T)) of angles ``idx`` (T, 3) (a, j, b) about
    ``refs`` (T, 3) = (θ0, r10, r20), and their gradients on (a, j, b) (each (F, T, 3, 3))."""
    theta, g_theta = angle_geometry(x, idx)
    r1, g1 = bond_geometry(x, idx[:, :2])
    r2, g2 = bond_geometry(x, idx[:, 1:])
    zero = np.zeros(g1.shape[:2] + (1, 3))
    return (theta - refs[:, 0], r1 - refs[:, 1], r2 - refs[:, 2], g_theta,
            np.concatenate([g1, zero], axis=2), np.concatenate([zero, g2], axis=2))


def cross_energy_forces(positions_nm: np.ndarray, cross: dict[tuple[int, ...], tuple[float, ...]]
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Energy (F,) and forces (F, N, 3) of stretch-bend and bond-bond terms ``(a, j, b) ->
    (θ0, r10, r20, k_sb1, k_sb2, k_bb)`` (see :class:`RefitResult`)."""
    x = _frames(positions_nm)
    energy = np.zeros(len(x))
    forces = np.zeros(x.shape)
    if not cross:
        return energy, forces
    idx = np.array(list(cross), dtype=int)
    p = np.array(list(cross.values()), dtype=float)
    t, d1, d2, gt, g1, g2 = _cross_geometry(x, idx, p[:, :3])
    sb = p[:, 3] * d1 + p[:, 4] * d2
    energy += np.sum(t * sb + p[:, 5] * d1 * d2, axis=1)
    grad = (sb[..., None, None] * gt
            + t[..., None, None] * (p[:, 3, None, None] * g1 + p[:, 4, None, None] * g2)
            + p[:, 5, None, None] * (d2[..., None, None] * g1 + d1[..., None, None] * g2))
    _scatter(forces, idx, -grad)
    return energy, forces


# ----------------------------------------------------------------------------- term groups


@dataclass
class _Group:
    kind: str  # bond | angle | proper | cross
    #: cross: angles (a, j, b) oriented so that a has the lower class of the group's tuple
    members: list[tuple[int, ...]]
    columns: np.ndarray  # design columns of this group's coefficients
    prior: np.ndarray  # GAFF2's coefficients
    #: bonds/angles: powers of (q - q0); propers: periodicities of cos(n φ); cross: 1 for
    #: k_sb1, 2 for k_sb2, 3 for one k_sb of both bonds (symmetric groups), 0 for k_bb
    orders: tuple[int, ...]
    q0: float = 0.0  # GAFF2's r0 / θ0 (bonds, angles)
    k0: float = 0.0  # GAFF2's k (bonds, angles)
    #: GAFF2 proper terms with a phase other than 0 / π: kept unchanged, not fitted
    fixed: list[tuple[int, float, float]] = field(default_factory=list)
    #: cross: GAFF2's (θ0, r10, r20), the reference of the cross terms
    refs: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _class_key(atoms: tuple[int, ...], classes: list[int]) -> tuple[int, ...]:
    c = tuple(int(classes[a]) for a in atoms)
    return min(c, c[::-1])


def _groups(terms: dict, classes: list[int], options: RefitOptions) -> tuple[list[_Group], int]:
    groups: list[_Group] = []
    ncol = 0
    powers = (1, 2, 3, 4) if options.anharmonic else (1, 2)
    for kind, table in (("bond", terms.get("bonds", {})), ("angle", terms.get("angles", {}))):
        by_key: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
        for atoms in table:
            by_key.setdefault(_class_key(atoms, classes), []).append(tuple(int(a) for a in atoms))
        for members in by_key.values():
            q0, k0 = (float(v) for v in np.mean([table[m][:2] for m in members], axis=0))
            if k0 <= 0:
                raise DataFormatError(f"{kind} {members[0]}: GAFF2 force constant {k0} is not positive; "
                                      "the force-field file is damaged: reinstall hybridff")
            orders = (2,) if kind == "angle" and q0 > math.pi - options.linear_angle else powers
            prior = np.array([k0 / 2 if m == 2 else 0.0 for m in orders])
            groups.append(_Group(kind, members, np.arange(ncol, ncol + len(orders)), prior,
                                 orders, q0, k0))
            ncol += len(orders)
    if options.cross_terms:
        for g in [g for g in groups if g.kind == "angle" and g.orders != (2,)]:
            groups.append(_cross_group(g, terms.get("bonds", {}), classes, ncol))
            ncol += len(groups[-1].orders)
    by_key = {}
    for atoms in terms.get("Proper", {}):
        by_key.setdefault(_class_key(atoms, classes), []).append(tuple(int(a) for a in atoms))
    for members in by_key.values():
        coef: dict[int, float] = {}
        fixed: dict[tuple[int, float], float] = {}
        for atoms in members:  # GAFF2's terms averaged over the group
            for n, phase, k in terms["Proper"][atoms]:
                wrapped = math.remainder(float(phase), 2 * math.pi)
                if abs(wrapped) < _PHASE_TOL:
                    coef[int(n)] = coef.get(int(n), 0.0) + k / len(members)
                elif abs(abs(wrapped) - math.pi) < _PHASE_TOL:
                    coef[int(n)] = coef.get(int(n), 0.0) - k / len(members)
                else:
                    key = (int(n), float(phase))
                    fixed[key] = fixed.get(key, 0.0) + k / len(members)
        orders = tuple(sorted(set(options.torsion_periodicities) | set(coef)))
        groups.append(_Group("proper", members, np.arange(ncol, ncol + len(orders)),
                             np.array([coef.get(n, 0.0) for n in orders]), orders,
                             fixed=[(n, p, k) for (n, p), k in fixed.items()]))
        ncol += len(orders)
    return groups, ncol


def _cross_group(angle: _Group, bonds: dict, classes: list[int], start: int) -> _Group:
    """The stretch-bend / bond-bond group of an angle group (columns from ``start``)."""
    key = _class_key(angle.members[0], classes)
    members = [m if tuple(classes[a] for a in m) == key else m[::-1] for m in angle.members]

    def length(i: int, j: int) -> float:
        if (i, j) in bonds:
            return float(bonds[(i, j)][0])
        if (j, i) in bonds:
            return float(bonds[(j, i)][0])
        raise DataFormatError(f"angle {members[0]}: no GAFF2 bond {i}-{j} for its cross terms; "
                              "give terms with every bond of every angle")

    a, j, b = members[0]
    orders = (3, 0) if key[0] == key[2] else (1, 2, 0)
    return _Group("cross", members, np.arange(start, start + len(orders)), np.zeros(len(orders)),
                  orders, refs=(angle.q0, length(a, j), length(j, b)))


def _features(groups: list[_Group], x: np.ndarray, ncol: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Energy features (F, ncol), force features (F, N, 3, ncol) (forces = -gradient) and the
    fixed terms' energy (F,) and forces (F, N, 3) at frames x."""
    nf, na = x.shape[:2]
    ae = np.zeros((nf, ncol))
    af = np.zeros((nf, na, 3, ncol))
    e_fixed = np.zeros(nf)
    f_fixed = np.zeros(x.shape)
    geometry = {"bond": bond_geometry, "angle": angle_geometry, "proper": dihedral_geometry}
    for g in groups:
        idx = np.array(g.members, dtype=int)
        if g.kind == "cross":
            t, d1, d2, gt, g1, g2 = _cross_geometry(x, idx, np.array([g.refs] * len(idx)))
            for order, col in zip(g.orders, g.columns, strict=True):
                if order == 0:  # k_bb
                    value, grad = d1 * d2, d2[..., None, None] * g1 + d1[..., None, None] * g2
                else:  # k_sb of bond 1, bond 2 or both
                    d, gd = {1: (d1, g1), 2: (d2, g2), 3: (d1 + d2, g1 + g2)}[order]
                    value, grad = t * d, d[..., None, None] * gt + t[..., None, None] * gd
                ae[:, col] = value.sum(axis=1)
                np.add.at(af[..., col].transpose(1, 0, 2), idx.reshape(-1),
                          (-grad).reshape(nf, -1, 3).transpose(1, 0, 2))
            continue
        q, dq = geometry[g.kind](x, idx)
        d = q - g.q0
        for m, col in zip(g.orders, g.columns, strict=True):
            if g.kind == "proper":
                value, slope = np.cos(m * q), -m * np.sin(m * q)
            else:
                value, slope = d**m, m * d ** (m - 1)
            ae[:, col] = value.sum(axis=1)
            contrib = -slope[..., None, None] * dq
            np.add.at(af[..., col].transpose(1, 0, 2), idx.reshape(-1),
                      contrib.reshape(nf, -1, 3).transpose(1, 0, 2))
        if g.fixed:
            e, f = periodic_torsion_energy_forces(x, {a: g.fixed for a in g.members})
            e_fixed += e
            f_fixed += f
    return ae, af, e_fixed, f_fixed


# ----------------------------------------------------------------------------- bounded terms


def _recentred(a: np.ndarray, orders: tuple[int, ...], length: float
               ) -> tuple[float, float, float, float, float] | None:
    """(δ, k, c3, c4, E_min) of ``Σ a_m d^m`` re-centred at its minimum nearest d = 0
    (E(d) = E_min + 0.5 k e² + c3 e³ + c4 e⁴, e = d - δ), or None if it has no minimum."""
    c = dict(zip(orders, (float(v) for v in a), strict=True))
    a1, a2, a3, a4 = (c.get(m, 0.0) for m in (1, 2, 3, 4))
    derivative = [4 * a4, 3 * a3, 2 * a2, a1]
    while derivative and derivative[0] == 0.0:
        derivative.pop(0)
    if len(derivative) < 2:
        return None
    roots = np.roots(derivative)
    minima = [float(r.real) for r in roots if abs(r.imag) <= 1e-9 * max(1.0, abs(r))
              and 2 * a2 + 6 * a3 * r.real + 12 * a4 * r.real**2 > 0
              and abs(r.real) < 50 * length]
    if not minima:
        return None
    delta = min(minima, key=abs)
    k = 2 * a2 + 6 * a3 * delta + 12 * a4 * delta**2
    c3 = a3 + 4 * a4 * delta
    e_min = a1 * delta + a2 * delta**2 + a3 * delta**3 + a4 * delta**4
    return delta, k, c3, a4, e_min


def _feasible(params: tuple[float, float, float, float, float] | None, anharmonic: bool,
              margin: float) -> bool:
    if params is None:
        return False
    _, k, c3, c4, _ = params
    if not anharmonic:
        return k > 0
    return k > 0 and c4 > 0 and abs(c3) < margin * (4.0 / 3.0) * math.sqrt(k * c4)


def _poly(theta: np.ndarray, g: _Group, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients a (len(orders),) of the bounded parametrization ``theta`` of group g and
    their Jacobian da/dθ. θ = (u, κ, γ, s): δ = L u, k = k_GAFF2 κ, c4 = k_GAFF2 / L² γ,
    c3 = margin (4/3) sqrt(k c4) s, with κ, γ > 0 and |s| <= 1 as box bounds."""
    if g.orders == (2,):  # near-linear angle: k only
        return np.array([g.k0 * theta[0] / 2]), np.array([[g.k0 / 2]])
    length = _LENGTH[g.kind]
    delta = length * theta[0]
    k = g.k0 * theta[1]
    da_dk = np.array([-delta, 0.5, 0.0, 0.0])
    if len(g.orders) == 2:
        jac = np.array([[-k * length, -delta * g.k0], [0.0, 0.5 * g.k0]])
        return np.array([-k * delta, k / 2]), jac
    c4_unit = g.k0 / length**2
    c4 = c4_unit * theta[2]
    scale = margin * (4.0 / 3.0) * math.sqrt(k * c4)
    c3 = scale * theta[3]
    a = np.array([-k * delta + 3 * c3 * delta**2 - 4 * c4 * delta**3,
                  k / 2 - 3 * c3 * delta + 6 * c4 * delta**2,
                  c3 - 4 * c4 * delta,
                  c4])
    da_ddelta = np.array([-k + 6 * c3 * delta - 12 * c4 * delta**2, -3 * c3 + 12 * c4 * delta,
                          -4 * c4, 0.0])
    da_dc3 = np.array([3 * delta**2, -3 * delta, 1.0, 0.0])
    da_dc4 = np.array([-4 * delta**3, 6 * delta**2, -4 * delta, 1.0])
    jac = np.stack([da_ddelta * length,
                    (da_dk + da_dc3 * c3 / (2 * k)) * g.k0,
                    (da_dc4 + da_dc3 * c3 / (2 * c4)) * c4_unit,
                    da_dc3 * scale], axis=1)
    return a, jac


#: box bounds of (u, κ, γ, s) (see :func:`_poly`)
_BOX = ((-5.0, 5.0), (0.02, 50.0), (1e-8, 1e4), (-1.0, 1.0))


def _theta_start(a: np.ndarray, g: _Group, margin: float) -> np.ndarray:
    """A feasible starting point of the bounded parametrization near coefficients a."""
    def box(value: float, i: int) -> float:
        return min(max(value, _BOX[i][0]), _BOX[i][1])

    if g.orders == (2,):
        return np.array([box(2 * a[0] / g.k0, 1)])
    length = _LENGTH[g.kind]
    params = _recentred(a, g.orders, length)
    delta, k, c3, c4 = (0.0, g.k0, 0.0, 0.0) if params is None else params[:4]
    u = box(delta / length, 0) if abs(delta) <= 3 * length else 0.0
    kappa = box(k / g.k0, 1)
    if len(g.orders) == 2:
        return np.array([u, kappa])
    gamma = box(c4 / (g.k0 / length**2), 2)
    bound = margin * (4.0 / 3.0) * math.sqrt(g.k0 * kappa * gamma * g.k0 / length**2)
    return np.array([u, kappa, gamma, box(c3 / bound, 3)])


def _group_ok(c: np.ndarray, g: _Group, margin: float) -> bool:
    """Whether coefficients c of bond/angle group g meet the bounds (module docstring)."""
    if g.orders == (2,):
        return bool(c[0] > 0)
    return _feasible(_recentred(c, g.orders, _LENGTH[g.kind]), len(g.orders) == 4, margin)


#: rounds of the active set and evaluations of one bounded solve: a refit from a few frames
#: (many groups the data hardly determine) must not take minutes; see fit_bonded's clamp
_MAX_ACTIVE_ROUNDS = 3
_MAX_BOUNDED_EVALUATIONS = 600


def _bounded_solution(groups: list[_Group], matrix: np.ndarray, free_solution: np.ndarray,
                      margin: float) -> tuple[np.ndarray, dict[str, float]]:
    """Minimize (c - ĉ)ᵀ M (c - ĉ) with the bond and angle groups that break the bounds in
    their bounded parametrization (an active set, grown while the others break them too);
    every other coefficient is linear and eliminated exactly (Schur complement)."""
    candidates = [g for g in groups if g.kind in ("bond", "angle")]
    active = [g for g in candidates if not _group_ok(free_solution[g.columns], g, margin)]
    solution = free_solution
    iterations = 0
    for _ in range(_MAX_ACTIVE_ROUNDS):  # what still breaks a bound then is clamped in fit_bonded
        if not active:
            break
        solution, nit = _solve_active(active, matrix, free_solution, margin)
        iterations += nit
        more = [g for g in candidates if g not in active
                and not _group_ok(solution[g.columns], g, margin)]
        if not more:
            break
        active += more
    return solution, {"bounded_groups": float(len(active)), "bound_iterations": float(iterations)}


def _solve_active(active: list[_Group], matrix: np.ndarray, free_solution: np.ndarray,
                  margin: float) -> tuple[np.ndarray, int]:
    cols = np.concatenate([g.columns for g in active])
    other = np.setdiff1d(np.arange(len(free_solution)), cols)
    m_cc = matrix[np.ix_(cols, cols)]
    m_cf = matrix[np.ix_(cols, other)]
    coupling = np.linalg.lstsq(matrix[np.ix_(other, other)], m_cf.T, rcond=None)[0]
    schur = m_cc - m_cf @ coupling
    target = free_solution[cols]
    starts = [_theta_start(free_solution[g.columns], g, margin) for g in active]
    splits = np.cumsum([len(t) for t in starts])[:-1]

    def coefficients(theta: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        parts = [_poly(t, g, margin) for t, g in zip(np.split(theta, splits), active, strict=True)]
        return np.concatenate([p[0] for p in parts]), [p[1] for p in parts]

    # (a - â)ᵀ S (a - â) = |R (a - â)|², S = RᵀR: a bounded nonlinear least-squares problem
    w, v = np.linalg.eigh(0.5 * (schur + schur.T))
    factor = np.sqrt(np.maximum(w, 0.0))[:, None] * v.T

    def residual(theta: np.ndarray) -> np.ndarray:
        return factor @ (coefficients(theta)[0] - target)

    def jacobian(theta: np.ndarray) -> np.ndarray:
        jac = np.zeros((len(cols), len(theta)))
        row = col = 0
        for block in coefficients(theta)[1]:
            jac[row:row + block.shape[0], col:col + block.shape[1]] = block
            row += block.shape[0]
            col += block.shape[1]
        return factor @ jac

    lower, upper = zip(*(b for t in starts for b in ([_BOX[1]] if len(t) == 1 else _BOX[:len(t)])),
                       strict=True)
    start = np.clip(np.concatenate(starts), lower, upper)
    # one BLAS thread: trf's SVD of this small matrix, run multithreaded on a machine whose
    # cores were busy, stalled for many minutes (0.8 s on one thread)
    with threadpool_limits(limits=1, user_api="blas"):
        result = least_squares(residual, start, jac=jacobian, bounds=(lower, upper),
                               method="trf", x_scale="jac", xtol=1e-10, ftol=1e-10, gtol=1e-10,
                               max_nfev=_MAX_BOUNDED_EVALUATIONS)
    solution = free_solution.copy()
    a, _ = coefficients(result.x)
    solution[cols] = a
    solution[other] = free_solution[other] - coupling @ (a - target)
    return solution, int(result.nfev)


def _pinned_solution(groups: list[_Group], matrix: np.ndarray, free_solution: np.ndarray,
                     pins: dict[int, float], margin: float) -> tuple[np.ndarray, dict[str, float]]:
    """Minimize (c - ĉ)ᵀ M (c - ĉ) with the coefficients ``pins`` (column -> value) held fixed
    (cross terms only), the bonds and angles under their bounds (:func:`_bounded_solution`)."""
    fixed = np.array(sorted(pins), dtype=int)
    keep = np.setdiff1d(np.arange(len(free_solution)), fixed)
    held = np.array([pins[c] for c in fixed])
    m_kk = matrix[np.ix_(keep, keep)]
    scale = np.sqrt(np.maximum(np.diag(m_kk), 1e-300))
    rhs = matrix[np.ix_(keep, fixed)] @ (held - free_solution[fixed]) / scale
    scaled = m_kk / np.outer(scale, scale)
    try:
        step = np.linalg.solve(scaled, rhs) / scale
    except np.linalg.LinAlgError:
        step = np.linalg.lstsq(scaled, rhs, rcond=None)[0] / scale
    position = {int(c): k for k, c in enumerate(keep)}
    reduced = [replace(g, columns=np.array([position[int(c)] for c in g.columns]))
               for g in groups if g.kind in ("bond", "angle")]
    part, info = _bounded_solution(reduced, m_kk, free_solution[keep] - step, margin)
    solution = np.empty_like(free_solution)
    solution[keep] = part
    solution[fixed] = held
    return solution, info


def _bonded_values(g: _Group, c: np.ndarray, margin: float
                   ) -> tuple[tuple[float, float, float, float], float, bool, bool]:
    """``(x0, k, c3, c4)``, the polynomial's minimum value, whether a bound had to be forced
    and whether |c3| sits at its bound, for bond or angle group g with coefficients c."""
    clamped = False
    if g.orders == (2,):
        params = (0.0, 2 * float(c[0]), 0.0, 0.0, 0.0)
    else:
        params = _recentred(c, g.orders, _LENGTH[g.kind])
        if params is None or params[1] <= 0.0:  # no minimum: keep GAFF2's term
            clamped = True
            params = _recentred(g.prior, g.orders, _LENGTH[g.kind]) or (
                0.0, 2 * float(g.prior[g.orders.index(2)]), 0.0, 0.0, 0.0)
    delta, k, c3, c4, e_min = params
    if len(g.orders) == 4:  # the bound, whatever the solver reached: one minimum, bounded
        if c4 <= 0.0:
            c3, c4 = 0.0, 0.0
            clamped = True
        elif abs(c3) > margin * (4.0 / 3.0) * math.sqrt(k * c4):
            c3 = math.copysign(margin * (4.0 / 3.0) * math.sqrt(k * c4), c3)
            clamped = True
    at_bound = len(g.orders) == 4 and abs(c3) > 0.99 * margin * (4.0 / 3.0) * math.sqrt(k * c4)
    return (g.q0 + delta, float(k), float(c3), float(c4)), e_min, clamped, at_bound


def _cross_constants(g: _Group, c: np.ndarray) -> tuple[float, float, float]:
    """(k_sb1, k_sb2, k_bb) of cross group g from its coefficients c."""
    by_order = dict(zip(g.orders, (float(v) for v in c), strict=True))
    if 3 in by_order:
        return by_order[3], by_order[3], by_order[0]
    return by_order[1], by_order[2], by_order[0]


def _curvature(value: tuple[float, float, float, float], reference: float) -> float:
    """The curvature a bond or angle term ``(x0, k, c3, c4)`` counts with in the cross-term
    rule: the smaller of its secant curvature ``min_e 2 E(e) / e² = k - c3² / (2 c4)`` (so that
    ``E(e) >= ½ κ e²`` at any e) and its curvature at ``reference`` (GAFF2's value)."""
    x0, k, c3, c4 = value
    e = reference - x0
    secant = k - c3**2 / (2 * c4) if c4 > 0 else k
    return min(secant, k + 6 * c3 * e + 12 * c4 * e**2)


def _cross_shrink(groups: list[_Group], solution: np.ndarray,
                  values: dict[int, tuple], margin: float) -> dict[int, float]:
    """Cross groups (index -> factor < 1) whose (θ, r1, r2) block is not positive definite with
    margin, and the factor that makes it so (module docstring)."""
    bond_value: dict[tuple[int, int], tuple[float, float, float, float]] = {}
    angle_value: dict[tuple[int, int, int], tuple[float, float, float, float]] = {}
    for i, (value, *_) in values.items():
        for atoms in groups[i].members:
            table = bond_value if groups[i].kind == "bond" else angle_value
            table[atoms] = table[atoms[::-1]] = value  # type: ignore[index]
    share: dict[frozenset[int], int] = {}
    for g in groups:
        for a, j, b in (g.members if g.kind == "cross" else ()):
            for pair in (frozenset((a, j)), frozenset((j, b))):
                share[pair] = share.get(pair, 0) + 1
    out: dict[int, float] = {}
    for i, g in enumerate(groups):
        if g.kind != "cross":
            continue
        k_sb1, k_sb2, k_bb = _cross_constants(g, solution[g.columns])
        coupling = np.array([[0.0, k_sb1, k_sb2], [k_sb1, 0.0, k_bb], [k_sb2, k_bb, 0.0]])
        factor = 1.0
        for a, j, b in g.members:
            diagonal = np.array([
                _curvature(angle_value[(a, j, b)], g.refs[0]),
                _curvature(bond_value[(a, j)], g.refs[1]) / share[frozenset((a, j))],
                _curvature(bond_value[(j, b)], g.refs[2]) / share[frozenset((j, b))]])
            if np.any(diagonal <= 0.0):
                factor = 0.0
                break
            lowest = float(np.linalg.eigvalsh(coupling / np.sqrt(np.outer(diagonal, diagonal)))[0])
            if lowest < -margin:
                factor = min(factor, margin / -lowest)
        if factor < 1.0:
            out[i] = factor
    return out


# ----------------------------------------------------------------------------- the fit


def fit_bonded(mol: Chem.Mol, terms: dict, classes: list[int], positions_nm: np.ndarray,
               target_energies: np.ndarray, target_forces: np.ndarray,
               options: RefitOptions | None = None) -> RefitResult:
    """Refit ``mol``'s bonds, angles and proper torsions to labelled frames.

    ``terms``: GAFF2's terms as ``ParameterizedMolecule.canonical_terms`` gives them (``bonds``,
    ``angles``, ``Proper``; atom indices of ``mol``); ``classes``: a symmetry class per atom
    (:func:`hybridff.mm.graph.symmetry_classes`), terms with equal class tuples share
    parameters. ``positions_nm`` (F, N, 3); targets: QM minus the MM terms that are kept
    (nonbonded + impropers), energies (F,) kJ/mol and forces (F, N, 3) kJ/mol/nm; a free
    per-data-set energy offset is fitted too. See the module docstring for the method.
    """
    options = options or RefitOptions()
    start = time.perf_counter()
    x = _frames(positions_nm)
    e_t = np.asarray(target_energies, dtype=np.float64).reshape(-1)
    f_t = np.asarray(target_forces, dtype=np.float64).reshape(x.shape)
    nf, na = x.shape[:2]
    if mol is not None and mol.GetNumAtoms() != na:
        raise DataFormatError(f"frames have {na} atoms, the molecule {mol.GetNumAtoms()}: give "
                              "the frames of this molecule")
    if len(e_t) != nf or len(classes) != na:
        raise DataFormatError(f"{nf} frames but {len(e_t)} energies, or {na} atoms but "
                              f"{len(classes)} symmetry classes: give one of each per frame/atom")
    groups, ncol = _groups(terms, classes, options)
    offset_col = ncol
    ncol += 1

    # normal equations: energies kept whole (F rows), forces accumulated per chunk
    ae = np.zeros((nf, ncol))
    ae[:, offset_col] = 1.0
    be = e_t.copy()
    hf = np.zeros((ncol, ncol))
    gf = np.zeros(ncol)
    bbf = 0.0
    for s in range(0, nf, max(1, options.chunk_frames)):
        chunk = slice(s, min(nf, s + options.chunk_frames))
        e_c, f_c, e_fix, f_fix = _features(groups, x[chunk], ncol - 1)
        ae[chunk, :-1] = e_c
        be[chunk] -= e_fix
        rows = f_c.reshape(-1, ncol - 1)
        b = (f_t[chunk] - f_fix).reshape(-1)
        hf[:-1, :-1] += rows.T @ rows
        gf[:-1] += rows.T @ b
        bbf += float(b @ b)
    sigma_e = float(np.std(e_t)) or 1.0
    sigma_f = float(np.sqrt(np.mean(f_t**2))) or 1.0
    w_e = options.energy_weight / (nf * sigma_e**2)
    w_f = 1.0 / (3 * na * nf * sigma_f**2)
    hessian = w_e * ae.T @ ae + w_f * hf
    gradient = w_e * ae.T @ be + w_f * gf

    prior = np.zeros(ncol)
    for g in groups:
        prior[g.columns] = g.prior
    prior[offset_col] = float(np.mean(be - ae[:, :-1] @ prior[:-1]))
    penalty = options.regularization * np.diag(hessian).copy()
    penalty[offset_col] = 0.0
    for g in groups:  # the linear coefficient: the shift of r0 / θ0
        if g.kind in ("bond", "angle") and g.orders[0] == 1:
            penalty[g.columns[0]] = options.shift_regularization * hessian[g.columns[0], g.columns[0]]
    matrix = hessian + np.diag(penalty)
    scale = np.sqrt(np.maximum(np.diag(matrix), 1e-300))
    scaled = matrix / np.outer(scale, scale)
    rhs = (gradient + penalty * prior) / scale
    try:
        free = np.linalg.solve(scaled, rhs) / scale
    except np.linalg.LinAlgError:  # no prior and coefficients the data cannot tell apart
        free = np.linalg.lstsq(scaled, rhs, rcond=None)[0] / scale

    margin = options.bound_margin
    solution, info = _bounded_solution(groups, matrix, free, margin)
    values = {i: _bonded_values(g, solution[g.columns], margin)
              for i, g in enumerate(groups) if g.kind in ("bond", "angle")}
    shrink = _cross_shrink(groups, solution, values, margin)
    shrunk = len(shrink)
    if shrink:  # hold those cross constants at the shrunk values and solve the rest again
        pins = {int(c): factor * float(solution[c]) for i, factor in shrink.items()
                for c in groups[i].columns}
        solution, info = _pinned_solution(groups, matrix, free, pins, margin)
        values = {i: _bonded_values(g, solution[g.columns], margin)
                  for i, g in enumerate(groups) if g.kind in ("bond", "angle")}
        for i, factor in _cross_shrink(groups, solution, values, margin).items():
            solution[groups[i].columns] *= factor  # the re-solve moved a curvature
    # the offset that fits the energies best (what the loss gives too, unless energy_weight = 0)
    solution[offset_col] = float(np.mean(be - ae[:, :-1] @ solution[:-1]))

    # to (r0, k, c3, c4), cross constants and OpenMM torsions; constants into the offset
    bonds: dict = {}
    angles: dict = {}
    propers: dict = {}
    cross: dict = {}
    offset = float(solution[offset_col])
    for i, g in enumerate(groups):
        c = solution[g.columns]
        if g.kind == "proper":
            parts = [(n, 0.0 if k >= 0 else math.pi, abs(float(k)))
                     for n, k in zip(g.orders, c, strict=True) if k != 0.0]
            parts += [(n, p, k) for n, p, k in g.fixed]
            offset -= len(g.members) * sum(abs(float(k)) for k in c)
            for atoms in g.members:
                propers[atoms] = list(parts)
        elif g.kind == "cross":
            value = (*g.refs, *_cross_constants(g, c))
            for atoms in g.members:
                cross[atoms] = value
        else:
            value, e_min, _, _ = values[i]
            offset += len(g.members) * e_min
            value = (*value, *_data_range(g, x, value[0]))
            for atoms in g.members:
                (bonds if g.kind == "bond" else angles)[atoms] = value
    at_bound = sum(values[i][3] for i in values)
    clamped = sum(values[i][2] for i in values)

    def rmse(c: np.ndarray) -> tuple[float, float]:
        e_res = ae @ c - be
        f_sq = c @ hf @ c - 2 * c @ gf + bbf
        return (float(np.sqrt(np.mean(e_res**2))),
                float(np.sqrt(max(f_sq, 0.0) / (3 * na * nf))))

    e0, f0 = rmse(prior)
    e1, f1 = rmse(solution)
    metrics = {
        "frames": float(nf),
        "energy_rmse_gaff2": e0, "energy_rmse_refit": e1,
        "force_rmse_gaff2": f0, "force_rmse_refit": f1,
        "offset": offset,
        "bond_terms": float(len(bonds)), "angle_terms": float(len(angles)),
        "proper_terms": float(len(propers)),
        "bond_groups": float(sum(g.kind == "bond" for g in groups)),
        "angle_groups": float(sum(g.kind == "angle" for g in groups)),
        "proper_groups": float(sum(g.kind == "proper" for g in groups)),
        "parameters": float(ncol),
        "terms_at_bound": float(at_bound),
        "groups_clamped": float(clamped),
        "cross_terms": float(len(cross)),
        "cross_groups": float(sum(g.kind == "cross" for g in groups)),
        "cross_groups_shrunk": float(shrunk),
        "max_r0_shift_nm": max((abs(v[0] - terms["bonds"][a][0]) for a, v in bonds.items()),
                               default=0.0),
        "max_theta0_shift_rad": max((abs(v[0] - terms["angles"][a][0])
                                     for a, v in angles.items()), default=0.0),
        **info,
        "seconds": time.perf_counter() - start,
    }
    return RefitResult(bonds, angles, propers, metrics, cross)

