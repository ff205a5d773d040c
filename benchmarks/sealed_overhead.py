"""What sealed evaluation costs on the README's workflow: copy the committed Table 1 run, add a plug-in
(the README's SoftmaxBandit), resume. Sealed (the default: the plug-in plays from a process of its own) and
``--in-process``, each on a fresh copy, same machine, one after the other.

    OMP_NUM_THREADS=1 python benchmarks/sealed_overhead.py [--rounds 1]

Prints both wall times and their ratio and writes benchmarks/results/sealed_overhead.json. Both must give
the same returns (checked instance by instance).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "sealed_overhead.json"


def timed_resume(work: Path, name: str, extra: list[str]) -> float:
    run = work / name
    shutil.copytree(ROOT / "leaderboard" / "runs" / "mab", run)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rl2bench", "run", "--task", "mab", "--algos", "all,my_agents:SoftmaxBandit",
                    "--out", str(run), "--resume", "--no-progress", *extra], cwd=work, check=True,
                   capture_output=True, text=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"```python\n(# my_agents.py\n.*?)```", readme, re.S)
    assert example is not None, "README's my_agents.py example is missing"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "my_agents.py").write_text(example.group(1))
        for r in range(args.rounds):
            sealed = timed_resume(work, f"sealed{r}", [])
            open_ = timed_resume(work, f"open{r}", ["--in-process"])
            same = subprocess.run([sys.executable, "-m", "rl2bench", "check", f"sealed{r}", "--against", f"open{r}",
                                   "--exact"], cwd=work, capture_output=True, text=True)
            rows.append({"sealed_s": round(sealed, 2), "in_process_s": round(open_, 2),
                         "ratio": round(sealed / open_, 2), "same_returns": same.returncode == 0})
            print(f"sealed {sealed:.1f} s, in-process {open_:.1f} s ({sealed / open_:.2f}x); "
                  f"same returns: {same.returncode == 0}")
    record = {"when": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
              "load_average_1min": round(os.getloadavg()[0], 2), "rows": rows}
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
