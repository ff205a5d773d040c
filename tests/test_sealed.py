"""Sealed evaluation: a submitted algorithm sees only what the agent interface hands it.

Three cheating plug-ins (the protocol's frame, the garbage collector, the generator's seed) try to read
the hidden arm means and play the best arm; sealed, each finds nothing and falls back to a plain greedy
play, so none beats Gittins. In-process (``--in-process``) the frame cheat works, which is why that mode is
marked on the page. An honest plug-in gives the same numbers sealed and in-process, and an algorithm that
is not built in cannot declare itself a privileged reference.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

CHEATS = textwrap.dedent('''
    import gc
    import sys

    import numpy as np

    from rl2bench.algorithms.bandit_common import BetaCountsAgent
    from rl2bench.registry import get_family


    class Cheat(BetaCountsAgent):
        """Plays the best arm if it can find the hidden means, else greedily on posterior means."""
        name = "cheat"

        def hidden_means(self):
            return None

        def act(self, obs):
            means = self.hidden_means()
            if means is not None and means.shape == (self.batch_size, self.spec.n_actions):
                return np.argmax(means, axis=1)
            return np.argmax(self.successes / self.pulls, axis=1)


    class FrameCheat(Cheat):
        name = "frame-cheat"

        def hidden_means(self):
            frame = sys._getframe(1)
            while frame is not None:
                env = frame.f_locals.get("env")
                if env is not None and hasattr(env, "arm_means"):
                    return env.arm_means
                frame = frame.f_back
            return None


    class GcCheat(Cheat):
        name = "gc-cheat"

        def hidden_means(self):
            for obj in gc.get_objects():
                if type(obj).__name__ == "BanditEnv":
                    return obj.arm_means
            return None


    class SeedCheat(Cheat):
        """Takes its generator's seed for the root seed and replays the evaluation instances of chunk 0."""
        name = "seed-cheat"

        def hidden_means(self):
            if not hasattr(self, "_means"):
                root = self.rng.bit_generator.seed_seq.entropy
                family = get_family("mab")
                cell = family.parse_cell(f"n{self.spec.n_episodes}-k{self.spec.n_actions}")
                try:
                    self._means = family.sample_instances(cell, root, "eval", 250)["arm_means"][:self.batch_size]
                except Exception:
                    self._means = None
            return self._means


    class Honest(Cheat):
        name = "honest"

        def act(self, obs):
            draws = np.random.beta(self.successes, self.failures)  # numpy's global generator only
            return np.argmax(draws, axis=1)


    class Privileged(Cheat):
        name = "privileged-cheat"
        privileged = True
''')


def run(tmp_path: Path, algos: str, out: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rl2bench", "run", "--task", "mab", "--algos", algos, "--cells", "n100-k10",
         "--instances", "250", "--no-progress", "--out", str(tmp_path / out), *extra],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)


def means(folder: Path) -> pd.Series:
    return pd.read_csv(folder / "results.csv").groupby("algorithm")["return"].mean()


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    (tmp_path / "cheats.py").write_text(CHEATS)
    return tmp_path


@pytest.mark.heavy
def test_cheating_plugins_find_nothing_when_sealed(plugins):
    result = run(plugins, "gittins,cheats:FrameCheat,cheats:GcCheat,cheats:SeedCheat", "sealed")
    assert result.returncode == 0, result.stderr
    m = means(plugins / "sealed")
    best_possible = 90.9  # E[max of 10 uniform means] x 100 pulls, what the cheats reached unsealed
    for cheat in ("frame-cheat", "gc-cheat", "seed-cheat"):
        assert m[cheat] <= m["gittins"] + 1.0, m  # honest play at best, nowhere near best_possible
        assert m[cheat] < best_possible - 5


@pytest.mark.heavy
def test_in_process_is_not_sealed_and_says_so(plugins):
    result = run(plugins, "gittins,cheats:FrameCheat", "open", "--in-process")
    assert result.returncode == 0, result.stderr
    m = means(plugins / "open")
    assert m["frame-cheat"] > m["gittins"] + 3  # the cheat works here: the reason for sealing
    page = (plugins / "open" / "leaderboard.md").read_text()
    assert "Not sealed: frame-cheat" in page


@pytest.mark.heavy
def test_an_honest_plugin_gives_the_same_numbers_sealed_in_process_and_on_one_worker(plugins):
    runs = {name: run(plugins, "ts,cheats:Honest", name, *extra) for name, extra in
            (("a", ()), ("b", ()), ("c", ("--in-process",)), ("d", ("--jobs", "1")))}
    for result in runs.values():
        assert result.returncode == 0, result.stderr
    frames = {name: pd.read_csv(plugins / name / "results.csv").sort_values(["algorithm", "instance"])
              for name in runs}
    for name in ("b", "c", "d"):
        np.testing.assert_array_equal(frames["a"]["return"].to_numpy(), frames[name]["return"].to_numpy())


@pytest.mark.heavy
def test_a_plugin_cannot_declare_itself_privileged(plugins):
    result = run(plugins, "gittins,cheats:Privileged", "priv")
    assert result.returncode == 2
    assert "privileged" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (plugins / "priv" / "results.csv").exists()


@pytest.mark.heavy
def test_a_plugin_that_exits_is_one_line_naming_it(plugins):
    (plugins / "quitter.py").write_text(textwrap.dedent('''
        from rl2bench.algorithms.bandit_common import BetaCountsAgent

        class Quitter(BetaCountsAgent):
            name = "quitter"

            def act(self, obs):
                raise SystemExit(3)
    '''))
    for extra in ((), ("--in-process",)):
        result = run(plugins, "cheats:Honest,quitter:Quitter", f"quit{len(extra)}", *extra)
        assert result.returncode == 2, (extra, result.returncode, result.stderr)
        assert "quitter" in result.stderr and "SystemExit: 3" in result.stderr
        assert "quitter.py" in result.stderr  # where it was raised


def _frame_cheat_class():
    from rl2bench.algorithms.bandit_common import BetaCountsAgent

    class FrameCheatInTests(BetaCountsAgent):
        name = "frame-cheat-in-tests"

        def act(self, obs):
            frame = sys._getframe(1)
            while frame is not None:
                env = frame.f_locals.get("env")
                if env is not None and hasattr(env, "arm_means"):
                    return np.argmax(env.arm_means, axis=1)
                frame = frame.f_back
            return self.rng.integers(self.spec.n_actions, size=self.batch_size)

    return FrameCheatInTests


def test_sealed_and_in_process_play_alike_and_only_in_process_leaks_the_environment():
    """The fast tier's check of the seal: the same plug-in class (sent by value, as one defined in a notebook
    would be) played by the protocol both ways on a small cell."""
    from rl2bench.protocol import play_trials
    from rl2bench.registry import get_family

    family = get_family("mab")
    cell = family.parse_cell("n20-k5")
    cls = _frame_cheat_class()
    sealed = play_trials(family, cell, cls, {}, 60, 0, "eval", sealed=True).returns
    open_ = play_trials(family, cell, cls, {}, 60, 0, "eval", sealed=False).returns
    means = family.sample_instances(cell, 0, "eval", 60)["arm_means"]
    best = 20 * means.max(axis=1).mean()
    assert open_.mean() > best - 1.5  # in-process the frame walk finds the environment and plays its best arm
    assert sealed.mean() < best - 3  # sealed it finds nothing and plays at random
    uniform = 20 * means.mean(axis=1).mean()
    assert abs(sealed.mean() - uniform) < 2.0


def test_a_sealed_agent_error_is_formatted_where_it_was_raised():
    from rl2bench.errors import AlgorithmFailed
    from rl2bench.protocol import _guarded, play_trials
    from rl2bench.registry import get_family

    family = get_family("mab")
    cell = family.parse_cell("n5-k2")

    class Broken(_frame_cheat_class()):  # type: ignore[misc]
        name = "broken"

        def act(self, obs):
            raise ZeroDivisionError("no arms today")

    # sent by value, its code keeps the line but not always the file name
    with pytest.raises(AlgorithmFailed, match=r"broken.*ZeroDivisionError: no arms today \(at .*:\d+ in act\)"):
        _guarded("broken on n5-k2", play_trials, family, cell, Broken, {}, 10, 0, "eval")
