"""Is OTS's chosen number of samples stable when tuned on fewer instances?

OTS's grid (N = 1..20 posterior samples per step) is ~90% of Table 1's cost, so rl2bench tunes it on
``OptimisticThompsonSampling.max_tune_instances`` instances instead of 1000. This script tunes every
paper cell on several tuning-set sizes (disjoint from evaluation instances, as always), then evaluates
each chosen N on the same 1000 evaluation instances and reports the paired difference: if the cheaper
tuning loses nothing beyond noise, the cap is justified.

    python benchmarks/ots_tuning_stability.py [--sizes 100,250,1000] [--cells n500-k50,...] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from joblib import Parallel, delayed

from rl2bench.protocol import PreparedAgent
from rl2bench.registry import algorithms, get_family


def _ots(cell_name: str, samples: int) -> PreparedAgent:
    fam = get_family("mab")
    return PreparedAgent(fam, fam.parse_cell(cell_name), algorithms("mab")["ots"], {"samples": samples})


def _tune_one(cell_name: str, samples: int, n_tune: int, seed: int) -> tuple[str, int, int, float]:
    return cell_name, samples, n_tune, float(_ots(cell_name, samples).returns(n_tune, seed, "tune").mean())


def _eval_one(cell_name: str, samples: int, seed: int) -> tuple[str, int, np.ndarray]:
    return cell_name, samples, _ots(cell_name, samples).returns(1000, seed, "eval")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,250,1000")
    parser.add_argument("--cells", default=",".join(get_family("mab").default_cells))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the report as JSON here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    cells = args.cells.split(",")
    start = time.perf_counter()
    tuned = Parallel(n_jobs=args.jobs)(delayed(_tune_one)(c, n, s, args.seed)
                                       for c in cells for s in sizes for n in range(1, 21))
    curves: dict[tuple[str, int], dict[int, float]] = {}
    for cell, samples, size, mean in tuned:
        curves.setdefault((cell, size), {})[samples] = mean
    chosen = {(c, s): max(curves[c, s], key=lambda n: (curves[c, s][n], -n)) for c in cells for s in sizes}
    needed = sorted({(c, n) for (c, _), n in chosen.items()})
    evals = {(c, n): r for c, n, r in Parallel(n_jobs=args.jobs)(delayed(_eval_one)(c, n, args.seed)
                                                                   for c, n in needed)}
    report = []
    print(f"{'cell':10s} " + " ".join(f"N@{s:<5d}" for s in sizes) + "  eval(N chosen at each size)"
          "   paired diff vs largest size (se)")
    for c in cells:
        ref = evals[c, chosen[c, sizes[-1]]]
        row = {"cell": c, "chosen": {s: chosen[c, s] for s in sizes},
               "eval_mean": {s: float(evals[c, chosen[c, s]].mean()) for s in sizes}, "paired_diff": {}}
        diffs = []
        for s in sizes:
            d = evals[c, chosen[c, s]] - ref
            row["paired_diff"][s] = (float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))))
            diffs.append(f"{d.mean():+.2f} ({d.std(ddof=1) / np.sqrt(len(d)):.2f})")
        report.append(row)
        print(f"{c:10s} " + " ".join(f"{chosen[c, s]:<7d}" for s in sizes) + "  "
              + " ".join(f"{row['eval_mean'][s]:.2f}" for s in sizes) + "   " + " ".join(diffs))
    print(f"\n{time.perf_counter() - start:.0f} s")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"sizes": sizes, "seed": args.seed, "rows": report,
                       "curves": {f"{c}@{s}": v for (c, s), v in curves.items()}}, fh, indent=2)


if __name__ == "__main__":
    main()
