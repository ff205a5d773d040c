"""The outer loop both trainers share (bandit/MDP and maze): iterate, show progress, checkpoint."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any


def training_loop(trainer: Any, total: int, desc: str, postfix: Callable[[dict], str], progress: bool,
                  seconds: float | None) -> None:
    """``trainer.iterate()`` until iteration ``total`` or until an iteration ends past ``seconds``, a
    progress bar, a checkpoint every ``checkpoint_every`` iterations and a final one (``complete`` once the
    config's iterations are done, else ``partial``)."""
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
                trainer.save(finished=False)
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        bar.close()
    trainer.save(finished=trainer.iteration >= trainer.cfg.iters)
