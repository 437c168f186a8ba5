"""Network layers shared by hybridff's models: :class:`StackedLinear`, K linear maps run side
by side as one batched matrix product. The ensembles of the charge model
(:mod:`hybridff.charges.model.network`, trained stacked) and of the ML correction
(:class:`~hybridff.ml.model.FusedEnsemble`, each layer of all elements and members stacked for
inference) both use it."""

from __future__ import annotations

import torch
from torch import nn


class StackedLinear(nn.Module):
    """K independent linear maps applied together: (K, n, n_in) -> (K, n, n_out).

    ``weight`` is (K, n_in, n_out), ``bias`` (K, 1, n_out); both are trainable parameters, or
    with ``trainable=False`` buffers (an inference copy: nothing to train, moved and saved
    with the module all the same). Either way they are the module's ``weight`` and ``bias``
    in its ``state_dict``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, trainable: bool = True) -> None:
        super().__init__()
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias)
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias)

    @classmethod
    def initialized(cls, members: int, n_in: int, n_out: int) -> StackedLinear:
        """K fresh trainable maps, each drawn as :class:`torch.nn.Linear` draws its weights
        (uniform within 1/sqrt(n_in); the weights first, then the biases)."""
        bound = 1.0 / n_in**0.5
        weight = torch.empty(members, n_in, n_out).uniform_(-bound, bound)
        bias = torch.empty(members, 1, n_out).uniform_(-bound, bound)
        return cls(weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)
