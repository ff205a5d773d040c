"""The update beside the rollout (``update_lag=1``): the PPO update of batch i-1 runs in a thread while the
engines play batch i.

Why: a maze rollout keeps the 2 cores ~70% busy (engines, their workers and the network's steps wait on one
another), and the update (~2 s of GRU arithmetic an iteration) used to wait for it to end. Run beside the
rollout, the update fills the idle share of the cores. The two still share the cores (the rollout alone
ran ~1,000 decisions/s, beside a two-epoch update 725-825), so it pays most with a lighter update: the cell-
move zoo recipe, one PPO epoch beside the rollout, ran 2,341 strides/s all in over a whole run, against
1,797 with two epochs after it (2026-12-07).

What changes in the recipe: the rollout of iteration i plays the weights as they were before the update on
batch i-1, so each batch is learnt from one iteration later, by a policy one update ahead of the one that
played it. PPO's ratio is taken against the logits the batch was played with, so its clipping measures the
distance from the behaviour policy as before; it starts from one update away instead of none. The first
iteration of a run (or of a resume that starts the lag) learns nothing; a run's last batch waits, in
``pending-<iteration>.pt`` beside the checkpoint, for a resume that goes on, so a resumed run equals an
unbroken one. The curve's row i holds batch i's returns and the fields of the update run beside its
rollout (batch i-1's: empty on a first row).

Why a thread: torch leaves Python's lock while an operation computes, so the update's arithmetic and the
rollout's run side by side; the update keeps the process's intra-op threads (the setting is the process's:
changed by the update, it would change the rollout's too) and flushes subnormals as the trainer's thread
does (the flag is per thread). The numbers do not depend on the timing: the rollout plays a copy of the
weights, and the update alone writes the training network, its optimizer and its generator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch

from rl2bench.results import DamagedRun

from .maze_rollout import MazeBatch
from .runfolder import atomic_save, load_torch_file

LAGS = (0, 1)


def pending_path(out: Path, iteration: int) -> Path:
    """Where the batch played by iteration ``iteration`` and not yet learnt from waits."""
    return Path(out) / f"pending-{iteration}.pt"


def save_pending(out: Path, iteration: int, batch: MazeBatch) -> None:
    """Write the pending batch (before the checkpoint that names it), then drop older ones: killed in
    between, the checkpoint on disk still finds its own."""
    fields = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
    atomic_save({"iteration": iteration, "batch": fields}, pending_path(out, iteration))


def drop_pending(out: Path, keep: int | None) -> None:
    """Remove every pending batch but iteration ``keep``'s (all with None)."""
    for path in Path(out).glob("pending-*.pt*"):
        stem = path.name.split(".pt")[0]
        if keep is None or stem != f"pending-{keep}":
            path.unlink(missing_ok=True)


def load_pending(out: Path, iteration: int) -> MazeBatch:
    """The batch a checkpoint of iteration ``iteration`` left pending; one line if it is gone or damaged."""
    path = pending_path(out, iteration)
    if not path.exists():
        raise DamagedRun(f"{path.name} is missing from {out}: its checkpoint waits on that batch (update_lag=1), so "
                         "the run cannot go on exactly; start a new run with --init-from")
    state = load_torch_file(path, "a pending maze batch", ("iteration", "batch"))
    if state["iteration"] != iteration:
        raise DamagedRun(f"{path} holds iteration {state['iteration']}'s batch, not {iteration}'s")
    return MazeBatch(**state["batch"])


class Learner:
    """One background thread that runs the update of the previous batch (``submit``)."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, learn: Callable[[MazeBatch], dict[str, float]], batch: MazeBatch) -> Future:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="rl2-maze-update", initializer=_learner_thread)
        return self._pool.submit(learn, batch)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _learner_thread() -> None:
    torch.set_flush_denormal(True)  # per thread, as MazeTrainer.run sets it for its own (maze_trainer.py)


def settle(update: Future | None) -> None:
    """Wait for an update that must not go on writing the weights after its iteration failed."""
    if update is not None:
        wait([update])


def no_update_fields() -> dict[str, Any]:
    """A first row's update fields: no update ran beside its rollout."""
    return {name: float("nan") for name in ("entropy", "kl", "surrogate_gain", "value_loss", "baseline_ev")}
