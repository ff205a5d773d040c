"""Time the full classical Table 2 (5 cells x 7 algorithms, the paper's grids searched on tuning instances,
1000 evaluation instances) exactly as ``python -m rl2bench run --task mdp --algos all`` runs it.

Target: at most 60 s wall on 2 idle cores. Prints the wall time, the load average around the run (timings
on a shared machine are inflated by the others' load: report both) and the worker seconds per algorithm
(tuning + evaluation, summed over cells), and appends one JSON line to benchmarks/results/mdp_table2_runs.jsonl.
With ``--jobs 1`` everything runs in this process, so its CPU time is measured too: CPU / 2 is what two
idle cores would need at best, a figure much less sensitive to the machine's load than the wall time.

    OMP_NUM_THREADS=1 python benchmarks/mdp_table2.py [--tune-instances N] [--jobs 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from rl2bench import cli
from rl2bench.registry import get_family
from rl2bench.results import append_jsonl

TARGET_SECONDS = 60.0
LOG = Path(__file__).resolve().parent / "results" / "mdp_table2_runs.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune-instances", type=int, default=None,
                        help="default: the family's tune_instances")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="write the run here instead of a temp folder")
    parser.add_argument("--no-log", action="store_true", help="do not append to " + str(LOG))
    args = parser.parse_args()

    tune = args.tune_instances or get_family("mdp").tune_instances
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "mdp-full"
        argv = ["run", "--task", "mdp", "--algos", "all", "--out", str(out), "--jobs", str(args.jobs),
                "--tune-instances", str(tune), "--no-progress"]
        load_before = os.getloadavg()
        start, cpu_start = time.perf_counter(), time.process_time()
        rc = cli.main(argv)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        load_after = os.getloadavg()
        if rc != 0:
            raise SystemExit(rc)
        run = json.loads((out / "run.json").read_text())

    per_algo: dict[str, float] = defaultdict(float)
    for key, secs in run["seconds"].items():
        per_algo[key.split("/", 1)[1]] += secs["tune"] + secs["eval"]
    record = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "git_revision": run.get("git_revision"),
        "tune_instances": tune,
        "jobs": args.jobs,
        "cpu_count": os.cpu_count(),
        "wall_seconds": round(wall, 1),
        "load_avg_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "worker_seconds_by_algorithm": {a: round(s, 1)
                                        for a, s in sorted(per_algo.items(), key=lambda x: -x[1])},
        "worker_seconds_total": round(sum(per_algo.values()), 1),
    }
    if args.jobs == 1:
        record["cpu_seconds"] = round(cpu, 1)
    print(json.dumps(record, indent=2))
    verdict = "within" if wall <= TARGET_SECONDS else "OVER"
    print(f"\nfull Table 2: {wall:.1f} s wall on {args.jobs} workers ({verdict} the {TARGET_SECONDS:.0f} s "
          "target); "
          f"1-min load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    if not args.no_log:
        append_jsonl(LOG, record)


if __name__ == "__main__":
    main()
