"""ExperimentConfig: every setting of one run, validated.

Fields left as ``None`` take the dataset's default (the original code's per-benchmark values of
epochs, batch size, density, update frequency and network), so the resolved config written to
``config.json`` is always concrete. ``sparse_init`` and ``growth`` default to ERK and gradient, the
study's best pair; the original's command line defaults to uniform and random.
The reference protocol's quirks are described in docs/reference-protocol.md.

Each field's one line of help is written once, beside it, as ``setting(default, help)``; cldst/
config/settings.py renders it for ``cldst run --help`` and experiment.ipynb's parameters cell.
A benchmark's defaults live in cldst/config/benchmarks.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cldst.config.benchmarks import DATASETS
from cldst.config.candidates import CHOOSABLE, candidates, label
from cldst.config.validation import check
from cldst.config.vocabulary import (
    ALIASES,
    DATASET_DEFAULTS,
    GROWTHS,
    INITS,
    NOT_IN_RUN_ID,
    NOT_READ_BY,
    PROTOCOLS,
    QUIRKS,
    RUN_ID_NEUTRAL,
    ConfigError,
    bad,
    is_int,
    is_static,
    spelling,
)


def setting(default: Any, help: str):
    """A config field with its one line of help (cldst run --help, the notebook's parameters cell)."""
    return field(default=default, metadata={"help": help})


@dataclass
class ExperimentConfig:
    # benchmark
    dataset: str = setting("split-mnist", "benchmark (split-mnist needs no download)")
    num_tasks: int | None = setting(None, "number of tasks the classes are split into")
    num_classes: int | None = setting(None, "classes used, split into num_tasks tasks of contiguous classes")
    num_classes_per_task: int | None = setting(None, "classes per task")
    class_order: str = setting("native", "class order before the split into tasks (seeded: permuted by data_seed)")
    image_size: int | None = setting(None, "pixels per side (tinyimagenet: 32 or 64; miniimagenet: any, e.g. 84)")
    data_seed: int = setting(0, "seeds the train/test split where the benchmark has none")
    val_fraction: float = setting(0.0, "share of each task's training images held out for validation, "
                                       "class-balanced, drawn by data_seed; never trained on")
    data_dir: str = setting("data", "where datasets are downloaded and cached")
    # backbone
    arch: str | None = setting(None, "backbone network")
    width: float | None = setting(None, "channel multiplier; 1.0 is the original network")
    # sparse training
    method: str = setting("dst", "how each task finds its sub-network (dst: this study's; the others: the field's "
                                 "methods, docs/method.md)")
    sparse_init: str = setting("ERK", "how each task's mask is drawn (uniform: the same density in every layer; "
                                      "several, or adaptive: each task chooses)")
    growth: str = setting("gradient", "how pruned weights are regrown (none: a static mask; bandit: chosen at each "
                                      "update; several, or adaptive: each task chooses)")
    density: float | None = setting(None, "fraction of each task's mask that is active, in (0, 1] (several: each "
                                          "task chooses)")
    probe_epochs: int = setting(1, "with candidates: epochs each survivor trains per round of the choice")
    capacity_budget: float = setting(0.0, "with several densities: validation accuracy (points of %) a task may "
                                          "give up to take a sparser one, leaving capacity for later tasks (0: the "
                                          "best score wins)")
    prune_rate: float = setting(0.5, "fraction of active weights pruned at a task's first update; cosine-decays to 0.005")
    update_frequency: int | None = setting(None, "optimizer steps between topology updates (0: never, a static mask)")
    score_lr: float | None = setting(None, "supsup, wsn: learning rate of the mask scores")
    retrain_epochs: int = setting(1, "packnet: the last epochs of each task's budget, retraining after the prune")
    reuse: str = setting("all", "all: a task's mask may reuse earlier tasks' frozen weights; none: only free positions")
    isolation: bool = setting(True, "freeze the weights earlier tasks own (false: fine-tuning, later tasks overwrite them)")
    free_init: str | None = setting(None, "start value of a later task's free weights (theta0: the initial random weights)")
    # optimisation
    optimizer: str = setting("adam", "optimizer, a fresh one for every task")
    lr: float = setting(1e-3, "learning rate (×0.1 at 50 % and 75 % of the epochs)")
    momentum: float = setting(0.9, "momentum (SGD only)")
    weight_decay: float = setting(0.0, "L2 penalty")
    epochs: int | None = setting(None, "epochs per task")
    batch_size: int | None = setting(None, "training batch size")
    eval_batch_size: int = setting(256, "evaluation batch size (part of the measurement where BatchNorm uses batch statistics)")
    seed: int = setting(0, "seeds the model init, the masks and the batches")
    # protocol: "reference" turns every quirk below on; "clean" turns them off. Each quirk left
    # as None follows the protocol; set one to true/false to switch it alone
    # (docs/reference-protocol.md).
    protocol: str = setting("clean", "what is measured (reference: the original code's behaviour, every quirk on)")
    test_augment: bool | None = setting(None, "quirk: evaluate with the train augmentation, in shuffled batches (128 for cifar100, batch_size otherwise)")
    eval_all_classes: bool | None = setting(None, "quirk: argmax over all classes at evaluation, not the task's")
    final_model_matrix: bool | None = setting(None, "quirk: every accuracy-matrix entry from the final model")
    keep_best_epoch: bool | None = setting(None, "quirk: keep the epoch with the best training accuracy")
    grown_frozen_zero: bool | None = setting(None, "quirk: a grown position an earlier task froze stays 0 in training")
    bernoulli_masks: bool | None = setting(None, "quirk: Bernoulli mask init and random growth (inexact counts)")
    unfired_topup: bool | None = setting(None, "quirk: unfired growth tops up short counts with Bernoulli draws")
    dst_moves_frozen: bool | None = setting(None, "quirk: prune and grow over all positions, reused frozen ones included")
    index_tie_break: bool | None = setting(None, "quirk: growth-score ties go to the lowest index, not at random")
    shared_head_rows: bool | None = setting(None, "quirk: task masks span every head row, not only the task's classes")
    eval_batch_stats: bool | None = setting(None, "quirk: BatchNorm uses the test batch's statistics at evaluation")
    threshold_prune: bool | None = setting(None, "quirk: magnitude prune keeps |w| > threshold, so every weight tied at it is pruned")
    sgd_nesterov: bool | None = setting(None, "quirk: SGD uses Nesterov momentum and its momentum buffer is masked after each step")
    keep_last_batch: bool | None = setting(None, "quirk: the last partial batch is trained (ceil(N/B) steps per epoch)")
    lr_drop_at_zero: bool | None = setting(None, "quirk: with one epoch both lr milestones are at 0, so training runs at lr/100")
    growth_ranks_active: bool | None = setting(None, "quirk: gradient/momentum growth ranks active positions too (scored 0), so it can fall short")
    # hardware
    device: str = setting("auto", "auto (a GPU when there is one), cpu, cuda or cuda:N")
    amp: bool | None = setting(None, "bf16 autocast")
    compile: bool = setting(False, "torch.compile the model (CUDA)")

    def __post_init__(self) -> None:
        self._normalise()
        self._fill_defaults()
        self.validate()

    # ------------------------------------------------------------------ building
    def _normalise(self) -> None:
        self.sparse_init = candidates(self.sparse_init, INITS)
        self.growth = candidates(self.growth, GROWTHS)
        self.density = candidates(self.density, None, parse=float)
        for name, table in ALIASES.items():
            value = getattr(self, name)
            if isinstance(value, tuple):
                setattr(self, name, tuple(spelling(table, v) for v in value))
            else:
                setattr(self, name, spelling(table, value))
        if isinstance(self.protocol, str):
            self.protocol = self.protocol.lower()
        if isinstance(self.optimizer, str):
            self.optimizer = self.optimizer.lower()

    def _fill_defaults(self) -> None:
        if not isinstance(self.device, str):
            bad("device", self.device, "auto, cpu, cuda or cuda:N")
        if self.dataset not in DATASET_DEFAULTS:
            bad("dataset", self.dataset, f"one of {', '.join(DATASETS)}")
        for name, value in DATASET_DEFAULTS[self.dataset].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.num_classes_per_task is None and is_int(self.num_tasks) and self.num_tasks > 0 \
                and is_int(self.num_classes) and self.num_classes % self.num_tasks == 0:
            self.num_classes_per_task = self.num_classes // self.num_tasks
        if self.num_classes_per_task is None:
            bad("num_tasks", self.num_tasks, f"a divisor of num_classes={self.num_classes}")
        if self.score_lr is None:
            self.score_lr = self.lr
        if self.protocol in PROTOCOLS:
            for name in QUIRKS:
                if getattr(self, name) is None:
                    setattr(self, name, self.protocol == "reference")
            if self.free_init is None:
                self.free_init = "zero" if self.protocol == "reference" else "theta0"

    def validate(self) -> None:
        """Raise ConfigError, with one line, for the first setting out of range (cldst/config/validation.py)."""
        check(self)

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r}: allowed are {', '.join(sorted(known))}")
        return cls(**values)

    @property
    def adaptive(self) -> bool:
        """Some of sparse_init, growth and density list candidates: each task chooses among them."""
        return any(isinstance(getattr(self, n), tuple) for n in CHOOSABLE)

    def candidate_values(self, name: str) -> tuple:
        value = getattr(self, name)
        return value if isinstance(value, tuple) else (value,)

    def choices(self) -> list[dict[str, Any]]:
        """Every combination of the candidates, in order: sparse_init, then growth, then density."""
        return [dict(sparse_init=i, growth=g, density=d) for i in self.candidate_values("sparse_init")
                for g in self.candidate_values("growth") for d in self.candidate_values("density")]

    def fixed(self, choice: dict[str, Any]) -> ExperimentConfig:
        """The fixed run of one candidate: ``choice`` (one of ``choices()``) over this config."""
        return dataclasses.replace(self, **choice, capacity_budget=0.0)

    @property
    def static(self) -> bool:
        """No topology update: the static sparse baseline (growth none, or update_frequency 0)."""
        return is_static(self.growth, self.update_frequency)

    def run_id(self) -> str:
        """Short hash of everything that changes what the run computes."""
        d = {k: v for k, v in self.to_dict().items()
             if k not in NOT_IN_RUN_ID and k not in NOT_READ_BY[self.method]
             and not (k in RUN_ID_NEUTRAL and v == RUN_ID_NEUTRAL[k])}
        digest = hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]
        density = label(self.density) if isinstance(self.density, tuple) else f"{self.density:g}"
        rule = label(self.growth) if self.method == "dst" else self.method  # what finds the sub-network
        return f"{self.dataset}-{label(self.sparse_init)}-{rule}-d{density}-s{self.seed}-{digest}"


def load_preset(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON parameter file (the format papermill's -f takes)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"preset file {str(path)!r} does not exist")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"preset file {str(path)!r} must hold a mapping of setting: value")
    return values
