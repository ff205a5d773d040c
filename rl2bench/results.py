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
import sys
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
    with open(path, "a+b") as fh:
        # A line cut by a kill mid-write has no newline: start on a fresh line, or the next row would be
        # glued to the cut one and lost with it.
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        for row in [rows] if isinstance(rows, dict) else rows:
            fh.write((json.dumps(row) + "\n").encode())
        fh.flush()
        os.fsync(fh.fileno())


class DamagedRun(UserError):
    """A run folder's file that cannot be read or is incomplete (a disk filled up, a hand edit, a cut copy)."""


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DamagedRun(f"{path} is not valid JSON (damaged or cut?)") from None
    if not isinstance(value, dict):
        raise DamagedRun(f"{path} does not hold a JSON object (damaged?)")
    return value


def read_rows(path: Path) -> pd.DataFrame:
    """A results CSV (results.csv or one evaluation's rows), with the columns every row must have."""
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
        raise DamagedRun(f"{path} cannot be read as a results table (empty, damaged or cut?)") from None
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise DamagedRun(f"{path} lacks the column(s) {', '.join(missing)} (damaged?)")
    blank = frame[RESULT_COLUMNS].isna().any(axis=1)
    if blank.any():
        raise DamagedRun(f"{path} has {int(blank.sum())} row(s) with an empty task, cell, algorithm, instance or "
                         f"return (the first at line {int(blank.to_numpy().argmax()) + 2}; damaged or cut?)")
    return frame


def _check_complete(rows: pd.DataFrame, instances: int | None, what: str, source: Path) -> None:
    """One evaluation's rows hold every instance 0..n-1 once, each with a number for its return."""
    numbers = pd.to_numeric(rows["return"], errors="coerce")
    complete = instances is None or (len(rows) == instances and set(rows["instance"]) == set(range(instances)))
    if not (complete and numbers.notna().all()):
        raise DamagedRun(f"{source} holds {len(rows)} rows for {what} where the run has {instances} instances "
                         f"with a return each (damaged or cut?)")


class RunStore:
    def __init__(self, root: str | os.PathLike[str]):
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
            if resume:  # a typo in the folder would otherwise start from scratch unnoticed
                print(f"rl2bench: {self.root} holds no run yet: starting a new one there", file=sys.stderr)
            write_text_atomic(cfg, json.dumps(identity, indent=2))

    def _evaluation_rows(self, repair: bool) -> list[pd.DataFrame]:
        """The rows of every evaluation marker, each checked complete (all instances, a number each).

        A marker's rows come from its merged file or, in a committed folder that keeps only results.csv,
        from there. Rows that are missing, cut short or unreadable raise a one-line error naming the file
        when reading; with ``repair`` (before ``--resume``) the marker is dropped instead, so that
        evaluation runs again (from its chunks where they are still on disk), and the merged file is
        written back from results.csv where that holds it, so a fresh clone reuses every stored result."""
        merged: list[pd.DataFrame | None] = []  # results.csv, read once and only if needed
        instances = self.config().get("instances")

        def stored() -> pd.DataFrame | None:
            if not merged:
                path = self.root / "results.csv"
                merged.append(read_rows(path) if path.exists() else None)
            return merged[0]

        frames = []
        for marker in self._markers():
            own = marker.with_suffix(".csv")
            try:
                meta = read_json(marker)
                if not {"cell", "algorithm", "setting"} <= meta.keys():
                    raise DamagedRun(f"{marker} lacks its cell, algorithm or setting (damaged?)")
                cell, algo = str(meta["cell"]), str(meta["algorithm"])
                if own.exists():
                    rows = read_rows(own)
                    _check_complete(rows, instances, f"{cell}/{algo}", own)
                else:
                    every = stored()
                    if every is None:
                        raise DamagedRun(f"{marker} marks {cell}/{algo} evaluated, but neither {own.name} nor "
                                         f"results.csv holds its rows")
                    rows = every[(every["cell"].astype(str) == cell) & (every["algorithm"] == algo)]
                    _check_complete(rows, instances, f"{cell}/{algo}", self.root / "results.csv")
                    rows = rows.dropna(axis="columns", how="all")  # other algorithms' metric columns
                    if repair:
                        write_text_atomic(own, rows.to_csv(index=False))
            except DamagedRun as exc:
                if not repair:
                    raise DamagedRun(f"{exc}; `run ... --resume --out {self.root}` evaluates it again") from None
                print(f"rl2bench: {exc}: evaluating it again", file=sys.stderr)
                marker.unlink()
                own.unlink(missing_ok=True)
                continue
            frames.append(rows)
        return frames

    def restore_merged_rows(self) -> None:
        """Before ``--resume``: check every stored evaluation; rebuild the merged rows a committed folder
        lacks from results.csv, and drop (to run again) any whose rows are missing or damaged."""
        self._evaluation_rows(repair=True)

    def _markers(self) -> list[Path]:
        return sorted((self.root / "parts" / "eval").glob("*/*.json"))

    @classmethod
    def existing(cls, root: str | os.PathLike[str]) -> RunStore:
        store = cls(root)
        if not (store.root / "config.json").exists():
            raise UserError(f"{store.root} is not an rl2bench run folder (no config.json)")
        return store

    def config(self) -> dict[str, Any]:
        return read_json(self.root / "config.json")

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
        """Per setting: mean and standard error over every stored chunk, and total seconds. Lines are
        summed in (setting, chunk) order, not the order parallel jobs happened to finish in, so the same
        run gives the same floats (and the same choice between near-equal settings) every time."""
        rows: dict[str, dict[str, Any]] = {}
        for line in sorted(self._tune_lines(cell, algo), key=lambda line: (line["key"], line["chunk"])):
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

    def best_setting(self, cell: str, algo: str, keys: list[str], n_chunks: int) -> dict:
        """The setting with the highest tuning mean (first in grid order on ties), once every setting has
        all ``n_chunks`` of its tuning chunks: a choice is never made on part of the tuning instances."""
        rows = self.tuning_rows(cell, algo)
        missing = [k for k in keys if k not in rows or len(rows[k]["chunks"]) < n_chunks]
        if missing:
            raise DamagedRun(f"{self._tune_path(cell, algo)}: the tuning of {algo} on {cell} lacks chunks of "
                             f"{len(missing)} setting(s) ({missing[0]}, ...); run the same command with "
                             f"--resume to play them")
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
        return read_json(self._eval_marker(cell, algo))["setting"]

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
        return [read_json(p) for p in self._markers()]

    def results(self) -> pd.DataFrame:
        """All evaluation rows: those of every evaluation marker (from results.csv where a committed folder
        lacks the merged file), or results.csv alone if there are no markers. Read-only."""
        frames = self._evaluation_rows(repair=False)
        if not frames:
            merged = self.root / "results.csv"
            if merged.exists():
                rows = read_rows(merged)
                instances = self.config().get("instances")
                for (cell, algo), group in rows.groupby(["cell", "algorithm"]):
                    _check_complete(group, instances, f"{cell}/{algo}", merged)
                return rows
            raise UserError(f"{self.root} holds no finished evaluation yet")
        return pd.concat(frames, ignore_index=True)

    def assemble(self, extra: dict[str, Any]) -> pd.DataFrame:
        """Write results.csv and run.json from the parts."""
        frame = self.results()
        write_text_atomic(self.root / "results.csv", frame.to_csv(index=False))
        meta = self.eval_meta()
        previous = self.root / "run.json"
        if previous.exists():  # a resumed run may name fewer cells or algorithms than the folder holds
            try:
                before = read_json(previous)
            except DamagedRun:  # rewritten below from the parts
                before = {}
            for key in ("cells", "algorithms", "references", "unsealed"):
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
