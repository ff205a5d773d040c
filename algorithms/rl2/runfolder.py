"""The files of a training run's folder (``--out``), which both trainers write alike and the zoo, the
``rl2`` agent and ``--resume`` read back: names, atomic writes, and holding the folder while a run owns it.
A reader never sees half a file, and two processes never train into one folder.

Integrity: each torch file (checkpoint, policy) is written from memory, so the same object gives the same
bytes (saved to a path, torch names the archive's inner folder after it: a temporary name here), with its
sha256 recorded beside it in ``<file>.sha256`` (``sha256sum -c`` reads it). ``load_torch_file`` checks that
digest where it is recorded, the archive's own CRCs everywhere (files from before the records, the zoo's),
and the kind of file; what fails is one line naming the file."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from rl2bench.errors import UserError, claim_folder, writable_folder
from rl2bench.results import DamagedRun, write_text_atomic

CHECKPOINT = "checkpoint.pt"  # full training state, for --resume
POLICY = "policy.pt"  # the small file the rl2 agent loads
CURVE = "curve.csv"
PLOT = "curve.png"
META = "meta.json"
POLICY_FORMAT = "rl2bench-rl2-policy/1"


#: What each kind of file must hold, to tell a checkpoint from a policy file or anything else.
CHECKPOINT_KEYS = ("task", "cell", "preset", "seed", "config", "iteration", "curve")
POLICY_KEYS = ("state_dict", "n_actions", "hidden")


def digest_record(path: Path) -> Path:
    return path.with_name(f"{path.name}.sha256")


def recorded_digests(path: Path) -> set[str]:
    """The sha256 digests ``path`` may have by its record (two while it is being replaced); none recorded:
    empty (a file written before the records, or copied without its record, as the zoo's are)."""
    record = digest_record(path)
    if not record.exists():
        return set()
    found = {m.group(1) for line in record.read_text(errors="replace").splitlines()
             if (m := re.fullmatch(r"([0-9a-f]{64})  (.+)", line)) and m.group(2) == path.name}
    if not found:
        raise DamagedRun(f"{record} holds no sha256 of {path.name} (damaged?)")
    return found


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` into memory (byte-reproducible), then written to a temporary name and renamed over
    ``path``, its digest recorded first beside the one it replaces: killed anywhere in between, the file on
    disk still matches its record."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    try:
        before = recorded_digests(path)
    except DamagedRun:
        before = set()
    if not before and path.exists():  # a file from before the records: it stays valid until replaced
        before = {hashlib.sha256(path.read_bytes()).hexdigest()}
    write_text_atomic(digest_record(path), "".join(f"{d}  {path.name}\n" for d in [digest, *sorted(before - {digest})]))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    write_text_atomic(digest_record(path), f"{digest}  {path.name}\n")


def load_torch_file(path: Path | str, kind: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """A checkpoint or policy file (``kind`` names it), onto the CPU, checked: its recorded sha256, the
    archive's CRCs, and the ``keys`` its kind holds. Garbled, cut, empty or another kind of file: one
    line naming it (``DamagedRun``), never a traceback nor a silent load of a damaged state."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DamagedRun(f"{path} cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise DamagedRun(f"{path} is empty (cut by a full disk or a kill?)")
    accepted, digest = recorded_digests(path), hashlib.sha256(data).hexdigest()
    if accepted and digest not in accepted:
        raise DamagedRun(f"{path} does not match the sha256 recorded in {digest_record(path).name} ({digest[:12]}, "
                         f"recorded {min(accepted)[:12]}): damaged, cut or replaced")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise DamagedRun(f"{path} is not a torch file: cut, damaged or of another kind ({kind} expected)") from None
    if bad is not None:
        raise DamagedRun(f"{path} is damaged: its part {bad} fails its CRC check")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many kinds here, all meaning the same: not loadable
        raise DamagedRun(f"{path} cannot be loaded as {kind} ({type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'})") from None
    missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise DamagedRun(f"{path} is not {kind} (it lacks {', '.join(missing)}): another kind of file?")
    return obj


def load_checkpoint(run_dir: Path | str) -> dict[str, Any]:
    """The training state in a run folder, onto the CPU whatever device wrote it, checked (``load_torch_file``)."""
    return load_torch_file(Path(run_dir) / CHECKPOINT, "a training checkpoint", CHECKPOINT_KEYS)


def load_policy_file(path: Path | str) -> dict[str, Any]:
    """A policy file (``policy.pt``) the rl2 agents play, checked (``load_torch_file``)."""
    return load_torch_file(path, "an rl2 policy file", POLICY_KEYS)


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


def ancestor_record(run_dir: Path | str, state: dict[str, Any]) -> dict[str, Any]:
    """What a run started by ``--init-from`` keeps of its parent: enough to count the steps and wall time
    the policy really cost (a continuation's own counters start at zero) and to find the parent again.
    ``earlier_unknown``: the parent was itself started from a run but predates this record."""
    record = {"run": str(run_dir), "task": state["task"], "cell": state["cell"], "preset": state.get("preset"),
              "seed": state.get("seed"), "iteration": state["iteration"], "env_steps": checkpoint_env_steps(state),
              "wall_seconds": round(float(state.get("wall_seconds", 0.0)), 1), "command": state.get("command", "")}
    if state.get("initialized_from") and not state.get("ancestry"):
        record["earlier_unknown"] = True
    config = state.get("config") or {}
    if config.get("critic_mdp") or config.get("aux_coef"):  # rl2-belief's aids: its descendants are not rl2's
        record["saw_the_mdp"] = True
    return record


def checkpoint_env_steps(state: dict[str, Any]) -> int:
    return int(state["curve"][-1]["env_steps"]) if state.get("curve") else 0
