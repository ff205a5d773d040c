"""Where a run's networks train, kept apart from what they compute: a run moves between the CPU and a GPU
(``--device``, ``--resume``) with the same random streams and checkpoints that load anywhere."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl2bench.errors import UserError

from .runfolder import recorded_device


def torch_generator(np_rng: np.random.Generator) -> torch.Generator:
    """A CPU torch generator seeded from a named numpy stream: every random stream stays on the CPU (its
    draws move to the device), so a run resumes on any device with the same streams."""
    gen = torch.Generator()
    gen.manual_seed(int(np_rng.integers(2**63 - 1)))
    return gen


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside the block, and back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def on_cpu(obj: Any) -> Any:
    """A state dict (nested dicts, lists, tensors) with every tensor on the CPU: checkpoints written by a
    GPU run load on a machine without one."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(on_cpu(v) for v in obj)
    return obj


def resolve_device(name: str) -> torch.device:
    """``--device``: ``cpu`` (the default path), ``cuda`` or ``cuda:N`` where a GPU is visible."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"bad --device {name!r}: expected cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"bad --device {name!r}: expected cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is visible to torch {torch.__version__} here; use --device cpu")
    return device


def run_device(requested: str | None, out: Path, resume: bool) -> torch.device:
    """``--device`` as given; left out, ``cpu`` for a new run and, for ``--resume``, the kind of device the
    run last trained on (its meta.json), so that resuming a GPU run on its GPU machine stays on the GPU.
    Where that GPU is not here the run resumes on the CPU and says so."""
    if requested is not None:
        return resolve_device(requested)
    last = recorded_device(out) if resume else "cpu"
    if last == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        print(f"(resuming on cuda: the run last trained on {last}; pass --device cpu to move it)", file=sys.stderr)
        return training_device("cuda")
    print(f"(the run last trained on {last}; no CUDA GPU here, so it resumes on the CPU with the same random "
          "streams)", file=sys.stderr)
    return torch.device("cpu")


def training_device(device: torch.device | str) -> torch.device:
    """The device a trainer runs its networks on. On CUDA, cuDNN is switched off for the process: its GRU
    neither differentiates twice (TRPO's Fisher products) nor accepts weight-normalised (recomputed)
    weights as its flat buffer; torch's own CUDA kernels do both."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cudnn.enabled = False
    return device


def device_label(device: torch.device) -> str:
    """What meta.json records as the device of a run's last invocation."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
