"""The results store: one folder per run, written job by job, atomically, so nothing finished is lost.

    <run>/config.json                      what the run is (checked on --resume)
    <run>/parts/tune/<cell>/<algo>.jsonl   one line per tuned setting (mean, se, seconds)
    <run>/parts/eval/<cell>/<algo>.csv     per-instance returns of the chosen setting
    <run>/parts/eval/<cell>/<algo>.json    chosen setting, seconds
    <run>/results.csv                      all evaluation rows: task, cell, algorithm, instance, return, ...
    <run>/run.json                         seeds, versions, git revision, chosen settings, timings
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rl2bench.errors import UserError

RESULT_COLUMNS = ["task", "cell", "algorithm", "instance", "return"]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def append_jsonl(path: Path, rows: dict[str, Any] | list[dict[str, Any]]) -> None:
    """Append one JSON line per row, flushed to disk: a log that a killed process cannot half-erase."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        for row in [rows] if isinstance(rows, dict) else rows:
            fh.write(json.dumps(row) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


class RunStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self, identity: dict[str, Any], resume: bool) -> None:
        """Create the run folder, or check that ``--resume`` continues the same run."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"--out {self.root} is a file, not a run folder")
        cfg = self.root / "config.json"
        if cfg.exists():
            try:
                stored = json.loads(cfg.read_text())
            except json.JSONDecodeError:
                raise UserError(f"{cfg} is not valid JSON (damaged?); cannot tell which run it holds") from None
            if not resume:
                raise UserError(f"{self.root} already holds a run; pass --resume to continue it or choose "
                                f"another --out")
            diff = {k: (stored.get(k), v) for k, v in identity.items() if stored.get(k) != v}
            if diff:
                detail = ", ".join(f"{k}: stored {a!r} vs asked {b!r}" for k, (a, b) in diff.items())
                raise UserError(f"cannot resume {self.root}: {detail}")
            self.restore_merged_rows()
        else:
            write_text_atomic(cfg, json.dumps(identity, indent=2))

    def _committed_rows(self, markers: list[Path]) -> dict[Path, pd.DataFrame | None]:
        """The rows of each marker whose merged file is missing, taken from results.csv (None: not there).
        A committed run folder keeps its tuning lines and evaluation markers (small) and its rows in
        results.csv, but not the per-chunk files nor each marker's merged rows."""
        missing = [m for m in markers if not m.with_suffix(".csv").exists()]
        if not missing:
            return {}
        merged = self.root / "results.csv"
        rows = pd.read_csv(merged) if merged.exists() else pd.DataFrame(columns=["cell", "algorithm"])
        found: dict[Path, pd.DataFrame | None] = {}
        for marker in missing:
            meta = json.loads(marker.read_text())
            part = rows[(rows["cell"].astype(str) == meta["cell"]) & (rows["algorithm"] == meta["algorithm"])]
            # another algorithm's metric columns are empty here
            found[marker] = None if part.empty else part.dropna(axis="columns", how="all")
        return found

    def restore_merged_rows(self) -> None:
        """Before ``--resume``: write each marker's missing rows back from results.csv, so that a fresh
        clone (or a copy) reuses every stored evaluation; a marker whose rows results.csv lacks is dropped,
        and that evaluation runs again."""
        for marker, part in self._committed_rows(self._markers()).items():
            if part is None:
                marker.unlink()
            else:
                write_text_atomic(marker.with_suffix(".csv"), part.to_csv(index=False))

    def _markers(self) -> list[Path]:
        return sorted((self.root / "parts" / "eval").glob("*/*.json"))

    @classmethod
    def existing(cls, root: Path | str) -> RunStore:
        store = cls(root)
        if not (store.root / "config.json").exists():
            raise UserError(f"{store.root} is not an rl2bench run folder (no config.json)")
        return store

    def config(self) -> dict[str, Any]:
        return json.loads((self.root / "config.json").read_text())

    # -- tuning ----------------------------------------------------------------------------------
    def _tune_path(self, cell: str, algo: str) -> Path:
        return self.root / "parts" / "tune" / _safe(cell) / f"{_safe(algo)}.jsonl"

    def _tune_lines(self, cell: str, algo: str) -> list[dict[str, Any]]:
        path = self._tune_path(cell, algo)
        lines = []
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a kill: that chunk simply reruns
                    continue
        return lines

    def tuning_chunks(self, cell: str, algo: str, key: str) -> set[int]:
        return {line["chunk"] for line in self._tune_lines(cell, algo) if line["key"] == key}

    def tuning_rows(self, cell: str, algo: str) -> dict[str, dict[str, Any]]:
        """Per setting: mean and standard error over every stored chunk, and total seconds."""
        rows: dict[str, dict[str, Any]] = {}
        for line in self._tune_lines(cell, algo):
            row = rows.setdefault(line["key"], {"setting": line["setting"], "chunks": set(), "sum": 0.0,
                                                "sumsq": 0.0, "instances": 0, "seconds": 0.0})
            if line["chunk"] in row["chunks"]:
                continue
            row["chunks"].add(line["chunk"])
            for field in ("sum", "sumsq", "instances", "seconds"):
                row[field] += line[field]
        for row in rows.values():
            n = row["instances"]
            row["mean"] = row["sum"] / n
            var = max(row["sumsq"] / n - row["mean"] ** 2, 0.0) * n / max(n - 1, 1)
            row["se"] = (var / n) ** 0.5
        return rows

    def save_tuning(self, cell: str, algo: str, key: str, setting: dict, chunk: int, returns: np.ndarray,
                    seconds: float) -> None:
        line = {"key": key, "setting": setting, "chunk": chunk, "sum": float(returns.sum()),
                "sumsq": float((returns**2).sum()), "instances": len(returns), "seconds": seconds}
        append_jsonl(self._tune_path(cell, algo), line)

    def best_setting(self, cell: str, algo: str, keys: list[str]) -> dict:
        """The setting with the highest tuning mean (first in grid order on ties)."""
        rows = self.tuning_rows(cell, algo)
        missing = [k for k in keys if k not in rows]
        if missing:
            raise RuntimeError(f"tuning of {cell}/{algo} incomplete: {missing}")
        best = max(keys, key=lambda k: (rows[k]["mean"], -keys.index(k)))
        return rows[best]["setting"]

    # -- evaluation ------------------------------------------------------------------------------
    def _eval_dir(self, cell: str, algo: str) -> Path:
        return self.root / "parts" / "eval" / _safe(cell) / _safe(algo)

    def _eval_marker(self, cell: str, algo: str) -> Path:
        return self.root / "parts" / "eval" / _safe(cell) / f"{_safe(algo)}.json"

    def has_eval(self, cell: str, algo: str) -> bool:
        return self._eval_marker(cell, algo).exists()

    def eval_setting(self, cell: str, algo: str) -> dict[str, Any]:
        """The setting a completed evaluation was played with (from its marker)."""
        return json.loads(self._eval_marker(cell, algo).read_text())["setting"]

    def reopen_eval(self, cell: str, algo: str) -> None:
        """Forget that (cell, algo) is evaluated (marker and merged rows); its chunks stay on disk and count
        again only for the setting they were played with."""
        self._eval_marker(cell, algo).unlink(missing_ok=True)
        self._eval_dir(cell, algo).with_suffix(".csv").unlink(missing_ok=True)

    def eval_chunks(self, cell: str, algo: str, key: str) -> set[int]:
        """Chunks already evaluated with the setting ``key``. A chunk played with another setting (tuning
        chose differently, or a trained policy changed between invocations) does not count: it is
        played again, so one result never mixes two versions of an algorithm."""
        folder = self._eval_dir(cell, algo)
        if not folder.exists():
            return set()
        done = set()
        for path in folder.glob("c*.csv"):
            tag = path.with_suffix(".setting")
            if tag.exists() and tag.read_text() == key:
                done.add(int(path.stem[1:]))
        return done

    def save_eval_chunk(self, cell: str, algo: str, chunk: int, task: str, key: str, returns: np.ndarray,
                        metrics: dict[str, np.ndarray], seconds: float, chunk_size: int) -> None:
        frame = pd.DataFrame({"task": task, "cell": cell, "algorithm": algo,
                              "instance": chunk * chunk_size + np.arange(len(returns)), "return": returns,
                              **metrics})
        folder = self._eval_dir(cell, algo)
        write_text_atomic(folder / f"c{chunk}.seconds", f"{seconds}")
        write_text_atomic(folder / f"c{chunk}.csv", frame.to_csv(index=False))
        write_text_atomic(folder / f"c{chunk}.setting", key)  # last: a chunk counts once fully written

    def complete_eval(self, task: str, cell: str, algo: str, setting: dict, n_chunks: int) -> None:
        """Mark (cell, algo) evaluated: merge its chunks and write the marker that --resume trusts."""
        folder = self._eval_dir(cell, algo)
        frame = pd.concat([pd.read_csv(folder / f"c{i}.csv") for i in range(n_chunks)], ignore_index=True)
        write_text_atomic(folder.with_suffix(".csv"), frame.to_csv(index=False))
        seconds = sum(float((folder / f"c{i}.seconds").read_text()) for i in range(n_chunks)
                      if (folder / f"c{i}.seconds").exists())
        tuning = self.tuning_rows(cell, algo)
        meta = {"task": task, "cell": cell, "algorithm": algo, "setting": setting, "eval_seconds": seconds,
                "tune_seconds": sum(r["seconds"] for r in tuning.values()),
                "tuning": [{"setting": r["setting"], "mean": r["mean"], "se": r["se"], "instances": r["instances"]}
                           for r in tuning.values()]}
        write_text_atomic(self._eval_marker(cell, algo), json.dumps(meta, indent=2))

    def eval_meta(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in self._markers()]

    def results(self) -> pd.DataFrame:
        """All evaluation rows: those of every evaluation marker (from results.csv where a committed folder
        lacks the merged file), or results.csv alone if there are no markers."""
        markers = self._markers()
        committed = self._committed_rows(markers)  # read-only: a committed folder is not written to here
        frames = [committed[p] if p in committed else pd.read_csv(p.with_suffix(".csv")) for p in markers]
        frames = [f for f in frames if f is not None]
        if not frames:
            merged = self.root / "results.csv"
            if merged.exists():
                return pd.read_csv(merged)
            raise UserError(f"{self.root} holds no finished evaluation yet")
        return pd.concat(frames, ignore_index=True)

    def assemble(self, extra: dict[str, Any]) -> pd.DataFrame:
        """Write results.csv and run.json from the parts."""
        frame = self.results()
        write_text_atomic(self.root / "results.csv", frame.to_csv(index=False))
        meta = self.eval_meta()
        previous = self.root / "run.json"
        if previous.exists():  # a resumed run may name fewer cells or algorithms than the folder holds
            before = json.loads(previous.read_text())
            for key in ("cells", "algorithms"):
                if key in extra and key in before:
                    extra = {**extra, key: list(dict.fromkeys([*before[key], *extra[key]]))}
        run = {**self.config(), **extra, "versions": package_versions(), "git_revision": git_revision(),
               "chosen_settings": {f"{m['cell']}/{m['algorithm']}": m["setting"] for m in meta},
               "seconds": {f"{m['cell']}/{m['algorithm']}": {"tune": round(m["tune_seconds"], 3),
                                                            "eval": round(m["eval_seconds"], 3)} for m in meta},
               "tuning": {f"{m['cell']}/{m['algorithm']}": m["tuning"] for m in meta if m["tuning"]}}
        write_text_atomic(self.root / "run.json", json.dumps(run, indent=2))
        return frame


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("rl2bench", "numpy", "scipy", "pandas", "joblib", "torch", "vizdoom"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def git_revision() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None
