"""The hooks through which the task loop runs a method (``cfg.method``): DST, the loop's own (below),
and the field's sub-network methods (PackNet, SupSup, WSN; docs/method.md has each method's rules).

The learner draws a task's mask, starts its weights, trains its epochs with the TaskTrainer and
merges it; a method changes only what its hooks say. One object serves one task:

- ``draw_mask()``: the task's mask at its start (a list of bool tensors, changed in place later);
- ``optimizer_params(model)``: what the task's optimizer trains (default: the model's parameters);
- ``before_forward()``, ``after_backward()``, ``after_step(isolation)``: around each optimizer step
  (default: DST's isolation of owned weights, ``TaskIsolation.after_step``);
- ``before_epoch(epoch, isolation)``: before each epoch; True when it changed the mask;
- ``merge()``: after the last epoch, what the task leaves in the backbone;
- ``state_dict()`` / ``load_state_dict()``: its own state, in the task's checkpoint, so that a
  resumed task computes what the uninterrupted one computes.

``flops_rule`` names the method's entry in cldst/method/flops.py's DENSE_GRADIENT;
``updates_topology``: whether the TaskTrainer's DynamicSparsity prunes and regrows the mask.
"""

from __future__ import annotations

import math

import torch

from cldst.config import ExperimentConfig
from cldst.method.dst import active_count, layer_densities
from cldst.method.masks import Backbone, TaskIsolation


class SubnetworkMethod:
    """One task of a method; the defaults are DST's behaviour with a static mask."""

    flops_rule = "never"
    updates_topology = False

    def __init__(self, cfg: ExperimentConfig, backbone: Backbone, classes: slice, generator: torch.Generator):
        self.cfg, self.backbone, self.classes, self.generator = cfg, backbone, classes, generator
        self.mask: list[torch.Tensor] = []
        self.shortfall: dict[str, int] = {}  # per layer, positions the task's own weights lacked

    def draw_mask(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def optimizer_params(self, model: torch.nn.Module) -> list[torch.Tensor]:
        return list(model.parameters())

    def before_forward(self) -> None:
        pass

    def after_backward(self) -> None:
        pass

    def after_step(self, isolation: TaskIsolation) -> None:
        isolation.after_step()

    def before_epoch(self, epoch: int, isolation: TaskIsolation) -> bool:
        return False

    def merge(self) -> None:
        self.backbone.merge(self.mask)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class DST(SubnetworkMethod):
    """The study's method: the mask drawn by the config's sparse init over the free positions (or
    all, with reuse), its topology updated by the growth rule, merged as the protocol says."""

    updates_topology = True

    def __init__(self, cfg: ExperimentConfig, backbone: Backbone, classes: slice, generator: torch.Generator):
        super().__init__(cfg, backbone, classes, generator)
        self.flops_rule = cfg.growth

    def draw_mask(self) -> list[torch.Tensor]:
        cfg = self.cfg
        self.mask = self.backbone.new_task_mask(cfg.density, cfg.sparse_init, self.generator,
                                                exact=not cfg.bernoulli_masks, reuse=cfg.reuse == "all",
                                                head_rows=None if cfg.shared_head_rows else self.classes)
        self.shortfall = self.backbone.shortfall
        return self.mask

    def merge(self) -> None:
        self.backbone.merge(self.mask, nonzero_rule=self.cfg.keep_best_epoch, overwrite=not self.cfg.isolation)


def task_region(backbone: Backbone, classes: slice) -> list[torch.Tensor]:
    """Per layer, where a task's mask may lie: everywhere but other tasks' head rows."""
    region = [torch.ones_like(u) for u in backbone.owned]
    h = backbone.head_index
    region[h].zero_()
    region[h][classes] = True
    return region


def layer_counts(backbone: Backbone, cfg: ExperimentConfig, classes: slice) -> list[int]:
    """Per layer, the task's exact count of active weights: its density (uniform or ERK, over the
    task's network, whose head has only its own rows) times the layer's size, as DST's mask draw."""
    shapes = backbone.task_shapes(classes)
    dens = layer_densities(shapes, cfg.density, cfg.sparse_init)
    return [active_count(math.prod(s), d) for s, d in zip(shapes, dens)]
