"""Command line: ``cldst run``, with the flag names of the original code's README.

Every ExperimentConfig field is a flag (``--density 0.1``); the original's spellings are
aliases (``--init``, ``--net_name``, ``--l2``, ``--death_rate``). ``-f PRESET.yaml`` reads
settings from a file first; flags given on the command line override it.
"""

from __future__ import annotations

import argparse
import sys
import time
import typing
from dataclasses import fields
from pathlib import Path

from .config import ConfigError, ExperimentConfig, load_preset
from .data import DataError

FLAG_ALIASES = {
    "sparse_init": ["--init"],
    "arch": ["--net_name"],
    "weight_decay": ["--l2"],
    "prune_rate": ["--death_rate"],
}


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text!r}")
    return value


def _field_type(f) -> type:
    hint = typing.get_type_hints(ExperimentConfig)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return args[0]


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("experiment settings (default: the dataset's, see cldst/config.py)")
    for f in fields(ExperimentConfig):
        kind = _field_type(f)
        names = [f"--{f.name}", *FLAG_ALIASES.get(f.name, [])]
        parse = _parse_bool if kind is bool else kind
        group.add_argument(*names, dest=f.name, type=parse, default=argparse.SUPPRESS,
                           metavar=kind.__name__.upper())
    # Accepted for the original's command lines; magnitude pruning is the only rule.
    group.add_argument("--death", choices=["magnitude"], default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    names = {f.name for f in fields(ExperimentConfig)}
    values = load_preset(args.preset) if args.preset else {}
    values.update({k: v for k, v in vars(args).items() if k in names})
    return ExperimentConfig.from_dict(values)


def cmd_run(args: argparse.Namespace) -> int:
    from .runs import RunDir
    from .train import run_experiment

    cfg = config_from_args(args)
    out = Path(args.out) if args.out else RunDir.default_for(cfg).path
    print(f"run {cfg.run_id()} → {out}", file=sys.stderr)
    started = time.perf_counter()
    m = run_experiment(cfg, out, resume=args.resume, progress=not args.no_progress)
    seconds = time.perf_counter() - started
    caps = ", ".join(f"{c:.3f}" for c in m["capacity"])
    print(f"ACC {m['acc']:.2f}%  BWT {m['bwt']:.2f}  forgetting {m['forgetting']:.2f}  "
          f"capacity [{caps}]  time {seconds:.1f} s")
    print(f"results in {out}/metrics.json")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    table = run_bench(args.device, tuple(args.archs), width=args.width, repeats=args.repeats,
                      steps=args.steps, amp=args.amp, compile=args.compile, loader=not args.no_loader,
                      epoch_batches=args.epoch_batches, epoch_repeats=args.epoch_repeats)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import SlurmOptions, load_grid, run_sweep

    grid = load_grid(args.grid, root=args.root)
    slurm = SlurmOptions(partition=args.partition, account=args.account, time_min=args.time, gpus=args.gpus,
                         cpus=args.cpus, mem_gb=args.mem, array_parallelism=args.array_parallelism,
                         cluster=args.cluster)
    started = time.perf_counter()
    try:
        report = run_sweep(grid, executor=args.executor, jobs=args.jobs, slurm=slurm,
                           progress=not args.no_progress)
    except KeyboardInterrupt:
        print("cldst: sweep interrupted; finished runs are kept: run the same command again to continue",
              file=sys.stderr)
        return 130
    minutes, seconds = divmod(time.perf_counter() - started, 60)
    print(f"sweep {grid.name}: {report.skipped + report.finished} of {report.total} runs finished "
          f"({report.finished} now, {report.skipped} before), {len(report.failures)} failed, "
          f"in {int(minutes)} min {seconds:.0f} s → {grid.root}")
    for run_id, error, notebook in report.failures:
        print(f"failed {run_id}: {error} (notebook {notebook})")
    if report.ok:
        print(f"table: cldst results {grid.root}")
    return 0 if report.ok else 1


def cmd_results(args: argparse.Namespace) -> int:
    from .results import collect_results, write_results

    table = collect_results(args.dir)
    out = write_results(table, args.out or Path(args.dir) / "results.csv")
    print(f"{len(table)} runs → {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cldst", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train one continual-learning run")
    run.add_argument("-f", "--preset", help="YAML/JSON file of settings (flags override it)")
    run.add_argument("--out", help="run directory (default runs/<run id>)")
    run.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished task")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_flags(run)
    run.set_defaults(func=cmd_run)

    bench = sub.add_parser("bench", help="DST step vs a plain dense PyTorch step, side by side")
    bench.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    bench.add_argument("--archs", nargs="+", default=["resnet18", "mobilenetv2"],
                       choices=["resnet18", "mobilenetv2"])
    bench.add_argument("--width", type=float, default=1.0, help="channel multiplier (1.0: the paper's nets)")
    bench.add_argument("--repeats", type=_positive_int, default=7, help="alternating repeats; the best is reported")
    bench.add_argument("--steps", type=_positive_int, default=3, help="training steps per repeat")
    bench.add_argument("--epoch-batches", type=_positive_int, default=8, help="batches in the end-to-end epoch")
    bench.add_argument("--epoch-repeats", type=_positive_int, default=3, help="alternating repeats of the epochs")
    bench.add_argument("--amp", type=_parse_bool, default=None, help="bf16 autocast (default: on for CUDA)")
    bench.add_argument("--compile", action="store_true", help="torch.compile both models")
    bench.add_argument("--no-loader", action="store_true", help="skip the end-to-end epoch comparison")
    bench.add_argument("--out", help="also write the table to this file")
    bench.set_defaults(func=cmd_bench)

    sweep = sub.add_parser("sweep", help="run a grid of experiments (skips finished runs, resumes the others)")
    sweep.add_argument("grid", help="grid YAML file (see cldst/sweep.py and grids/)")
    sweep.add_argument("--executor", choices=["local", "slurm"], default="local",
                       help="local: processes on this machine; slurm: one submitit job per run (default local)")
    sweep.add_argument("--jobs", type=int, default=1, help="local: runs at a time (default 1)")
    sweep.add_argument("--root", help="output folder (default: the grid's root, else sweeps/<grid name>)")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    slurm = sweep.add_argument_group("slurm (with --executor slurm; per run)")
    slurm.add_argument("--partition", help="Slurm partition (default: the cluster's)")
    slurm.add_argument("--account", help="Slurm account")
    slurm.add_argument("--time", type=int, default=720, help="time limit in minutes (default 720)")
    slurm.add_argument("--gpus", type=int, default=1, help="GPUs (default 1)")
    slurm.add_argument("--cpus", type=int, default=8, help="CPU cores (default 8)")
    slurm.add_argument("--mem", type=int, default=32, help="memory in GB (default 32)")
    slurm.add_argument("--array-parallelism", type=int, default=64, help="runs at once (default 64)")
    slurm.add_argument("--cluster", choices=["slurm", "local"], default="slurm",
                       help="local: submitit's LocalExecutor, jobs as processes here (for testing)")
    sweep.set_defaults(func=cmd_sweep)

    results = sub.add_parser("results", help="collect every metrics.json under a folder into one CSV table")
    results.add_argument("dir", help="folder to search, e.g. sweeps/demo-split-mnist")
    results.add_argument("--out", help="CSV file (default DIR/results.csv)")
    results.set_defaults(func=cmd_results)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"cldst: error: {e}", file=sys.stderr)
        return 2
    except DataError as e:
        print(f"cldst: data error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cldst: interrupted; finished tasks are in the checkpoint (use --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
