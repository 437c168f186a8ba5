"""Geometry and energies of bonded terms in numpy, for :mod:`hybridff.mm.refit`.

Bond lengths, angles and dihedrals of many frames at once with their gradients; the energy and
forces of OpenMM periodic torsions, of stretch-bend / bond-bond cross terms and of the refitted
anharmonic bonds and angles (with their training-data range). Frames are (F, N, 3) nm,
energies kJ/mol, forces kJ/mol/nm.
"""

from __future__ import annotations

import math

import numpy as np


def with_range(value: tuple[float, ...]) -> tuple[float, ...]:
    """A bond/angle value as (x0, k, c3, c4, lo, hi, a); records before version 3 have no data
    range (the polynomial holds everywhere), before version 4 no Morse tail (a = 0: the
    tangent continuation beyond hi)."""
    value = tuple(value)
    if len(value) == 4:
        value = (*value, -math.inf, math.inf)
    return value if len(value) == 7 else (*value[:6], 0.0)


def morse_tail_width(k: np.ndarray, c3: np.ndarray, low: float, high: float) -> np.ndarray:
    """The Morse exponent a (1/nm) of a bond whose harmonic and cubic coefficients are ``k``
    and ``c3``: a Morse curve D (1 - e^(-a d))² expands as D a² d² - D a³ d³ + ..., so
    a = -2 c3 / k, clipped to [low, high] (also for c3 >= 0, where the fit saw no softening)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(np.asarray(k) > 0, -2.0 * np.asarray(c3) / np.asarray(k), low)
    return np.clip(np.nan_to_num(a, nan=low), low, high)


def _morse_edge(d: np.ndarray, k: np.ndarray, c3: np.ndarray, c4: np.ndarray,
                a: np.ndarray, edge: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy and slope of the Morse continuation from ``edge`` (matched there in energy and
    slope): E(e) + E'(e) (m(d) - m(e)) / m'(e), m = (1 - e^(-a d))²."""
    e_edge = 0.5 * k * edge**2 + c3 * edge**3 + c4 * edge**4
    s_edge = k * edge + 3 * c3 * edge**2 + 4 * c4 * edge**3
    z_edge = np.exp(-a * edge)
    dm_edge = 2 * a * z_edge * (1 - z_edge)
    z = np.exp(-a * d)
    return (e_edge + s_edge * ((1 - z) ** 2 - (1 - z_edge) ** 2) / dm_edge,
            s_edge * 2 * a * z * (1 - z) / dm_edge)


def anharmonic_energy_slope(d: np.ndarray, k: np.ndarray, c3: np.ndarray, c4: np.ndarray,
                            lo: np.ndarray, hi: np.ndarray, a: np.ndarray | float = 0.0
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Energy and dE/dd of a refitted bond or angle term at ``d = q - x0``: ``0.5 k d² + c3 d³
    + c4 d⁴`` inside the training data's range [lo, hi]; beyond it the cubic and quartic part
    continues along its tangent, so the term is harmonic with the fitted k there (what the data
    cannot tell, the polynomial does not guess).

    A bond with Morse tails (``a`` > 0, lo < 0 < hi) follows a Morse curve m = (1 - e^(-a d))²
    beyond each edge instead, matched there in energy and slope: stretched past hi it softens
    (the force peaks at d = ln 2 / a, then decays, the energy levels off), squeezed below lo its
    wall rises exponentially, steeper than harmonic. ANHARMONIC_ENERGY and MORSE_TAIL_ENERGY
    are the same in OpenMM."""
    dc = np.clip(d, lo, hi)
    slope = 3 * c3 * dc**2 + 4 * c4 * dc**3
    energy = 0.5 * k * d**2 + c3 * dc**3 + c4 * dc**4 + slope * (d - dc)
    de = k * d + slope
    a = np.broadcast_to(np.asarray(a, dtype=float), np.shape(hi))
    tail = (a > 0) & (hi > 0) & (lo < 0)
    if not np.any(tail):
        return energy, de
    a_t = np.where(tail, a, 1.0)
    for edge, beyond in ((np.where(tail, hi, 1.0), tail & (d > hi)),
                         (np.where(tail, lo, -1.0), tail & (d < lo))):
        e_m, s_m = _morse_edge(np.where(beyond, d, edge), k, c3, c4, a_t, edge)
        energy = np.where(beyond, e_m, energy)
        de = np.where(beyond, s_m, de)
    return energy, de


#: :func:`anharmonic_energy_slope`'s cubic and quartic part as an OpenMM expression in ``q``
ANHARMONIC_ENERGY = ("c3*dc^3 + c4*dc^4 + (3*c3*dc^2 + 4*c4*dc^3)*(d - dc); "
                     "dc = min(max(d, lo), hi); d = {q} - x0")

#: the same for a bond with Morse tails: beyond each edge the whole term minus the harmonic
#: part that the HarmonicBondForce holds (per-bond parameters x0, k, c3, c4, lo, hi, a)
MORSE_TAIL_ENERGY = (
    "select(step(d - hi), up - 0.5*k*d^2, select(step(lo - d), down - 0.5*k*d^2, inside)); "
    "up = eh + sh*((1 - z)^2 - (1 - zh)^2)/(2*a*zh*(1 - zh)); "
    "down = el + sl*((1 - z)^2 - (1 - zl)^2)/(2*a*zl*(1 - zl)); "
    "z = exp(-a*d); zh = exp(-a*hi); zl = exp(-a*lo); "
    "eh = 0.5*k*hi^2 + c3*hi^3 + c4*hi^4; sh = k*hi + 3*c3*hi^2 + 4*c4*hi^3; "
    "el = 0.5*k*lo^2 + c3*lo^3 + c4*lo^4; sl = k*lo + 3*c3*lo^2 + 4*c4*lo^3; "
    "inside = " + ANHARMONIC_ENERGY)


# ----------------------------------------------------------------------------- geometry


def as_frames(positions_nm: np.ndarray) -> np.ndarray:
    x = np.asarray(positions_nm, dtype=np.float64)
    return x[None] if x.ndim == 2 else x


def scatter_add(out: np.ndarray, idx: np.ndarray, values: np.ndarray) -> None:
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
    x = as_frames(positions_nm)
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
    scatter_add(forces, idx, -de[..., None, None] * dphi)
    return energy, forces


def cross_geometry(x: np.ndarray, idx: np.ndarray, refs: np.ndarray
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
    x = as_frames(positions_nm)
    energy = np.zeros(len(x))
    forces = np.zeros(x.shape)
    if not cross:
        return energy, forces
    idx = np.array(list(cross), dtype=int)
    p = np.array(list(cross.values()), dtype=float)
    t, d1, d2, gt, g1, g2 = cross_geometry(x, idx, p[:, :3])
    sb = p[:, 3] * d1 + p[:, 4] * d2
    energy += np.sum(t * sb + p[:, 5] * d1 * d2, axis=1)
    grad = (sb[..., None, None] * gt
            + t[..., None, None] * (p[:, 3, None, None] * g1 + p[:, 4, None, None] * g2)
            + p[:, 5, None, None] * (d2[..., None, None] * g1 + d1[..., None, None] * g2))
    scatter_add(forces, idx, -grad)
    return energy, forces
