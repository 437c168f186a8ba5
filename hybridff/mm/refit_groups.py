"""The linear model of :func:`hybridff.mm.refit.fit_bonded`: groups of symmetry-equivalent
terms and their feature columns (energies and forces of each coefficient at given frames)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hybridff.exceptions import DataFormatError
from hybridff.mm.bonded_geometry import (
    angle_geometry,
    bond_geometry,
    cross_geometry,
    dihedral_geometry,
    periodic_torsion_energy_forces,
)

if TYPE_CHECKING:
    from hybridff.mm.refit import RefitOptions

PHASE_TOL = 1e-6


@dataclass
class TermGroup:
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


def class_key(atoms: tuple[int, ...], classes: list[int]) -> tuple[int, ...]:
    c = tuple(int(classes[a]) for a in atoms)
    return min(c, c[::-1])


def term_groups(terms: dict, classes: list[int], options: RefitOptions) -> tuple[list[TermGroup], int]:
    groups: list[TermGroup] = []
    ncol = 0
    powers = (1, 2, 3, 4) if options.anharmonic else (1, 2)
    for kind, table in (("bond", terms.get("bonds", {})), ("angle", terms.get("angles", {}))):
        by_key: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
        for atoms in table:
            by_key.setdefault(class_key(atoms, classes), []).append(tuple(int(a) for a in atoms))
        for members in by_key.values():
            q0, k0 = (float(v) for v in np.mean([table[m][:2] for m in members], axis=0))
            if k0 <= 0:
                raise DataFormatError(f"{kind} {members[0]}: GAFF2 force constant {k0} is not positive; "
                                      "the force-field file is damaged: reinstall hybridff")
            orders = (2,) if kind == "angle" and q0 > math.pi - options.linear_angle else powers
            prior = np.array([k0 / 2 if m == 2 else 0.0 for m in orders])
            groups.append(TermGroup(kind, members, np.arange(ncol, ncol + len(orders)), prior,
                                 orders, q0, k0))
            ncol += len(orders)
    if options.cross_terms:
        for g in [g for g in groups if g.kind == "angle" and g.orders != (2,)]:
            groups.append(cross_group(g, terms.get("bonds", {}), classes, ncol))
            ncol += len(groups[-1].orders)
    by_key = {}
    for atoms in terms.get("Proper", {}):
        by_key.setdefault(class_key(atoms, classes), []).append(tuple(int(a) for a in atoms))
    for members in by_key.values():
        coef: dict[int, float] = {}
        fixed: dict[tuple[int, float], float] = {}
        for atoms in members:  # GAFF2's terms averaged over the group
            for n, phase, k in terms["Proper"][atoms]:
                wrapped = math.remainder(float(phase), 2 * math.pi)
                if abs(wrapped) < PHASE_TOL:
                    coef[int(n)] = coef.get(int(n), 0.0) + k / len(members)
                elif abs(abs(wrapped) - math.pi) < PHASE_TOL:
                    coef[int(n)] = coef.get(int(n), 0.0) - k / len(members)
                else:
                    key = (int(n), float(phase))
                    fixed[key] = fixed.get(key, 0.0) + k / len(members)
        orders = tuple(sorted(set(options.torsion_periodicities) | set(coef)))
        groups.append(TermGroup("proper", members, np.arange(ncol, ncol + len(orders)),
                             np.array([coef.get(n, 0.0) for n in orders]), orders,
                             fixed=[(n, p, k) for (n, p), k in fixed.items()]))
        ncol += len(orders)
    return groups, ncol


def cross_group(angle: TermGroup, bonds: dict, classes: list[int], start: int) -> TermGroup:
    """The stretch-bend / bond-bond group of an angle group (columns from ``start``)."""
    key = class_key(angle.members[0], classes)
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
    return TermGroup("cross", members, np.arange(start, start + len(orders)), np.zeros(len(orders)),
                  orders, refs=(angle.q0, length(a, j), length(j, b)))


def features(groups: list[TermGroup], x: np.ndarray, ncol: int
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
            t, d1, d2, gt, g1, g2 = cross_geometry(x, idx, np.array([g.refs] * len(idx)))
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


def data_range(g: TermGroup, x: np.ndarray, x0: float) -> tuple[float, float]:
    """(min, max) over the frames and the group's terms of ``q - x0``."""
    geometry = bond_geometry if g.kind == "bond" else angle_geometry
    q, _ = geometry(x, np.array(g.members, dtype=int))
    return float(np.min(q - x0)), float(np.max(q - x0))
