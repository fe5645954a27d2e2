"""What the notebooks call around the library: working directory, parameters → config, mask table.

Notebooks stay thin: every step they show is one call into cldst.

experiment.ipynb's parameters are every ExperimentConfig field, with the same defaults (None: the
dataset's), plus NOTEBOOK_PARAMETERS. Papermill's ``-p``/``-f`` values arrive as assignments in an
``injected-parameters`` cell right after the parameters cell; :func:`config_from_parameters` reads
which names that cell set from the kernel's input history, so that

- a name that is not a parameter (``-p densty 0.1``) stops the notebook with one line;
- ``smoke=None`` (the default) means smoke scale (SMOKE, for fields left None) only when no setting
  was injected: Run All and nbval train for seconds, while ``-f presets/X.yaml`` or ``-p dataset
  cifar100`` resolve to exactly the config (and run id) that ``cldst run`` gives for the same values.
"""

from __future__ import annotations

import ast
import difflib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

from cldst.config import ConfigError, ExperimentConfig, settings
from cldst.runner import provenance
from cldst.runner.kernel import KERNEL  # noqa: F401  (tools/refresh_notebooks.py, the notebook tests)
from cldst.runner.run_dir import RunDir

# Where default run directories go (runs/<run id>); the notebook tests point it at a temp folder.
RUNS_ROOT_ENV = "CLDST_RUNS_ROOT"

# KERNEL (imported above): the Jupyter kernel the notebooks name, that nbval and `make lab` start as
# registered by `make install`; cldst's sweeps start it as their own Python (cldst/runner/kernel.py).

# Smoke scale: what Run All trains (a few seconds on a CPU), for fields left None, when smoke is on.
SMOKE = {"num_tasks": 3, "num_classes": 6, "width": 0.25, "epochs": 2}

# experiment.ipynb's parameters beyond the ExperimentConfig fields: name → (annotation, default, help).
NOTEBOOK_PARAMETERS: dict[str, tuple[str, Any, str]] = {
    "smoke": ("Optional[bool]", None,
              "smoke scale for settings left None (" + ", ".join(f"{k} {v}" for k, v in SMOKE.items())
              + "); None: on only when papermill sets no setting, so -p/-f values run what `cldst run` runs"),
    "out_dir": ("Optional[str]", None, "the run folder; None: runs/<run id>"),
    "resume": ("bool", True, "continue (or just read back) a run already in out_dir"),
    "progress": ("bool", True, "progress bars while training"),
}
INJECTED_COMMENT = "# Parameters"  # the first line of papermill's injected-parameters cell


def setup() -> None:
    """Run relative to the repository root, and show setting errors as one line.

    JupyterLab and nbval start the kernel in ``notebooks/``; papermill in the caller's folder.
    Moving up from ``notebooks/`` makes ``data/``, ``runs/`` and presets mean the same in all three.
    """
    here = Path.cwd()
    if here.name == "notebooks" and (here.parent / "pyproject.toml").is_file():
        os.chdir(here.parent)
    _one_line_errors()


def _one_line_errors() -> None:
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    from cldst.data import DataError

    def show(shell, etype, value, tb, tb_offset=None):
        # An error output whose traceback is the one line: the notebook stops, papermill reports it.
        stb = [f"{etype.__name__}: {value}"]
        shell._showtraceback(etype, value, stb)
        return stb

    shell.set_custom_exc((ConfigError, DataError), show)


def config_parameter_names() -> list[str]:
    return [f.name for f in fields(ExperimentConfig)]


# ---------------------------------------------------------------------- the parameters cell
def parameters_cell() -> str:
    """experiment.ipynb's parameters cell: every ExperimentConfig field with its default and its help
    from cldst/config/settings.py, then NOTEBOOK_PARAMETERS (tools/refresh_notebooks.py writes it)."""
    def line(name: str) -> str:
        annotation, value, help_text = NOTEBOOK_PARAMETERS[name]
        return f"{name}: {annotation} = {_literal(value)}  # {help_text}"

    lines = [line("smoke")]
    for f in fields(ExperimentConfig):
        if f.name in settings.SECTIONS:
            title = settings.SECTIONS[f.name]
            note = settings.SECTION_NOTES.get(title)
            lines.append(f"# {title}: {note}" if note else f"# {title}")
        kind = settings.field_type(f.name).__name__
        annotation = f"Optional[{kind}]" if settings.default(f.name) is None else kind
        lines.append(f"{f.name}: {annotation} = {_literal(settings.default(f.name))}"
                     f"  # {settings.notebook_comment(f.name)}")
    lines.append("# the run folder")
    lines += [line(name) for name in NOTEBOOK_PARAMETERS if name != "smoke"]
    return "\n".join(lines)


def _literal(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


# ---------------------------------------------------------------------- what papermill injected
def _assignments(source: str) -> tuple[list[str], bool] | None:
    """The names a cell of plain assignments sets, and whether any is annotated; None for other cells."""
    try:
        body = ast.parse(source).body
    except SyntaxError:  # IPython magics, or not Python
        return None
    names, annotated = [], False
    for node in body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
            annotated = True
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            names += [t.id for t in node.targets]
        else:
            return None
    return (names, annotated) if names else None


def split_history(history: Sequence[str]) -> tuple[list[str] | None, list[str]]:
    """From a kernel's input history (oldest first): the names the last-run parameters cell defines
    (None if there is none) and the names papermill's injected-parameters cell set after it.

    The parameters cell is a cell of annotated assignments; papermill's injected cell starts with
    ``# Parameters`` and holds plain assignments. An injected cell run before the parameters cell
    was last run no longer counts (the parameters cell has reset every value)."""
    injected: list[str] | None = None
    for source in reversed(history):
        found = _assignments(source)
        if found is None:
            continue
        names, annotated = found
        if annotated:
            return names, injected or []
        if injected is None and source.lstrip().startswith(INJECTED_COMMENT):
            injected = names
    return None, injected or []


def kernel_history() -> list[str]:
    """The cells this IPython kernel has run, oldest first (the running cell last); [] outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return []
    shell = get_ipython()
    return list(shell.history_manager.input_hist_raw) if shell is not None else []


def check_parameters(history: Sequence[str] | None = None) -> list[str]:
    """The names papermill injected; a name that is not a parameter of the notebook stops it with one line."""
    declared, injected = split_history(kernel_history() if history is None else history)
    if declared is not None:
        ignored = set(provenance.KEYS)  # a run's config.json works as a parameter file
        for name in injected:
            if name not in declared and name not in ignored:
                close = difflib.get_close_matches(name, declared, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown parameter {name!r}{hint}: "
                                  "papermill --help-notebook lists the notebook's parameters")
    return injected


def config_from_parameters(namespace: Mapping[str, Any], history: Sequence[str] | None = None) -> ExperimentConfig:
    """The ExperimentConfig named by the notebook's parameters (every field must be defined).

    ``history``: the cells run so far (default: this kernel's). With ``smoke`` None, smoke scale
    applies only when papermill injected none of the config's fields."""
    injected = check_parameters(history)
    missing = [name for name in config_parameter_names() if name not in namespace]
    if missing:
        raise ConfigError(f"the parameters cell lacks {', '.join(missing)}: add them with their defaults")
    values = {name: namespace[name] for name in config_parameter_names()}
    smoke = namespace.get("smoke", False)
    if smoke is None:
        smoke = not set(injected) & set(values)
    if not isinstance(smoke, bool):
        raise ConfigError(f"smoke={smoke!r} is not allowed: expected True, False or None")
    applied = {k: v for k, v in SMOKE.items() if smoke and values[k] is None}
    values.update(applied)
    cfg = ExperimentConfig.from_dict(values)
    if applied:
        print("smoke scale: " + ", ".join(f"{k}={v}" for k, v in applied.items())
              + " (smoke=False: the dataset's defaults)")
    return cfg


def warn_if_code_changed(run_dir: str | Path, resume: bool) -> str | None:
    """With resume, one line on stderr when run_dir holds results of other code than this one."""
    message = provenance.resume_warning(run_dir) if resume else None
    if message:
        print(message, file=sys.stderr)
    return message


def run_directory(cfg: ExperimentConfig, out_dir: str | None) -> Path:
    """``out_dir``, or runs/<run id> (under $CLDST_RUNS_ROOT when that is set)."""
    if out_dir:
        return Path(out_dir)
    return RunDir.default_for(cfg, os.environ.get(RUNS_ROOT_ENV, "runs")).path


def mask_table(run_dir: str | Path) -> pd.DataFrame:
    """Per masked layer: its shape, its weight count and each task's active count (from the checkpoint).

    Counts are exact under the clean protocol (they follow from shapes, density and init alone), so
    this table is the same on every machine.
    """
    run = RunDir(run_dir)
    ckpt = run.read_checkpoint()
    if ckpt is None:
        raise ConfigError(f"{str(run.path)!r} has no checkpoint.pt: run the experiment first")
    names = list(run.read_metrics()["layer_density"]) if run.finished else None
    task_masks = ckpt["backbone"]["task_masks"]
    shapes = [tuple(m.shape) for m in task_masks[0]]
    names = names or [f"layer {i}" for i in range(len(shapes))]
    table = pd.DataFrame({"layer": names, "shape": ["×".join(map(str, s)) for s in shapes],
                          "weights": [m.numel() for m in task_masks[0]]})
    for t, masks in enumerate(task_masks):
        table[f"task {t + 1}"] = [int(m.sum()) for m in masks]
    total = {"layer": "total", "shape": "", **{c: int(table[c].sum()) for c in table.columns[2:]}}
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def flops_table(metrics: dict) -> pd.DataFrame:
    """Per task: training multiply-adds (millions) and their ratio to dense training on the same
    examples, inference multiply-adds per image (millions) of the task's sub-network and their ratio
    to the dense network (metrics.json's ``flops``, cldst/method/flops.py). Exact under the clean protocol:
    they follow from per-layer counts alone."""
    if not metrics.get("flops"):
        raise ConfigError("this run's metrics.json has no FLOPs count: it predates it; rerun the run")
    return pd.DataFrame([{"task": t + 1, "training (M MACs)": f"{f['train_macs'] / 1e6:,.1f}",
                          "training vs dense": f"{f['train_vs_dense']:.4f}",
                          "inference (M MACs / image)": f"{f['inference_macs'] / 1e6:.3f}",
                          "inference vs dense": f"{f['inference_vs_dense']:.4f}"}
                         for t, f in enumerate(metrics["flops"])])
