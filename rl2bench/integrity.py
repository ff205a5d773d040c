"""What makes a run folder's numbers verifiable: the digest of an evaluation's rows (recorded in its marker
and in each chunk's record), the checksum of a tuning line, and the checks that compare what a file holds
with its record. Every read of a run folder goes through them (``RunStore``); a mismatch is a one-line
``DamagedRun`` naming the file."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rl2bench.errors import UserError

RESULT_COLUMNS = ["task", "cell", "algorithm", "instance", "return"]
LABELS = ("task", "cell", "algorithm")
TUNE_NUMBERS = ("chunk", "sum", "sumsq", "instances", "seconds")


class DamagedRun(UserError):
    """A run folder's file that cannot be read or is incomplete (a disk filled up, a hand edit, a cut copy)."""


def check_complete(rows: pd.DataFrame, instances: int | None, what: str, source: Path) -> None:
    """One evaluation's rows hold every instance 0..n-1 once, each with a number for its return."""
    numbers = pd.to_numeric(rows["return"], errors="coerce")
    complete = instances is None or (len(rows) == instances and set(rows["instance"]) == set(range(instances)))
    if not (complete and numbers.notna().all()):
        raise DamagedRun(f"{source} holds {len(rows)} rows for {what} where the run has {instances} instances "
                         f"with a return each (damaged or cut?)")


def rows_digest(rows: pd.DataFrame) -> str:
    """sha256 of one evaluation's numbers: instance, return and the family's metrics (columns by name, each
    as float64 in instance order; a column empty in every row is left out, as results.csv holds other cells'
    metric columns). The same rows give the same digest from a chunk, a merged file or results.csv."""
    frame = rows.drop(columns=[c for c in LABELS if c in rows.columns])
    metrics = sorted(c for c in frame.columns if c not in ("instance", "return") and frame[c].notna().any())
    numbers = {name: pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype="<f8") if name in frame.columns
               else np.full(len(frame), np.nan) for name in ["instance", "return", *metrics]}
    order = np.argsort(numbers["instance"], kind="stable")
    digest = hashlib.sha256()
    for name, values in numbers.items():
        values = values[order]
        digest.update(f"{name}\0".encode() + np.where(np.isnan(values), np.nan, values).tobytes())
    return digest.hexdigest()


def line_digest(line: dict[str, Any]) -> str:
    """A tuning line's checksum: sha256 of its other fields."""
    return hashlib.sha256(json.dumps({k: v for k, v in line.items() if k != "sha256"}, sort_keys=True).encode()
                          ).hexdigest()


def parse_tune_line(text: str) -> tuple[dict[str, Any] | None, str]:
    """A tuning line, or None and why not: cut (not JSON), lacking a field, or unlike its checksum."""
    try:
        line = json.loads(text)
    except json.JSONDecodeError:
        return None, "is cut or garbled"
    if (not isinstance(line, dict) or not isinstance(line.get("key"), str) or not isinstance(line.get("setting"), dict)
            or any(isinstance(line.get(k), bool) or not isinstance(line.get(k), (int, float)) for k in TUNE_NUMBERS)):
        return None, "lacks a field of a tuning line"
    if "sha256" in line and line["sha256"] != line_digest(line):
        return None, "does not match its sha256"
    return line, ""


def sealed_tune_lines(text: str, drop: bool) -> tuple[str, list[tuple[int, str]]]:
    """A tuning log with its checksum added to every sound line that has none, and its damaged lines (line
    number, what is wrong): dropped with ``drop``, else kept as they were (a read skips them)."""
    lines, damaged = [], []
    for number, row in enumerate(text.splitlines(), 1):
        line, problem = parse_tune_line(row)
        if line is None and row.strip():
            damaged.append((number, problem))
        if line is not None:
            row = row if "sha256" in line else json.dumps({**line, "sha256": line_digest(line)})
        if line is not None or not drop:
            lines.append(row)
    return "".join(f"{row}\n" for row in lines), damaged


def numbers_of_text(text: str) -> pd.DataFrame:
    """What a reader will see of a results CSV written as ``text``: the digest is taken of that."""
    return pd.read_csv(io.StringIO(text))


def read_leniently(path: Path) -> tuple[pd.DataFrame | None, str]:
    """results.csv read so that a cut or garbled line damages only its own rows (then checked per marker):
    lines with too many fields are skipped, undecodable bytes replaced, text in number columns made NaN."""
    try:
        frame = pd.read_csv(path, on_bad_lines="skip", encoding_errors="replace")
    except (pd.errors.EmptyDataError, pd.errors.ParserError):
        return None, f"{path} cannot be read as a results table (empty, damaged or cut?)"
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        return None, f"{path} lacks the column(s) {', '.join(missing)} (damaged?)"
    for column in frame.columns:
        if column not in LABELS and not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame, ""


def check_recorded(rows: pd.DataFrame, meta: dict[str, Any], what: str, source: Path, record: Path) -> None:
    """The rows are those the record (an evaluation marker, a chunk's record) was written for: as many, and
    the same numbers. A record written before digests were kept has none to check."""
    if "rows_sha256" not in meta:
        return
    if "task" in meta and (rows["task"].astype(str) != str(meta["task"])).any():
        raise DamagedRun(f"{source} holds rows of {what} under another task than {meta['task']} (damaged?)")
    digest = rows_digest(rows)
    if len(rows) != meta.get("rows") or digest != meta["rows_sha256"]:
        raise DamagedRun(f"{source}: the {len(rows)} rows of {what} do not match the {meta.get('rows')} rows "
                         f"recorded in {record} (sha256 {digest[:12]} != {str(meta['rows_sha256'])[:12]}; damaged, "
                         f"cut or edited?)")
