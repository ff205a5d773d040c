"""Leaderboard rendering: the paper's layout (rows = cells, columns = algorithms, mean total reward, the
best and everything not significantly worse in bold), with standard errors and normalized scores."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from rl2bench import stats
from rl2bench.registry import algorithms, get_family
from rl2bench.results import write_text_atomic


def reference_algorithms(task: str) -> frozenset[str]:
    """Privileged references (oracles, built in only): shown, never counted as a row's best."""
    from rl2bench.sealed import is_builtin

    return frozenset(name for name, cls in algorithms(task).items() if cls.privileged and is_builtin(cls))


def run_references(folder: Path) -> frozenset[str] | None:
    """The references a run recorded in its run.json (None for runs from before that record)."""
    path = folder / "run.json"
    if not path.exists():
        return None
    refs = json.loads(path.read_text()).get("references")
    return None if refs is None else frozenset(refs)


def render_unsealed(folder: Path) -> str:
    """A line saying which plug-ins played in the protocol's own process (``run --in-process``)."""
    path = folder / "run.json"
    unsealed = json.loads(path.read_text()).get("unsealed", []) if path.exists() else []
    if not unsealed:
        return ""
    return (f"\n\nNot sealed: {', '.join(unsealed)} played in the protocol's own process (`--in-process`), "
            "where it could have read the environment; rerun without `--in-process` to seal it.\n")


def figure_caption(path: Path) -> str:
    """A PNG's Description text (as ``savefig(metadata={"Description": ...})`` writes it), else its name."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            text = image.info.get("Description")
    except OSError:
        text = None
    return str(text) if text else path.stem


def render_figures(folder: Path) -> str:
    """The run folder's own pictures on its page, as on the site: every PNG but leaderboard.png (e.g. the maze
    paths of ``python -m rl2bench paths --run``), by name, each under its caption."""
    pictures = sorted(p for p in folder.glob("*.png") if p.name != "leaderboard.png")
    if not pictures:
        return ""
    return "\n\n## Figures\n\n" + "\n".join(f"{figure_caption(p)}\n\n![{p.stem}]({p.name})\n" for p in pictures)


def build_summary(results: pd.DataFrame, references: frozenset[str] | None = None) -> pd.DataFrame:
    """Per (cell, algorithm): mean, standard error, bold marks and normalized scores. ``references`` (the
    run's own record, run.json) are shown but never bold; without it, the registry's built-in references."""
    parts = []
    for task, group in results.groupby("task", sort=False):
        family = get_family(str(task))
        refs = reference_algorithms(str(task)) if references is None else references
        summary = stats.summarize(group, references=refs)
        if family.normalize_by:
            summary["normalized"] = stats.normalized_scores(summary, *family.normalize_by)
        parts.append(summary)
    return pd.concat(parts, ignore_index=True)


def _order(summary: pd.DataFrame) -> tuple[list[str], list[str]]:
    task = summary["task"].iloc[0]
    family = get_family(task)
    cells = list(dict.fromkeys(summary["cell"]))
    default = [c for c in family.default_cells if c in cells]
    cells = default + sorted(set(cells) - set(default), key=family.cell_order)
    from rl2bench.registry import algorithms

    preferred = [a for a in family.column_order if a in algorithms(task)] + list(algorithms(task))
    present = list(dict.fromkeys(summary["algorithm"]))
    algos = [a for a in dict.fromkeys(preferred) if a in present] + [a for a in present if a not in preferred]
    return cells, algos


def _grid(summary: pd.DataFrame, fmt) -> tuple[list[str], list[list[str]]]:
    cells, algos = _order(summary)
    index = summary.set_index(["cell", "algorithm"])
    rows = []
    for cell in cells:
        row = [cell]
        for algo in algos:
            row.append(fmt(index.loc[(cell, algo)]) if (cell, algo) in index.index else "")
        rows.append(row)
    return ["cell", *algos], rows


def _normalized_by(summary: pd.DataFrame) -> tuple[str, str]:
    """The (lower, upper) reference algorithms of a summary with normalized scores: ``build_summary``
    adds them only for a family that names its references."""
    by = get_family(summary["task"].iloc[0]).normalize_by
    assert by is not None, "normalized scores for a family without references"
    return by


def _decimals(summary: pd.DataFrame) -> int:
    return 2 if summary["mean"].abs().max() < 20 else 1


def render_markdown(summary: pd.DataFrame, title: str = "", command: str = "") -> str:
    d = _decimals(summary)
    out = []
    if title:
        out.append(f"# {title}\n")
    if command:
        out.append(f"Generated by:\n\n    {command}\n")
    out.append("Mean total reward per trial. **Bold**: the best of the row and every algorithm not significantly "
               "worse than it (one-sided Welch t-test, p = 0.05), as in the paper.\n")
    refs = sorted(reference_algorithms(summary["task"].iloc[0]) & set(summary["algorithm"]))
    if refs:
        out.append(f"{', '.join(refs)}: reference(s) that see the hidden instance; shown for headroom, never "
                   "bold.\n")
    headers, rows = _grid(summary, lambda r: f"**{r['mean']:.{d}f}**" if r["marked"] else f"{r['mean']:.{d}f}")
    out.append(tabulate(rows, headers, tablefmt="pipe", stralign="right", disable_numparse=True))
    missing = [name for j, name in enumerate(headers) if any(row[j] == "" for row in rows)]
    if missing:
        out.append(f"\nEmpty: the algorithm did not run on that cell ({', '.join(missing)}); leaderboard/NOTES.md "
                   "says why (a trained algorithm without a policy for the cell yet, an exact one beyond its reach).")
    out.append("\n\nStandard errors of the means:\n")
    headers, rows = _grid(summary, lambda r: f"{r['se']:.{d + 1}f}")
    out.append(tabulate(rows, headers, tablefmt="pipe", stralign="right", disable_numparse=True))
    if "normalized" in summary and summary["normalized"].notna().any():
        lo, hi = _normalized_by(summary)
        out.append(f"\n\nNormalized scores ({lo} = 0, {hi} = 1):\n")
        headers, rows = _grid(summary, lambda r: "" if np.isnan(r["normalized"]) else f"{r['normalized']:.3f}")
        out.append(tabulate(rows, headers, tablefmt="pipe", stralign="right", disable_numparse=True))
    return "\n".join(out) + "\n"


def render_latex(summary: pd.DataFrame) -> str:
    d = _decimals(summary)
    headers, rows = _grid(
        summary, lambda r: (f"\\textbf{{{r['mean']:.{d}f}}}" if r["marked"] else f"{r['mean']:.{d}f}")
        + f" $\\pm$ {r['se']:.{d + 1}f}")
    return tabulate(rows, headers, tablefmt="latex_raw", disable_numparse=True) + "\n"


def render_terminal(summary: pd.DataFrame) -> str:
    d = _decimals(summary)
    headers, rows = _grid(summary, lambda r: f"*{r['mean']:.{d}f}" if r["marked"] else f"{r['mean']:.{d}f}")
    table = tabulate(rows, headers, tablefmt="simple", stralign="right", disable_numparse=True)
    return table + "\n(* = best or not significantly worse)"


def plot_top(normalized: pd.DataFrame, references: frozenset[str]) -> float:
    """The normalized-score axis's top: every learner's bar fits (at least 1.1, above the 1.0 line); a
    privileged reference (an oracle, often far above) may be cut there, its value written above it, so it
    does not squash the comparison people look for."""
    learners = normalized[[a for a in normalized.columns if a not in references]].to_numpy(dtype=float)
    learners = learners[np.isfinite(learners)]
    return max(1.1, float(learners.max()) + 0.05) if learners.size else 1.1


def plot_normalized(summary: pd.DataFrame, path: Path) -> bool:
    """Grouped bars of normalized scores per cell (the paper's Figures 2-3 scale); False if none."""
    if "normalized" not in summary or not summary["normalized"].notna().any():
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells, algos = _order(summary)
    pivot = summary.pivot_table(index="cell", columns="algorithm", values="normalized").reindex(index=cells)
    algos = [a for a in algos if a in pivot.columns]
    task = summary["task"].iloc[0]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(cells)), 4))
    width = 0.8 / len(algos)
    values = pivot[algos].to_numpy()
    finite = values[np.isfinite(values)]
    top = plot_top(pivot[algos], reference_algorithms(task))
    for i, algo in enumerate(algos):
        x = np.arange(len(cells)) + (i - (len(algos) - 1) / 2) * width
        heights = pivot[algo].to_numpy()
        ax.bar(x, heights, width, label=algo)
        for xi, h in zip(x, heights, strict=True):
            if np.isfinite(h) and h > top:
                ax.annotate(f"{h:.2f}", (xi, top), xytext=(0, 2), textcoords="offset points", ha="center",
                            va="bottom", fontsize=7, annotation_clip=False)
    lo, hi = _normalized_by(summary)
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(cells)), cells, rotation=30)
    ax.set_ylabel(f"normalized score ({lo} = 0, {hi} = 1)")
    ax.set_ylim(max(-0.1, float(finite.min()) - 0.05) if finite.size else -0.1, top)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def render_exact_values(summary: pd.DataFrame) -> str:
    """A line per algorithm whose expected return is known exactly (``Agent.exact_value``): the exact value
    beside the simulated mean and its standard error, cell by cell."""
    task = str(summary["task"].iloc[0])
    family, registered = get_family(task), algorithms(task)
    lines = []
    rank = {cell: i for i, cell in enumerate(_order(summary)[0])}
    for algorithm, rows in summary.groupby("algorithm", sort=False):
        cls = registered.get(str(algorithm))
        if cls is None:
            continue
        parts = []
        for row in sorted(rows.itertuples(), key=lambda r: rank.get(str(r.cell), len(rank))):
            cell = family.parse_cell(str(row.cell))
            exact = cls.exact_value(cell, family.spec(cell))
            if exact is not None:
                parts.append(f"{row.cell} {exact:.4f} (simulated {row.mean:.3f} ± {row.se:.3f})")
        if parts:
            lines.append(f"- {algorithm}: " + ", ".join(parts))
    if not lines:
        return ""
    return ("\n\nExact expected returns, computed rather than simulated (no algorithm can beat them in "
            "expectation):\n\n" + "\n".join(lines) + "\n")


def render_trained_policies(folder: Path) -> str:
    """A provenance table for results that came from trained policy files (e.g. rl2's): which file version
    was evaluated and how far it had been trained, one row per setting whose algorithm answers
    ``Agent.provenance``. Empty when the run used no such setting."""
    run_json = folder / "run.json"
    if not run_json.exists():
        return ""
    run = json.loads(run_json.read_text())
    chosen = run.get("chosen_settings", {})
    rank = {cell: i for i, cell in enumerate(run.get("cells", []))}  # the page's row order
    rows = []
    for key, setting in chosen.items():
        cell, algorithm = key.split("/", 1)
        cls = algorithms(str(run.get("task"))).get(algorithm)
        row = cls.provenance(setting) if cls is not None and isinstance(setting, dict) else None
        if row is not None:
            rows.append({"cell": cell, "algorithm": algorithm, **row})
    if not rows:
        return ""
    rows.sort(key=lambda r: (rank.get(r["cell"], len(rank)), r["algorithm"]))
    table = tabulate(pd.DataFrame(rows), headers="keys", tablefmt="pipe", showindex=False)
    return ("\n\nTrained policies evaluated (file version = first 12 hex digits of the policy file's sha256; "
            "status and training from the zoo's meta.json):\n\n" + table + "\n")


def write_leaderboards(summary: pd.DataFrame, folder: Path, command: str = "",
                       results: pd.DataFrame | None = None, publish: Path | None = None) -> None:
    """leaderboard.md (the family's own page where it has one, e.g. Table 3 for mazes), .tex, .csv;
    ``publish`` also writes the page there (e.g. leaderboard/mab.md), its image links made relative."""
    title = f"rl2bench leaderboard: {summary['task'].iloc[0]}"
    markdown = None
    if results is not None:
        markdown = get_family(summary["task"].iloc[0]).render_markdown(results, title, command)
    if markdown is None:
        markdown = render_markdown(summary, title, command)
        if plot_normalized(summary, folder / "leaderboard.png"):
            markdown += "\n![normalized scores](leaderboard.png)\n"
    markdown += (render_exact_values(summary) + render_trained_policies(folder) + render_unsealed(folder)
                 + render_figures(folder))
    write_text_atomic(folder / "leaderboard.md", markdown)
    write_text_atomic(folder / "leaderboard.tex", render_latex(summary))
    write_text_atomic(folder / "leaderboard.csv", summary.to_csv(index=False, float_format="%.6g"))
    if publish is not None:  # last: the run folder's own pages are written whatever happens here
        def relative(link: re.Match[str]) -> str:  # a picture of the run folder, seen from the published page
            return f"]({Path(os.path.relpath(folder / link.group(1), publish.resolve().parent)).as_posix()})"

        write_text_atomic(publish, re.sub(r"\]\(([^()/\s]+\.png)\)", relative, markdown))
