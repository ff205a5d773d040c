"""Fault injection: each way a stored file gets damaged (a copy cut short, a number cut inside, a chunk cut by a
kill, a garbled line, bytes garbled inside a tensor, an empty or wrong file) is done to a real small run folder
or training folder. Reading names the damaged file in one line (exit 2); ``run --resume`` plays exactly the
damaged parts again, and the repaired folder holds the same numbers as the undamaged run, instance by
instance. Two identical trainings write byte-identical policy files."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest

import rl2bench.protocol as protocol
from rl2bench.cli import main
from rl2bench.results import RunStore

RUN = ["run", "--task", "mab", "--algos", "random,ucb1,greedy", "--cells", "n10-k3,n100-k3", "--instances", "300",
       "--tune-instances", "100", "--jobs", "1", "--no-progress"]  # 6 evaluations of 2 chunks (250 + 50)
KEY = ["cell", "algorithm", "instance"]


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    """The undamaged run every test damages a copy of."""
    folder = tmp_path_factory.mktemp("integrity") / "original"
    assert main([*RUN, "--out", str(folder)]) == 0
    return folder


def _as_committed(run: Path, to: Path) -> Path:
    """A copy as git carries a committed run: no per-chunk files, no merged rows per evaluation."""
    shutil.copytree(run, to, ignore=lambda folder, names: [
        n for n in names if Path(folder).parent.name == "eval" and (n.endswith(".csv") or (Path(folder) / n).is_dir())])
    return to


def _cli(capsys, *args: str) -> tuple[int, list[str]]:
    """Exit code and stderr lines of the command, run in this process (stdout is kept in ``_cli.out``)."""
    code = main(list(args))
    captured = capsys.readouterr()
    _cli.out = captured.out  # type: ignore[attr-defined]
    return code, captured.err.strip().splitlines()


def _one_error_line(capsys, *args: str) -> str:
    code, err = _cli(capsys, *args)
    assert code == 2 and len(err) == 1 and err[0].startswith("rl2bench: error: "), err
    return err[0]


def _played(monkeypatch) -> list[tuple[str, str, str, int]]:
    """Every job the protocol plays from now on: (phase, cell, algorithm, chunk)."""
    real, seen = protocol._execute, []

    def watched(job):
        seen.append((job.phase, job.cell, job.algorithm, job.chunk))
        return real(job)

    monkeypatch.setattr(protocol, "_execute", watched)
    return seen


def _resume(capsys, monkeypatch, folder: Path) -> tuple[list[tuple[str, str, str, int]], list[str]]:
    played = _played(monkeypatch)
    code, err = _cli(capsys, *RUN, "--out", str(folder), "--resume")
    assert code == 0, err
    return played, err


def _assert_same_numbers(capsys, folder: Path, original: Path) -> None:
    code, _ = _cli(capsys, "check", str(folder), "--against", str(original), "--exact")
    assert code == 0 and "6 reproduced exactly, 0 FAIL" in _cli.out, _cli.out  # type: ignore[attr-defined]
    ours = RunStore.existing(folder).results().sort_values(KEY).reset_index(drop=True)
    theirs = RunStore.existing(original).results().sort_values(KEY).reset_index(drop=True)
    pd.testing.assert_frame_equal(ours, theirs, check_dtype=False)


def _cut_inside_last_number(path: Path) -> None:
    """``...,999,74.0`` -> ``...,999,7``: every row still there, the last number another (a copy cut short)."""
    text = path.read_text().rstrip("\n")
    last = text.rsplit(",", 1)[1]
    digits = last.split(".")[0]
    assert len(digits) >= 2, f"the last number of {path} is {last}: too short to cut into another"
    path.write_text(text[: len(text) - len(last)] + digits[:-1])


def test_a_number_cut_in_a_committed_results_csv_is_named_and_only_its_evaluation_plays_again(
        original, tmp_path, capsys, monkeypatch):
    folder = _as_committed(original, tmp_path / "b")
    _cut_inside_last_number(folder / "results.csv")  # the last rows are n100-k3 ucb1's
    for command in (["table", str(folder)], ["check", str(folder), "--against", "paper"],
                    ["check", str(original), "--against", str(folder), "--exact"]):
        line = _one_error_line(capsys, *command)
        assert f"{folder}/results.csv" in line and "n100-k3/ucb1" in line and "--resume" in line, line
    played, err = _resume(capsys, monkeypatch, folder)
    assert sorted(played) == [("eval", "n100-k3", "ucb1", 0), ("eval", "n100-k3", "ucb1", 1)]
    assert sum("evaluating it again" in line for line in err) == 1
    _assert_same_numbers(capsys, folder, original)


def test_a_number_cut_in_a_chunk_whose_marker_is_gone_plays_that_chunk_again(original, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "c"
    shutil.copytree(original, folder)
    chunk = folder / "parts" / "eval" / "n100-k3" / "ucb1" / "c0.csv"
    _cut_inside_last_number(chunk)
    (folder / "parts" / "eval" / "n100-k3" / "ucb1.json").unlink()
    played, err = _resume(capsys, monkeypatch, folder)
    assert played == [("eval", "n100-k3", "ucb1", 0)]
    assert [line for line in err if "again" in line] == [
        next(line for line in err if str(chunk) in line and "playing that chunk again" in line)]
    _assert_same_numbers(capsys, folder, original)


def test_a_chunk_cut_mid_line_is_named_and_played_again_once(original, tmp_path, capsys, monkeypatch):
    """Its merged rows and marker gone too (killed while merging): the chunk itself is named, not the merged
    file, and it is played again on the first --resume, not found damaged on every one."""
    folder = tmp_path / "c"
    shutil.copytree(original, folder)
    evaluation = folder / "parts" / "eval" / "n10-k3" / "greedy"
    chunk = evaluation / "c0.csv"
    text = chunk.read_bytes()
    chunk.write_bytes(text[: text.rindex(b",", 0, int(len(text) * 0.6)) + 1])  # "...,greedy,123," and no more
    evaluation.with_suffix(".csv").unlink()
    evaluation.with_suffix(".json").unlink()
    played, err = _resume(capsys, monkeypatch, folder)
    assert played == [("eval", "n10-k3", "greedy", 0)]
    named = [line for line in err if "again" in line]
    assert len(named) == 1 and str(chunk) in named[0] and "greedy.csv" not in named[0], err
    played, err = _resume(capsys, monkeypatch, folder)
    assert played == [] and not [line for line in err if "again" in line], err
    _assert_same_numbers(capsys, folder, original)


def test_a_results_csv_cut_mid_file_plays_again_only_the_evaluations_it_lost(original, tmp_path, capsys, monkeypatch):
    folder = _as_committed(original, tmp_path / "b")
    merged = folder / "results.csv"
    text = merged.read_bytes()
    cut = int(len(text) * 0.6)
    merged.write_bytes(text[:cut])
    header, *rows = text.decode().splitlines(keepends=True)
    lost, offset = set(), len(header)  # the evaluations with a row not wholly before the cut
    for row in rows:
        if offset + len(row) > cut:
            lost.add(("eval", *row.split(",")[1:3]))
        offset += len(row)
    assert 0 < len(lost) < 6
    line = _one_error_line(capsys, "table", str(folder))
    assert f"{folder}/results.csv" in line, line
    played, err = _resume(capsys, monkeypatch, folder)
    assert {job[:3] for job in played} == lost and len(played) == 2 * len(lost)
    assert sum("evaluating it again" in line for line in err) == len(lost)
    _assert_same_numbers(capsys, folder, original)


def test_a_garbled_tuning_line_is_named_and_only_its_chunk_is_tuned_again(original, tmp_path, capsys, monkeypatch):
    """A number changed inside a tuning line (still valid JSON), and a line cut by a kill after it."""
    folder = _as_committed(original, tmp_path / "b")
    log = folder / "parts" / "tune" / "n100-k3" / "ucb1.jsonl"
    lines = log.read_text().splitlines()
    garbled, cut = json.loads(lines[2]), json.loads(lines[5])
    lines[2] = lines[2].replace(f'"sum": {garbled["sum"]}', f'"sum": {garbled["sum"] + 1000}')
    log.write_text("\n".join(lines[:5] + lines[6:] + [lines[5][:40]]))  # the cut one last, no newline
    played, err = _resume(capsys, monkeypatch, folder)
    assert played == [("tune", "n100-k3", "ucb1", 0)] * 2  # one chunk of 100 tuning instances per setting
    assert [e for e in err if "again" in e] == [
        f"rl2bench: {log} line 3 does not match its sha256 (damaged?): dropped, its tuning chunk is played again",
        f"rl2bench: {log} line {len(lines)} is cut or garbled (damaged?): dropped, its tuning chunk is played again"]

    def played_as(line: dict) -> dict:
        return {k: v for k, v in line.items() if k not in ("seconds", "sha256")}

    after = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(after) == len(lines) and {played_as(line)["key"] for line in after[-2:]} == {garbled["key"], cut["key"]}
    assert played_as(garbled) in map(played_as, after) and played_as(cut) in map(played_as, after)
    played, err = _resume(capsys, monkeypatch, folder)
    assert played == [] and not [e for e in err if "again" in e], err
    _assert_same_numbers(capsys, folder, original)


def test_markers_written_before_digests_keep_working_and_get_them_on_record(original, tmp_path, capsys):
    """A run folder from an older version (the committed leaderboards were such folders): read as before;
    ``RunStore.record_digests`` then gives each marker exactly the digest the run would have written."""
    folder = _as_committed(original, tmp_path / "b")
    markers = sorted((folder / "parts" / "eval").glob("*/*.json"))
    written = {m: m.read_text() for m in markers}
    for marker in markers:
        meta = json.loads(marker.read_text())
        del meta["rows"], meta["rows_sha256"]
        marker.write_text(json.dumps(meta, indent=2))
    for log in (folder / "parts" / "tune").glob("*/*.jsonl"):
        log.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items()
                                           if k not in ("sha256", "returns_sha256")}) + "\n"
                               for line in log.read_text().splitlines()))
    assert _cli(capsys, "table", str(folder))[0] == 0
    _assert_same_numbers(capsys, folder, original)
    RunStore.existing(folder).record_digests()
    assert {m: m.read_text() for m in markers} == written
    for log in (folder / "parts" / "tune").glob("*/*.jsonl"):
        assert all("sha256" in json.loads(line) for line in log.read_text().splitlines())
    _cut_inside_last_number(folder / "results.csv")
    assert "n100-k3/ucb1" in _one_error_line(capsys, "table", str(folder))


# -- RL^2 training folders -------------------------------------------------------------------------------------
TRAIN = ["train", "--task", "mab", "--cell", "n10-k5", "--preset", "fast", "--set", "hidden=16", "--set",
         "batch_steps=1000", "--set", "checkpoint_every=1", "--set", "baseline_epochs=1", "--iters", "1",
         "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("integrity") / "trained"
    assert main([*TRAIN, "--out", str(folder)]) == 0
    return folder


def test_two_identical_trainings_write_byte_identical_policy_files(trained, tmp_path):
    from rl2bench.algorithms.rl2.zoo import policy_version

    assert main([*TRAIN, "--out", str(tmp_path / "again")]) == 0
    policy = (trained / "policy.pt").read_bytes()
    assert (tmp_path / "again" / "policy.pt").read_bytes() == policy
    digest = hashlib.sha256(policy).hexdigest()
    assert (trained / "policy.pt.sha256").read_text() == f"{digest}  policy.pt\n"  # sha256sum -c reads it
    assert policy_version(trained / "policy.pt") == digest[:12]


def _garble_a_tensor(path: Path) -> str:
    """2,000 bytes inside the largest tensor of a torch file flipped; the tensor's name in the archive."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        tensor = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    start = tensor.header_offset + 30 + len(tensor.filename) + len(tensor.extra) + 16
    size = min(2000, tensor.file_size - 32)
    data[start:start + size] = bytes(b ^ 0x5A for b in data[start:start + size])
    path.write_bytes(bytes(data))
    return tensor.filename


def _unrecord(path: Path) -> None:
    """As a file from before the records, or one copied without its record (the zoo's)."""
    path.with_name(f"{path.name}.sha256").unlink()


def _damage(path: Path, how: str) -> str:
    """Damage a torch file ``how``; what the one line must then say."""
    if how.endswith(", no record"):
        _unrecord(path)
    if how.startswith("garbled"):
        tensor = _garble_a_tensor(path)
        return "does not match the sha256 recorded" if how == "garbled" else f"{tensor} fails its CRC check"
    if how.startswith("cut"):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return "does not match the sha256 recorded" if how == "cut" else "is not a torch file"
    if how == "empty":
        path.write_bytes(b"")
        return "is empty"
    assert how == "text, no record"
    path.write_text("weights")
    return "is not a torch file"


DAMAGES = ["garbled", "cut", "empty", "garbled, no record", "cut, no record", "text, no record"]


@pytest.mark.parametrize("damage", [*DAMAGES, "a policy file"])
def test_a_damaged_checkpoint_is_one_line_naming_it(trained, tmp_path, capsys, damage):
    folder = tmp_path / "run"
    shutil.copytree(trained, folder)
    checkpoint = folder / "checkpoint.pt"
    if damage == "a policy file":
        shutil.copy(folder / "policy.pt", checkpoint)
        _unrecord(checkpoint)
        needle = "is not a training checkpoint"
    else:
        needle = _damage(checkpoint, damage)
    line = _one_error_line(capsys, "train", "--task", "mab", "--cell", "n10-k5", "--resume", "--iters", "2",
                           "--no-progress", "--out", str(folder))
    assert f"{checkpoint} " in line and needle in line, line


@pytest.mark.parametrize("damage", [*DAMAGES, "a checkpoint"])
def test_a_damaged_policy_is_one_line_naming_it_when_rl2_plays_it(trained, tmp_path, capsys, monkeypatch, damage):
    from rl2bench.algorithms.rl2 import agent

    monkeypatch.setenv("RL2BENCH_ZOO", str(tmp_path / "zoo"))
    agent.load_policy.cache_clear()
    cell = tmp_path / "zoo" / "mab" / "n10-k5"
    shutil.copytree(trained, cell)
    policy = cell / "policy.pt"
    if damage == "a checkpoint":
        shutil.copy(cell / "checkpoint.pt", policy)
        _unrecord(policy)
        needle = "is not an rl2 policy file"
    else:
        needle = _damage(policy, damage)
    line = _one_error_line(capsys, "run", "--task", "mab", "--algos", "rl2", "--cells", "n10-k5", "--instances", "20",
                           "--jobs", "1", "--no-progress", "--out", str(tmp_path / "r"))
    assert f"{policy} " in line and needle in line, line
