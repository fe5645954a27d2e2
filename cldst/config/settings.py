"""Each setting's help, rendered: `cldst run --help`, the comments of experiment.ipynb's parameters
cell (``cldst.notebook.parameters_cell``) and the resolved config's listing.

A field's help is written once, as ``setting(default, help)`` in cldst/config/experiment_config.py;
its choices come from that module's tuples (DATASETS, GROWTHS, ...), and what it is when left out
from the field's default, the benchmark's defaults and the protocol. A field that defaults to None
for any other reason than the dataset or the protocol needs ``None: ...`` in NONE_MEANS
(tests/test_settings.py checks).
"""

from __future__ import annotations

import typing
from dataclasses import MISSING, fields
from typing import Any

from cldst.config import (
    ARCHS,
    BANDIT,
    CLASS_ORDERS,
    DATASET_DEFAULTS,
    DATASETS,
    FREE_INITS,
    GROWTHS,
    INITS,
    METHODS,
    OPTIMIZERS,
    PROTOCOLS,
    QUIRKS,
    REUSES,
    STATIC,
    ExperimentConfig,
)

# Each field's one line of help is its ``setting(..., help)`` in cldst/config/experiment_config.py.
HELP: dict[str, str] = {f.name: f.metadata["help"] for f in fields(ExperimentConfig)}

CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": DATASETS, "method": METHODS, "class_order": CLASS_ORDERS, "arch": ARCHS, "sparse_init": INITS,
    "growth": (*GROWTHS, STATIC, BANDIT), "reuse": REUSES, "free_init": FREE_INITS, "optimizer": OPTIMIZERS,
    "protocol": PROTOCOLS,
}

# What a field left None becomes, where neither the dataset nor the protocol's quirks decide it.
NONE_MEANS: dict[str, str] = {
    "num_classes_per_task": "num_classes / num_tasks",
    "free_init": "the protocol's (theta0 for clean, zero for reference)",
    "amp": "on when the run is on CUDA, off on the CPU",
    "score_lr": "lr",
}

# Section titles, at the field that opens each (the CLI's argument groups, the parameters cell's
# comments), and a note for some.
SECTIONS: dict[str, str] = {
    "dataset": "benchmark",
    "arch": "backbone",
    "method": "sparse training",
    "optimizer": "optimisation",
    "protocol": "protocol",
    "device": "hardware",
}
SECTION_NOTES: dict[str, str] = {
    "protocol": "each quirk left unset follows the protocol; set one to switch it alone "
                "(docs/reference-protocol.md)",
}


def field_type(name: str) -> type:
    """The field's type without None: int for ``int | None``."""
    hint = typing.get_type_hints(ExperimentConfig)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return args[0]


def default(name: str) -> Any:
    f = next(f for f in fields(ExperimentConfig) if f.name == name)
    return None if f.default is MISSING else f.default


def none_means(name: str) -> str:
    """What the setting is when left None (a field whose default is None)."""
    if name in NONE_MEANS:
        return NONE_MEANS[name]
    per_dataset = [(d, values[name]) for d, values in DATASET_DEFAULTS.items() if name in values]
    if per_dataset:
        return "the dataset's (" + ", ".join(f"{d} {_plain(v)}" for d, v in per_dataset) + ")"
    if name in QUIRKS:
        return "the protocol's (on for reference, off for clean)"
    raise KeyError(f"{name}: add what None means to cldst/config/settings.py NONE_MEANS")


def cli_help(name: str) -> str:
    """``--NAME``'s help: what it is, and its default."""
    value = default(name)
    return f"{HELP[name]}; default: {none_means(name) if value is None else _plain(value)}"


def cli_metavar(name: str) -> str:
    if name in CHOICES:
        return "{" + ",".join(CHOICES[name]) + "}"
    kind = field_type(name)
    return "{true,false}" if kind is bool else kind.__name__.upper()


def notebook_comment(name: str) -> str:
    """The comment after NAME in the parameters cell: what it is, its choices, what None means."""
    text = HELP[name]
    if name in CHOICES:
        text += f": {_one_of(CHOICES[name])}"
    if default(name) is None:
        text += f"; None: {none_means(name)}"
    return text


def config_text(cfg: ExperimentConfig) -> str:
    """The resolved config, one ``name = value`` per line, then the run id (notebook and --dry-run)."""
    values = cfg.to_dict()
    width = max(len(name) for name in values)
    lines = [f"{name:<{width}} = {value!r}" for name, value in values.items()]
    return "\n".join([*lines, f"{'run id':<{width}} = {cfg.run_id()}"])


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _one_of(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]


def markdown_reference() -> str:
    """docs/settings.md: every setting by section, with its help, choices and default, then each
    benchmark's defaults (``python -m cldst.config.settings > docs/settings.md``)."""
    from cldst.config.benchmarks import BENCHMARKS

    lines = ["# Settings", "",
             "Every field of `ExperimentConfig`: a `cldst run` flag (`--NAME VALUE`), a key of a preset or",
             "grid file, and a parameter of `notebooks/experiment.ipynb`. Generated from the help written",
             "beside each field (`python -m cldst.config.settings > docs/settings.md`; a test keeps it so).", ""]
    for f in fields(ExperimentConfig):
        if f.name in SECTIONS:
            lines += ([""] if lines[-1] else []) + [f"## {SECTIONS[f.name]}", ""]
            if f.name in SECTION_NOTES:
                lines += [SECTION_NOTES[f.name][0].upper() + SECTION_NOTES[f.name][1:] + ".", ""]
            lines += ["| setting | what it is | default |", "|---|---|---|"]
        value = default(f.name)
        shown = none_means(f.name) if value is None else f"`{_plain(value)}`"
        choices = f" ({_one_of(tuple(f'`{c}`' for c in CHOICES[f.name]))})" if f.name in CHOICES else ""
        lines.append(f"| `{f.name}` | {HELP[f.name]}{choices} | {shown} |")
    keys = ("num_classes", "num_tasks", "arch", "width", "batch_size", "epochs", "density", "update_frequency",
            "image_size")
    lines += ["", "## Each benchmark's defaults", "",
              "What a setting left unset becomes, per `dataset` (`cldst/config/benchmarks.py`).", "",
              "| dataset | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, b in BENCHMARKS.items():
        values = {"num_classes": b.num_classes, **b.defaults}
        lines.append(f"| `{name}` | " + " | ".join(_plain(values[k]) for k in keys) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_reference(), end="")
