"""Run the original CL-with-DST code and ``cldst run --protocol reference`` on the same data and
settings, then print one comparison (also written to WORK/parity.md and WORK/parity.json).

    python -m tools.parity.run --original /path/to/CL-with-DST --original-python /path/to/venv/bin/python \\
        --tiny data/tiny-imagenet-200 --work parity-work --tasks 10 --epochs 3 --seeds 0 1

See tools/parity/README.md. The two sides run one after the other; a side whose finished output
exists for the same command is reused, so the same command continues after an interruption.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .layout import LayoutError, build_layout
from .parse import (
    CLDST,
    ORIGINAL,
    ParseError,
    RunResult,
    Runs,
    parse_cldst_run,
    parse_original_log,
    render_markdown,
    to_json,
)

ENTRY = Path(__file__).resolve().with_name("original_entry.py")
COMMAND = "parity-command.json"
GROWTH = {"random": ("random", "random"), "unfired": ("random_unfired", "unfired"),
          "random_unfired": ("random_unfired", "unfired"), "gradient": ("gradient", "gradient"),
          "momentum": ("momentum", "momentum")}  # ours -> (original's spelling, cldst's)


class HarnessError(RuntimeError):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.parity.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--original", type=Path, help="checkout of muratonuryildirim/CL-with-DST")
    p.add_argument("--original-python", type=Path, help="interpreter with the original's packages (torch, torchvision, requests)")
    p.add_argument("--tiny", type=Path, default=Path("data/tiny-imagenet-200"), help="Tiny ImageNet tree, official layout")
    p.add_argument("--work", type=Path, default=Path("parity-work"), help="where both sides write")
    p.add_argument("--tasks", type=int, default=10)
    p.add_argument("--classes", type=int, default=100, help="the first N Tiny ImageNet classes (sorted wnids)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--density", type=float, default=0.2)
    p.add_argument("--init", choices=("ERK", "uniform"), default="ERK")
    p.add_argument("--growth", choices=sorted(GROWTH), default="gradient")
    p.add_argument("--update-frequency", type=int, default=50)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--only", choices=(ORIGINAL, CLDST), help="run one side only (the table shows what exists)")
    p.add_argument("--cldst-extra", nargs="*", default=[], metavar="KEY=VALUE",
                   help="more cldst run settings, e.g. device=cpu amp=true (amp is false by default here)")
    p.add_argument("--link", choices=("auto", "hardlink", "symlink", "copy"), default="auto",
                   help="how the original's image tree points at the Tiny ImageNet files")
    return p


def original_argv(a: argparse.Namespace, seed: int) -> list[str]:
    return ["--dataset", "miniImagenet100", "--num_classes", str(a.classes), "--num_tasks", str(a.tasks),
            "--num_classes_per_task", str(a.classes // a.tasks), "--net_name", "resnet18",
            "--epochs", str(a.epochs), "--batch_size", str(a.batch_size), "--density", str(a.density),
            "--init", a.init, "--growth", GROWTH[a.growth][0], "--update_frequency", str(a.update_frequency),
            "--lr", str(a.lr), "--seed", str(seed)]


def cldst_argv(a: argparse.Namespace, seed: int, out: Path) -> list[str]:
    argv = ["run", "--protocol", "reference", "--dataset", "tinyimagenet", "--num_classes", str(a.classes),
            "--num_tasks", str(a.tasks), "--arch", "resnet18", "--width", "1.0", "--image_size", "32",
            "--epochs", str(a.epochs), "--batch_size", str(a.batch_size), "--density", str(a.density),
            "--sparse_init", a.init, "--growth", GROWTH[a.growth][1], "--update_frequency", str(a.update_frequency),
            "--lr", str(a.lr), "--seed", str(seed), "--data_dir", str(a.tiny.resolve().parent),
            "--amp", "false"]  # the original trains in float32; cldst would use bf16 on a GPU
    for kv in a.cldst_extra:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            raise HarnessError(f"--cldst-extra {kv!r} is not KEY=VALUE")
        argv += [f"--{key.lstrip('-')}", value]  # after ours: argparse keeps the last
    return argv + ["--out", str(out), "--resume", "--no-progress"]


def cldst_command() -> list[str]:
    if importlib.util.find_spec("cldst") is not None:
        return [sys.executable, "-c", "import sys; from cldst.cli import main; sys.exit(main())"]
    exe = shutil.which("cldst")
    if exe is None:
        raise HarnessError("cldst is neither importable by this Python nor on PATH: run with the project's "
                           ".venv/bin/python (pip install -e .)")
    return [exe]


def _same_command(path: Path, record: dict) -> bool:
    """Whether the command record at ``path`` is ``record``."""
    return path.is_file() and json.loads(path.read_text()) == record


def _run(cmd: list[str], cwd: Path, log: Path, err: Path, what: str) -> None:
    print(f"{what}: running (follow with: tail -f {log})", flush=True)
    with log.open("w") as out, err.open("w") as errf:
        rc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=errf).returncode
    if rc != 0:
        tail = " | ".join(line.strip() for line in err.read_text(errors="replace").splitlines()[-4:])
        raise HarnessError(f"{what} failed (exit {rc}); see {err}: {tail}")


def run_original(a: argparse.Namespace, work: Path, seed: int) -> None:
    if a.original is None or a.original_python is None:
        raise HarnessError("--original and --original-python are needed to run the original (or --only cldst)")
    checkout = a.original.resolve()
    if not (checkout / "miniImageNet100.py").is_file() or not (checkout / "core.py").is_file():
        raise HarnessError(f"{checkout} has no miniImageNet100.py and core.py: not a CL-with-DST checkout")
    if not os.access(a.original_python, os.X_OK):
        raise HarnessError(f"--original-python {a.original_python} is not an executable")
    cwd = work / ORIGINAL / f"seed{seed}"
    cwd.mkdir(parents=True, exist_ok=True)
    data = cwd / "data"
    if not data.is_symlink() and not data.exists():
        data.symlink_to(Path("..") / "data", target_is_directory=True)
    # absolute: the interpreter must not be resolved (a venv's python is a symlink to the base one)
    python = str(Path(os.path.abspath(a.original_python)))
    argv = original_argv(a, seed)
    cmd = [python, "-u", str(ENTRY), str(checkout), *argv]
    # what the run computes; where this harness lives does not matter
    record = {"python": python, "checkout": str(checkout), "argv": argv}
    log = cwd / "log.txt"
    if log.exists() and not _same_command(cwd / COMMAND, record):
        raise HarnessError(f"{cwd} holds a run of the original with other settings (or not this tool's): "
                           "remove it or choose another --work")
    if log.is_file():
        try:
            parse_original_log(log.read_text(errors="replace"), str(log))
            print(f"original seed {seed}: reusing the finished run in {cwd}", flush=True)
            return
        except ParseError:
            pass  # this command's unfinished run: start it again
    (cwd / COMMAND).write_text(json.dumps(record, indent=1) + "\n")
    _run(cmd, cwd, log, cwd / "stderr.txt", f"original seed {seed}")


def run_cldst(a: argparse.Namespace, work: Path, seed: int) -> None:
    out = work / CLDST / f"seed{seed}"
    argv = cldst_argv(a, seed, out)
    record = out.with_name(f"seed{seed}.{COMMAND}")
    if out.exists() and not _same_command(record, {"argv": argv}):
        raise HarnessError(f"{out} holds a cldst run with other settings (or not this tool's): remove it "
                           "or choose another --work")
    out.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"argv": argv}, indent=1) + "\n")
    if (out / "metrics.json").is_file():
        print(f"cldst seed {seed}: reusing the finished run in {out}", flush=True)
        return
    _run(cldst_command() + argv, Path.cwd(), out.with_name(f"seed{seed}.log"), out.with_name(f"seed{seed}.stderr.txt"),
         f"cldst seed {seed}")


def _read(path: Path, read) -> RunResult | None:
    if not path.exists():
        return None
    try:
        return read(path)
    except ParseError as e:
        print(f"warning: {e}", file=sys.stderr)
        return None


def _read_original(log: Path) -> RunResult:
    return parse_original_log(log.read_text(errors="replace"), str(log), require_final=False)


def collect(work: Path, seeds: list[int]) -> Runs:
    """Whatever each side has written so far; a side not run (or unreadable, with a warning) is None."""
    return {seed: {ORIGINAL: _read(work / ORIGINAL / f"seed{seed}" / "log.txt", _read_original),
                   CLDST: _read(work / CLDST / f"seed{seed}", parse_cldst_run)} for seed in seeds}


def settings_line(a: argparse.Namespace) -> str:
    return (f"Tiny ImageNet (32 px, {a.tiny}) as miniImagenet100: first {a.classes} classes (sorted wnids) in "
            f"{a.tasks} tasks · resnet18 · epochs {a.epochs} · batch {a.batch_size} · density {a.density} · "
            f"init {a.init} · growth {a.growth} · update frequency {a.update_frequency} · lr {a.lr} · "
            f"seeds {' '.join(map(str, a.seeds))}" + (f" · cldst extra: {' '.join(a.cldst_extra)}" if a.cldst_extra else ""))


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.tasks < 1 or a.classes % a.tasks:
        print(f"error: --classes {a.classes} must be a multiple of --tasks {a.tasks} (the original needs it)",
              file=sys.stderr)
        return 2
    work = a.work.resolve()
    try:
        if a.only != CLDST:
            layout = build_layout(a.tiny, work / ORIGINAL / "data" / "miniImageNet100", a.classes, a.link)
            print(f"layout: {layout.root} ({'reused' if layout.reused else 'built'}, {layout.method}s), "
                  f"class 0 = {layout.wnids[0]}", flush=True)
        for seed in a.seeds:
            if a.only != CLDST:
                run_original(a, work, seed)
            if a.only != ORIGINAL:
                run_cldst(a, work, seed)
    except (HarnessError, LayoutError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    runs = collect(work, a.seeds)
    table = render_markdown(runs, settings_line(a))
    (work / "parity.md").write_text(table)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
    (work / "parity.json").write_text(json.dumps(to_json(runs, settings), indent=1) + "\n")
    print(table)
    print(f"written: {work / 'parity.md'}, {work / 'parity.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
