"""What a run will cost before it starts: the memory of its instances and the work of its trials.

A typo such as ``--instances 99999999999999999999`` or ``--cells n10-k100000000`` must not grow until the
machine swaps or run for ever: ``run`` estimates both up front and refuses, in one line that names the
limit and ``--force``, before anything is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from rl2bench.errors import UserError
from rl2bench.task import TaskFamily

#: Trial steps times arms (what a step of a vectorized agent costs) over the whole run: Table 1 is ~1e9.
MAX_WORK = 1e11


def memory_limit() -> int:
    """Half the machine's memory, at most 8 GiB: the instance arrays are drawn whole for each phase."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 16 * 2**30
    return min(8 * 2**30, total // 2)


@dataclass(frozen=True)
class Footprint:
    memory_bytes: int
    work: int  # trial steps x arms, summed over algorithms and phases (one setting each: a lower bound)


def footprint(family: TaskFamily[Any], cells: list[str], n_algorithms: int, instances: int,
              tune_instances: int) -> Footprint:
    memory, work = 0, 0
    for name in cells:
        cell = family.parse_cell(name)
        spec = family.spec(cell)
        states = max(spec.n_states, 1)
        per_instance = 8 * spec.n_actions * states * (states + 1)  # a transition and a reward table
        agent_state = 8 * min(instances, family.chunk_size) * spec.n_actions * states * 4
        memory = max(memory, max(instances, tune_instances) * per_instance + agent_state)
        work += n_algorithms * (instances + tune_instances) * spec.max_steps * spec.n_actions
    return Footprint(memory, work)


def check_footprint(family: TaskFamily[Any], cells: list[str], n_algorithms: int, instances: int,
                    tune_instances: int, force: bool) -> Footprint:
    """The run's footprint, or a one-line refusal when it is past the limits and ``force`` is not set."""
    need = footprint(family, cells, n_algorithms, instances, tune_instances)
    limit = memory_limit()
    problems = []
    if need.memory_bytes > limit:
        problems.append(f"about {need.memory_bytes / 2**30:.3g} GiB of memory for its instances "
                        f"(limit {limit / 2**30:.3g} GiB, half this machine's memory at most 8 GiB)")
    if need.work > MAX_WORK:
        problems.append(f"about {need.work:.2g} trial steps x arms of work (limit {MAX_WORK:.0e}; the full Table 1 "
                        f"is about 1e9)")
    if problems and not force:
        raise UserError(f"this run needs {' and '.join(problems)}; check --instances and --cells, or pass --force "
                        f"to run it anyway")
    return need
