"""The results store: one folder per run, written job by job, atomically, so nothing finished is lost.

    <run>/config.json                      what the run is (checked on --resume)
    <run>/parts/tune/<cell>/<algo>.jsonl   one line per tuned (setting, chunk): sums, seconds, its checksum
    <run>/parts/eval/<cell>/<algo>/c<i>.*  one evaluation chunk: rows, seconds, record (rows, digest), setting
    <run>/parts/eval/<cell>/<algo>.csv     per-instance returns of the chosen setting
    <run>/parts/eval/<cell>/<algo>.json    chosen setting, seconds, row count and digest of the rows
    <run>/results.csv                      all evaluation rows: task, cell, algorithm, instance, return, ...
    <run>/run.json                         seeds, versions, git revision, chosen settings, timings

Integrity: every file that feeds a number is checked on every read against a record written beside it
(``rows_digest``): a marker's rows, a chunk's rows and a tuning line; a mismatch is a one-line
``DamagedRun`` naming the file, and ``--resume`` plays exactly the damaged parts again.
"""

from __future__ import annotations

import hashlib
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
from rl2bench.integrity import (
    RESULT_COLUMNS,
    DamagedRun,
    check_complete,
    check_recorded,
    line_digest,
    numbers_of_text,
    parse_tune_line,
    read_leniently,
    rows_digest,
    sealed_tune_lines,
)


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


class RunStore:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self._sound: dict[Path, tuple[tuple[int, int], ...]] = {}  # chunks verified, by their files' state

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

    def _evaluation_rows(self, repair: bool, record: bool = False) -> list[pd.DataFrame]:
        """The rows of every evaluation marker, each checked complete (all instances, a number each) and
        against the row count and digest its marker records.

        A marker's rows come from its merged file or, in a committed folder that keeps only results.csv,
        from there (read so that a cut or garbled line damages only its own evaluation). Rows that are
        missing, cut short, unreadable or unlike the record raise a one-line error naming the file when
        reading; with ``repair`` (before ``--resume``) that marker is dropped instead, so exactly that
        evaluation runs again (from its chunks where they are still on disk), and the merged file is
        written back from results.csv where that holds it, so a fresh clone reuses every stored result.
        With ``record`` (and with ``repair``), a marker written before digests were kept gets its own."""
        merged: list[tuple[pd.DataFrame | None, str]] = []  # results.csv, read once and only if needed
        instances = self.config().get("instances")
        every_path = self.root / "results.csv"

        def stored() -> tuple[pd.DataFrame | None, str]:
            if not merged:
                merged.append(read_leniently(every_path) if every_path.exists() else (None, ""))
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
                    rows, source = read_rows(own), own
                else:
                    every, problem = stored()
                    if every is None:
                        raise DamagedRun(problem or f"{marker} marks {cell}/{algo} evaluated, but neither "
                                                    f"{own.name} nor results.csv holds its rows")
                    rows, source = every[(every["cell"].astype(str) == cell) & (every["algorithm"] == algo)], every_path
                check_complete(rows, instances, f"{cell}/{algo}", source)
                check_recorded(rows, meta, f"{cell}/{algo}", source, marker)
                if source == every_path:
                    rows = rows.dropna(axis="columns", how="all")  # other algorithms' metric columns
                    if rows["instance"].dtype.kind == "f" and rows["instance"].notna().all():  # NaN elsewhere
                        rows = rows.astype({"instance": "int64"})
                    if repair:
                        write_text_atomic(own, rows.to_csv(index=False))
                if (repair or record) and "rows_sha256" not in meta:
                    meta.update(rows=len(rows), rows_sha256=rows_digest(rows))
                    write_text_atomic(marker, json.dumps(meta, indent=2))
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
        self._seal_tuning_lines(repair=True)

    def record_digests(self) -> None:
        """Give every evaluation marker and tuning line written before digests were kept its own (a run
        folder made by an older version), after checking the rows complete as ``--resume`` does; a damaged
        file is a ``DamagedRun`` naming it and nothing is recorded for it."""
        self._evaluation_rows(repair=False, record=True)
        self._seal_tuning_lines(repair=False)

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
        """The sound lines of a tuning log: one cut by a kill, lacking a field or unlike its checksum is
        skipped, so its chunk runs again (``--resume`` drops it first, saying so: ``_seal_tuning_lines``)."""
        path = self._tune_path(cell, algo)
        lines = []
        if path.exists():
            for text in path.read_text(errors="replace").splitlines():
                if (line := parse_tune_line(text)[0]) is not None:
                    lines.append(line)
        return lines

    def _seal_tuning_lines(self, repair: bool) -> None:
        """Add its checksum to every sound tuning line written before they were kept; with ``repair`` (before
        ``--resume``) drop the damaged lines, saying which (their chunks are played again), so that they are
        not found again on every later read."""
        for path in sorted((self.root / "parts" / "tune").glob("*/*.jsonl")):
            text = path.read_text(errors="replace")
            sealed, damaged = sealed_tune_lines(text, drop=repair)
            for number, problem in damaged if repair else []:
                print(f"rl2bench: {path} line {number} {problem} (damaged?): dropped, its tuning chunk is played "
                      f"again", file=sys.stderr)
            if sealed != text:
                write_text_atomic(path, sealed)

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
                "sumsq": float((returns**2).sum()), "instances": len(returns), "seconds": seconds,
                "returns_sha256": hashlib.sha256(np.asarray(returns, dtype="<f8").tobytes()).hexdigest()}
        append_jsonl(self._tune_path(cell, algo), {**line, "sha256": line_digest(line)})

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
        played again, so one result never mixes two versions of an algorithm. Nor does a chunk whose rows
        are unreadable or unlike its record (said in one line naming the file): it is played again."""
        folder = self._eval_dir(cell, algo)
        if not folder.exists():
            return set()
        done = set()
        for path in sorted(folder.glob("c*.csv")):
            tag = path.with_suffix(".setting")
            if tag.exists() and tag.read_text(errors="replace") == key:
                problem = self._chunk_problem(path)
                if problem:
                    print(f"rl2bench: {problem}: playing that chunk again", file=sys.stderr)
                    tag.unlink()
                    continue
                done.add(int(path.stem[1:]))
        return done

    def _chunk_problem(self, path: Path) -> str:
        """Why a stored chunk's rows cannot be used ('' when they can): unreadable, not consecutive instances
        with a return each, or unlike its record (``c<i>.digest``; a chunk stored before records were kept
        has none). Checked once per state of its files."""
        record = path.with_suffix(".digest")
        state = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in (path, record) if p.exists())
        if self._sound.get(path) == state:
            return ""
        try:
            rows = read_rows(path)
            steps = pd.to_numeric(rows["instance"], errors="coerce").diff()[1:]
            if rows.empty or pd.to_numeric(rows["return"], errors="coerce").isna().any() or (steps != 1).any():
                raise DamagedRun(f"{path} does not hold consecutive instances with a return each (damaged?)")
            if record.exists():
                meta = read_json(record)
                if "rows_sha256" not in meta:
                    raise DamagedRun(f"{record} lacks the digest of its rows (damaged?)")
                check_recorded(rows, meta, f"chunk {path.stem}", path, record)
        except DamagedRun as exc:
            return str(exc)
        self._sound[path] = state
        return ""

    def save_eval_chunk(self, cell: str, algo: str, chunk: int, task: str, key: str, returns: np.ndarray,
                        metrics: dict[str, np.ndarray], seconds: float, chunk_size: int) -> None:
        frame = pd.DataFrame({"task": task, "cell": cell, "algorithm": algo,
                              "instance": chunk * chunk_size + np.arange(len(returns)), "return": returns,
                              **metrics})
        folder = self._eval_dir(cell, algo)
        text = frame.to_csv(index=False)
        numbers = numbers_of_text(text)
        record = {"task": task, "cell": cell, "algorithm": algo, "chunk": chunk, "rows": len(numbers),
                  "rows_sha256": rows_digest(numbers)}
        write_text_atomic(folder / f"c{chunk}.seconds", f"{seconds}")
        write_text_atomic(folder / f"c{chunk}.csv", text)
        write_text_atomic(folder / f"c{chunk}.digest", json.dumps(record, indent=2))
        write_text_atomic(folder / f"c{chunk}.setting", key)  # last: a chunk counts once fully written
        self._chunk_problem(folder / f"c{chunk}.csv")  # verified as written: not read again this run

    def complete_eval(self, task: str, cell: str, algo: str, setting: dict, n_chunks: int) -> None:
        """Mark (cell, algo) evaluated: merge its chunks and write the marker that --resume trusts, with the
        row count and digest that every later read checks."""
        folder = self._eval_dir(cell, algo)
        frame = pd.concat([read_rows(folder / f"c{i}.csv") for i in range(n_chunks)], ignore_index=True)
        try:
            check_complete(frame, self.config().get("instances"), f"{cell}/{algo}", folder)
        except DamagedRun as exc:  # chunks stored before records were kept, one cut at a line's end
            for i in range(n_chunks):
                (folder / f"c{i}.setting").unlink(missing_ok=True)
            raise DamagedRun(f"{exc}; `run ... --resume --out {self.root}` plays its chunks again") from None
        text = frame.to_csv(index=False)
        write_text_atomic(folder.with_suffix(".csv"), text)
        numbers = numbers_of_text(text)
        seconds = sum(float((folder / f"c{i}.seconds").read_text()) for i in range(n_chunks)
                      if (folder / f"c{i}.seconds").exists())
        tuning = self.tuning_rows(cell, algo)
        meta = {"task": task, "cell": cell, "algorithm": algo, "setting": setting, "eval_seconds": seconds,
                "tune_seconds": sum(r["seconds"] for r in tuning.values()),
                "tuning": [{"setting": r["setting"], "mean": r["mean"], "se": r["se"], "instances": r["instances"]}
                           for r in tuning.values()],
                "rows": len(numbers), "rows_sha256": rows_digest(numbers)}
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
                    check_complete(group, instances, f"{cell}/{algo}", merged)
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
