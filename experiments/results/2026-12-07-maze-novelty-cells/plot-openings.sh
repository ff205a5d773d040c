#!/usr/bin/env bash
# The openings figure of PLAN.md, from the probe outputs in this folder (run from the repository root).
R=experiments/results/2026-12-07-maze-novelty-cells
files=()
for f in "$@"; do files+=("$f"); done
python experiments/plot_openings.py "${files[@]}" --out $R/openings.png \
  --kind "ahead old, left new, right wall" --kind "ahead old, left wall, right new" \
  --kind "ahead new, left new, right wall" --kind "ahead new, left wall, right new" \
  --kind "ahead old, left wall, right wall" --kind "ahead wall, left new, right wall" \
  --kind "ahead wall, left wall, right new" --kind "ahead wall, left wall, right wall"
