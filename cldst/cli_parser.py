"""The command line's parser: ``cldst run | sweep | results | bench`` and their flags, with the flag
names of the original code's README (the commands themselves are in cldst/cli.py).

Every ExperimentConfig field is a flag (``--density 0.1``), with its help from cldst/config/settings.py;
the original's spellings are aliases (``--init``, ``--net_name``, ``--l2``, ``--death_rate``).
``-f PRESET.yaml`` reads settings from a file first; flags given on the command line override it.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from cldst.config import ExperimentConfig, load_preset, settings
from cldst.config.candidates import CHOOSABLE
from cldst.runner import provenance

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


def _pack_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected auto or a whole number ≥ 1, got {text!r}") from None


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

    sweep = sub.add_parser("sweep", help="run a grid of experiments (skips finished runs, resumes the others)",
                           description=SWEEP_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep.add_argument("grid", help="grid YAML file (see cldst/runner/grids.py and grids/)")
    sweep.add_argument("--dry-run", action="store_true",
                       help="list the runs, how many are finished, and an estimate of the time the rest take")
    sweep.add_argument("--executor", choices=["local", "slurm"], default="local",
                       help="local: processes on this machine; slurm: one submitit job per run (default local)")
    sweep.add_argument("--jobs", type=int, default=1, help="local: runs (or packs) at a time (default 1)")
    sweep.add_argument("--pack", type=_pack_size, default=1, metavar="R",
                       help="train runs that share every shape-setting in packs of at most R, one process "
                            "(one Slurm job) per pack; auto: the largest R that fits on the GPU, measured "
                            "(1 on the CPU) (default 1: no packs; docs/packing.md)")
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

    results = sub.add_parser("results", help="collect every metrics.json under a folder into one CSV table")
    results.add_argument("dir", help="folder to search, e.g. sweeps/demo-split-mnist")
    results.add_argument("--out", help="CSV file (default DIR/results.csv)")
    return parser
