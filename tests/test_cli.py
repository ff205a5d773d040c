"""The command line as a user meets it: clear one-line errors with exit code 2, and plug-in agents."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from rl2bench.cli import main


def run_cli(*args, cwd=None, env=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "rl2bench", *args], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=300)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "--task", "nope"], "valid tasks: "),
        (["run", "--task", "mab", "--cells", "n10-x5"], "n<pulls>-k<arms>"),
        (["run", "--task", "mab", "--algos", "ucb1,bogus"], "valid: all, "),
        (["run", "--task", "mab", "--algos", "nomodule_xyz:Agent"], "cannot import"),
        (["run", "--task", "mab", "--instances", "0"], "positive integer"),
        (["run", "--task", "mab", "--seed", "minus"], "non-negative integer"),
        (["frobnicate"], "invalid choice"),
        (["train", "--task", "mab", "--cell", "n10-k5", "--minutes", "-1"], "positive number"),
        (["train", "--task", "mab", "--cell", "n10-k5", "--minutes", "soon"], "positive number"),
        (["table", "/nonexistent/run"], "not an rl2bench run folder"),
        (["run", "--task", "mab", "--resume"], "--resume needs --out"),
        (["run", "--task", "mab", "--cells", "n10-k3", "--out", "afile"], "is a file"),
        (["run", "--task", "mab", "--cells", "n10-k3", "--out", "broken", "--resume"], "not valid JSON"),
        (["check", "/nonexistent/run"], "not an rl2bench run folder"),
        (["check", "broken", "--tolerance", "nan"], "positive number"),
        (["run", "--task", "mab", "--cells", "n10-k1"], "at least 2 arms"),
        (["run", "--task", "mab", "--cells", "n10-k3", "--algos", "random", "--publish", "adir"], "is a folder"),
        (["run", "--task", "mab", "--cells", "n10-k3", "--algos", "random", "--out", "afile/sub"], "cannot create"),
        (["zoo", "--plot", "curves.txt"], "expected a file name ending in one of .png"),
        (["train", "--task", "mab", "--cell", "n10-k5", "--out", "afile"], "is a file"),
        (["train", "--task", "mab", "--cell", "n10-k5", "--set", "center_adv=ture"], "takes true or false"),
        (["train", "--task", "foo", "--cell", "n10"], "mab, mdp, maze"),
    ],
)
def test_bad_input_is_one_line_exit_2_no_traceback(args, needle, tmp_path, monkeypatch, capsys):
    """In this process (``main`` as ``python -m rl2bench`` calls it; one case below runs the real process):
    each case costs a parse, not an interpreter start."""
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "adir").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{truncated")
    monkeypatch.chdir(tmp_path)
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors exit from inside the parser
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2, err
    assert needle in err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


@pytest.mark.heavy
def test_bad_input_from_the_real_process_is_one_line_exit_2(tmp_path):
    result = run_cli("run", "--task", "mab", "--cells", "n10-x5", cwd=tmp_path)
    assert result.returncode == 2 and "n<pulls>-k<arms>" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout and len(result.stderr.strip().splitlines()) == 1


def test_list_names_families_cells_and_grids(capsys):
    assert main(["list", "--task", "mab"]) == 0
    out = capsys.readouterr().out
    for word in ("n500-k50", "ucb1", "gittins", "ots", "11 settings: c in {0, 0.1, ..., 1}",
                 "20 settings: samples in {1, 2, ..., 20}"):
        assert word in out
    # the in-`all` column says what `--algos all` runs
    from rl2bench.registry import resolve_algorithms

    in_all = {cls.name for cls in resolve_algorithms("all", "mab")}
    lines = {line.split()[0]: line.split()[1] for line in out.splitlines()[4:] if line.strip()}
    assert "ucb1-textbook" not in in_all and lines["ucb1-textbook"] == "by"
    assert "ucb1" in in_all and lines["ucb1"] == "yes"


def test_grid_summary_lists_each_key_with_its_values():
    from rl2bench.cli import grid_summary

    assert grid_summary([{}]) == "-"
    assert grid_summary([{"eps": 0.1}]) == "1 setting: eps=0.1"
    scaling = [{"scaling": 1e-4 * 10 ** (i / 5), "policy": "p"} for i in range(21)]
    assert grid_summary(scaling) == "21 settings: scaling in {0.0001, 0.0001585, ..., 1}; policy=p"
    play = [{"v": "a"}, {"v": "a", "play": "argmax"}]
    assert grid_summary(play) == "2 settings: v=a; play in {default, argmax}"


@pytest.mark.heavy
def test_run_table_check_and_a_user_algorithm_from_module_path(tmp_path):
    (tmp_path / "my_agents.py").write_text(textwrap.dedent('''
        import numpy as np
        from rl2bench.algorithms.bandit_common import BetaCountsAgent

        class AlwaysLast(BetaCountsAgent):
            """Pulls the last arm, always."""
            name = "always-last"

            def act(self, obs):
                return np.full(self.batch_size, self.spec.n_actions - 1)
    '''))
    out = tmp_path / "run"
    result = run_cli("run", "--task", "mab", "--algos", "random,greedy,my_agents:AlwaysLast", "--cells", "n10-k5",
                     "--instances", "300", "--out", str(out), "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "always-last" in result.stdout
    for name in ("results.csv", "leaderboard.md", "leaderboard.csv", "leaderboard.tex", "run.json"):
        assert (out / name).exists(), name
    import pandas as pd

    rows = pd.read_csv(out / "results.csv")
    assert set(rows.columns) >= {"task", "cell", "algorithm", "instance", "return"}
    assert len(rows) == 900 and rows["instance"].nunique() == 300

    again = run_cli("run", "--task", "mab", "--algos", "random", "--cells", "n10-k5", "--out", str(out),
                    cwd=tmp_path)
    assert again.returncode == 2 and "--resume" in again.stderr

    table = run_cli("table", str(out), cwd=tmp_path)
    assert table.returncode == 0 and "greedy" in table.stdout

    check = run_cli("check", str(out), "--against", "paper", cwd=tmp_path)
    assert check.returncode == 0, check.stdout  # random and greedy agree with the paper at this seed
    assert "random" in check.stdout and "greedy" in check.stdout


@pytest.mark.heavy
def test_a_clashing_user_algorithm_is_a_clear_error(tmp_path):
    (tmp_path / "clash.py").write_text(textwrap.dedent('''
        from rl2bench import register_algorithm
        from rl2bench.algorithms.bandit_common import BetaCountsAgent

        @register_algorithm
        class MyGreedy(BetaCountsAgent):
            name = "greedy"

            def act(self, obs):
                return None
    '''))
    result = run_cli("run", "--task", "mab", "--algos", "clash:MyGreedy", cwd=tmp_path)
    assert result.returncode == 2 and "already registered" in result.stderr
    assert "Traceback" not in result.stderr


def _store_changed_rows(part, frame):
    """Other rows for an evaluation, as a run that played them would store them: its marker records them
    (rows changed behind the marker's back are a damaged folder, not a regression)."""
    import pandas as pd

    from rl2bench.results import rows_digest

    frame.to_csv(part, index=False)
    marker = part.with_suffix(".json")
    meta = json.loads(marker.read_text())
    marker.write_text(json.dumps({**meta, "rows": len(frame), "rows_sha256": rows_digest(pd.read_csv(part))}))


@pytest.mark.heavy
def test_check_fails_on_a_regression(tmp_path):
    """Sabotage greedy's stored returns: `check` must report FAIL and exit 1."""
    import pandas as pd

    out = tmp_path / "run"
    result = run_cli("run", "--task", "mab", "--algos", "random,greedy", "--cells", "n100-k5", "--instances", "500",
                     "--out", str(out), "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert run_cli("check", str(out), cwd=tmp_path).returncode == 0
    part = out / "parts" / "eval" / "n100-k5" / "greedy.csv"
    frame = pd.read_csv(part)
    frame["return"] *= 0.9
    _store_changed_rows(part, frame)
    check = run_cli("check", str(out), cwd=tmp_path)
    assert check.returncode == 1 and "FAIL" in check.stdout


@pytest.mark.heavy
def test_check_exact_reproduces_a_run_and_names_a_changed_instance(tmp_path):
    """The same command twice gives the same returns; one changed instance of one algorithm fails it."""
    import pandas as pd

    args = ["--task", "mab", "--algos", "random,greedy,ucb1", "--cells", "n10-k5", "--instances", "300",
            "--no-progress"]
    for name in ("a", "b"):
        assert run_cli("run", *args, "--out", str(tmp_path / name), cwd=tmp_path).returncode == 0
    same = run_cli("check", str(tmp_path / "a"), "--against", str(tmp_path / "b"), "--exact", cwd=tmp_path)
    assert same.returncode == 0 and "3 reproduced exactly, 0 FAIL" in same.stdout
    part = tmp_path / "b" / "parts" / "eval" / "n10-k5" / "ucb1.csv"
    frame = pd.read_csv(part)
    frame.loc[17, "return"] += 1e-6
    _store_changed_rows(part, frame)
    changed = run_cli("check", str(tmp_path / "a"), "--against", str(tmp_path / "b"), "--exact", cwd=tmp_path)
    assert changed.returncode == 1 and "2 reproduced exactly, 1 FAIL" in changed.stdout
    line = next(row for row in changed.stdout.splitlines() if " ucb1 " in f" {row} ")
    assert line.split()[-3:] == ["1", "0", "FAIL"]  # differing, in one run only, status
    refused = run_cli("check", str(tmp_path / "a"), "--exact", cwd=tmp_path)
    assert refused.returncode == 2 and "--against RUN_FOLDER" in refused.stderr and "Traceback" not in refused.stderr


def test_algos_all_combines_with_names_and_module_paths(tmp_path, monkeypatch):
    from rl2bench.registry import resolve_algorithms

    every = [a.name for a in resolve_algorithms("all", "mab")]
    assert "rl2" in every and len(every) == len(set(every))
    assert [a.name for a in resolve_algorithms("greedy,all", "mab")] == ["greedy"] + [n for n in every if n != "greedy"]
    (tmp_path / "one_more.py").write_text(textwrap.dedent('''
        import numpy as np
        from rl2bench.algorithms.bandit_common import BetaCountsAgent

        class AlwaysFirst(BetaCountsAgent):
            name = "always-first"

            def act(self, obs):
                return np.zeros(self.batch_size, dtype=int)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert [a.name for a in resolve_algorithms("all,one_more:AlwaysFirst", "mab")] == every + ["always-first"]


@pytest.mark.heavy
def test_check_exact_fails_on_instances_only_one_run_holds(tmp_path):
    """A run with fewer instances does not reproduce a larger one; cells in one run only are named."""
    base = ["run", "--task", "mab", "--algos", "random,greedy", "--no-progress"]
    assert run_cli(*base, "--cells", "n10-k5,n10-k3", "--instances", "40", "--out", "a", cwd=tmp_path).returncode == 0
    fresh = run_cli(*base, "--cells", "n10-k5", "--instances", "20", "--out", "b", "--resume", cwd=tmp_path)
    assert fresh.returncode == 0 and "b holds no run yet: starting a new one" in fresh.stderr  # a typo shows
    result = run_cli("check", "a", "--against", "b", "--exact", cwd=tmp_path)
    assert result.returncode == 1 and "0 reproduced exactly, 2 FAIL" in result.stdout, result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if " n10-k5 " in f" {line} "]
    assert len(rows) == 2 and all(row[-2:] == ["20", "FAIL"] for row in rows)
    assert "FAIL, not in both runs: greedy (n10-k3) only in a; random (n10-k3) only in a" in result.stdout


def _as_committed(run, to):
    """A copy of a run folder as git carries it: no per-chunk files, no merged rows per evaluation."""
    import shutil
    from pathlib import Path

    shutil.copytree(run, to, ignore=lambda folder, names: [
        n for n in names if Path(folder).parent.name == "eval" and (n.endswith(".csv") or (Path(folder) / n).is_dir())])


@pytest.mark.heavy
def test_a_damaged_run_folder_is_a_clear_error_and_resume_repairs_it(tmp_path):
    """A cut results.csv or a garbled marker: reading says which file, never a traceback nor a silent
    partial mean; --resume evaluates exactly those again and the folder reproduces the original."""
    args = ["run", "--task", "mab", "--algos", "random,ucb1", "--cells", "n10-k5,n10-k3", "--instances", "40",
            "--no-progress"]
    assert run_cli(*args, "--out", "a", cwd=tmp_path).returncode == 0
    _as_committed(tmp_path / "a", tmp_path / "b")
    merged = tmp_path / "b" / "results.csv"
    merged.write_bytes(merged.read_bytes()[: int(merged.stat().st_size * 0.6)])
    for command in (["table", "b"], ["check", "b"], ["check", "a", "--against", "b", "--exact"]):
        read = run_cli(*command, cwd=tmp_path)
        assert read.returncode == 2 and "Traceback" not in read.stderr, read.stderr
        assert "results.csv" in read.stderr and "--resume" in read.stderr
        assert len(read.stderr.strip().splitlines()) == 1
    resumed = run_cli(*args, "--out", "b", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0 and "evaluating it again" in resumed.stderr, resumed.stderr
    same = run_cli("check", "b", "--against", "a", "--exact", cwd=tmp_path)
    assert same.returncode == 0 and "4 reproduced exactly, 0 FAIL" in same.stdout, same.stdout
    (tmp_path / "b" / "parts" / "eval" / "n10-k3" / "ucb1.json").write_text('{"cell": "n10-k3", "algo')
    read = run_cli("table", "b", cwd=tmp_path)
    assert read.returncode == 2 and "ucb1.json is not valid JSON" in read.stderr, read.stderr
    assert run_cli(*args, "--out", "b", "--resume", cwd=tmp_path).returncode == 0
    same = run_cli("check", "b", "--against", "a", "--exact", cwd=tmp_path)
    assert same.returncode == 0 and "4 reproduced exactly, 0 FAIL" in same.stdout, same.stdout


@pytest.mark.heavy
def test_a_failing_user_algorithm_is_one_line_naming_it_and_where(tmp_path):
    (tmp_path / "shaky.py").write_text(textwrap.dedent("""
        from rl2bench.algorithms.bandit_common import BetaCountsAgent

        class Boom(BetaCountsAgent):
            name = "boom"

            def act(self, obs):
                raise KeyError("boom in act")

        class NoName(BetaCountsAgent):
            families = ("mab",)
    """))
    failed = run_cli("run", "--task", "mab", "--algos", "random,shaky:Boom", "--cells", "n10-k5", "--instances", "20",
                     "--jobs", "2", "--out", "r", "--no-progress", cwd=tmp_path)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr
    # joblib's resource tracker, a process of its own, may warn on stderr after we exit when it tidies up
    # after the workers killed on the failure (seen once in CI under load); only its lines may stand beside ours
    lines = failed.stderr.strip().splitlines()
    ours = [line for line in lines if line.startswith("rl2bench")]
    tracker = [line for line in lines if "resource_tracker" in line or line.strip().startswith("warnings.warn(")]
    assert len(ours) == 1 and len(ours) + len(tracker) == len(lines), failed.stderr
    for needle in ("boom on mab n10-k5", "KeyError: 'boom in act'", "shaky.py:", "in act", "--resume --out r"):
        assert needle in ours[0], ours[0]
    nameless = run_cli("run", "--task", "mab", "--algos", "shaky:NoName", cwd=tmp_path)
    assert nameless.returncode == 2 and "needs a class attribute `name`" in nameless.stderr, nameless.stderr


def test_leaderboard_numbers_keep_their_decimals():
    """tabulate would print a mean of 54.0 as "54" beside "51.4" unless told the entries are text."""
    import pandas as pd

    from rl2bench.leaderboard import build_summary, render_latex, render_markdown, render_terminal

    rows = pd.DataFrame({"task": "mab", "cell": "n100-k5", "algorithm": ["random"] * 4 + ["greedy"] * 4,
                         "instance": [0, 1, 2, 3] * 2, "return": [53, 54, 55, 54, 60, 61, 59, 60.4]})
    summary = build_summary(rows)
    for text in (render_markdown(summary), render_terminal(summary), render_latex(summary)):
        assert "54.0" in text and "60.1" in text


def test_interrupted_training_says_whether_there_is_anything_to_resume(tmp_path):
    from rl2bench.algorithms.rl2.command import interrupted_advice
    from rl2bench.algorithms.rl2.runfolder import CHECKPOINT

    nothing = interrupted_advice(tmp_path, 0)
    assert "nothing was saved" in nothing and "without --resume" in nothing
    (tmp_path / CHECKPOINT).write_bytes(b"")
    assert "at iteration 5" in interrupted_advice(tmp_path, 5) and "--resume --out" in interrupted_advice(tmp_path, 5)


@pytest.mark.heavy
def test_plugin_mistakes_are_named(tmp_path):
    """A class that reuses a built-in's name, an entry point that fails to import or is named unlike its
    class, a missing attribute, an `unavailable` that raises: each is said in one line, on stderr."""
    (tmp_path / "clash2.py").write_text(textwrap.dedent("""
        from rl2bench.algorithms.bandit_common import BetaCountsAgent

        class UCB1(BetaCountsAgent):  # the built-in's class name too: still another algorithm
            name = "ucb1"

        class Picky(BetaCountsAgent):
            name = "picky"

            @classmethod
            def unavailable(cls, cell, spec):
                raise ValueError("cannot decide")
    """))
    (tmp_path / "ep_agents.py").write_text(textwrap.dedent("""
        from rl2bench.algorithms.bandit_common import BetaCountsAgent

        class Softmax(BetaCountsAgent):
            name = "softmax-ep"
    """))
    (tmp_path / "broken_mod.py").write_text("raise RuntimeError('boom at import')\n")
    info = tmp_path / "ep_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[rl2bench.algorithms]\nsoftmax = ep_agents:Softmax\n"
                                           "raiser = broken_mod:Nothing\n")
    env = {"PYTHONPATH": str(tmp_path)}
    clash = run_cli("run", "--task", "mab", "--algos", "ucb1,clash2:UCB1", "--cells", "n10-k3", cwd=tmp_path, env=env)
    assert clash.returncode == 2 and "already registered" in clash.stderr, clash.stderr
    listed = run_cli("list", "--task", "mab", cwd=tmp_path, env=env)
    assert listed.returncode == 0 and "softmax-ep" in listed.stdout and "warning" not in listed.stdout
    assert "entry point 'raiser'" in listed.stderr and "RuntimeError: boom at import" in listed.stderr
    assert "use --algos softmax-ep" in listed.stderr
    named = run_cli("run", "--task", "mab", "--algos", "raiser", "--cells", "n10-k3", cwd=tmp_path, env=env)
    assert named.returncode == 2 and "'raiser' failed to load: RuntimeError" in named.stderr, named.stderr
    for algos, needle in (("clash2:Nope", "has no 'Nope'"), ("clash2:Picky", "picky.unavailable on n10-k3 failed: "
                                                                            "ValueError: cannot decide")):
        result = run_cli("run", "--task", "mab", "--algos", algos, "--cells", "n10-k3", cwd=tmp_path)
        assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.heavy
@pytest.mark.skipif(sys.platform == "win32", reason="advisory folder locks are POSIX only")
def test_a_folder_another_process_writes_is_refused(tmp_path, capsys):
    """Two processes writing one run or training folder would interleave their files: the second one is
    refused in one line, before it writes anything, and the folder is free again once the first ends."""
    folder, training = tmp_path / "busy", tmp_path / "training"
    folder.mkdir()
    tiny = ["--set", "batch_steps=100", "--set", "hidden=4", "--no-progress"]
    assert main(["train", "--task", "mab", "--cell", "n10-k2", "--iters", "1", "--out", str(training), *tiny]) == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from rl2bench.errors import claim_folder;"
         f"claim_folder(Path({str(folder)!r}), '--out'); claim_folder(Path({str(training)!r}), '--out');"
         "print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for argv in (["run", "--task", "mab", "--algos", "random", "--cells", "n10-k2", "--instances", "5",
                      "--out", str(folder)],
                     ["train", "--task", "mab", "--cell", "n10-k2", "--iters", "1", "--out", str(folder)],
                     ["train", "--task", "mab", "--cell", "n10-k2", "--iters", "2", "--resume", "--out", str(training),
                      "--no-progress"]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert "being written by another rl2bench process" in err and f"pid {holder.pid}" in err
        assert sorted(p.name for p in folder.iterdir()) == [".rl2bench.lock"]  # nothing else was written
        assert json.loads((training / "meta.json").read_text())["iterations"] == 1  # not resumed
    finally:
        holder.kill()
        holder.wait()
    assert main(["run", "--task", "mab", "--algos", "random", "--cells", "n10-k2", "--instances", "5",
                 "--out", str(folder), "--no-progress", "--jobs", "1"]) == 0
    # ... and released when that command ended: another process may resume it now
    again = run_cli("run", "--task", "mab", "--algos", "random", "--cells", "n10-k2", "--instances", "5",
                    "--out", str(folder), "--no-progress", "--resume")
    assert again.returncode == 0, again.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="advisory folder locks are POSIX only")
def test_a_file_system_without_locks_refuses_nothing(tmp_path, monkeypatch):
    import errno
    import fcntl

    from rl2bench.errors import claim_folder, held_folders, release_folders

    def no_locks(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    claim_folder(tmp_path, "--out")  # NFS without a lock daemon: unguarded, not "in use"
    assert tmp_path.resolve() not in held_folders()
    monkeypatch.undo()
    before = held_folders()
    claim_folder(tmp_path, "--out")
    assert held_folders() == before | {tmp_path.resolve()}
    release_folders(keep=before)
    assert held_folders() == before and (tmp_path / ".rl2bench.lock").read_text() == ""
