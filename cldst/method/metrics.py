"""Continual-learning metrics from the accuracy matrix.

A[i][j] is the accuracy (percent) on task j's test set after training task i; entries not
measured are NaN (None in JSON). T is the number of tasks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from cldst.config import BANDIT
from cldst.method.reuse import reuse_metrics


def as_matrix(a: Sequence[Sequence[float | None]]) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in a], dtype=float)


def to_json_matrix(a: np.ndarray) -> list[list[float | None]]:
    return [[None if math.isnan(v) else float(v) for v in row] for row in np.asarray(a, float)]


def average_accuracy(a) -> float:
    """ACC = (1/T) Σ_j A[T-1][j]: mean accuracy over all tasks after the last one."""
    a = as_matrix(a)
    return float(np.mean(a[-1]))


def backward_transfer(a) -> float:
    """BWT = 1/(T-1) Σ_{j<T-1} (A[T-1][j] − A[j][j]). Negative means forgetting; 0 for T = 1."""
    a = as_matrix(a)
    t = a.shape[0]
    if t < 2:
        return 0.0
    return float(np.mean([a[-1, j] - a[j, j] for j in range(t - 1)]))


def forgetting(a) -> float:
    """F = 1/(T-1) Σ_{j<T-1} (max_{i<T-1} A[i][j] − A[T-1][j]), the best earlier value minus the last
    (as Mammoth and FACIL; Avalanche uses first minus last). 0 for T = 1."""
    a = as_matrix(a)
    t = a.shape[0]
    if t < 2:
        return 0.0
    return float(np.mean([np.nanmax(a[j:t - 1, j]) - a[-1, j] for j in range(t - 1)]))


def incremental_accuracy(a) -> list[float]:
    """inc[i] = mean_{j≤i} A[T-1][j], as the original code prints it."""
    a = as_matrix(a)
    return [float(np.mean(a[-1, : i + 1])) for i in range(a.shape[0])]


FORGETTING_UNDEFINED = ("forgetting is not defined on a final-model matrix: every entry comes from "
                        "the same model, so max minus last only measures test-augmentation noise")


def forgetting_text(value: float | None, spec: str = ".2f") -> str:
    """Forgetting for printing: the number, or "n/a" where it is undefined (a final-model matrix)."""
    return "n/a" if value is None or math.isnan(value) else format(value, spec)


def summary(a, final_model: bool = False) -> dict[str, float | None]:
    """ACC, BWT and forgetting; forgetting is None for a final-model matrix (FORGETTING_UNDEFINED)."""
    return {"acc": average_accuracy(a), "bwt": backward_transfer(a),
            "forgetting": None if final_model else forgetting(a)}


def reference_metrics(a) -> dict:
    """The metrics the original code prints, under its names, from its (final-model) matrix.

    BWT[i] = mean_{j<i} (A[i][j] − A[j][j]), "Average BWT" = BWT[T−1];
    FWT[i] = mean_{j>i} A[i][j], "Average FWT" = mean_{i<T−1} FWT[i];
    incremental accuracy inc[i] = mean_{j≤i} A[T−1][j].
    Entries that were not measured (NaN) are left out of the means.
    """
    a = as_matrix(a)
    t = a.shape[0]
    bwt = [float(np.nanmean([a[i, j] - a[j, j] for j in range(i)])) if i else 0.0 for i in range(t)]
    fwt = [float(np.nanmean(a[i, i + 1:])) for i in range(t - 1)]
    return {
        "incremental accuracy": incremental_accuracy(a),
        "BWT": bwt,
        "Average BWT": bwt[-1],
        "FWT": fwt,
        "Average FWT": float(np.mean(fwt)) if fwt else 0.0,
    }


def run_metrics(cfg, state, task_masks, layer_names, data_info: dict, device: str, torch_version: str) -> dict:
    """metrics.json's content: the accuracy matrix and its summary, capacity, per-layer densities,
    timing, FLOPs, reuse, dead starts and what the run ran on. ``state`` is the learner's RunState;
    ``cfg`` its ExperimentConfig."""
    a = as_matrix(state.acc)
    final_model = cfg.final_model_matrix
    return {
        "run_id": cfg.run_id(),
        "status": "finished",
        "protocol": cfg.protocol,
        "acc_matrix": to_json_matrix(a),
        **summary(a, final_model=final_model),
        **({"forgetting_note": FORGETTING_UNDEFINED} if final_model else {}),
        "capacity": state.capacity,
        "layer_density": state.layer_density,
        "task_seconds": state.task_seconds,
        "images_per_s": state.images_per_s,
        "flops": state.flops,
        **reuse_metrics(task_masks, layer_names),
        "dead_tasks": state.dead_tasks,
        **({"reuse_shortfall": state.reuse_shortfall} if cfg.reuse == "none" else {}),
        "total_seconds": float(sum(state.task_seconds)),
        "data": data_info,
        "device": device,
        "torch": torch_version,
        "config": cfg.to_dict(),
        # candidates: per task, every candidate's validation scores, its cost and the choice
        **({"choices": state.choices} if cfg.adaptive else {}),
        # growth bandit: per task, the rule each topology update chose and the reward it read
        **({"growth_choices": state.growth_choices} if cfg.growth == BANDIT else {}),
        # validation (val_fraction > 0): the same matrix on the images held out of training
        **(validation_metrics(state.val_acc) if cfg.val_fraction > 0 else {}),
        # the metrics the original prints only mean something on its final-model matrix
        **({"reference_metrics": reference_metrics(a)} if final_model else {}),
    }


def validation_metrics(val_acc) -> dict:
    """``val_acc_matrix`` and ``val_acc`` (its last row's mean, ACC on validation images): what a
    choice between configurations reads, so that no choice reads the test set."""
    a = as_matrix(val_acc)
    return {"val_acc_matrix": to_json_matrix(a), "val_acc": average_accuracy(a)}
