"""Element-aware symmetry-function descriptors of local atomic environments (TorchScript-able).

Each atom ``i`` is described by

- radial terms, one block per neighbour element ``e``:
  ``G_R[i, e, s] = sum_{j in e} exp(-eta_r (r_ij - R_s)^2) f_c(r_ij)``
- angular terms, one block per unordered pair of neighbour elements ``(e, e')`` and power
  ``n = 1..max_angular_order``:
  ``G_A[i, ee', a, n] = sum_{j in e, k in e'} cos^n(t_jik) w_a(r_ij) w_a(r_ik)`` with
  ``w_a(r) = exp(-eta_a (r - R_a)^2) f_c(r)``. Linear combinations of these powers give the
  familiar ``(1 + lambda cos t)^zeta`` terms; they are computed from Cartesian moment tensors
  in O(N^2) (terms with j = k are kept: smooth radial functions, harmless), each symmetric
  tensor stored once per distinct component (3, 6, 10 for n = 1, 2, 3 instead of 3^n) with its
  multinomial weight

with the smooth cosine cutoff ``f_c(r) = (cos(pi r / r_c) + 1) / 2`` for ``r < r_c`` and 0
beyond, whose value and slope both vanish at ``r_c`` (energy and forces continuous there). The
angular form uses ``cos t`` directly (no ``acos``), so it is smooth for linear arrangements too.

Positions are in nm. Pairs are dense (all pairs of the ML region), which suits the tens of
atoms a local correction covers. With a box, pair vectors use the minimum
image, valid while the cutoff is below half the shortest box height.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class DescriptorSpec:
    """Hyper-parameters of the symmetry functions (lengths in nm)."""

    elements: tuple[int, ...]
    cutoff: float = 0.5
    radial_shifts: tuple[float, ...] = tuple(0.08 + 0.03 * i for i in range(14))
    radial_eta: float = 1600.0
    angular_shifts: tuple[float, ...] = (0.09, 0.14, 0.20, 0.28)
    angular_eta: float = 500.0
    max_angular_order: int = 3

    def to_dict(self) -> dict:
        """JSON-ready form (stored in the model file)."""
        d = asdict(self)
        d["elements"] = list(self.elements)
        d["radial_shifts"] = list(self.radial_shifts)
        d["angular_shifts"] = list(self.angular_shifts)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DescriptorSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            elements=tuple(int(z) for z in d["elements"]),
            cutoff=float(d["cutoff"]),
            radial_shifts=tuple(float(x) for x in d["radial_shifts"]),
            radial_eta=float(d["radial_eta"]),
            angular_shifts=tuple(float(x) for x in d["angular_shifts"]),
            angular_eta=float(d["angular_eta"]),
            max_angular_order=int(d["max_angular_order"]),
        )

    @property
    def n_features(self) -> int:
        """Length of one atom's descriptor vector."""
        n_el = len(self.elements)
        n_pairs = n_el * (n_el + 1) // 2
        return n_el * len(self.radial_shifts) + n_pairs * len(self.angular_shifts) * self.max_angular_order


def minimum_image(vectors: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Wrap pair vectors (..., 3) into the minimum image of an OpenMM (reduced, triclinic) box.

    ``box`` rows are the box vectors a, b, c with a along x and b in the xy plane (OpenMM's
    reduced form); the c, b, a order of subtraction is exact for such boxes.
    """
    for axis in (2, 1, 0):
        vec = box[axis]
        shift = torch.round(vectors[..., axis] / vec[axis])
        vectors = vectors - shift.unsqueeze(-1) * vec
    return vectors


def pair_geometry(positions: torch.Tensor, box: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dense pair geometry of positions (B, N, 3): vectors (B, N, N, 3) with [b, i, j] =
    x_j - x_i (minimum image with a box), distances (B, N, N) and the identity (N, N).

    The distances carry +1 on the diagonal, which keeps sqrt differentiable there; callers
    mask the diagonal out."""
    n_atoms = positions.shape[1]
    vectors = positions.unsqueeze(1) - positions.unsqueeze(2)
    if box is not None:
        vectors = minimum_image(vectors, box.to(positions.dtype))
    eye = torch.eye(n_atoms, dtype=positions.dtype, device=positions.device)
    r = torch.sqrt((vectors * vectors).sum(-1) + eye)
    return vectors, r, eye


def cosine_cutoff(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Smooth cosine cutoff: 1 at r=0, 0 with zero slope at and beyond ``cutoff``."""
    inside = r < cutoff
    r_in = torch.where(inside, r, torch.zeros_like(r))
    value = 0.5 * torch.cos(math.pi * r_in / cutoff) + 0.5
    return torch.where(inside, value, torch.zeros_like(r))


class SymmetryFunctions(torch.nn.Module):
    """Positions (B, N, 3) + species indices (N,) -> descriptors (B, N, n_features)."""

    def __init__(self, spec: DescriptorSpec) -> None:
        super().__init__()
        self.n_elements = len(spec.elements)
        self.cutoff = float(spec.cutoff)
        self.radial_eta = float(spec.radial_eta)
        self.angular_eta = float(spec.angular_eta)
        self.n_features = spec.n_features
        self.register_buffer(
            "radial_shifts", torch.tensor(spec.radial_shifts, dtype=torch.float64)
        )
        self.register_buffer(
            "angular_shifts", torch.tensor(spec.angular_shifts, dtype=torch.float64)
        )
        self.max_angular_order = int(spec.max_angular_order)
        n = self.n_elements
        upper = torch.triu_indices(n, n)
        self.register_buffer("pair_rows", upper[0].clone())
        self.register_buffer("pair_cols", upper[1].clone())
        exponents, weights, orders = symmetric_monomials(self.max_angular_order)
        self.register_buffer("exponents", exponents)  # (C, 3): powers of u_x, u_y, u_z
        self.register_buffer("multiplicity", weights)  # (C,): n! / (p! q! r!)
        self.register_buffer("order_of_component", torch.nn.functional.one_hot(
            orders, self.max_angular_order).to(torch.float64))  # (C, orders)

    @classmethod
    def like(cls, descriptor: torch.nn.Module) -> SymmetryFunctions:
        """A fresh (this code's) module with the settings of ``descriptor``, e.g. one loaded from
        an older model file: same features to rounding. Only the number of elements matters to
        the computation, so the spec's element numbers are placeholders."""
        return cls(DescriptorSpec(
            elements=tuple(range(int(descriptor.n_elements))),
            cutoff=float(descriptor.cutoff),
            radial_shifts=tuple(float(x) for x in descriptor.radial_shifts.tolist()),
            radial_eta=float(descriptor.radial_eta),
            angular_shifts=tuple(float(x) for x in descriptor.angular_shifts.tolist()),
            angular_eta=float(descriptor.angular_eta),
            max_angular_order=int(descriptor.max_angular_order)))

    def cutoff_function(self, r: torch.Tensor) -> torch.Tensor:
        """Smooth cosine cutoff: 1 at r=0, 0 with zero slope at and beyond the cutoff."""
        return cosine_cutoff(r, self.cutoff)

    def forward(
        self, positions: torch.Tensor, species: torch.Tensor, box: torch.Tensor | None = None
    ) -> torch.Tensor:
        batch, n_atoms = positions.shape[0], positions.shape[1]
        dtype = positions.dtype
        vectors, r, eye = pair_geometry(positions, box)  # [b, i, j] = x_j - x_i
        not_self = (1.0 - eye).unsqueeze(0)
        fc = self.cutoff_function(r) * not_self  # (B, N, N)
        onehot = torch.nn.functional.one_hot(species, self.n_elements).to(dtype)  # (N, E)

        # radial: (B, N, N, S) summed over j per element
        rs = self.radial_shifts.to(dtype)
        radial = torch.exp(-self.radial_eta * (r.unsqueeze(-1) - rs) ** 2) * fc.unsqueeze(-1)
        g_rad = torch.einsum("bijs,je->bies", radial, onehot).reshape(batch, n_atoms, -1)

        # angular: moments of bond-angle cosines from Cartesian moment tensors.
        # M_n[i, e, a] = sum_{j in e} w_a(r_ij) u_ij^(x n), and <M_n[e], M_n[g]> equals
        # sum_{j in e, k in g} w_a(r_ij) w_a(r_ik) cos^n(t_jik): O(N^2) work, not O(N^3).
        # M_n is symmetric: each distinct component u_x^p u_y^q u_z^r once, weighted in the
        # inner product by how often it occurs in the full tensor
        unit = vectors / r.unsqueeze(-1)  # (B, N, N, 3)
        ra = self.angular_shifts.to(dtype)
        w = torch.exp(-self.angular_eta * (r.unsqueeze(-1) - ra) ** 2) * fc.unsqueeze(-1)
        powers = [torch.ones_like(unit)]
        for _ in range(self.max_angular_order):
            powers.append(powers[-1] * unit)
        table = torch.stack(powers, dim=-1)  # (B, N, N, 3, order + 1): u_d^k
        components = (table[..., 0, :].index_select(-1, self.exponents[:, 0])
                      * table[..., 1, :].index_select(-1, self.exponents[:, 1])
                      * table[..., 2, :].index_select(-1, self.exponents[:, 2]))  # (B, N, N, C)
        moment = torch.einsum("bija,bijc,je->bieac", w, components, onehot)  # (B, N, E, A, C)
        products = (moment * self.multiplicity.to(dtype))[:, :, self.pair_rows] * moment[
            :, :, self.pair_cols]  # (B, N, P, A, C)
        gram = torch.matmul(products, self.order_of_component.to(dtype))  # (B, N, P, A, n)
        g_ang = gram.permute(0, 1, 4, 2, 3).reshape(batch, n_atoms, -1)  # order-major blocks
        return torch.cat([g_rad, g_ang], dim=-1)


def symmetric_monomials(max_order: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The distinct components u_x^p u_y^q u_z^r (p + q + r = n, n = 1..max_order) of the
    symmetric tensors u^(x n): exponents (C, 3), multiplicities n!/(p! q! r!) (C,) and each
    one's order index n - 1 (C,)."""
    exponents, weights, orders = [], [], []
    for n in range(1, max_order + 1):
        for p in range(n, -1, -1):
            for q in range(n - p, -1, -1):
                exponents.append((p, q, n - p - q))
                weights.append(math.factorial(n) / (math.factorial(p) * math.factorial(q)
                                                    * math.factorial(n - p - q)))
                orders.append(n - 1)
    return (torch.tensor(exponents, dtype=torch.long), torch.tensor(weights, dtype=torch.float64),
            torch.tensor(orders, dtype=torch.long))
