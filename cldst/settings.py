"""One line of help per ExperimentConfig field: the one source of `cldst run --help` and of the
comments in experiment.ipynb's parameters cell (``cldst.notebook.parameters_cell``).

A field's help says what it is; its choices come from config.py's tuples (DATASETS, GROWTHS, ...)
and what it is when left out from the field's default, DATASET_DEFAULTS and the protocol. A new
ExperimentConfig field needs a line in HELP (tests/test_settings.py checks), and ``None: ...`` in
NONE_MEANS if it defaults to None for any other reason than the dataset or the protocol.
"""

from __future__ import annotations

import typing
from dataclasses import MISSING, Field, fields
from typing import Any

from .config import (
    ARCHS,
    CLASS_ORDERS,
    DATASET_DEFAULTS,
    DATASETS,
    FREE_INITS,
    GROWTHS,
    INITS,
    OPTIMIZERS,
    PROTOCOLS,
    QUIRKS,
    REUSES,
    STATIC,
    ExperimentConfig,
)

HELP: dict[str, str] = {
    # benchmark
    "dataset": "benchmark (split-mnist needs no download)",
    "num_tasks": "number of tasks the classes are split into",
    "num_classes": "classes used, split into num_tasks tasks of contiguous classes",
    "num_classes_per_task": "classes per task",
    "class_order": "class order before the split into tasks (seeded: permuted by data_seed)",
    "image_size": "pixels per side (miniimagenet: 32 or 84)",
    "data_seed": "seeds the train/test split where the benchmark has none",
    "data_dir": "where datasets are downloaded and cached",
    # backbone
    "arch": "backbone network",
    "width": "channel multiplier; 1.0 is the original network",
    # sparse training
    "sparse_init": "how each task's mask is drawn (uniform: the same density in every layer)",
    "growth": "how pruned weights are regrown (none: a static mask, never updated)",
    "density": "fraction of each task's mask that is active, in (0, 1]",
    "prune_rate": "fraction of active weights pruned at a task's first update; cosine-decays to 0.005",
    "update_frequency": "optimizer steps between topology updates (0: never, a static mask)",
    "reuse": "all: a task's mask may reuse earlier tasks' frozen weights; none: only free positions",
    "isolation": "freeze the weights earlier tasks own (false: fine-tuning, later tasks overwrite them)",
    "free_init": "start value of a later task's free weights (theta0: the initial random weights)",
    # optimisation
    "optimizer": "optimizer, a fresh one for every task",
    "lr": "learning rate (×0.1 at 50 % and 75 % of the epochs)",
    "momentum": "momentum (SGD only)",
    "weight_decay": "L2 penalty",
    "epochs": "epochs per task",
    "batch_size": "training batch size",
    "eval_batch_size": "evaluation batch size (part of the measurement where BatchNorm uses batch statistics)",
    "seed": "seeds the model init, the masks and the batches",
    # protocol
    "protocol": "what is measured (reference: the original code's behaviour, every quirk on)",
    "test_augment": "quirk: evaluate with the train augmentation, in shuffled batches (128 for cifar100, batch_size otherwise)",
    "eval_all_classes": "quirk: argmax over all classes at evaluation, not the task's",
    "final_model_matrix": "quirk: every accuracy-matrix entry from the final model",
    "keep_best_epoch": "quirk: keep the epoch with the best training accuracy",
    "grown_frozen_zero": "quirk: a grown position an earlier task froze stays 0 in training",
    "bernoulli_masks": "quirk: Bernoulli mask init and random growth (inexact counts)",
    "unfired_topup": "quirk: unfired growth tops up short counts with Bernoulli draws",
    "dst_moves_frozen": "quirk: prune and grow over all positions, reused frozen ones included",
    "index_tie_break": "quirk: growth-score ties go to the lowest index, not at random",
    "shared_head_rows": "quirk: task masks span every head row, not only the task's classes",
    "eval_batch_stats": "quirk: BatchNorm uses the test batch's statistics at evaluation",
    "threshold_prune": "quirk: magnitude prune keeps |w| > threshold, so every weight tied at it is pruned",
    "sgd_nesterov": "quirk: SGD uses Nesterov momentum and its momentum buffer is masked after each step",
    "keep_last_batch": "quirk: the last partial batch is trained (ceil(N/B) steps per epoch)",
    "lr_drop_at_zero": "quirk: with one epoch both lr milestones are at 0, so training runs at lr/100",
    "growth_ranks_active": "quirk: gradient/momentum growth ranks active positions too (scored 0), so it can fall short",
    # hardware
    "device": "auto (a GPU when there is one), cpu, cuda or cuda:N",
    "amp": "bf16 autocast",
    "compile": "torch.compile the model (CUDA)",
}

CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": DATASETS, "class_order": CLASS_ORDERS, "arch": ARCHS, "sparse_init": INITS,
    "growth": (*GROWTHS, STATIC), "reuse": REUSES, "free_init": FREE_INITS, "optimizer": OPTIMIZERS,
    "protocol": PROTOCOLS,
}

# What a field left None becomes, where neither the dataset nor the protocol's quirks decide it.
NONE_MEANS: dict[str, str] = {
    "num_classes_per_task": "num_classes / num_tasks",
    "free_init": "the protocol's (theta0 for clean, zero for reference)",
    "amp": "on when the run is on CUDA, off on the CPU",
}

# Section titles, at the field that opens each (the CLI's argument groups, the parameters cell's
# comments), and a note for some.
SECTIONS: dict[str, str] = {
    "dataset": "benchmark",
    "arch": "backbone",
    "sparse_init": "sparse training",
    "optimizer": "optimisation",
    "protocol": "protocol",
    "device": "hardware",
}
SECTION_NOTES: dict[str, str] = {
    "protocol": "each quirk left unset follows the protocol; set one to switch it alone "
                "(README: Comparing with the paper)",
}


def config_fields() -> list[Field]:
    return list(fields(ExperimentConfig))


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
    raise KeyError(f"{name}: add what None means to cldst/settings.py NONE_MEANS")


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


def describe(cfg: ExperimentConfig) -> str:
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
