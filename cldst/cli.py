"""Command line: ``cldst run | sweep | results | bench``. The parser and its flags (the original
code's README's names) are in cldst/cli_parser.py; here, what each command does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cldst.cli_parser import build_parser, config_from_args
from cldst.config import ConfigError, settings
from cldst.data import DataError
from cldst.method.metrics import forgetting_text
from cldst.runner import provenance
from cldst.runner.run_dir import METRICS

__all__ = ["build_parser", "config_from_args", "main"]


def cmd_run(args: argparse.Namespace) -> int:
    from cldst.runner.run_dir import RunDir

    cfg = config_from_args(args)
    out = Path(args.out) if args.out else RunDir.default_for(cfg).path
    if args.dry_run:
        print(settings.config_text(cfg))
        finished = " (finished: its metrics.json exists)" if (out / METRICS).is_file() else ""
        print(f"dry run: nothing trained; the run folder is {out}{finished}")
        return 0
    from cldst.method.events import Preempted
    from cldst.runner.experiment import run_experiment

    if args.tensorboard:  # without the package: one line, before anything is loaded
        from cldst.runner.tensorboard_log import summary_writer_class

        summary_writer_class()
    if args.resume:
        warning = provenance.resume_warning(out)
        if warning:
            print(f"cldst: {warning}", file=sys.stderr)
    print(f"run {cfg.run_id()} → {out}", file=sys.stderr)
    started = time.perf_counter()
    try:
        m = run_experiment(cfg, out, resume=args.resume, progress=not args.no_progress,
                           checkpoint_minutes=args.checkpoint_minutes, tensorboard=args.tensorboard)
    except Preempted as e:  # SIGTERM/SIGUSR1 (Slurm): the checkpoint is written; a clean exit
        print(f"cldst: {e}", file=sys.stderr)
        return 0
    seconds = time.perf_counter() - started
    caps = ", ".join(f"{c:.3f}" for c in m["capacity"])
    print(f"ACC {m['acc']:.2f}%  BWT {m['bwt']:.2f}  forgetting {forgetting_text(m['forgetting'])}  "
          f"capacity [{caps}]  time {seconds:.1f} s")
    print(f"results in {out}/metrics.json")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from cldst.bench import run_bench

    if args.pack > 1:
        from cldst.pack_bench import run_pack_bench

        width = 0.25 if args.width is None else args.width
        table = run_pack_bench(args.device, tuple(args.archs or ["resnet18"]), args.pack, width=width,
                               batch=args.batch, steps=args.steps, repeats=args.repeats, amp=args.amp,
                               processes=not args.no_processes)
        print(table)
        if args.out:
            Path(args.out).write_text(table + "\n")
        return 0
    table = run_bench(args.device, tuple(args.archs or ["resnet18", "mobilenetv2"]),
                      width=1.0 if args.width is None else args.width, repeats=args.repeats,
                      steps=args.steps, amp=args.amp, compile=args.compile, loader=not args.no_loader,
                      epoch_batches=args.epoch_batches, epoch_repeats=args.epoch_repeats)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from cldst.runner.grids import load_grid
    from cldst.runner.slurm import JOBS_FILE, SlurmOptions
    from cldst.runner.sweep import run_sweep

    grid = load_grid(args.grid, root=args.root)
    if args.status:
        from cldst.runner.status import grid_status

        print("\n".join(grid_status(grid).lines()))
        return 0
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
    if args.dry_run:
        from cldst.runner.estimate import sweep_plan

        pack = args.pack
        if pack == "auto":
            from cldst.runner.local import visible_gpus
            from cldst.runner.pack_probe import choose_pack_size

            pack = choose_pack_size(grid.configs, executor=args.executor, jobs=args.jobs, dry_run=True,
                                    devices=visible_gpus() if devices is None else devices, log=print)
        print(sweep_plan(grid, pack=pack))
        return 0
    slurm = SlurmOptions(partition=args.partition, account=args.account, time_min=args.time, gpus=args.gpus,
                         cpus=args.cpus, mem_gb=args.mem, array_parallelism=args.array_parallelism,
                         cluster=args.cluster, detach=args.detach)
    started = time.perf_counter()
    try:
        report = run_sweep(grid, executor=args.executor, jobs=args.jobs, slurm=slurm,
                           progress=not args.no_progress, devices=devices, pack=args.pack)
    except KeyboardInterrupt:
        print("cldst: sweep interrupted; finished runs are kept: run the same command again to continue",
              file=sys.stderr)
        return 130
    if args.detach and args.executor == "slurm":
        print(f"sweep {grid.name}: submitted; job ids in {grid.root / '_submitit' / JOBS_FILE}; "
              f"watch it with: cldst sweep {args.grid} --status")
        return 0
    minutes, seconds = divmod(time.perf_counter() - started, 60)
    print(f"sweep {grid.name}: {report.skipped + report.finished} of {report.total} runs finished "
          f"({report.finished} now, {report.skipped} before), {len(report.failures)} failed, "
          f"in {int(minutes)} min {seconds:.0f} s → {grid.root}")
    for run_id, error, where in report.failures:
        print(f"failed {run_id}: {error} (see {where})")
    if report.ok:
        print(f"table: cldst results {grid.root}")
    return 0 if report.ok else 1


def cmd_results(args: argparse.Namespace) -> int:
    from cldst.analysis.results import collect_results, write_results

    table = collect_results(args.dir)
    out = write_results(table, args.out or Path(args.dir) / "results.csv")
    print(f"{len(table)} runs → {out}")
    return 0


COMMANDS = {"run": cmd_run, "bench": cmd_bench, "sweep": cmd_sweep, "results": cmd_results}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
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
