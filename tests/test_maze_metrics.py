"""Table 3 metrics on hand-made trajectories (no vizdoom needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rl2bench.tasks.maze.metrics import render_markdown, table3


def frame() -> pd.DataFrame:
    # Three instances, two episodes, horizon 250: lengths and successes chosen by hand.
    rows = {"task": "maze", "cell": "small", "algorithm": "x", "instance": [0, 1, 2], "return": [0.5, -3.0, 1.0],
            "len_ep1": [40, 250, 30], "len_ep2": [20, 250, 35], "success_ep1": [1, 0, 1], "success_ep2": [1, 0, 1]}
    return pd.DataFrame(rows)


def test_table3_by_hand():
    t = table3(frame()).set_index("episode")
    assert t.loc[1, "length"] == 35.0  # mean of the successful 40 and 30; the failure is left out
    assert np.isclose(t.loc[1, "length_se"], np.std([40, 30], ddof=1) / np.sqrt(2))
    assert np.isclose(t.loc[1, "success_pct"], 200 / 3)
    assert t.loc[2, "length"] == 27.5
    # improved: instance 0 (20 <= 40); not 1 (episode 2 failed); not 2 (35 > 30)
    assert np.isclose(t.loc[1, "improved_pct"], 100 / 3)
    assert np.isnan(t.loc[2, "improved_pct"])


def test_no_success_gives_dash():
    f = frame()
    f[["success_ep1", "success_ep2"]] = 0
    t = table3(f)
    assert t["length"].isna().all() and (t["success_pct"] == 0).all() and t.loc[0, "improved_pct"] == 0


def test_markdown_layout():
    f = pd.concat([frame(), frame().assign(cell="large")], ignore_index=True)
    text = render_markdown(f, "title", "python -m rl2bench run --task maze")
    assert "## x" in text
    header = next(line for line in text.splitlines() if "episode" in line and "|" in line)
    assert [h.strip() for h in header.strip("|").split("|")] == [
        "episode", "small: length", "large: length", "small: % success", "large: % success"]
    assert "35.0 ± 5.0" in text and "66.7%" in text
    assert "small 33.3%, large 33.3%" in text
    assert "paper: RL^2" in text and "52.4 ± 1.3" in text
    assert "documented change" not in text


def test_paper_rows_stand_beside_coarser_turn_cells():
    f = pd.concat([frame().assign(cell="small-turn90"), frame().assign(cell="large-turn90")], ignore_index=True)
    text = render_markdown(f)
    assert "documented change of the action scheme" in text
    assert "`small-turn90` 90" in text and "`large-turn90` 90" in text
    paper = text[text.index("## paper: RL^2"):]
    header = next(line for line in paper.splitlines() if "episode" in line and "|" in line)
    assert "small-turn90: length" in header and "large-turn90: % success" in header
    assert "52.4 ± 1.3" in paper and "97.1%" in paper  # small's episode 1 and large's, by maze size


def test_no_paper_rows_for_other_episode_counts_or_sizes():
    f = pd.concat([frame().assign(cell="small-e2"), frame().assign(cell="g3")], ignore_index=True)
    text = render_markdown(f)
    assert "paper: RL^2" not in text and "documented change" not in text


def test_paper_rows_once_per_maze_size_on_a_mixed_page():
    f = pd.concat([frame().assign(cell=c) for c in ("small-turn90", "small", "large-turn90")], ignore_index=True)
    paper = render_markdown(f)
    paper = paper[paper.index("## paper: RL^2"):paper.index("## Mean")]
    header = next(line for line in paper.splitlines() if "episode" in line and "|" in line)
    # small under the paper's own cell, large (absent at 22.5 degrees) under large-turn90
    assert [h.strip() for h in header.strip("|").split("|")] == [
        "episode", "small: length", "large-turn90: length", "small: % success", "large-turn90: % success"]


def test_the_change_of_action_scheme_names_only_cells_of_the_papers_sizes():
    f = pd.concat([frame().assign(cell=c) for c in ("small", "small-turn90", "g3-turn90")], ignore_index=True)
    text = render_markdown(f)
    assert "`small-turn90` 90" in text and "g3-turn90` 90" not in text


def test_one_action_schemes_cells_stand_together_small_first():
    f = pd.concat([frame().assign(cell=c) for c in ("large-turn90", "small-turn90", "large", "small")],
                  ignore_index=True)
    header = next(line for line in render_markdown(f).splitlines() if "episode" in line and "|" in line)
    cells = [h.strip().split(":")[0] for h in header.strip("|").split("|")[1:5]]
    assert cells == ["small", "large", "small-turn90", "large-turn90"]
