"""The static leaderboard site: ``python -m rl2bench site RUN [RUN ...] --out DIR`` (docs/site.md).

An ``index.html`` and one page per task family among the runs (``mab.html``, ...), every link relative
(the folder opens from disk). A family page: the leaderboard as a table sorted by a click on a column
header (inlined JavaScript, nothing fetched), the normalized-score plot, the aggregate table (IQM and mean
with 95% stratified-bootstrap intervals, ``rl2bench.aggregate``) and the performance profile, figures (the
zoo's learning curves, found at ``zoo/curves.png`` two folders above a run folder as in the repository's
``leaderboard/``, the run folder's own PNGs, ``--extra-image [FAMILY=]PATH``), the run's full leaderboard
page, its command and a copy of its run.json. Everything is read and rendered before the first file is
written: bad input is one error line with nothing written.
"""

from __future__ import annotations

import html
import json
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rl2bench import aggregate
from rl2bench.errors import UserError, writable_folder
from rl2bench.leaderboard import (
    _decimals,
    _order,
    build_summary,
    figure_caption,
    plot_normalized,
    reference_algorithms,
    render_markdown,
    render_trained_policies,
    render_unsealed,
    run_references,
)
from rl2bench.registry import get_family
from rl2bench.results import DamagedRun, RunStore, read_json

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BOOTSTRAP_RESAMPLES = 1000
ZOO_CURVES = Path("zoo") / "curves.png"  # relative to a run folder's grandparent (leaderboard/)
ZOO_CURVE_FAMILIES = ("mab", "mdp")  # the families whose curves `zoo --plot` draws into that figure

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .5em}
td{text-align:right;font-variant-numeric:tabular-nums}thead th{background:#f3f3f3}
table.sortable thead th{cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
img{max-width:100%;height:auto;border:1px solid #eee}pre{background:#f6f6f6;padding:.6em;overflow-x:auto}
.note{color:#555;font-size:.9em}nav a{margin-right:1em}"""

# Sort a table by the clicked column's data-value (numbers; empty last). A column sorts first in the order
# its header's data-order names (desc: highest mean first), a second click flips it.
SORT_SCRIPT = """document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.tHead.rows[0].cells, body = table.tBodies[0];
  Array.prototype.forEach.call(heads, function (th, col) {
    th.title = "click to sort";
    th.addEventListener("click", function () {
      var now = th.getAttribute("aria-sort");
      var desc = now ? now === "ascending" : th.getAttribute("data-order") !== "asc";
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = parseFloat(a.cells[col].getAttribute("data-value"));
        var y = parseFloat(b.cells[col].getAttribute("data-value"));
        if (isNaN(x) || isNaN(y)) { return isNaN(x) - isNaN(y); }
        return desc ? y - x : x - y;
      });
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", desc ? "descending" : "ascending");
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});"""


@dataclass
class Run:
    """One run folder, read and checked: its family, evaluation rows, summary (with the protocol's bold
    marks) and run.json."""

    folder: Path
    family: str
    results: pd.DataFrame
    summary: pd.DataFrame
    meta: dict[str, Any]
    references: frozenset[str]  # shown, never bold: the run's own record, else the registry's built-in ones

    @property
    def command(self) -> str:
        return str(self.meta.get("command", ""))


def load_run(folder: Path) -> Run:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder (expected an rl2bench run folder)")
    store = RunStore.existing(folder)
    if not (folder / "run.json").exists():
        raise UserError(f"{folder} has no run.json: not a finished run (assemble it with `run ... --resume`)")
    meta = read_json(folder / "run.json")
    results = store.results()
    tasks = results["task"].astype(str).unique()
    if len(tasks) != 1:
        raise DamagedRun(f"{folder}/results.csv holds {len(tasks)} task families; a run folder holds one")
    recorded = run_references(folder)
    references = reference_algorithms(str(tasks[0])) if recorded is None else recorded
    return Run(folder, str(tasks[0]), results, build_summary(results, recorded), meta, references)


def load_runs(folders: Sequence[Path]) -> list[Run]:
    runs: list[Run] = []
    for folder in folders:
        run = load_run(folder)
        clash = next((r for r in runs if r.family == run.family), None)
        if clash is not None:
            raise UserError(f"{clash.folder} and {folder} are both {run.family} runs; a site has one run per "
                            f"family (one page each)")
        runs.append(run)
    return runs


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; ValueError if ``data`` is not a PNG."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def read_png(path: Path, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
        png_size(data)
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError:
        raise UserError(f"{what} {path} is not a PNG image") from None
    return data


def parse_extra_images(specs: Sequence[str]) -> list[tuple[str | None, Path]]:
    """``[FAMILY=]PATH`` -> (family or None for every page, path); each file checked to be a PNG."""
    out: list[tuple[str | None, Path]] = []
    for spec in specs:
        family, sep, path = spec.partition("=")
        name = family if sep else None
        if name is not None:
            get_family(name)  # an unknown family is one line naming the known ones
        read_png(Path(path if sep else spec), "--extra-image")
        out.append((name, Path(path if sep else spec)))
    return out


def render_png(draw: Callable[[Path], object]) -> bytes | None:
    """Call ``draw(path)`` (a plotting function that saves a PNG there) and return the file's bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plot.png"
        draw(path)
        return path.read_bytes() if path.exists() else None


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str, nav: bool = True) -> str:
    links = '<nav><a href="index.html">all families</a></nav>\n' if nav else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{esc(title)}</title>\n'
            f"<style>\n{STYLE}\n</style>\n</head>\n<body>\n{links}<h1>{esc(title)}</h1>\n{body}\n"
            f"<script>\n{SORT_SCRIPT}\n</script>\n</body>\n</html>\n")


def figure(src: str, alt: str, caption: str) -> str:
    return (f'<figure><img src="{esc(src)}" alt="{esc(alt)}">'
            f"<figcaption class=\"note\">{caption}</figcaption></figure>\n")


def _number(value: float) -> str:
    return "" if not np.isfinite(value) else repr(float(value))


def leaderboard_table(summary: pd.DataFrame, refs: frozenset[str]) -> str:
    """Rows = cells, columns = algorithms, mean ± standard error; the protocol's marks in bold. Each data
    cell carries its mean in data-value (the sort key); references (oracles) carry a dagger."""
    cells, algos = _order(summary)
    d = _decimals(summary)
    index = summary.set_index(["cell", "algorithm"])
    head = ['<th scope="col" data-order="asc">cell</th>'] + [
        f'<th scope="col" data-algorithm="{esc(a)}">{esc(a)}{" &dagger;" if a in refs else ""}</th>'
        for a in algos]
    rows = []
    for i, cell in enumerate(cells):
        tds = [f'<th scope="row" data-value="{i}">{esc(cell)}</th>']
        for algo in algos:
            if (cell, algo) not in index.index:
                tds.append('<td data-value="" title="not run on this cell"></td>')
                continue
            r = index.loc[(cell, algo)]
            mean = f"{r['mean']:.{d}f}"
            shown = f"<strong>{mean}</strong>" if bool(r["marked"]) else mean
            se = "" if not np.isfinite(r["se"]) else f" &plusmn; {r['se']:.{d + 1}f}"
            tds.append(f'<td data-value="{_number(r["mean"])}">{shown}{se}</td>')
        rows.append("<tr>" + "".join(tds) + "</tr>")
    return ('<table class="sortable leaderboard">\n<thead><tr>' + "".join(head) + "</tr></thead>\n<tbody>\n"
            + "\n".join(rows) + "\n</tbody>\n</table>\n")


def _inline(text: str) -> str:
    text = esc(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def markdown_to_html(text: str) -> str:
    """The Markdown the leaderboard pages are written in: headings, paragraphs, indented code and pipe
    tables (the first row the header, the second the alignment row). Nothing else is interpreted."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", text.strip()) if text.strip() else []:
        lines = block.splitlines()
        if all(line.startswith("|") for line in lines) and len(lines) >= 2:
            def cells(line: str) -> list[str]:
                return [c.strip() for c in line.strip().strip("|").split("|")]

            head = "".join(f'<th scope="col">{_inline(c)}</th>' for c in cells(lines[0]))
            body = "\n".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in cells(line)) + "</tr>"
                             for line in lines[2:])
            out.append(f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>")
        elif all(line.startswith("    ") for line in lines):
            out.append("<pre><code>" + esc("\n".join(line[4:] for line in lines)) + "</code></pre>")
        elif lines[0].startswith("#"):
            level = min(len(lines[0]) - len(lines[0].lstrip("#")) + 2, 6)  # under the page's own headings
            out.append(f"<h{level}>{_inline(lines[0].lstrip('#').strip())}</h{level}>")
            if lines[1:]:
                out.append(markdown_to_html("\n".join(lines[1:])))
        else:
            out.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "\n".join(out) + "\n"


def normalized_instances(run: Run) -> dict[str, np.ndarray]:
    """Per algorithm, its per-instance normalized scores, cells x instances (instances in id order), over
    the cells where it ran and both of the family's references did (``aggregate.normalized``)."""
    lo, hi = get_family(run.family).normalize_by or ("", "")
    means = run.summary.pivot_table(index="cell", columns="algorithm", values="mean")
    cells, algos = _order(run.summary)
    by_cell = {key: g.sort_values("instance")["return"].to_numpy(dtype=float)
               for key, g in run.results.groupby(["cell", "algorithm"])}
    out = {}
    for algo in algos:
        rows = [aggregate.normalized(by_cell[(c, algo)], means.at[c, lo], means.at[c, hi])[0] for c in cells
                if (c, algo) in by_cell and np.isfinite(means.at[c, lo]) and np.isfinite(means.at[c, hi])
                and means.at[c, lo] != means.at[c, hi]]
        if rows and len({len(r) for r in rows}) == 1:
            out[algo] = np.vstack(rows)
    return out


def _iqm(scores: np.ndarray) -> float:
    """``aggregate.iqm`` (int(N / 4) runs cut at each end, the mean of the rest) by one ``np.partition``:
    the same number about ten times faster than scipy's trim_mean, for the thousands of bootstrap draws."""
    values = np.asarray(scores, dtype=float).ravel()
    cut = int(0.25 * len(values))
    return float(np.partition(values, (cut, len(values) - cut - 1))[cut:len(values) - cut].mean())


def aggregate_table(scores: dict[str, np.ndarray], refs: frozenset[str], n_cells: int, resamples: int) -> str:
    """Per algorithm: IQM and mean of its normalized scores with 95% stratified-bootstrap intervals."""
    head = ('<th scope="col" data-order="asc">algorithm</th><th scope="col">cells</th>'
            '<th scope="col">IQM [95% CI]</th><th scope="col">mean [95% CI]</th>')
    rows = []
    for i, (algo, matrix) in enumerate(scores.items()):
        tds = [f'<th scope="row" data-value="{i}" data-algorithm="{esc(algo)}">{esc(algo)}'
               f'{" &dagger;" if algo in refs else ""}</th>',
               f'<td data-value="{len(matrix)}">{len(matrix)}{"" if len(matrix) == n_cells else "*"}</td>']
        for statistic in (_iqm, aggregate.mean_score):
            ci = aggregate.bootstrap_ci(statistic, matrix, n_resamples=resamples, seed=0)
            est, low, high = (f"{v:.3f}".replace("-0.000", "0.000") for v in ci)  # no "-0.000"
            tds.append(f'<td data-value="{_number(ci.estimate)}">{est} [{low}, {high}]</td>')
        rows.append("<tr>" + "".join(tds) + "</tr>")
    return ('<table class="sortable aggregate">\n<thead><tr>' + head + "</tr></thead>\n<tbody>\n"
            + "\n".join(rows) + "\n</tbody>\n</table>\n")


def _plot_profiles(scores: dict[str, np.ndarray], refs: frozenset[str], label: str, path: Path) -> None:
    """The performance profiles (``aggregate.performance_profile`` over instances): for each threshold
    tau, the fraction of an algorithm's (cell, instance) runs scoring above tau. The thresholds span the
    learners' scores (an oracle far above may leave the plot at 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pooled = np.concatenate([m.ravel() for a, m in scores.items() if a not in refs] or
                            [m.ravel() for m in scores.values()])
    low, high = np.quantile(pooled, [0.01, 0.99])
    taus = np.linspace(min(low, 0.0), max(high, 1.0), 300)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for algo, matrix in scores.items():
        ax.plot(taus, aggregate.performance_profile(matrix, taus), label=algo, lw=1.3,
                ls="--" if algo in refs else "-")
    ax.axvline(1.0, color="black", lw=0.8, ls=":")
    ax.set_xlabel(f"normalized score tau ({label})")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def aggregate_section(run: Run, resamples: int) -> tuple[str, dict[str, str | bytes]]:
    """The aggregate table and the performance profile over the family's cells (normalized scores)."""
    scores = normalized_instances(run)
    if not scores:
        return "", {}
    lo, hi = get_family(run.family).normalize_by or ("", "")
    refs = run.references
    cells, _ = _order(run.summary)
    label = f"{lo} = 0, {hi} = 1"
    part = ("<h2>Aggregate over the cells</h2>\n"
            f'<p class="note">Per algorithm, the interquartile mean (IQM: the mean of the middle 50%) and the '
            f"mean of its per-instance normalized scores ({esc(label)}, per cell) pooled over the family's "
            f"{len(cells)} cells, each with a 95% stratified-bootstrap percentile interval ({resamples} "
            "resamples of the instances within each cell, seed 0). * : over fewer cells, those the algorithm "
            "ran on. Click a column header to sort.</p>\n" + aggregate_table(scores, refs, len(cells), resamples))
    files: dict[str, str | bytes] = {}
    profile = render_png(lambda p: _plot_profiles(scores, refs, label, p))
    if profile is not None:
        files[f"{run.family}/profile.png"] = profile
        part += "<h3>Performance profile</h3>\n" + figure(
            f"{run.family}/profile.png", "performance profiles", "Performance profile: for each threshold tau, "
            "the fraction of an algorithm's runs (cell, instance) whose normalized score is above tau; a curve "
            "above another is better across the whole distribution (dashed: references that see the hidden "
            "instance).")
    return part, files


def family_page(run: Run, extras: Sequence[tuple[str | None, Path]], images: dict[Path, str],
                resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, str | bytes]:
    """The family's page and its assets (under ``<family>/``; pictures from outside the run under
    ``images/``, one copy each: ``images`` maps each picture already placed to its name there), as relative
    path -> content."""
    fam = run.family
    files: dict[str, str | bytes] = {f"{fam}/run.json": json.dumps(run.meta, indent=2) + "\n"}
    parts = [f"<p>Made by:</p>\n<pre><code>{esc(run.command or '(run.json names no command)')}</code></pre>\n"
             f'<p>Seeds, versions, chosen settings and timings: <a href="{fam}/run.json">run.json</a>. '
             f"Instances per cell: {esc(run.meta.get('instances', '?'))}.</p>\n",
             "<h2>Leaderboard</h2>\n",
             '<p class="note">Mean total reward per trial &plusmn; standard error. <strong>Bold</strong>: the best '
             "of the row and every algorithm not significantly worse than it (one-sided Welch t-test, p = 0.05), "
             "as in the paper. Click a column header to sort by it (again to reverse).</p>\n"]
    refs = sorted(run.references & set(run.summary["algorithm"]))
    if refs:
        parts.append(f'<p class="note">&dagger; {esc(", ".join(refs))}: reference(s) that see the hidden '
                     "instance; shown for headroom, never bold.</p>\n")
    parts.append(leaderboard_table(run.summary, run.references) + markdown_to_html(render_unsealed(run.folder)))
    normalized = "normalized" in run.summary and bool(run.summary["normalized"].notna().any())
    if normalized:
        lo, hi = get_family(fam).normalize_by or ("", "")
        own = run.folder / "leaderboard.png"
        plot = own.read_bytes() if own.exists() else render_png(lambda p: plot_normalized(run.summary, p))
        if plot is not None:
            files[f"{fam}/normalized.png"] = plot
            parts.append("<h2>Normalized scores</h2>\n" + figure(
                f"{fam}/normalized.png", "normalized scores per cell", f"Normalized score per cell ({esc(lo)} = 0, "
                f"{esc(hi)} = 1; dashed line: {esc(hi)})."))
        html_part, assets = aggregate_section(run, resamples)
        parts.append(html_part)
        files.update(assets)
    else:
        parts.append('<p class="note">This family names no reference algorithms to normalize by, so it has no '
                     "normalized scores, aggregate or performance profile.</p>\n")
    pictures: list[tuple[Path, str]] = []
    curves = run.folder.resolve().parent.parent / ZOO_CURVES
    if normalized and run.family in ZOO_CURVE_FAMILIES and curves.exists():
        pictures.append((curves, "RL^2 learning curves from the zoo (training-batch means, normalized)."))
    pictures += [(p, figure_caption(p)) for p in sorted(run.folder.glob("*.png")) if p.name != "leaderboard.png"]
    pictures += [(p, f"{p.name}.") for family, p in extras if family in (None, fam)]
    if pictures:
        parts.append("<h2>Figures</h2>\n")
    for path, caption in pictures:  # one copy of a picture that several pages show, under images/
        key = path.resolve()
        if key not in images:
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)
            taken = set(images.values())
            images[key] = next(n for i in range(len(taken) + 1)
                               if (n := f"images/{stem}{f'-{i}' if i else ''}.png") not in taken)
            files[images[key]] = read_png(path, "image")
        parts.append(figure(images[key], path.stem, esc(caption)))
    family_md = get_family(fam).render_markdown(run.results)  # the family's own layout (mazes: Table 3)
    full = (family_md or render_markdown(run.summary)) + render_trained_policies(run.folder) + render_unsealed(
        run.folder)
    parts.append(f"<h2>The run's leaderboard page</h2>\n<details{' open' if family_md else ''}>\n<summary>"
                 "every table of the run's leaderboard.md (standard errors, normalized scores, trained "
                 "policies)</summary>\n" + markdown_to_html(full) + "</details>\n")
    files[f"{fam}.html"] = page(f"rl2bench leaderboard: {fam}", "".join(parts))
    return files


def index_page(runs: Sequence[Run], command: str) -> str:
    rows = []
    for run in runs:
        cells, algos = _order(run.summary)
        rows.append(f'<tr><td style="text-align:left"><a href="{run.family}.html">{esc(run.family)}</a></td>'
                    f"<td>{len(cells)}</td><td>{len(algos)}</td>"
                    f'<td style="text-align:left"><code>{esc(run.command)}</code></td>'
                    f'<td><a href="{run.family}/run.json">run.json</a></td></tr>')
    body = ("<p>RL^2 against the classical bandit, tabular MDP and maze algorithms, tuned and evaluated under one "
            "statistical protocol. One page per task family:</p>\n<table>\n<thead><tr><th>family</th><th>cells</th>"
            "<th>algorithms</th><th>made by</th><th>run</th></tr></thead>\n<tbody>\n" + "\n".join(rows)
            + "\n</tbody>\n</table>\n")
    if command:
        body += f'<p class="note">This site was built by:</p>\n<pre><code>{esc(command)}</code></pre>\n'
    return page("rl2bench leaderboards", body, nav=False)


def build_site(folders: Sequence[Path], out: Path, extra_images: Sequence[str] = (), command: str = "",
               resamples: int = BOOTSTRAP_RESAMPLES) -> list[Path]:
    """Read every run, render every page and picture, then write them under ``out``; the written paths.
    ``resamples``: bootstrap resamples per interval (fewer: a quicker, coarser build, e.g. in tests)."""
    runs = load_runs(folders)
    extras = parse_extra_images(extra_images)
    files: dict[str, str | bytes] = {}
    images: dict[Path, str] = {}
    for run in runs:
        files.update(family_page(run, extras, images, resamples))
    files["index.html"] = index_page(runs, command)
    out = Path(out)
    inside = next((r.folder for r in runs if out.resolve() == r.folder.resolve()), None)
    if inside is not None:
        raise UserError(f"--out {out} is a run folder; give the site its own folder")
    writable_folder(out, "--out")
    for name, content in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        tmp = out / name.replace(Path(name).name, f".{Path(name).name}.tmp")
        tmp.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        tmp.replace(out / name)
    return [out / name for name in files]
