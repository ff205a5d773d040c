"""Time the full classical Table 1 run: 9 cells x the paper's 7 algorithms x 1000 instances, every grid
searched on tuning instances, with the Gittins tables already cached (they are built first, untimed).

    python benchmarks/mab_table1.py [--jobs 2] [--algos random,gittins,ts,ots,ucb1,eps-greedy,greedy]

Prints the wall time and the most expensive (cell, algorithm) pairs; records them in
benchmarks/results/mab_table1.json. The bar is 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from rl2bench.protocol import RunConfig, run_benchmark
from rl2bench.registry import get_family, resolve_algorithms
from rl2bench.results import RunStore

PAPER_ALGOS = "random,gittins,ts,ots,ucb1,eps-greedy,greedy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--algos", default=PAPER_ALGOS)
    parser.add_argument("--record", default=str(Path(__file__).parent / "results" / "mab_table1.json"))
    args = parser.parse_args()
    family = get_family("mab")
    algos = resolve_algorithms(args.algos, "mab")
    cells = list(family.default_cells)
    for c in cells:  # build index tables outside the timed region
        cell = family.parse_cell(c)
        for a in algos:
            a.prepare(cell, family.spec(cell), a.grid(cell, family.spec(cell)))
    config = RunConfig("mab", cells, algos, instances=1000, tune_instances=1000, seed=0, n_jobs=args.jobs)
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        store.open(config.identity(), resume=False)
        start = time.perf_counter()
        run_benchmark(config, store, progress=False)
        wall = time.perf_counter() - start
        meta = store.eval_meta()
    costs = sorted(((m["tune_seconds"] + m["eval_seconds"], f"{m['cell']}/{m['algorithm']}") for m in meta),
                   reverse=True)
    print(f"full classical Table 1: {wall:.1f} s wall on {args.jobs} workers "
          f"({sum(c for c, _ in costs):.1f} s of job time)")
    for seconds, name in costs[:8]:
        print(f"  {name:22s} {seconds:6.1f} s")
    record = {"wall_seconds": round(wall, 2), "jobs": args.jobs, "algorithms": args.algos, "cpu_count": os.cpu_count(),
              "machine": platform.machine(), "python": platform.python_version(),
              "top_costs": [{"pair": n, "seconds": round(s, 2)} for s, n in costs[:12]],
              "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    Path(args.record).parent.mkdir(parents=True, exist_ok=True)
    Path(args.record).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
