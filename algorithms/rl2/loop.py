"""The outer loop both trainers share (bandit/MDP and maze): iterate, show progress, checkpoint."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from rl2bench.processes import deferred_interrupts


def training_loop(trainer: Any, total: int, desc: str, postfix: Callable[[dict], str], progress: bool,
                  seconds: float | None) -> None:
    """``trainer.iterate()`` until iteration ``total`` or until an iteration ends past ``seconds``, a
    progress bar, a checkpoint every ``checkpoint_every`` iterations and a final one (``complete`` once the
    config's iterations are done, else ``partial``). A checkpoint is written whole: Ctrl-C or SIGTERM during
    one waits for it (and ``trainer.saved_iteration``) to be done."""
    from tqdm.auto import tqdm

    deadline = None if seconds is None else time.monotonic() + seconds
    bar = tqdm(total=total, initial=trainer.iteration, desc=desc, unit="it", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    try:
        while trainer.iteration < total:
            row = trainer.iterate()
            bar.set_postfix_str(postfix(row), refresh=False)
            bar.update(1)
            if trainer.iteration % trainer.cfg.checkpoint_every == 0:
                with deferred_interrupts():  # Ctrl-C or SIGTERM here names the checkpoint just written
                    trainer.save(finished=False)
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        bar.close()
    with deferred_interrupts():
        trainer.save(finished=trainer.iteration >= trainer.cfg.iters)
