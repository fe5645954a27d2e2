"""Packed runs: several runs that share every shape-setting train as one batched computation.

Each member is a ContinualLearner of its own (masks, init, growth, density, update frequency,
prune-rate schedule, seed, data order and augmentation generator, optimizer and learning-rate
schedule, BN statistics, evaluation, dead-start check, observers). Only the forward and backward
pass of the training step is shared: ``PackedStep`` stacks the members' parameters and batches,
and computes every member's loss and gradients with ``torch.func`` (``vmap`` over
``grad_and_value`` of ``functional_call``). Each member's ``TaskTrainer.finish_step`` then does
the rest of its step alone: isolation of frozen weights, dead-start check, optimizer step and
topology update. Evaluation and BN statistics are each member's own, unbatched.

What packing guarantees: a member computes the same function of the same inputs as the run alone;
only the convolutions' and reductions' floating-point order differs (vmap runs a pack's
convolutions as one grouped convolution). ``pack_refusal`` names the settings that cannot pack;
``PACK_SHAPE`` the settings every member of a pack shares. ``drive_pack`` runs the members'
step generators (ContinualLearner.run_steps) in lockstep: members at the same (task, step) are
computed together, the one furthest behind first, so a pack resumed from checkpoints of different
ages catches up. A member that raises is recorded as failed (or preempted) and the others go on;
when the batched step itself raises (out of memory: too many members), each of its members fails
with one line.
"""

from __future__ import annotations

import copy
import dataclasses
import traceback
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, vmap

from cldst.config import ConfigError, ExperimentConfig
from cldst.method.events import Preempted
from cldst.method.models import head
from cldst.method.steps import StepGenerator, StepRequest

# Settings every member of a pack shares: they set the shapes of the batched computation (or, for
# device, amp and compile, how it runs). Everything else may differ between members.
PACK_SHAPE = ("dataset", "num_tasks", "num_classes", "num_classes_per_task", "image_size", "val_fraction",
              "keep_last_batch", "arch", "width", "epochs", "batch_size", "device", "amp", "compile")


def pack_refusal(cfg: ExperimentConfig) -> str | None:
    """Why ``cfg`` cannot train in a pack (one line naming the setting), or None."""
    if cfg.adaptive:
        return ("sparse_init/growth/density with candidates (adaptive) cannot pack: each task's choice "
                "trains its candidates one after another")
    if cfg.compile:
        return "compile=true cannot pack: the packed step does not run under torch.compile"
    if cfg.method != "dst":
        return (f"method={cfg.method} cannot pack: its hooks around the forward and backward pass "
                "(cldst/method/subnetwork.py) are not batched")
    return None


def pack_key(cfg: ExperimentConfig) -> tuple:
    """Runs with equal keys (and no refusal) can share a pack."""
    return tuple(getattr(cfg, k) for k in PACK_SHAPE)


def check_pack(cfgs: Sequence[ExperimentConfig]) -> None:
    """A ConfigError (one line) unless every config can pack and all share PACK_SHAPE."""
    for cfg in cfgs:
        refusal = pack_refusal(cfg)
        if refusal:
            raise ConfigError(refusal)
    for k in PACK_SHAPE:
        values = {getattr(c, k) for c in cfgs}
        if len(values) > 1:
            raise ConfigError(f"{k} differs within a pack ({', '.join(sorted(map(str, values)))}): "
                              "runs pack only when they share " + ", ".join(PACK_SHAPE))


class PackedStep:
    """The forward and backward pass of several members' training steps as one computation."""

    def __init__(self, model: torch.nn.Module):
        self.template = copy.deepcopy(model)  # its parameters are replaced at every call
        self.names = [n for n, _ in self.template.named_parameters()]
        self.features: list[torch.Tensor] = []  # the head's input: the dead-start check reads it
        head(self.template).register_forward_pre_hook(lambda _m, inputs: self.features.append(inputs[0]))
        self.class_slice = slice(0)
        self.autocast = None
        self._grad = vmap(grad_and_value(self._loss, has_aux=True))

    def _loss(self, params: dict, x: torch.Tensor, y: torch.Tensor):
        self.features.clear()
        with self.autocast():
            all_logits = functional_call(self.template, params, (x,)).float()
        loss = F.cross_entropy(all_logits[:, self.class_slice], y)
        return loss, (all_logits, self.features[0])

    def backward(self, requests: Sequence[StepRequest]) -> list[tuple]:
        """Every member's loss and gradients; the gradients go to its parameters' ``.grad``.
        Returns, per member, the arguments of its ``TaskTrainer.finish_step``."""
        trainers = [r.trainer for r in requests]
        slices = {(tr.class_slice.start, tr.class_slice.stop) for tr in trainers}
        shapes = {(tuple(r.x.shape), tuple(r.y.shape)) for r in requests}
        if len(slices) > 1 or len(shapes) > 1:
            raise RuntimeError(f"a pack's members are out of step: class slices {slices}, batch shapes {shapes}")
        self.class_slice, self.autocast = trainers[0].class_slice, trainers[0].autocast
        members = [list(tr.model.parameters()) for tr in trainers]
        params = {n: torch.stack([ps[i].detach() for ps in members]) for i, n in enumerate(self.names)}
        x = torch.stack([r.x for r in requests])
        y = torch.stack([r.y for r in requests])
        grads, (loss, (all_logits, features)) = self._grad(params, x, y)
        out = []
        for k, (tr, ps) in enumerate(zip(trainers, members)):
            tr.optimizer.zero_grad()
            for p, n in zip(ps, self.names):
                p.grad = grads[n][k]
            out.append((loss[k].detach(), all_logits[k].detach(), features[k].detach()))
        return out


@dataclasses.dataclass
class MemberOutcome:
    """How a member's run ended: "finished" (``value``: what run_steps returned), "preempted"
    (stopped on request; its checkpoint is written) or "failed" (``error``, ``trace``)."""

    status: str
    value: object = None
    error: BaseException | None = None
    trace: str = ""


def drive_pack(steps: Sequence[StepGenerator], model: torch.nn.Module,
               on_end: Callable[[int, MemberOutcome], None] | None = None,
               before_round: Callable[[], None] | None = None) -> list[MemberOutcome]:
    """Run the members' step generators to their end, batching the steps that are due together.
    ``model``: one member's model (the shapes of the batched computation); ``on_end(i, outcome)``
    is called as soon as member i has ended (the others may go on for long); ``before_round()``
    before each batched step (a pack's stop request is read there once, so that every member of
    the step sees the same answer and the members stop at the same step)."""
    packed = PackedStep(model)
    outcomes: list[MemberOutcome | None] = [None] * len(steps)
    pending: dict[int, StepRequest] = {}

    def end(i: int, outcome: MemberOutcome) -> None:
        outcomes[i] = outcome
        if on_end is not None:
            on_end(i, outcome)

    def advance(i: int, step) -> None:
        try:
            pending[i] = step()
        except StopIteration as done:
            end(i, MemberOutcome("finished", done.value))
        except Preempted as e:
            end(i, MemberOutcome("preempted", error=e))
        except Exception as e:  # a failed member: reported, and the others go on
            end(i, MemberOutcome("failed", error=e, trace=traceback.format_exc()))

    for i, gen in enumerate(steps):
        advance(i, lambda gen=gen: next(gen))
    while pending:
        if before_round is not None:
            before_round()
        # the members furthest behind go first; equal positions are computed together
        first = min((r.t, r.trainer.steps) for r in pending.values())
        group = [i for i, r in pending.items() if (r.t, r.trainer.steps) == first]
        requests = [pending.pop(i) for i in group]
        if len(group) == 1:  # alone: the run's own step
            i, r = group[0], requests[0]
            advance(i, lambda i=i, r=r: steps[i].send(_own_step(r)))
            continue
        try:
            shared = packed.backward(requests)
        except Exception as e:  # the batched step failed: every member in it fails, with one line
            error, trace = packed_step_error(e, len(group), requests[0].x.device), traceback.format_exc()
            for i in group:
                steps[i].close()
                end(i, MemberOutcome("failed", error=error, trace=trace))
            continue
        for i, r, args in zip(group, requests, shared):
            advance(i, lambda i=i, r=r, args=args: steps[i].send(r.trainer.finish_step(*args)))
    return outcomes


def packed_step_error(error: Exception, size: int, device: torch.device) -> Exception:
    """The error each member of a failed batched step reports: out of memory says what fitted and
    what to do (members resume from their checkpoints); anything else is the error itself."""
    if not isinstance(error, torch.OutOfMemoryError):
        return error
    free = ""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        left, total = torch.cuda.mem_get_info(device)
        free = f" ({left / 2**30:.1f} of {total / 2**30:.1f} GiB free on {device} after it)"
    return MemoryError(f"{size} runs packed do not fit in memory{free}: rerun the sweep with a smaller --pack "
                       "(finished members are kept, the others resume from their checkpoints)")


def _own_step(r: StepRequest):
    return r.trainer.step(r.x, r.y)
