"""bayes-optimal reach: per cell, the posterior state count, the table's build time and memory, the exact value.

    OMP_NUM_THREADS=1 python benchmarks/bayes_optimal.py [--extra n20-k3,n20-k5,n50-k2,n100-k2] [--repeats 3]

The paper's nine Table 1 cells, then the ``--extra`` cells. For a cell within reach the table is built
from scratch ``--repeats`` times (no cache; the fastest time is kept, and the peak of numpy's allocations
during one more build, through tracemalloc) and its exact value V(start) is printed beside the paper's
RL^2; for the others, the reason ``unavailable`` gives. Writes benchmarks/results/bayes_optimal.json.
Timings depend on the machine's load: the record keeps the load average.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
import tracemalloc
from pathlib import Path
from typing import Any

from rl2bench.algorithms import bayes_optimal as bo
from rl2bench.registry import get_family

ROOT = Path(__file__).resolve().parents[1]


def paper_rl2() -> dict[str, float]:
    with open(ROOT / "leaderboard" / "paper" / "table1_mab.csv", newline="") as fh:
        return {row["cell"]: float(row["value"]) for row in csv.DictReader(fh) if row["algorithm"] == "rl2"}


def measure(cell_name: str, repeats: int, rl2: dict[str, float]) -> dict[str, Any]:
    family = get_family("mab")
    spec = family.spec(family.parse_cell(cell_name))
    n, k = spec.n_episodes, spec.n_actions
    states, reason = bo.reach(n, k)
    row: dict[str, Any] = {"cell": cell_name, "states": states if states != float("inf") else None,
                           "paper_rl2": rl2.get(cell_name)}
    if reason is not None:
        return {**row, "in_reach": False, "reason": reason}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        table = bo.compute_policy_table(n, k)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    bo.compute_policy_table(n, k)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = sum(a.nbytes for part in (table.keys, table.q, table.optimal, table.successor) for a in part)
    return {**row, "in_reach": True, "states": table.n_states, "build_s": round(min(times), 4),
            "peak_mb": round(peak / 2**20, 1), "table_mb": round(size / 2**20, 2), "value": table.value}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", default="n20-k3,n20-k5,n50-k2,n100-k2", help="cells beyond the paper's")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rl2 = paper_rl2()
    cells = list(get_family("mab").default_cells) + [c for c in args.extra.split(",") if c]
    rows = []
    for name in cells:
        r = measure(name, args.repeats, rl2)
        rows.append(r)
        if r["in_reach"]:
            paper = f", paper RL^2 {r['paper_rl2']}" if r["paper_rl2"] is not None else ""
            print(f"{name:>9}: {r['states']:>9,} states, built in {r['build_s']:.3f} s (peak {r['peak_mb']} MB, "
                  f"table {r['table_mb']} MB), exact value {r['value']:.6f}{paper}", flush=True)
        else:
            print(f"{name:>9}: out of reach: {r['reason']}", flush=True)
    load = os.getloadavg()
    record = {"rows": rows, "max_states": bo.MAX_STATES, "cpu_count": os.cpu_count(),
              "loadavg_1_5_15": [round(x, 2) for x in load], "python": platform.python_version(),
              "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = Path(__file__).parent / "results" / "bayes_optimal.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
