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


def grown_gru_tensors(fresh: GRUTensors, narrow: GRUTensors, old: int, new: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A GRU of ``new`` units grown from a trained one of ``old`` (net2net style): copies of ``fresh``'s
    (weight_ih, weight_hh, bias_ih, bias_hh) with the old units' rows of every gate block taken from
    ``narrow`` and their recurrent columns for the new units set to 0, so nothing old reads the new units
    yet. The caller assigns them (in place, or through a parametrization such as weight_norm's)."""
    w_ih, w_hh = fresh.weight_ih_l0.clone(), fresh.weight_hh_l0.clone()
    b_ih, b_hh = fresh.bias_ih_l0.clone(), fresh.bias_hh_l0.clone()
    for gate in range(3):  # rows: reset, update, new-gate blocks of each width
        rows, narrow_rows = slice(gate * new, gate * new + old), slice(gate * old, (gate + 1) * old)
        w_ih[rows] = narrow.weight_ih_l0[narrow_rows]
        w_hh[rows, :old] = narrow.weight_hh_l0[narrow_rows]
        w_hh[rows, old:] = 0.0
        b_ih[rows], b_hh[rows] = narrow.bias_ih_l0[narrow_rows], narrow.bias_hh_l0[narrow_rows]
    return w_ih, w_hh, b_ih, b_hh
