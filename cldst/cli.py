"""Command line: ``cldst run | sweep | results | bench``, with the flag names of the original code's README.

Every ExperimentConfig field is a flag (``--density 0.1``), with its help from cldst/config/settings.py;
the original's spellings are aliases (``--init``, ``--net_name``, ``--l2``, ``--death_rate``).
``-f PRESET.yaml`` reads settings from a file first; flags given on the command line override it.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields
from pathlib import Path

from cldst.config import ConfigError, ExperimentConfig, load_preset, settings
from cldst.config.candidates import CHOOSABLE
from cldst.data import DataError
from cldst.method.metrics import forgetting_text
from cldst.runner import provenance
from cldst.runner.run_dir import METRICS

RUN_DESCRIPTION = """\
Train one continual-learning run: each task in turn gets a sparse mask of the shared backbone,
trained with dynamic sparse training; weights an earlier task owns are reused, frozen.

Settings: the flags, over -f PRESET (a YAML file of settings, the file papermill's -f takes); a
setting left out takes its default, shown below (many are the dataset's). The original code's
spellings work too (--init, --net_name, --l2, --death_rate, --growth random_unfired).

  cldst run --dataset cifar100 --num_tasks 5 --sparse_init uniform --growth momentum --density 0.1
  cldst run -f presets/cifar100-5task.yaml --seed 1 --dry-run    # the resolved config, nothing trained

The run goes to --out (default runs/<run id>, the id a hash of the settings): config.json,
metrics.json when finished, history.csv and checkpoint.pt (and tensorboard/ with --tensorboard).
"""

SWEEP_DESCRIPTION = """\
Run every run of a grid file (a base preset, fixed settings and lists of settings to sweep) as
an executed copy of notebooks/experiment.ipynb in ROOT/<run id>/. Finished runs are skipped and
unfinished ones resumed, so the same command continues a sweep after a crash.

  cldst sweep grids/demo-split-mnist.yaml --jobs 2
  cldst sweep grids/paper-cifar100-5task.yaml --dry-run     # the runs, and an estimate of their cost
  cldst sweep GRID --executor slurm --partition gpu --time 720 --gpus 1
"""

FLAG_ALIASES = {
    "sparse_init": ["--init"],
    "arch": ["--net_name"],
    "weight_decay": ["--l2"],
    "prune_rate": ["--death_rate"],
}


def _float_or_list(text: str) -> float | str:
    """A number, or candidates ``a,b`` that the config splits (density)."""
    return text if "," in text else float(text)


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


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ExperimentConfig field, in argument groups by section, help from cldst/config/settings.py.

    Choices are shown, not enforced by argparse: the config accepts the original's spellings too
    (``--growth random_unfired``) and rejects a bad value with its own one-line error."""
    group = parser.add_argument_group("settings")
    for f in fields(ExperimentConfig):
        if f.name in settings.SECTIONS:
            title = settings.SECTIONS[f.name]
            group = parser.add_argument_group(f"{title} settings", settings.SECTION_NOTES.get(title))
        kind = settings.field_type(f.name)
        names = [f"--{f.name}", *FLAG_ALIASES.get(f.name, [])]
        parse = _parse_bool if kind is bool else _float_or_list if kind is float and f.name in CHOOSABLE else kind
        group.add_argument(*names, dest=f.name, type=parse, default=argparse.SUPPRESS,
                           metavar=settings.cli_metavar(f.name), help=settings.cli_help(f.name).replace("%", "%%"))
    # Accepted for the original's command lines; magnitude pruning is the only rule.
    group.add_argument("--death", choices=["magnitude"], default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    names = {f.name for f in fields(ExperimentConfig)}
    values = load_preset(args.preset) if args.preset else {}
    for key in provenance.KEYS:  # a run's config.json works as a preset
        values.pop(key, None)
    values.update({k: v for k, v in vars(args).items() if k in names})
    return ExperimentConfig.from_dict(values)


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
    if args.dry_run:
        from cldst.runner.estimate import sweep_plan

        print(sweep_plan(grid, pack=args.pack))
        return 0
    slurm = SlurmOptions(partition=args.partition, account=args.account, time_min=args.time, gpus=args.gpus,
                         cpus=args.cpus, mem_gb=args.mem, array_parallelism=args.array_parallelism,
                         cluster=args.cluster, detach=args.detach)
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
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


class _Version(argparse.Action):
    """``--version``: cldst's version and the git commit, looked up only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(provenance.version_text(provenance.code_version()))
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cldst", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Continual learning with dynamic sparse training (Yildirim et al., CPAL 2024).\n"
                    "`cldst COMMAND --help` describes a command and its settings.")
    parser.add_argument("--version", action=_Version, help="print cldst's version and git commit, and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train one continual-learning run", description=RUN_DESCRIPTION,
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         usage="cldst run [-f PRESET] [--out DIR] [--resume] [--dry-run] [--SETTING VALUE ...]")
    run.add_argument("-f", "--preset", metavar="PRESET", help="YAML/JSON file of settings (flags override it)")
    run.add_argument("--out", metavar="DIR", help="run directory (default runs/<run id>)")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in --out from its last checkpoint (a finished epoch, or where it was stopped)")
    run.add_argument("--dry-run", action="store_true", help="print the resolved config and run id; train nothing")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--checkpoint-minutes", type=float, default=0.0, metavar="N",
                     help="write the epoch checkpoint at most every N minutes (default 0: every epoch); "
                          "task boundaries and SIGTERM/SIGUSR1 always write one")
    run.add_argument("--tensorboard", action="store_true",
                     help="also write TensorBoard events (loss, training accuracy, lr, topology updates, "
                          "accuracy matrix) to OUT/tensorboard/; needs pip install tensorboard")
    add_config_flags(run)
    run.set_defaults(func=cmd_run)

    bench = sub.add_parser("bench", help="DST step vs a plain dense PyTorch step, side by side")
    bench.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    bench.add_argument("--archs", nargs="+", default=None, choices=["resnet18", "mobilenetv2"],
                       help="backbones (default: both; with --pack: resnet18)")
    bench.add_argument("--width", type=float, default=None,
                       help="channel multiplier (default 1.0, the paper's nets; with --pack: 0.25, the study's CPU nets)")
    bench.add_argument("--pack", type=_positive_int, default=1, metavar="R",
                       help="R runs packed, one after another, and as R processes, side by side (docs/packing.md)")
    bench.add_argument("--batch", type=_positive_int, default=None, help="with --pack: batch size (default 32)")
    bench.add_argument("--no-processes", action="store_true", help="with --pack: skip the R processes")
    bench.add_argument("--repeats", type=_positive_int, default=7, help="alternating repeats; the best is reported")
    bench.add_argument("--steps", type=_positive_int, default=3, help="training steps per repeat")
    bench.add_argument("--epoch-batches", type=_positive_int, default=8, help="batches in the end-to-end epoch")
    bench.add_argument("--epoch-repeats", type=_positive_int, default=3, help="alternating repeats of the epochs")
    bench.add_argument("--amp", type=_parse_bool, default=None, help="bf16 autocast (default: on for CUDA)")
    bench.add_argument("--compile", action="store_true", help="torch.compile both models")
    bench.add_argument("--no-loader", action="store_true", help="skip the end-to-end epoch comparison")
    bench.add_argument("--out", help="also write the table to this file")
    bench.set_defaults(func=cmd_bench)

    sweep = sub.add_parser("sweep", help="run a grid of experiments (skips finished runs, resumes the others)",
                           description=SWEEP_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep.add_argument("grid", help="grid YAML file (see cldst/runner/grids.py and grids/)")
    sweep.add_argument("--dry-run", action="store_true",
                       help="list the runs, how many are finished, and an estimate of the time the rest take")
    sweep.add_argument("--executor", choices=["local", "slurm"], default="local",
                       help="local: processes on this machine; slurm: one submitit job per run (default local)")
    sweep.add_argument("--jobs", type=int, default=1, help="local: runs (or packs) at a time (default 1)")
    sweep.add_argument("--pack", type=_positive_int, default=1, metavar="R",
                       help="train runs that share every shape-setting in packs of at most R, one process "
                            "(one Slurm job) per pack (default 1: no packs; docs/packing.md)")
    sweep.add_argument("--root", help="output folder (default: the grid's root, else sweeps/<grid name>)")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.add_argument("--status", action="store_true",
                       help="print the finished, running, queued and failed runs (with each failure's "
                            "error line and each running run's progress.json); run nothing")
    sweep.add_argument("--devices", metavar="0,1,...",
                       help="local: the GPUs the runs may use, one per run at a time (default: every visible one)")
    slurm = sweep.add_argument_group("slurm (with --executor slurm; per run)")
    slurm.add_argument("--partition", help="Slurm partition (default: the cluster's)")
    slurm.add_argument("--account", help="Slurm account")
    slurm.add_argument("--time", type=int, default=720, help="time limit in minutes (default 720)")
    slurm.add_argument("--gpus", type=int, default=1, help="GPUs (default 1)")
    slurm.add_argument("--cpus", type=int, default=8, help="CPU cores (default 8)")
    slurm.add_argument("--mem", type=int, default=32, help="memory in GB (default 32)")
    slurm.add_argument("--array-parallelism", type=int, default=64, help="runs at once (default 64)")
    slurm.add_argument("--detach", action="store_true",
                       help="submit, record the job ids in ROOT/_submitit/jobs.json, and return")
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
