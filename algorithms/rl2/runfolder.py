"""The files of a training run's folder (``--out``), which both trainers write alike and the zoo, the
``rl2`` agent and ``--resume`` read back: names, atomic writes, and holding the folder while a run owns it.
A reader never sees half a file, and two processes never train into one folder."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import torch

from rl2bench.errors import UserError, claim_folder, writable_folder
from rl2bench.results import write_text_atomic

CHECKPOINT = "checkpoint.pt"  # full training state, for --resume
POLICY = "policy.pt"  # the small file the rl2 agent loads
CURVE = "curve.csv"
PLOT = "curve.png"
META = "meta.json"
POLICY_FORMAT = "rl2bench-rl2-policy/1"


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary name, then renamed over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(run_dir: Path | str) -> dict[str, Any]:
    """The training state in a run folder, onto the CPU whatever device wrote it."""
    return torch.load(Path(run_dir) / CHECKPOINT, map_location="cpu", weights_only=False)


def write_run_files(out: Path, state: dict[str, Any], policy: dict[str, Any], curve: list[dict[str, Any]]) -> None:
    """Checkpoint, policy file and learning curve (once it has a row), each replaced atomically."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_save(state, out / CHECKPOINT)
    atomic_save(policy, out / POLICY)
    if curve:
        write_curve(curve, out / CURVE)


def write_meta(out: Path, meta: dict[str, Any]) -> None:
    write_text_atomic(out / META, json.dumps(meta, indent=2) + "\n")


def curve_columns(curve: list[dict[str, Any]]) -> list[str]:
    """Every column any row has, in first-seen order: a run resumed by a newer trainer may log more
    columns than its first rows (those cells stay empty)."""
    return list(dict.fromkeys(key for row in curve for key in row))


def write_curve(rows: list[dict[str, Any]], path: Path) -> None:
    """The learning curve as CSV, replaced atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=curve_columns(rows))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def recorded_device(out: Path) -> str:
    """The device meta.json says the run last trained on; ``cpu`` where there is no readable meta.json."""
    if not (out / META).exists():
        return "cpu"
    try:
        return json.loads((out / META).read_text()).get("device", "cpu")
    except (OSError, ValueError):
        return "cpu"


def claim_new_run_folder(out: Path) -> None:
    """Create ``out`` for a new run and hold it (``claim_folder``); checked again once held, since another
    process may have started a run there after the caller's first look (both train commands)."""
    writable_folder(out, "--out")
    claim_folder(out, "--out")
    if (out / CHECKPOINT).exists():
        raise UserError(f"{out} already holds a training run; pass --resume to continue it")
