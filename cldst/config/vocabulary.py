"""The words of a run's settings: the allowed values of each, the original code's spellings, which
settings enter the run id, and the one-line checks ExperimentConfig (experiment_config.py) makes."""

from __future__ import annotations

import math
from typing import Any

from cldst.config.benchmarks import BENCHMARKS


class ConfigError(ValueError):
    """A setting that is not allowed. The message is one line naming the parameter."""


ARCHS = ("resnet18", "mobilenetv2")
INITS = ("uniform", "ERK")
GROWTHS = ("random", "unfired", "gradient", "momentum")  # the DST growth rules
STATIC = "none"  # growth: none, the static sparse baseline: the initial mask is never updated
BANDIT = "bandit"  # growth: a bandit chooses among GROWTHS at each topology update (cldst/method/growth_bandit.py)
REUSES = ("all", "none")
# How each task's sub-network is found: dst (the study's method), or one of the field's methods
# (docs/method.md): packnet (train, prune, retrain, freeze), supsup (a learned supermask over fixed
# weights), wsn (learned scores over all weights; only free ones train)
METHODS = ("dst", "packnet", "supsup", "wsn")
# Settings a method does not read: left out of its run id, whatever their value
NOT_READ_BY: dict[str, tuple[str, ...]] = {
    "dst": ("retrain_epochs", "score_lr"),
    **{m: ("growth", "update_frequency", "prune_rate", "retrain_epochs") for m in ("supsup", "wsn")},
    "packnet": ("growth", "update_frequency", "prune_rate", "score_lr"),
}
OPTIMIZERS = ("adam", "sgd")
PROTOCOLS = ("clean", "reference")
FREE_INITS = ("zero", "theta0")
CLASS_ORDERS = ("native", "seeded")

# Spellings of the original README and code, mapped to ours.
ALIASES = {
    "dataset": {alias: b.name for b in BENCHMARKS.values() for alias in b.aliases},
    "sparse_init": {"erk": "ERK"},
    "growth": {"random_unfired": "unfired"},
    "arch": {"resnet": "resnet18", "mobilenet": "mobilenetv2"},
}

# Per-benchmark defaults, with num_classes (cldst/config/benchmarks.py holds them).
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    name: dict(num_classes=b.num_classes, **b.defaults) for name, b in BENCHMARKS.items()}

# Behaviours of the original code that protocol="reference" reproduces, one flag each.
QUIRKS = ("test_augment", "eval_all_classes", "final_model_matrix", "keep_best_epoch",
          "grown_frozen_zero", "bernoulli_masks", "unfired_topup", "dst_moves_frozen",
          "index_tie_break", "shared_head_rows", "eval_batch_stats", "threshold_prune",
          "sgd_nesterov", "keep_last_batch", "lr_drop_at_zero", "growth_ranks_active")

# Settings added after results were published, left out of the run id at these values (which
# compute what the code did before they existed), so earlier run ids and tables stay valid.
RUN_ID_NEUTRAL: dict[str, Any] = {"val_fraction": 0.0, "probe_epochs": 1, "capacity_budget": 0.0,
                                  "threshold_prune": False, "sgd_nesterov": False, "keep_last_batch": False, "lr_drop_at_zero": False,
                                  "growth_ranks_active": False, "reuse": "all", "isolation": True,
                                  "method": "dst", "retrain_epochs": 1}

# Settings that do not change what a run computes, left out of the run id.
NOT_IN_RUN_ID = ("data_dir", "device")


def is_static(growth: str, update_frequency: int) -> bool:
    """No topology update: the static sparse baseline (growth none, or update_frequency 0)."""
    return growth == STATIC or int(update_frequency) == 0


def spelling(table: dict[str, str], value: Any) -> Any:
    """Our spelling of ``value`` (ALIASES), case-insensitive; anything else as it is."""
    if not isinstance(value, str):
        return value
    key = value.strip()
    return table.get(key.lower(), table.get(key, key))


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def bad(name: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{name}={value!r} is not allowed: expected {allowed}")


def one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        bad(name, value, f"one of {', '.join(allowed)}")


def at_least(name: str, value: Any, low: int) -> None:
    if not is_int(value) or value < low:
        bad(name, value, f"an integer ≥ {low}")
