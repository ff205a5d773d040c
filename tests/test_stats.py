import numpy as np
import pandas as pd
from scipy import stats as sst

from rl2bench import stats


def test_one_sided_welch_against_textbook_formula():
    best = np.array([5.1, 4.9, 5.3, 5.0, 5.2, 4.8])
    other = np.array([4.0, 4.6, 4.4, 4.9, 4.1, 4.3, 4.5])
    m1, m2 = best.mean(), other.mean()
    v1, v2 = best.var(ddof=1) / len(best), other.var(ddof=1) / len(other)
    t = (m1 - m2) / np.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1**2 / (len(best) - 1) + v2**2 / (len(other) - 1))
    assert np.isclose(stats.p_worse_than_best(best, other), sst.t.sf(t, df))


def test_summary_marks_best_and_ties_but_not_clearly_worse():
    rng = np.random.default_rng(0)
    rows = []
    for algo, mu in [("a", 10.0), ("b", 9.99), ("c", 8.0)]:
        x = rng.normal(mu, 1.0, 1000)
        rows += [{"task": "mab", "cell": "n1-k2", "algorithm": algo, "instance": i, "return": v}
                 for i, v in enumerate(x)]
    summary = stats.summarize(pd.DataFrame(rows)).set_index("algorithm")
    assert summary.loc["a", "best"] or summary.loc["b", "best"]
    assert summary.loc["a", "marked"] and summary.loc["b", "marked"]
    assert not summary.loc["c", "marked"] and summary.loc["c", "p_value"] < 1e-10
    c = rows_of(rows, "c")
    assert np.isclose(summary.loc["c", "se"], c.std(ddof=1) / np.sqrt(len(c)))
    np.testing.assert_allclose(summary["n"], 1000)


def rows_of(rows: list[dict], algo: str) -> np.ndarray:
    return np.array([r["return"] for r in rows if r["algorithm"] == algo])


def _shifted_cell(shifts: dict[str, float]) -> pd.DataFrame:
    """One cell: algorithm "best" and copies of its returns shifted down (same spread, known t)."""
    best = np.random.default_rng(1).normal(10.0, 1.0, 1000)
    rows = [{"task": "mab", "cell": "c", "algorithm": algo, "instance": i, "return": v}
            for algo, x in [("best", best), *((a, best - s) for a, s in shifts.items())] for i, v in enumerate(x)]
    return pd.DataFrame(rows)


def test_marking_threshold_is_the_papers_five_percent():
    # t = shift / sqrt(2 var / n): 0.057 -> p ~ 0.10 (not significant), 0.084 -> p ~ 0.03 (significant)
    summary = stats.summarize(_shifted_cell({"close": 0.057, "apart": 0.084})).set_index("algorithm")
    assert 0.05 < summary.loc["close", "p_value"] < 0.2 and 0.01 < summary.loc["apart", "p_value"] < 0.05
    assert summary.loc["close", "marked"] and not summary.loc["apart", "marked"]


def test_marked_cells_are_shown_as_marked_in_every_format():
    from rl2bench.leaderboard import render_latex, render_markdown, render_terminal

    summary = stats.summarize(_shifted_cell({"close": 0.057, "apart": 0.5}))
    mean = summary.set_index("algorithm")["mean"]
    best, close, apart = (f"{mean[a]:.2f}" for a in ("best", "close", "apart"))
    page, latex, term = render_markdown(summary), render_latex(summary), render_terminal(summary)
    for shown in (f"**{best}**", f"**{close}**"):
        assert shown in page
    assert apart in page and f"**{apart}**" not in page
    assert f"\\textbf{{{close}}}" in latex and f"\\textbf{{{apart}}}" not in latex and apart in latex
    assert f"*{close}" in term and f"*{apart}" not in term and apart in term


def test_the_page_names_the_algorithms_that_did_not_run_on_a_cell():
    from rl2bench.leaderboard import render_markdown

    one = _shifted_cell({"close": 0.1, "late": 0.2})
    other = _shifted_cell({"close": 0.1}).assign(cell="d")  # "late" has no results on cell d
    page = render_markdown(stats.summarize(pd.concat([one, other], ignore_index=True)))
    assert "did not run on that cell (late)" in page
    assert "did not run" not in render_markdown(stats.summarize(one))


def test_normalized_scores():
    summary = pd.DataFrame({"cell": ["x"] * 3, "algorithm": ["random", "gittins", "ucb1"],
                            "mean": [5.0, 7.0, 6.5]})
    np.testing.assert_allclose(stats.normalized_scores(summary, "random", "gittins"), [0.0, 1.0, 0.75])


def test_one_instance_marks_only_the_best():
    frame = pd.DataFrame({"task": "mab", "cell": "c", "algorithm": ["a", "b"], "return": [2.0, 1.0]})
    summary = stats.summarize(frame).set_index("algorithm")
    assert summary.loc["a", "marked"] and not summary.loc["b", "marked"]


def test_check_agrees_within_rounding_even_with_zero_spread():
    from rl2bench.check import compare

    ours = pd.DataFrame({"task": "mab", "cell": "c", "algorithm": ["a", "b"], "mean": [5.02, 6.0],
                         "se": [0.0, 0.0]})
    paper = pd.DataFrame({"task": "mab", "cell": "c", "algorithm": ["a", "b"], "value": [5.0, 5.0]})
    out = compare(ours, paper, rounding=0.05, tolerance=3.0).set_index("algorithm")
    assert out.loc["a", "status"] == "ok" and out.loc["a", "z"] == 0.0
    assert out.loc["b", "status"] == "FAIL"  # a real difference with no spread is infinitely significant


def test_the_plot_fits_every_learner_and_cuts_only_references():
    from rl2bench.leaderboard import plot_top

    normalized = pd.DataFrame({"psrl": [0.9, 0.95], "rl2": [1.2, 0.6], "oracle": [2.7, 1.3]})
    top = plot_top(normalized, frozenset({"oracle"}))
    assert 1.2 < top < 1.3  # rl2's 1.2 shows whole; the oracle's 2.7 does not set the scale
    assert plot_top(normalized[["psrl"]], frozenset()) == 1.1  # the 1.0 line always shows
