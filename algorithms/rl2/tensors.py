"""Typed views of torch modules whose tensors the stubs cannot see.

A one-layer ``nn.GRU`` keeps its weights as attributes named at run time (``weight_ih_l0``...), and under
``weight_norm`` they become parametrizations computed on each access; both are reached through
``nn.Module.__getattr__``, which torch's stubs type as ``Tensor | Module``. These views only tell the type
checker what the attributes are: they return the module itself, so every access behaves as before.
"""

from __future__ import annotations

from typing import Protocol, cast

import torch
from torch import nn


class GRUTensors(Protocol):
    """The weights and biases of a one-layer GRU (layer 0), as the tensors they are."""

    weight_ih_l0: torch.Tensor
    weight_hh_l0: torch.Tensor
    bias_ih_l0: torch.Tensor
    bias_hh_l0: torch.Tensor


def gru_tensors(gru: nn.GRU) -> GRUTensors:
    """``gru`` itself, typed as its layer-0 tensors (reads and assignments go through the module as usual)."""
    return cast(GRUTensors, gru)
