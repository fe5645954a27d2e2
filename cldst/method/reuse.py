"""Where each task's capacity comes from: reuse of frozen weights across tasks (issue 14).

Definitions, over the tasks' final bool masks m_0 … m_{T-1} (one tensor per masked layer):

- The **owner** of a position is the first task whose mask contains it. Owners never change: once
  a task finishes, the positions it owns are frozen; a later task may read (reuse) them.
- ``R[t][s]`` (s < t), the **reuse matrix**: the fraction of m_t's active weights, summed over all
  layers, that task s owns. ``R[t][t]``: the fraction that is **new** (no earlier task owns it; t
  becomes its owner). Row t sums to 1 for a nonempty mask (all 0 for an empty one); entries s > t
  are None. A position drawn by tasks 0, 1 and 2 counts as task 0's in rows 1 and 2.
- **Capacity per layer** after task t: the fraction of the layer's positions owned by some task
  (the density of m_0 ∪ … ∪ m_t). A layer **saturates** at the first task after which it has no
  free position left (capacity ≥ threshold, 1.0 by default).
- The **reused fraction** of task t is 1 − R[t][t] (the sum of R[t][s], s < t); ``reuse_summary``
  is its mean over tasks t ≥ 1 (0.0 with a single task: task 0 reuses nothing by definition).

Tasks are numbered from 0 in the returned data (JSON). The figures and the results-table
functions are in cldst/analysis/reuse.py and cldst/plots/reuse.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

Masks = Sequence[Sequence[torch.Tensor]]


# ---------------------------------------------------------------------- ownership
def _owner_counts(task_masks: Masks) -> tuple[list[list[list[int]]], list[int]]:
    """Per task t and layer, counts c with c[s] (s < t) = m_t's positions owned by task s and
    c[t] = its new positions; and each layer's number of positions."""
    if not task_masks:
        return [], []
    shapes = [tuple(m.shape) for m in task_masks[0]]
    owner = [torch.full(s, -1, dtype=torch.long, device=m.device) for s, m in zip(shapes, task_masks[0])]
    counts = []
    for t, masks in enumerate(task_masks):
        if [tuple(m.shape) for m in masks] != shapes:
            raise ValueError(f"task {t}'s masks do not have the shapes of task 0's: {shapes}")
        row = []
        for own, m in zip(owner, masks):
            m = m.to(device=own.device, dtype=torch.bool)
            drawn = own[m]
            c = torch.bincount(drawn + 1, minlength=t + 1).tolist()  # c[0]: new; c[s + 1]: owned by s
            row.append(c[1:t + 1] + c[:1])
            own[m & (own < 0)] = t
        counts.append(row)
    return counts, [math.prod(s) for s in shapes]


def _fractions(counts: Sequence[Sequence[int]], num_tasks: int) -> list[list[float | None]]:
    out = []
    for t, c in enumerate(counts):
        total = sum(c)
        out.append([c[s] / total if total else 0.0 for s in range(t + 1)] + [None] * (num_tasks - t - 1))
    return out


def reuse_matrix(task_masks: Masks) -> list[list[float | None]]:
    """R[t][s]: the fraction of m_t's active weights (all layers) owned by task s < t; R[t][t]: new."""
    counts, _ = _owner_counts(task_masks)
    return _fractions([[sum(col) for col in zip(*row)] for row in counts], len(counts))


def layer_reuse(task_masks: Masks, names: Sequence[str]) -> dict[str, list[list[float | None]]]:
    """The reuse matrix of each layer, by layer name."""
    counts, _ = _owner_counts(task_masks)
    _check_names(task_masks, names)
    return {n: _fractions([row[i] for row in counts], len(counts)) for i, n in enumerate(names)}


def capacity_per_layer(task_masks: Masks, names: Sequence[str]) -> dict[str, list[float]]:
    """Per layer, the fraction of its positions owned by some task after each task."""
    counts, sizes = _owner_counts(task_masks)
    _check_names(task_masks, names)
    out = {}
    for i, n in enumerate(names):
        new = np.cumsum([row[i][-1] for row in counts])
        out[n] = [int(k) / sizes[i] for k in new]
    return out


def _check_names(task_masks: Masks, names: Sequence[str]) -> None:
    if task_masks and len(names) != len(task_masks[0]):
        raise ValueError(f"{len(names)} layer names for {len(task_masks[0])} masked layers")


def saturation_task(capacity: Mapping[str, Sequence[float]], threshold: float = 1.0) -> dict[str, int | None]:
    """Per layer, the first task (from 0) after which its capacity is ≥ threshold; None if never."""
    return {n: next((t for t, c in enumerate(caps) if c >= threshold), None) for n, caps in capacity.items()}


def reused_fraction(matrix: Sequence[Sequence[float | None]], t: int) -> float:
    """1 − R[t][t] for a nonempty mask: the part of task t's weights that earlier tasks own."""
    return float(sum(v for v in matrix[t][:t] if v is not None))


def reuse_summary(matrix: Sequence[Sequence[float | None]]) -> float:
    """The mean reused fraction over tasks t ≥ 1; 0.0 for a single task (or none)."""
    if len(matrix) < 2:
        return 0.0
    return float(np.mean([reused_fraction(matrix, t) for t in range(1, len(matrix))]))


def reuse_metrics(task_masks: Masks, names: Sequence[str]) -> dict:
    """What a run's metrics.json can record: ``reuse_matrix`` (R), ``reuse_mean``, ``layer_capacity`` and
    ``layer_saturation``."""
    cap = capacity_per_layer(task_masks, names)
    r = reuse_matrix(task_masks)
    return {"reuse_matrix": r, "reuse_mean": reuse_summary(r), "layer_capacity": cap,
            "layer_saturation": saturation_task(cap)}
