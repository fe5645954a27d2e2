"""The checks of a filled-in ExperimentConfig: each setting in range, or ConfigError with one line
that names the setting, its value and what it may be."""

from __future__ import annotations

from cldst.config.benchmarks import BENCHMARKS, DATASETS
from cldst.config.candidates import CHOOSABLE
from cldst.config.vocabulary import (
    ARCHS,
    BANDIT,
    CLASS_ORDERS,
    FREE_INITS,
    GROWTHS,
    INITS,
    METHODS,
    OPTIMIZERS,
    PROTOCOLS,
    QUIRKS,
    REUSES,
    STATIC,
    ConfigError,
    at_least,
    bad,
    is_int,
    is_number,
    one_of,
)


def check(cfg) -> None:
    """Every setting of a filled-in ExperimentConfig in range, or ConfigError with one line."""
    one_of("dataset", cfg.dataset, DATASETS)
    one_of("arch", cfg.arch, ARCHS)
    for init in cfg.candidate_values("sparse_init"):
        one_of("sparse_init", init, INITS)
    for growth in cfg.candidate_values("growth"):
        one_of("growth", growth, (*GROWTHS, STATIC) if cfg.adaptive else (*GROWTHS, STATIC, BANDIT))
    one_of("method", cfg.method, METHODS)
    one_of("reuse", cfg.reuse, REUSES)
    one_of("optimizer", cfg.optimizer, OPTIMIZERS)
    one_of("protocol", cfg.protocol, PROTOCOLS)
    one_of("free_init", cfg.free_init, FREE_INITS)
    one_of("class_order", cfg.class_order, CLASS_ORDERS)
    for name in ("num_tasks", "num_classes", "num_classes_per_task", "epochs", "batch_size",
                 "eval_batch_size", "image_size"):
        at_least(name, getattr(cfg, name), 1)
    at_least("update_frequency", cfg.update_frequency, 0)
    if cfg.amp is not None and not isinstance(cfg.amp, bool):
        bad("amp", cfg.amp, "true, false or null (on for CUDA)")
    for name in ("compile", "isolation", *QUIRKS):
        if not isinstance(getattr(cfg, name), bool):
            bad(name, getattr(cfg, name), "true or false")
    for name in ("seed", "data_seed"):
        if not is_int(getattr(cfg, name)):
            bad(name, getattr(cfg, name), "an integer")
    if not cfg.isolation and cfg.reuse == "none":
        raise ConfigError("reuse='none' needs isolation=true: without isolation no position is owned")
    if cfg.num_tasks * cfg.num_classes_per_task != cfg.num_classes:
        raise ConfigError(
            f"num_tasks × num_classes_per_task = {cfg.num_tasks} × {cfg.num_classes_per_task}"
            f" = {cfg.num_tasks * cfg.num_classes_per_task} must equal num_classes={cfg.num_classes}")
    native = BENCHMARKS[cfg.dataset].num_classes
    if cfg.num_classes > native:
        bad("num_classes", cfg.num_classes, f"at most {native}, the classes {cfg.dataset} has")
    for density in cfg.candidate_values("density"):
        if not is_number(density) or not 0 < density <= 1:
            bad("density", density, "a number in (0, 1]")
    at_least("probe_epochs", cfg.probe_epochs, 1)
    if not is_number(cfg.capacity_budget) or not 0 <= cfg.capacity_budget < 100:
        bad("capacity_budget", cfg.capacity_budget, "points of accuracy, a number in [0, 100)")
    if cfg.capacity_budget and not isinstance(cfg.density, tuple):
        raise ConfigError("capacity_budget chooses among several densities: give density a list "
                          "(e.g. density: 0.05,0.025)")
    if cfg.adaptive:
        _check_adaptive(cfg)
    at_least("retrain_epochs", cfg.retrain_epochs, 1)
    if cfg.score_lr is not None and (not is_number(cfg.score_lr) or cfg.score_lr <= 0):
        bad("score_lr", cfg.score_lr, "a number > 0, or null (lr)")
    if cfg.method != "dst":
        _check_method(cfg)
    if not is_number(cfg.val_fraction) or not 0 <= cfg.val_fraction < 1:
        bad("val_fraction", cfg.val_fraction, "a number in [0, 1)")
    if not is_number(cfg.prune_rate) or not 0 <= cfg.prune_rate < 1:
        bad("prune_rate", cfg.prune_rate, "a number in [0, 1)")
    if not is_number(cfg.width) or cfg.width <= 0:
        bad("width", cfg.width, "a number > 0")
    if not is_number(cfg.lr) or cfg.lr <= 0:
        bad("lr", cfg.lr, "a number > 0")
    if not is_number(cfg.momentum) or not 0 <= cfg.momentum < 1:
        bad("momentum", cfg.momentum, "a number in [0, 1)")
    if cfg.optimizer == "sgd" and cfg.sgd_nesterov and cfg.momentum == 0:
        bad("momentum", cfg.momentum, "a number in (0, 1) with sgd_nesterov (Nesterov needs momentum)")
    if not is_number(cfg.weight_decay) or cfg.weight_decay < 0:
        bad("weight_decay", cfg.weight_decay, "a number ≥ 0")
    if not isinstance(cfg.device, str) or not (
            cfg.device in ("auto", "cpu", "mps") or cfg.device.startswith("cuda")):
        bad("device", cfg.device, "auto, cpu, cuda or cuda:N")
    sizes = BENCHMARKS[cfg.dataset].image_sizes
    if sizes and cfg.image_size not in sizes:
        bad("image_size", cfg.image_size, f"{' or '.join(map(str, sizes))} for {cfg.dataset}")


def _check_adaptive(cfg) -> None:
    lists = ", ".join(n for n in CHOOSABLE if isinstance(getattr(cfg, n), tuple))
    if cfg.val_fraction <= 0:
        raise ConfigError(f"candidates for {lists} are chosen on validation images: set val_fraction > 0 "
                          "(e.g. 0.1); the test set never chooses")
    if cfg.protocol != "clean":
        raise ConfigError(f"candidates for {lists} need protocol=clean (the reference quirks evaluate "
                          "with test augmentation and batch statistics)")
    if cfg.probe_epochs >= cfg.epochs:
        bad("probe_epochs", cfg.probe_epochs, f"fewer than epochs={cfg.epochs}, so the chosen "
             "candidate trains on after the choice")


def _check_method(cfg) -> None:
    """The field's methods run the clean protocol's loop only, one fixed configuration each."""
    m = cfg.method
    if cfg.adaptive or cfg.growth == BANDIT:
        raise ConfigError(f"method={m} trains one fixed configuration: candidate lists and growth=bandit "
                          "are DST's (use method=dst)")
    quirks = [q for q in QUIRKS if getattr(cfg, q)]
    if cfg.protocol != "clean" or quirks:
        raise ConfigError(f"method={m} runs the clean protocol only: "
                          + ("set protocol=clean" if cfg.protocol != "clean" else f"turn off {quirks[0]}"))
    if not cfg.isolation or cfg.reuse != "all" or cfg.free_init != "theta0":
        raise ConfigError(f"method={m} needs isolation=true, reuse=all and free_init=theta0 (its own rules "
                          "decide what is reused and frozen)")
    if m == "packnet" and cfg.retrain_epochs >= cfg.epochs:
        bad("retrain_epochs", cfg.retrain_epochs, f"fewer than epochs={cfg.epochs}: packnet trains "
             "epochs − retrain_epochs epochs before the prune")
