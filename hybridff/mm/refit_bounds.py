"""The bounds of :func:`hybridff.mm.refit.fit_bonded` (module docstring there): the bounded
parametrization of bond and angle groups with its active set, the final clamp of each term and
the cross-term shrink rule."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy.optimize import least_squares
from threadpoolctl import threadpool_limits

from hybridff.mm.refit_groups import TermGroup

#: characteristic displacement of the bounded parametrization (bonds nm, angles rad)
LENGTH = {"bond": 0.01, "angle": 0.1}


def recentred(a: np.ndarray, orders: tuple[int, ...], length: float
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


def feasible(params: tuple[float, float, float, float, float] | None, anharmonic: bool,
              margin: float) -> bool:
    if params is None:
        return False
    _, k, c3, c4, _ = params
    if not anharmonic:
        return k > 0
    return k > 0 and c4 > 0 and abs(c3) < margin * (4.0 / 3.0) * math.sqrt(k * c4)


def bounded_coefficients(theta: np.ndarray, g: TermGroup, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients a (len(orders),) of the bounded parametrization ``theta`` of group g and
    their Jacobian da/dθ. θ = (u, κ, γ, s): δ = L u, k = k_GAFF2 κ, c4 = k_GAFF2 / L² γ,
    c3 = margin (4/3) sqrt(k c4) s, with κ, γ > 0 and |s| <= 1 as box bounds."""
    if g.orders == (2,):  # near-linear angle: k only
        return np.array([g.k0 * theta[0] / 2]), np.array([[g.k0 / 2]])
    length = LENGTH[g.kind]
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


#: box bounds of (u, κ, γ, s) (see :func:`bounded_coefficients`)
BOX = ((-5.0, 5.0), (0.02, 50.0), (1e-8, 1e4), (-1.0, 1.0))


def theta_start(a: np.ndarray, g: TermGroup, margin: float) -> np.ndarray:
    """A feasible starting point of the bounded parametrization near coefficients a."""
    def box(value: float, i: int) -> float:
        return min(max(value, BOX[i][0]), BOX[i][1])

    if g.orders == (2,):
        return np.array([box(2 * a[0] / g.k0, 1)])
    length = LENGTH[g.kind]
    params = recentred(a, g.orders, length)
    delta, k, c3, c4 = (0.0, g.k0, 0.0, 0.0) if params is None else params[:4]
    u = box(delta / length, 0) if abs(delta) <= 3 * length else 0.0
    kappa = box(k / g.k0, 1)
    if len(g.orders) == 2:
        return np.array([u, kappa])
    gamma = box(c4 / (g.k0 / length**2), 2)
    bound = margin * (4.0 / 3.0) * math.sqrt(g.k0 * kappa * gamma * g.k0 / length**2)
    return np.array([u, kappa, gamma, box(c3 / bound, 3)])


def group_ok(c: np.ndarray, g: TermGroup, margin: float) -> bool:
    """Whether coefficients c of bond/angle group g meet the bounds (module docstring)."""
    if g.orders == (2,):
        return bool(c[0] > 0)
    return feasible(recentred(c, g.orders, LENGTH[g.kind]), len(g.orders) == 4, margin)


#: rounds of the active set and evaluations of one bounded solve: a refit from a few frames
#: (many groups the data hardly determine) must not take minutes; see fit_bonded's clamp
MAX_ACTIVE_ROUNDS = 3
MAX_BOUNDED_EVALUATIONS = 600


def bounded_solution(groups: list[TermGroup], matrix: np.ndarray, free_solution: np.ndarray,
                      margin: float) -> tuple[np.ndarray, dict[str, float]]:
    """Minimize (c - ĉ)ᵀ M (c - ĉ) with the bond and angle groups that break the bounds in
    their bounded parametrization (an active set, grown while the others break them too);
    every other coefficient is linear and eliminated exactly (Schur complement)."""
    candidates = [g for g in groups if g.kind in ("bond", "angle")]
    active = [g for g in candidates if not group_ok(free_solution[g.columns], g, margin)]
    solution = free_solution
    iterations = 0
    for _ in range(MAX_ACTIVE_ROUNDS):  # what still breaks a bound then is clamped in fit_bonded
        if not active:
            break
        solution, nit = solve_active(active, matrix, free_solution, margin)
        iterations += nit
        more = [g for g in candidates if g not in active
                and not group_ok(solution[g.columns], g, margin)]
        if not more:
            break
        active += more
    return solution, {"bounded_groups": float(len(active)), "bound_iterations": float(iterations)}


def solve_active(active: list[TermGroup], matrix: np.ndarray, free_solution: np.ndarray,
                  margin: float) -> tuple[np.ndarray, int]:
    cols = np.concatenate([g.columns for g in active])
    other = np.setdiff1d(np.arange(len(free_solution)), cols)
    m_cc = matrix[np.ix_(cols, cols)]
    m_cf = matrix[np.ix_(cols, other)]
    coupling = np.linalg.lstsq(matrix[np.ix_(other, other)], m_cf.T, rcond=None)[0]
    schur = m_cc - m_cf @ coupling
    target = free_solution[cols]
    starts = [theta_start(free_solution[g.columns], g, margin) for g in active]
    splits = np.cumsum([len(t) for t in starts])[:-1]

    def coefficients(theta: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        parts = [bounded_coefficients(t, g, margin) for t, g in zip(np.split(theta, splits), active, strict=True)]
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

    lower, upper = zip(*(b for t in starts for b in ([BOX[1]] if len(t) == 1 else BOX[:len(t)])),
                       strict=True)
    start = np.clip(np.concatenate(starts), lower, upper)
    # one BLAS thread: trf's SVD of this small matrix, run multithreaded on a machine whose
    # cores were busy, stalled for many minutes (0.8 s on one thread)
    with threadpool_limits(limits=1, user_api="blas"):
        result = least_squares(residual, start, jac=jacobian, bounds=(lower, upper),
                               method="trf", x_scale="jac", xtol=1e-10, ftol=1e-10, gtol=1e-10,
                               max_nfev=MAX_BOUNDED_EVALUATIONS)
    solution = free_solution.copy()
    a, _ = coefficients(result.x)
    solution[cols] = a
    solution[other] = free_solution[other] - coupling @ (a - target)
    return solution, int(result.nfev)


def pinned_solution(groups: list[TermGroup], matrix: np.ndarray, free_solution: np.ndarray,
                     pins: dict[int, float], margin: float) -> tuple[np.ndarray, dict[str, float]]:
    """Minimize (c - ĉ)ᵀ M (c - ĉ) with the coefficients ``pins`` (column -> value) held fixed
    (cross terms only), the bonds and angles under their bounds (:func:`bounded_solution`)."""
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
    part, info = bounded_solution(reduced, m_kk, free_solution[keep] - step, margin)
    solution = np.empty_like(free_solution)
    solution[keep] = part
    solution[fixed] = held
    return solution, info


def bonded_values(g: TermGroup, c: np.ndarray, margin: float
                   ) -> tuple[tuple[float, float, float, float], float, bool, bool]:
    """``(x0, k, c3, c4)``, the polynomial's minimum value, whether a bound had to be forced
    and whether |c3| sits at its bound, for bond or angle group g with coefficients c."""
    clamped = False
    if g.orders == (2,):
        params = (0.0, 2 * float(c[0]), 0.0, 0.0, 0.0)
    else:
        params = recentred(c, g.orders, LENGTH[g.kind])
        if params is None or params[1] <= 0.0:  # no minimum: keep GAFF2's term
            clamped = True
            params = recentred(g.prior, g.orders, LENGTH[g.kind]) or (
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


def cross_constants(g: TermGroup, c: np.ndarray) -> tuple[float, float, float]:
    """(k_sb1, k_sb2, k_bb) of cross group g from its coefficients c."""
    by_order = dict(zip(g.orders, (float(v) for v in c), strict=True))
    if 3 in by_order:
        return by_order[3], by_order[3], by_order[0]
    return by_order[1], by_order[2], by_order[0]


def curvature(value: tuple[float, float, float, float], reference: float) -> float:
    """The curvature a bond or angle term ``(x0, k, c3, c4)`` counts with in the cross-term
    rule: the smaller of its secant curvature ``min_e 2 E(e) / e² = k - c3² / (2 c4)`` (so that
    ``E(e) >= ½ κ e²`` at any e) and its curvature at ``reference`` (GAFF2's value)."""
    x0, k, c3, c4 = value
    e = reference - x0
    secant = k - c3**2 / (2 * c4) if c4 > 0 else k
    return min(secant, k + 6 * c3 * e + 12 * c4 * e**2)


def cross_shrink(groups: list[TermGroup], solution: np.ndarray,
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
        k_sb1, k_sb2, k_bb = cross_constants(g, solution[g.columns])
        coupling = np.array([[0.0, k_sb1, k_sb2], [k_sb1, 0.0, k_bb], [k_sb2, k_bb, 0.0]])
        factor = 1.0
        for a, j, b in g.members:
            diagonal = np.array([
                curvature(angle_value[(a, j, b)], g.refs[0]),
                curvature(bond_value[(a, j)], g.refs[1]) / share[frozenset((a, j))],
                curvature(bond_value[(j, b)], g.refs[2]) / share[frozenset((j, b))]])
            if np.any(diagonal <= 0.0):
                factor = 0.0
                break
            lowest = float(np.linalg.eigvalsh(coupling / np.sqrt(np.outer(diagonal, diagonal)))[0])
            if lowest < -margin:
                factor = min(factor, margin / -lowest)
        if factor < 1.0:
            out[i] = factor
    return out
