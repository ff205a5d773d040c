"""Is the ``mdp`` family's smaller number of tuning instances safe? Runs Table 2 with several numbers of
tuning instances (the paper's grids, the same 1000 evaluation instances and seed) and compares, per cell
and algorithm, the setting chosen and its evaluation mean with what 1000 tuning instances choose.

Runs are resumable and go to results/mdp-tune-stability/T<N>; do them in short pieces, then report:

    OMP_NUM_THREADS=1 python benchmarks/mdp_tune_stability.py --tune 1000 --cells n10   # ... per cell
    OMP_NUM_THREADS=1 python benchmarks/mdp_tune_stability.py --report

The evaluation of a given setting is deterministic (same instances, same agent stream), so two numbers of
tuning instances that choose the same setting give the same evaluation mean; the question is only how
much worse the setting chosen with fewer tuning instances can be, in standard errors of the evaluation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from rl2bench import cli
from rl2bench.results import RunStore

ROOT = Path("results/mdp-tune-stability")
REFERENCE = 1000


def run(tune: int, cells: str) -> None:
    out = ROOT / f"T{tune}"
    argv = ["run", "--task", "mdp", "--algos", "all", "--cells", cells, "--tune-instances", str(tune),
            "--out", str(out), "--no-progress"]
    if (out / "config.json").exists():
        argv.append("--resume")
    rc = cli.main(argv)
    if rc != 0:
        raise SystemExit(rc)


def report() -> str:
    frames = {}
    settings = {}
    for folder in sorted(ROOT.glob("T*")):
        tune = int(folder.name[1:])
        store = RunStore.existing(folder)
        res = store.results()
        frames[tune] = res.groupby(["cell", "algorithm"])["return"].agg(["mean", "sem"])
        settings[tune] = {(m["cell"], m["algorithm"]): m["setting"] for m in store.eval_meta()}
    if REFERENCE not in frames:
        raise SystemExit(f"no reference run with {REFERENCE} tuning instances in {ROOT}")
    ref, ref_set = frames[REFERENCE], settings[REFERENCE]
    rows = []
    for tune in sorted(t for t in frames if t != REFERENCE):
        common = frames[tune].index.intersection(ref.index)
        for key in common:
            if ref_set[key] == {}:
                continue  # nothing is tuned
            delta = frames[tune].loc[key, "mean"] - ref.loc[key, "mean"]
            rows.append({"tune": tune, "cell": key[0], "algorithm": key[1],
                         "chosen": _short(settings[tune][key]), f"chosen@{REFERENCE}": _short(ref_set[key]),
                         "eval": round(frames[tune].loc[key, "mean"], 1),
                         f"eval@{REFERENCE}": round(ref.loc[key, "mean"], 1),
                         "delta/se": round(delta / ref.loc[key, "sem"], 2)})
    table = pd.DataFrame(rows)
    lines = [tabulate(table.values.tolist(), list(table.columns), tablefmt="pipe"), ""]
    for tune, group in table.groupby("tune"):
        lines.append(f"T={tune}: {len(group)} tuned (cell, algorithm) pairs; "
                     f"same setting as T={REFERENCE} in "
                     f"{(group['chosen'] == group[f'chosen@{REFERENCE}']).sum()}; delta/se min "
                     f"{group['delta/se'].min():.2f}, mean {group['delta/se'].mean():.2f}, "
                     f"mean |delta/se| {np.abs(group['delta/se']).mean():.2f}")
    return "\n".join(lines)


def _short(setting: dict) -> str:
    return json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in setting.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", type=str, default="50,100,200,1000", help="comma list of tuning instances")
    parser.add_argument("--cells", default="paper")
    parser.add_argument("--report", action="store_true", help="only print the comparison of finished runs")
    args = parser.parse_args()
    if not args.report:
        for tune in (int(t) for t in args.tune.split(",")):
            run(tune, args.cells)
    print(report())


if __name__ == "__main__":
    main()
