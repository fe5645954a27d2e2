"""Multiply-add (MAC) counts of the masked layers, and RigL's accounting of training cost.

Only the masked layers are counted (every conv and linear weight, as ``masked_parameters``): their
multiply-adds dominate; biases, BatchNorm, activations and pooling are left out, as in RigL's
counts. A layer's forward pass costs one MAC per active weight per output position of the layer:

    f = Σ_layers (active weights) × (output positions per example)

For a conv weight of shape (Cout, Cin/groups, k, k) the positions are the H_out·W_out spatial
outputs, so a dense conv costs Cout·(Cin/groups)·k·k·H_out·W_out (grouped and depthwise convs
included); a linear layer on a vector has one position. E.g. ResNet18(100) on 3×32×32 costs
140,871,680 MACs dense (the "about 141 M" of the project's notes).

The per-step cost of training follows Evci et al. 2020, "Rigging the Lottery" (§4 and the
appendix on FLOPs; also google-research/rigl, and rigl-reproducibility's ``_rigl_per_step``):
see ``TrainingFlops``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from cldst.method.masks import masked_parameters

if TYPE_CHECKING:
    from cldst.method.masks import Backbone


@torch.no_grad()
def layer_output_sizes(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """Per masked parameter name (in ``masked_parameters`` order), its layer's output positions
    per example: H_out·W_out for a conv weight, 1 for a linear weight on a vector.

    Found by one forward pass, in eval mode and without gradients, with hooks on the layers that
    own the weights; the input is zeros of shape (2, *input_shape) — two examples, not one,
    because BatchNorm here always uses batch statistics, which need more than one value per
    channel where a feature map shrinks to 1×1 (MobileNetV2 on 32×32). Parameters are untouched,
    BatchNorm keeps no running statistics, and every module's train/eval mode is restored. A
    layer the forward pass calls twice counts both calls; one it never calls gets 0.
    """
    named = masked_parameters(model)
    owners: dict[str, nn.Module] = {}
    for name, _ in named:
        module = model.get_submodule(name.rpartition(".")[0])
        if not isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            raise TypeError(f"{name}: MACs are counted for conv and linear weights only, "
                            f"not for a {type(module).__name__}")
        owners[name] = module
    positions: dict[int, int] = {id(m): 0 for m in owners.values()}

    def record(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        dims = output.shape[2:] if isinstance(module, nn.modules.conv._ConvNd) else output.shape[1:-1]
        positions[id(module)] += math.prod(dims)

    modes = {m: m.training for m in model.modules()}
    hooks = [m.register_forward_hook(record) for m in {id(m): m for m in owners.values()}.values()]
    first = named[0][1] if named else None
    try:
        model.eval()
        x = torch.zeros((2, *input_shape), device=first.device if first is not None else None,
                        dtype=first.dtype if first is not None and first.is_floating_point() else None)
        model(x)
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return {name: positions[id(owners[name])] for name, _ in named}


def _active(m: torch.Tensor | int | float) -> float:
    return float(torch.count_nonzero(m)) if isinstance(m, torch.Tensor) else float(m)


def forward_macs(masks_or_counts: Sequence[torch.Tensor | int | float], output_sizes: Mapping[str, int],
                 names: Sequence[str]) -> float:
    """MACs of one example's forward pass: Σ_l active_l × positions_l.

    ``masks_or_counts[l]`` is layer ``names[l]``'s mask (bool, or any tensor: its nonzeros are the
    active weights) or its number of active weights; ``output_sizes`` is ``layer_output_sizes``.
    """
    if len(masks_or_counts) != len(names):
        raise ValueError(f"{len(masks_or_counts)} masks or counts for {len(names)} layers")
    return float(sum(_active(m) * output_sizes[n] for m, n in zip(masks_or_counts, names)))


def dense_forward_macs(model: nn.Module, output_sizes: Mapping[str, int]) -> float:
    """MACs of one example's forward pass with every masked weight active."""
    named = masked_parameters(model)
    return forward_macs([p.numel() for _, p in named], output_sizes, [n for n, _ in named])


def task_inference_macs(backbone: Backbone, t: int, output_sizes: Mapping[str, int]) -> tuple[float, float]:
    """(MACs per example, fraction of the dense count) of task t's sub-network, the network it is
    evaluated with (merged ⊙ task_masks[t]). The dense count is the whole model's, every head row
    included, so under the clean protocol the head's share of the fraction is over all classes."""
    macs = forward_macs(backbone.task_masks[t], output_sizes, backbone.names)
    return macs, macs / dense_forward_macs(backbone.model, output_sizes)


# Which growth rules need the dense gradient (over inactive weights too), and when.
# none: the static mask, never updated; bandit: any rule at any update, momentum included, so the
# momentum of every weight is kept: the dense gradient at every step
# The field's methods (cfg.method, docs/method.md): packnet trains the weights of its mask, so 3·f_S
# (its mask is the whole network until its prune); supsup and wsn learn a score for every weight,
# the dense gradient at every step
DENSE_GRADIENT = {"random": "never", "unfired": "never", "gradient": "at_update", "momentum": "every_step",
                  "none": "never", "bandit": "every_step",
                  "packnet": "never", "supsup": "every_step", "wsn": "every_step"}


class TrainingFlops:
    """Training MACs of one task under RigL's convention (Evci et al. 2020).

    With f_S the forward MACs of the current sparse mask and f_D the dense ones, per example:

    - a step costs 3·f_S: forward f_S, backward 2·f_S (gradient w.r.t. the layer inputs, f_S, and
      w.r.t. the active weights, f_S);
    - ``growth="gradient"`` (RigL): the step whose gradient a topology update reads needs the
      gradient of every weight, dense: that step costs 2·f_S + f_D instead of 3·f_S. RigL's
      average over an update period, (3·f_S·ΔT + 2·f_S + f_D)/(ΔT + 1), is this with ΔT ordinary
      steps between update steps; here the steps are counted as they happen;
    - ``growth="momentum"`` (SNFS, Dettmers & Zettlemoyer 2019): the momentum of every weight needs
      the dense gradient at every step: 2·f_S + f_D each step;
    - ``growth="random"`` (SET) and ``"unfired"``: no dense gradient, 3·f_S every step.

    The cost of the topology update itself (sorting, sampling) is left out, as in RigL. This
    counts what a sparse implementation would need: cldst's loop actually computes the dense
    weight gradient at every step (PyTorch's autograd does, whatever the mask), so its real
    arithmetic is that of 2·f_S + f_D per step, or more, since it runs dense kernels throughout.

    Use: ``step(f_S, batch)`` after each optimizer step, with the forward MACs of the mask that
    step trained (masks change only at topology updates, so ``forward_macs`` can be cached per
    mask); ``topology_update()`` after each topology update, which read that step's gradient.
    ``total`` is the sum so far over all examples.
    """

    def __init__(self, dense_forward: float, growth: str):
        if growth not in DENSE_GRADIENT:
            raise ValueError(f"unknown growth rule {growth!r}; one of {sorted(DENSE_GRADIENT)}")
        self.dense_forward = float(dense_forward)
        self.growth = growth
        self.total = 0.0
        self.steps = 0
        self.updates = 0
        self._last: tuple[float, int] | None = None  # (f_S, examples) of the last step

    def step(self, forward_macs: float, examples: int) -> float:
        """Count one optimizer step on ``examples`` examples with a mask of ``forward_macs``
        forward MACs per example. Returns the step's MACs."""
        f_s = float(forward_macs)
        per_example = 2 * f_s + self.dense_forward if DENSE_GRADIENT[self.growth] == "every_step" else 3 * f_s
        self.total += per_example * examples
        self.steps += 1
        self._last = (f_s, examples)
        return per_example * examples

    def topology_update(self) -> float:
        """Count a topology update after the last step. With gradient growth, that step's
        backward pass computed the dense weight gradient: + (f_D − f_S) per example. Returns the
        MACs added."""
        if self._last is None:
            raise RuntimeError("topology_update before any step: the update reads a step's gradient")
        self.updates += 1
        if DENSE_GRADIENT[self.growth] != "at_update":
            return 0.0
        f_s, examples = self._last
        extra = (self.dense_forward - f_s) * examples
        self.total += extra
        return extra


class TaskFlops:
    """One task's training MACs as the task loop sees them: ``step`` after every optimizer step,
    saying whether a topology update followed it; the current mask's forward MACs are recomputed
    only after an update. ``total`` starts from ``total`` (a resumed task's count so far)."""

    def __init__(self, names: list[str], output_sizes: dict[str, int], dense_forward: float, growth: str,
                 mask: list[torch.Tensor], total: float = 0.0):
        self.names, self.output_sizes, self.mask = names, output_sizes, mask
        self.counter = TrainingFlops(dense_forward, growth)
        self.counter.total = float(total)
        self.forward = forward_macs(mask, output_sizes, names)

    def step(self, examples: int, updated: bool) -> None:
        self.counter.step(self.forward, examples)
        if updated:
            self.counter.topology_update()
            self.mask_changed()

    def mask_changed(self) -> None:
        """The mask changed (a topology update, PackNet's prune): recount its forward MACs."""
        self.forward = forward_macs(self.mask, self.output_sizes, self.names)

    @property
    def total(self) -> float:
        return self.counter.total
