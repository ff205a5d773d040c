"""The static leaderboard site (``python -m rl2bench site``), built from the committed run folders: its
pages, tables and bold marks against the protocol's, its links and pictures, and its refusals."""

from __future__ import annotations

import json
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from rl2bench import aggregate
from rl2bench.cli import main
from rl2bench.leaderboard import _order, build_summary, run_references
from rl2bench.results import RunStore
from rl2bench.site import _iqm, build_site, png_size

ROOT = Path(__file__).resolve().parents[1]
RUNS = {family: ROOT / "leaderboard" / "runs" / family for family in ("mab", "mdp", "maze")}


class Page(HTMLParser):
    """What a test needs from a page: its links and pictures, and its tables as rows of cells, each cell
    (tag, attributes, text, bold?)."""

    def __init__(self, text: str):
        super().__init__()
        self.links: list[str] = []
        self.tables: list[dict] = []
        self.scripts: list[str] = []
        self._cell: dict | None = None
        self._in_script = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("a", "link") and a.get("href"):
            self.links.append(a["href"])
        if tag in ("img", "script") and a.get("src"):
            self.links.append(a["src"])
        if tag == "script":
            self._in_script = True
        if tag == "table":
            self.tables.append({"class": a.get("class") or "", "rows": []})
        elif tag == "tr":
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = {"tag": tag, "attrs": a, "text": "", "bold": False}
            self.tables[-1]["rows"][-1].append(self._cell)
        elif tag == "strong" and self._cell is not None:
            self._cell["bold"] = True

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._cell = None
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._in_script:
            self.scripts.append(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site of the committed runs, with fewer bootstrap resamples than the command's (a faster build,
    the same pages)."""
    out = tmp_path_factory.mktemp("site") / "site"
    started = time.perf_counter()
    build_site(list(RUNS.values()), out, command="python -m rl2bench site ...", resamples=100)
    assert time.perf_counter() - started < 60
    return out


def test_the_command_builds_a_site(tmp_path, capsys):
    assert main(["site", str(RUNS["maze"]), "--out", str(tmp_path / "site")]) == 0
    assert "files written" in capsys.readouterr().out
    assert (tmp_path / "site" / "maze.html").is_file() and (tmp_path / "site" / "index.html").is_file()


def page(site: Path, name: str) -> Page:
    return Page((site / name).read_text(encoding="utf-8"))


def test_an_index_and_one_page_per_family(site):
    assert {p.name for p in site.glob("*.html")} == {"index.html", "mab.html", "mdp.html", "maze.html"}
    index = page(site, "index.html")
    assert {"mab.html", "mdp.html", "maze.html"} <= set(index.links)


@pytest.mark.parametrize("family", list(RUNS))
def test_the_table_holds_the_runs_cells_algorithms_and_bold_marks(site, family):
    summary = build_summary(RunStore.existing(RUNS[family]).results(), run_references(RUNS[family]))
    tables = [t for t in page(site, f"{family}.html").tables if "leaderboard" in t["class"]]
    assert len(tables) == 1
    head, *rows = tables[0]["rows"]
    algos = [c["attrs"]["data-algorithm"] for c in head[1:]]
    cells = [row[0]["text"] for row in rows]
    assert set(algos) == set(summary["algorithm"]) and len(algos) == len(set(algos))
    assert cells == _order(summary)[0]  # the published leaderboards' row order
    shown, bold = {}, set()
    for row in rows:
        for algo, cell in zip(algos, row[1:], strict=True):
            if cell["text"].strip():
                shown[(row[0]["text"], algo)] = float(cell["attrs"]["data-value"])
                if cell["bold"]:
                    bold.add((row[0]["text"], algo))
    expected = summary.set_index(["cell", "algorithm"])
    assert set(shown) == set(expected.index)
    for key, value in shown.items():
        assert value == pytest.approx(expected.loc[key, "mean"], rel=1e-12)
    assert bold == set(expected.index[expected["marked"].astype(bool)])
    assert bold, "the protocol marks at least the best of each row"


@pytest.mark.parametrize("family", list(RUNS))
def test_every_link_and_picture_is_a_relative_file_that_exists(site, family):
    pictures = 0
    for name in ("index.html", f"{family}.html"):
        for link in page(site, name).links:
            assert "://" not in link and not link.startswith("/"), f"{name}: {link} is not relative"
            target = site / link.split("#")[0]
            assert target.is_file(), f"{name} links {link}, which is not in the site"
            if target.suffix == ".png":
                pictures += 1
    assert pictures or family == "maze"


def test_each_page_links_its_command_and_a_copy_of_its_run_json(site):
    for family, folder in RUNS.items():
        meta = json.loads((folder / "run.json").read_text())
        text = (site / f"{family}.html").read_text(encoding="utf-8")
        assert f"{family}/run.json" in page(site, f"{family}.html").links
        assert json.loads((site / family / "run.json").read_text()) == meta
        assert meta["command"].replace("--", "") in text.replace("--", "")


def test_the_sort_script_is_inline_and_the_pages_fetch_nothing(site):
    for name in ("index.html", "mab.html", "maze.html"):
        parsed = page(site, name)
        assert "sortable" in "".join(parsed.scripts)
        assert not any(link.endswith(".js") for link in parsed.links)
        assert "http://" not in (site / name).read_text() and "https://" not in (site / name).read_text()


def test_the_pictures_are_real_pngs(site):
    import matplotlib.image

    pngs = sorted(site.rglob("*.png"))
    assert len(pngs) >= 3  # mab and mdp normalized scores, the zoo's curves
    for path in pngs:
        width, height = png_size(path.read_bytes())
        assert width > 200 and height > 200, path
        pixels = matplotlib.image.imread(path)
        assert np.ptp(pixels) > 0, f"{path} is blank"


def test_the_maze_page_shows_the_familys_own_per_episode_tables(site):
    text = (site / "maze.html").read_text(encoding="utf-8")
    assert "<details open>" in text and "% success" in text


@pytest.mark.parametrize("family", ["mab", "mdp"])
def test_the_aggregate_table_agrees_with_the_normalized_scores(site, family):
    summary = build_summary(RunStore.existing(RUNS[family]).results(), run_references(RUNS[family]))
    tables = [t for t in page(site, f"{family}.html").tables if "aggregate" in t["class"]]
    assert len(tables) == 1
    head, *rows = tables[0]["rows"]
    assert [c["text"] for c in head] == ["algorithm", "cells", "IQM [95% CI]", "mean [95% CI]"]
    assert {row[0]["attrs"]["data-algorithm"] for row in rows} == set(summary["algorithm"])
    n_cells = summary["cell"].nunique()
    for row in rows:
        algo = row[0]["attrs"]["data-algorithm"]
        for cell in row[2:]:
            estimate = float(cell["attrs"]["data-value"])
            low, high = map(float, cell["text"].split("[")[1].rstrip("]").split(","))
            assert low <= round(estimate, 3) <= high
        if row[1]["text"] == str(n_cells):  # on every cell: the mean is the mean of the cells' scores
            mean = float(row[3]["attrs"]["data-value"])
            assert mean == pytest.approx(summary[summary["algorithm"] == algo]["normalized"].mean(), abs=1e-9)
    assert (site / family / "profile.png").is_file()


def test_the_fast_iqm_is_aggregates():
    rng = np.random.default_rng(1)
    for shape in [(9, 1000), (5, 997), (1, 7), (3, 3), (1, 1), (2, 5)]:
        for scores in (rng.normal(size=shape), rng.integers(0, 4, size=shape).astype(float)):
            assert _iqm(scores) == pytest.approx(aggregate.iqm(scores), abs=1e-12)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rl2bench: error: "), err
    return err


def test_a_folder_that_is_not_a_run_is_one_line_and_nothing_written(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "site"
    assert main(["site", str(RUNS["mab"]), str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "not an rl2bench run folder" in one_error_line(capsys)
    assert main(["site", str(tmp_path / "missing"), "--out", str(out)]) == 2
    one_error_line(capsys)
    assert not out.exists()


@pytest.mark.heavy
def test_an_unwritable_out_is_one_line_and_nothing_written(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["site", str(RUNS["maze"]), "--out", str(blocker)]) == 2
    one_error_line(capsys)
    assert main(["site", str(RUNS["maze"]), "--out", str(blocker / "site")]) == 2
    one_error_line(capsys)
    assert blocker.read_text() == "" and list(tmp_path.iterdir()) == [blocker]


def test_two_runs_of_one_family_and_a_bad_extra_image_are_refused(tmp_path, capsys):
    out = tmp_path / "site"
    assert main(["site", str(RUNS["maze"]), str(ROOT / "leaderboard" / "runs" / "maze-rl2"), "--out", str(out)]) == 2
    assert "both maze runs" in one_error_line(capsys)
    not_png = tmp_path / "x.png"
    not_png.write_text("text")
    assert main(["site", str(RUNS["maze"]), "--extra-image", str(not_png), "--out", str(out)]) == 2
    assert "not a PNG" in one_error_line(capsys)
    assert main(["site", str(RUNS["maze"]), "--extra-image", f"nosuch={not_png}", "--out", str(out)]) == 2
    one_error_line(capsys)
    assert not out.exists()


def test_an_extra_image_shows_on_its_familys_page_only(tmp_path):
    curves = ROOT / "leaderboard" / "runs" / "mdp" / "leaderboard.png"
    out = tmp_path / "site"
    build_site([RUNS["mdp"], RUNS["maze"]], out, [f"maze={curves}"], resamples=20)
    maze_pictures = [link for link in page(out, "maze.html").links if link.endswith(".png")]
    assert any((out / link).read_bytes() == curves.read_bytes() for link in maze_pictures)
    assert not set(maze_pictures) & set(page(out, "mdp.html").links)


@pytest.mark.heavy
def test_the_committed_site_is_what_the_committed_runs_build(tmp_path):
    """leaderboard/site is generated: rebuilt from the committed runs it must come out byte for byte the
    same (rebuild it with the command in docs/site.md after a run changes)."""
    committed = ROOT / "leaderboard" / "site"
    command = ("python -m rl2bench site leaderboard/runs/mab leaderboard/runs/mdp leaderboard/runs/maze "
               "--out leaderboard/site")
    written = build_site([RUNS["mab"], RUNS["mdp"], RUNS["maze"]], tmp_path / "site", command=command)
    stale = [str(p.relative_to(tmp_path / "site")) for p in written
             if not (committed / p.relative_to(tmp_path / "site")).exists()
             or (committed / p.relative_to(tmp_path / "site")).read_bytes() != p.read_bytes()]
    assert not stale, f"leaderboard/site is stale, rebuild it: {stale}"
