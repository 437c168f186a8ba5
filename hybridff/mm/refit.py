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

**Bonds beyond the data follow a Morse curve** (``morse_tail``, on by default). A real bond
stretched far past what MD visits softens toward dissociation and one squeezed hard meets a
wall steeper than harmonic; a harmonic continuation gets both wrong. On normal-mode displaced
conformers (soft modes followed rectilinearly stretch X-H bonds by 0.2-0.3 Å) the stretched
side made most of the bespoke MM's error, on randomly displaced conformers the squeezed side.
Beyond each edge a bond therefore follows a Morse curve matched in energy and force at the
edge, with the Morse exponent its own fitted anharmonicity implies, a = -2 c3 / k, clipped to
1-4 per Angstrom (:func:`~hybridff.mm.bonded_geometry.morse_tail_width`): stretched, the force
peaks at d = ln 2 / a and then decays and the energy levels off (near the well depth
k / (2 a²), 85 kcal/mol for a C-H bond at a = 2 per Angstrom); squeezed, the wall rises
exponentially. Angles keep the tangent.

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
from dataclasses import dataclass, field

import numpy as np
from rdkit import Chem

from hybridff.exceptions import DataFormatError
from hybridff.mm.bonded_geometry import (  # noqa: F401  (public names of this module too)
    ANHARMONIC_ENERGY,
    MORSE_TAIL_ENERGY,
    angle_geometry,
    anharmonic_energy_slope,
    as_frames,
    bond_geometry,
    cross_energy_forces,
    dihedral_geometry,
    morse_tail_width,
    periodic_torsion_energy_forces,
    scatter_add,
    with_range,
)
from hybridff.mm.refit_bounds import (
    bonded_values,
    bounded_solution,
    cross_constants,
    cross_shrink,
    pinned_solution,
)
from hybridff.mm.refit_groups import data_range, features, term_groups


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
    #: bonds beyond the training range follow a Morse curve (module docstring) instead of
    #: staying harmonic
    morse_tail: bool = True
    #: bounds of the Morse exponent a = -2 c3 / k, 1/nm (1 to 4 per Angstrom)
    morse_width_range: tuple[float, float] = (10.0, 40.0)


@dataclass
class RefitResult:
    """Refitted bonded terms of one molecule (keys: the atom tuples of the input ``terms``).

    ``bonds`` (i, j) -> (r0 nm, k kJ/mol/nm², c3 kJ/mol/nm³, c4 kJ/mol/nm⁴, lo nm, hi nm[, a
    1/nm]) with ``E = 0.5 k d² + c3 d³ + c4 d⁴``, ``d = r - r0``, inside the training frames'
    range [lo, hi] of d and beyond it harmonic with the same k or, with a Morse exponent
    ``a``, a Morse curve (:func:`anharmonic_energy_slope`);
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
        x = as_frames(positions_nm)
        energy = np.zeros(len(x))
        forces = np.zeros(x.shape)
        for table, geometry in ((self.bonds, bond_geometry), (self.angles, angle_geometry)):
            if not table:
                continue
            idx = np.array(list(table), dtype=int)
            p = np.array([with_range(v) for v in table.values()], dtype=float)
            q, dq = geometry(x, idx)
            e, de = anharmonic_energy_slope(q - p[:, 0], *p[:, 1:].T)
            energy += np.sum(e, axis=1)
            scatter_add(forces, idx, -de[..., None, None] * dq)
        e, f = periodic_torsion_energy_forces(x, self.propers)
        e_c, f_c = cross_energy_forces(x, self.cross)
        return energy + e + e_c, forces + f + f_c


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
    x = as_frames(positions_nm)
    e_t = np.asarray(target_energies, dtype=np.float64).reshape(-1)
    f_t = np.asarray(target_forces, dtype=np.float64).reshape(x.shape)
    nf, na = x.shape[:2]
    if mol is not None and mol.GetNumAtoms() != na:
        raise DataFormatError(f"frames have {na} atoms, the molecule {mol.GetNumAtoms()}: give "
                              "the frames of this molecule")
    if len(e_t) != nf or len(classes) != na:
        raise DataFormatError(f"{nf} frames but {len(e_t)} energies, or {na} atoms but "
                              f"{len(classes)} symmetry classes: give one of each per frame/atom")
    groups, ncol = term_groups(terms, classes, options)
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
        e_c, f_c, e_fix, f_fix = features(groups, x[chunk], ncol - 1)
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
    solution, info = bounded_solution(groups, matrix, free, margin)
    values = {i: bonded_values(g, solution[g.columns], margin)
              for i, g in enumerate(groups) if g.kind in ("bond", "angle")}
    shrink = cross_shrink(groups, solution, values, margin)
    shrunk = len(shrink)
    if shrink:  # hold those cross constants at the shrunk values and solve the rest again
        pins = {int(c): factor * float(solution[c]) for i, factor in shrink.items()
                for c in groups[i].columns}
        solution, info = pinned_solution(groups, matrix, free, pins, margin)
        values = {i: bonded_values(g, solution[g.columns], margin)
                  for i, g in enumerate(groups) if g.kind in ("bond", "angle")}
        for i, factor in cross_shrink(groups, solution, values, margin).items():
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
            value = (*g.refs, *cross_constants(g, c))
            for atoms in g.members:
                cross[atoms] = value
        else:
            value, e_min, _, _ = values[i]
            offset += len(g.members) * e_min
            value = (*value, *data_range(g, x, value[0]))
            if g.kind == "bond" and options.morse_tail and value[4] < 0 < value[5]:
                value = (*value, float(morse_tail_width(value[1], value[2],
                                                        *options.morse_width_range)))
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
