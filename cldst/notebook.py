"""What the notebooks call around the library: working directory, parameters → config, mask table.

Notebooks stay thin: every step they show is one call into cldst.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

from .config import ConfigError, ExperimentConfig
from .runs import RunDir

# Where default run directories go (runs/<run id>); the notebook tests point it at a temp folder.
RUNS_ROOT_ENV = "CLDST_RUNS_ROOT"


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
    from .data import DataError

    def show(shell, etype, value, tb, tb_offset=None):
        # An error output whose traceback is the one line: the notebook stops, papermill reports it.
        stb = [f"{etype.__name__}: {value}"]
        shell._showtraceback(etype, value, stb)
        return stb

    shell.set_custom_exc((ConfigError, DataError), show)


def config_parameter_names() -> list[str]:
    return [f.name for f in fields(ExperimentConfig)]


def config_from_parameters(namespace: Mapping[str, Any]) -> ExperimentConfig:
    """The ExperimentConfig named by the notebook's parameters (every field must be defined)."""
    missing = [name for name in config_parameter_names() if name not in namespace]
    if missing:
        raise ConfigError(f"the parameters cell lacks {', '.join(missing)}: add them with their defaults")
    return ExperimentConfig.from_dict({name: namespace[name] for name in config_parameter_names()})


def describe_config(cfg: ExperimentConfig) -> str:
    """The resolved config, one ``name = value`` per line, then the run id."""
    width = max(len(name) for name in config_parameter_names())
    lines = [f"{name:<{width}} = {value!r}" for name, value in cfg.to_dict().items()]
    return "\n".join([*lines, f"{'run id':<{width}} = {cfg.run_id()}"])


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
