"""The charge model's network: message passing on the graph -> (chi, J) per atom -> QEq charges.

The network reads out an electronegativity ``chi_i`` and a hardness ``J_i > 0`` per atom; the
charges are the closed-form solution of charge equilibration with the total fixed to the
formal charge Q:

    q_i = (lambda - chi_i) / J_i,    lambda = (Q + sum_j chi_j / J_j) / (sum_j 1 / J_j)

which minimizes sum_i (chi_i q_i + J_i q_i^2 / 2) subject to sum_i q_i = Q.

A model file may hold an ensemble of K independently initialized members, stored as stacked
weights and evaluated together (one batched matrix product per layer); each member's charges
have the exact total, and so does their average.
"""

from __future__ import annotations

import torch
from torch import nn

from hybridff.charges.model.features import BOND_FEATURES, Graph, atom_feature_size
from hybridff.ml.layers import StackedLinear


class StackedMLP(nn.Module):
    """Linear -> SiLU -> Linear, per member."""

    def __init__(self, members: int, n_in: int, n_hidden: int, n_out: int) -> None:
        super().__init__()
        self.inner = StackedLinear.initialized(members, n_in, n_hidden)
        self.outer = StackedLinear.initialized(members, n_hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(nn.functional.silu(self.inner(x)))


class StackedLayerNorm(nn.Module):
    """Layer norm over the feature axis with a scale and shift per member."""

    def __init__(self, members: int, hidden: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(members, 1, hidden))
        self.bias = nn.Parameter(torch.zeros(members, 1, hidden))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return nn.functional.layer_norm(h, h.shape[-1:]) * self.weight + self.bias


class MessagePassingLayer(nn.Module):
    """h_i <- h_i + U([h_i, sum_j M([h_j, e_ij])]), then layer norm (for K members at once)."""

    def __init__(self, members: int, hidden: int, n_bond: int) -> None:
        super().__init__()
        self.message = StackedMLP(members, hidden + n_bond, hidden, hidden)
        self.update = StackedMLP(members, 2 * hidden, hidden, hidden)
        self.norm = StackedLayerNorm(members, hidden)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        src, dst = edge_index[0], edge_index[1]
        # M's first layer on [h_j, e_ij], computed per atom before gathering along the edges
        w = self.message.inner.weight
        hidden = h.shape[-1]
        pre = torch.bmm(h, w[:, :hidden])[:, src] + torch.matmul(e, w[:, hidden:])
        m = self.message.outer(nn.functional.silu(pre + self.message.inner.bias))
        agg = torch.zeros_like(h).index_add_(1, dst, m)
        return self.norm(h + self.update(torch.cat([h, agg], dim=2)))


class ChargeEquilibrationNet(nn.Module):
    """Message passing on the molecular graph -> (chi, J) per atom -> QEq charges.

    ``members`` independently initialized networks share nothing but the input; they run
    together as stacked weights. Outputs carry a leading member axis of length K.
    """

    def __init__(
        self, n_atom: int, n_bond: int, hidden: int = 96, layers: int = 4, members: int = 1
    ) -> None:
        super().__init__()
        self.members = members
        self.embed = StackedLinear.initialized(members, n_atom, hidden)
        self.layers = nn.ModuleList(
            MessagePassingLayer(members, hidden, n_bond) for _ in range(layers)
        )
        self.readout = StackedMLP(members, hidden, hidden, 2)

    def electronegativity_hardness(
        self, x: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-member, per-atom electronegativity chi and hardness J (> 0), each (K, n_atoms).

        The readout is an initial charge q0_i and a softness s_i > 0, with chi_i = -q0_i / s_i
        and J_i = 1 / s_i, so that QEq gives q_i = q0_i + s_i (Q - sum q0) / sum s: the same
        equilibration, parameterized so that training starts as plain charge regression.
        """
        h = self.embed(x.expand(self.members, -1, -1))
        e = e.unsqueeze(0)
        for layer in self.layers:
            h = layer(h, edge_index, e)
        out = self.readout(h)
        q0 = out[..., 0]
        softness = nn.functional.softplus(out[..., 1]) + 1e-3
        return -q0 / softness, 1.0 / softness

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        e: torch.Tensor,
        molecule_index: torch.Tensor,
        total_charge: torch.Tensor,
    ) -> torch.Tensor:
        """Charges (e) per member, (K, n_atoms); each member's sum per molecule is
        ``total_charge``. The ensemble's charges are the mean over the first axis."""
        chi, hardness = self.electronegativity_hardness(x, edge_index, e)
        return torch.stack(
            [qeq(c, j, molecule_index, total_charge) for c, j in zip(chi, hardness, strict=True)]
        )


def qeq(
    chi: torch.Tensor, hardness: torch.Tensor, molecule_index: torch.Tensor, total: torch.Tensor
) -> torch.Tensor:
    """Closed-form QEq charges per molecule (works in the dtype of the inputs)."""
    n_mol = total.shape[0]
    inv = 1.0 / hardness
    sum_inv = torch.zeros(n_mol, dtype=chi.dtype).index_add_(0, molecule_index, inv)
    sum_chi = torch.zeros(n_mol, dtype=chi.dtype).index_add_(0, molecule_index, chi * inv)
    lam = (total.to(chi.dtype) + sum_chi) / sum_inv
    return (lam[molecule_index] - chi) * inv


def graph_tensors(g: Graph, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    """The model's inputs from a :class:`Graph`."""
    return (
        torch.as_tensor(g.atom_features, dtype=dtype),
        torch.as_tensor(g.edge_index),
        torch.as_tensor(g.edge_features, dtype=dtype),
        torch.as_tensor(g.molecule_index),
        torch.as_tensor(g.total_charge, dtype=dtype),
    )


def network_for(elements: list[str], hyperparameters: dict) -> ChargeEquilibrationNet:
    """An untrained network of the shape a model file's metadata describes (``hidden``,
    ``layers``, ``members``) over ``elements``; float32."""
    hp = hyperparameters
    return ChargeEquilibrationNet(atom_feature_size(list(elements)), len(BOND_FEATURES),
                                  hp["hidden"], hp["layers"], hp.get("members", 1))
