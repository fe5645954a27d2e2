"""Rerun committed rows of a results table with the code as it is, and compare what they compute.

    python -m tools.rerun_rows GRID TABLE RUN_ID [RUN_ID ...] [--out DIR]

GRID is the grid file the table came from (its configs give each run id's settings); TABLE its
committed results.csv. Each run is trained again into DIR (default /tmp/rerun-rows/<grid>) and its
row compared with the committed one on every column that a run computes (accuracy matrix, ACC,
BWT, forgetting, capacity, dead tasks, FLOPs and reuse), not on timings or provenance. Prints one
line per run and exits 1 if any differs: the check that a change which must not alter results
did not.

A run's numbers depend on the machine and on torch's thread count (floating-point reduction
order), not only on the code: a sweep with ``--jobs J`` gives each run cores/J threads (one for the
committed tables' ``--jobs 2`` on 2 cores), so ``--threads`` defaults to 1. A row made on another
kind of machine may differ here under any code; then compare two versions of the code on this
machine instead.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
import torch

from cldst.analysis.results import collect_results, write_results
from cldst.runner.experiment import run_experiment
from cldst.runner.grids import load_grid

COMPUTED = ("acc", "bwt", "forgetting", "acc_matrix", "capacity", "capacity_final", "dead_tasks",
            "train_flops_vs_dense", "inference_flops_vs_dense", "reuse_mean", "reuse_matrix",
            "layer_capacity", "layer_saturation")


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare(committed: pd.Series, rerun: pd.Series) -> list[str]:
    """The computed columns where the rows differ (columns the committed table lacks are skipped)."""
    return [c for c in COMPUTED if c in committed.index and c in rerun.index and not _same(committed[c], rerun[c])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid")
    parser.add_argument("table")
    parser.add_argument("run_ids", nargs="+")
    parser.add_argument("--out", default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (a sweep's cores/jobs)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    grid = load_grid(args.grid)
    configs = {cfg.run_id(): cfg for cfg in grid.configs}
    table = pd.read_csv(args.table).set_index("run_id")
    out = Path(args.out or f"/tmp/rerun-rows/{grid.name}")
    differs = 0
    for run_id in args.run_ids:
        if run_id not in configs or run_id not in table.index:
            print(f"{run_id}: not in both {args.grid} and {args.table}")
            differs += 1
            continue
        run_experiment(configs[run_id], out / run_id, resume=True, progress=False)
    rerun = pd.read_csv(write_results(collect_results(out), out / "results.csv")).set_index("run_id")
    for run_id in args.run_ids:
        if run_id in rerun.index and run_id in table.index:
            columns = compare(table.loc[run_id], rerun.loc[run_id])
            differs += bool(columns)
            print(f"{run_id}: " + (f"differs in {', '.join(columns)}" if columns else
                                   f"identical ({sum(c in table.columns for c in COMPUTED)} computed columns)"))
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main())
