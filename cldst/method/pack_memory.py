"""How many runs fit in one pack on a GPU, from a measurement: ``--pack auto``.

A pack's memory is, to a good approximation, linear in its size R: what every pack holds whatever
its size (the shared images on the device, cuDNN's workspaces, the allocator's caches) plus what
each member adds (its weights, masks, optimizer state, gradients and its share of the stacked
parameters and activations of the batched step). ``probe_pack_memory`` trains packs of 2 and 3
copies of a config for a few steps, through the pack's own driver (``drive_pack``), and reads the
device's peak memory after each: per member = peak(3) − peak(2), base = peak(2) − 2 × per member.
The probe's steps reach the first topology update, whose dense gradients and scores are part of
the peak. ``PackMemory.largest`` is then the largest R whose base + R × per member stays under a
share of the free memory (``MARGIN``: room for fragmentation and evaluation's batches).
"""

from __future__ import annotations

import dataclasses
import gc
import itertools

import torch

from cldst.config import ExperimentConfig
from cldst.data import ImageSplit
from cldst.method.learner import ContinualLearner
from cldst.method.pack import drive_pack

MARGIN = 0.85  # the share of the free memory a pack may plan to use
SIZES = (2, 3)  # the probed pack sizes: both batched (a pack of one is the run alone's code path)


@dataclasses.dataclass(frozen=True)
class PackMemory:
    """A pack's memory, in bytes: ``base`` + R × ``per_member``; ``free`` of ``total`` on the device
    before the probe."""

    base: int
    per_member: int
    free: int
    total: int

    def need(self, size: int) -> int:
        return self.base + size * self.per_member

    def largest(self, cap: int, share: int = 1) -> int:
        """The largest R ≤ ``cap`` that fits in MARGIN of the free memory, split between ``share``
        packs at a time on the device; 0 when not even one member fits."""
        budget = MARGIN * self.free / share - self.base
        return max(0, min(cap, int(budget // max(self.per_member, 1))))

    def text(self) -> str:
        gib = 2 ** 30
        return (f"{self.base / gib:.2f} GiB + {self.per_member / gib:.2f} GiB per run, "
                f"{self.free / gib:.1f} of {self.total / gib:.1f} GiB free")


class CudaPeak:
    """The device's peak reserved memory since ``start`` (the caching allocator's, what it holds)."""

    def __init__(self, device: torch.device):
        self.device = device

    def start(self) -> None:
        gc.collect()
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int:
        torch.cuda.synchronize(self.device)
        return torch.cuda.max_memory_reserved(self.device)

    def free(self) -> tuple[int, int]:
        return torch.cuda.mem_get_info(self.device)


def probe_steps(cfg: ExperimentConfig) -> int:
    """Steps per probe: past the first topology update (2 without updates)."""
    return 2 if cfg.static else cfg.update_frequency + 1


def probe_pack_memory(cfg: ExperimentConfig, data: ImageSplit, meter) -> PackMemory:
    """Train packs of SIZES copies of ``cfg`` on ``data`` (already on the device) for
    ``probe_steps(cfg)`` steps each, and read ``meter`` (start(), peak(), free()) around each."""
    free, total = meter.free()
    peaks = []
    for size in SIZES:
        meter.start()
        steps = probe_steps(cfg)
        learners = [ContinualLearner(cfg, data=data, progress=False, should_stop=_after(steps))
                    for _ in range(size)]
        outcomes = drive_pack([lr.run_steps() for lr in learners], learners[0].model)
        failed = [o for o in outcomes if o.status == "failed"]
        if failed:
            raise failed[0].error
        peaks.append(meter.peak())
        del learners, outcomes
    per_member = max(peaks[1] - peaks[0], 1)
    return PackMemory(max(peaks[0] - SIZES[0] * per_member, 0), per_member, free, total)


def _after(steps: int):
    calls = itertools.count(1)
    return lambda: next(calls) >= steps
