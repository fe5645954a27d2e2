"""``cldst bench --pack R``: R runs' training steps three ways, side by side in one run.

1. packed: one batched step of R runs (cldst/method/pack.py: ``PackedStep`` then each member's
   ``TaskTrainer.finish_step``), with all of this process's threads;
2. one after another: each run's own ``TaskTrainer.step`` in turn, with the same threads;
3. R concurrent processes, the cores split among them (as ``cldst sweep --jobs R`` runs them),
   each stepping its own run; their images over the wall time from the first start to the last
   end, after a common barrier.

Each run is the DST step of ``cldst bench`` (cldst/bench.py): a second task with frozen weights,
a topology update every 100 steps (amortised). Sides 1 and 2 alternate, after warm-up; the best
repeat of each is reported, as in ``cldst bench``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import time
from dataclasses import dataclass

import torch

from cldst.bench import dst_trainer, sync_device, timed
from cldst.config import ExperimentConfig
from cldst.method.device import keep_freed_memory, select_device
from cldst.method.pack import PackedStep
from cldst.method.steps import StepRequest

GROWTH_CYCLE = ("gradient", "momentum", "random", "unfired")  # members differ, as in a grid


@dataclass
class PackBench:
    arch: str
    width: float
    batch: int
    image_size: int
    pack: int
    device: str
    threads: int
    packed_ips: float
    sequential_ips: float
    processes_ips: float | None

    def table(self) -> str:
        seq = self.sequential_ips
        rows = [("packed (one batched step)", self.packed_ips),
                ("one after another", seq)]
        if self.processes_ips is not None:
            per = max(1, self.threads // self.pack)
            rows.append((f"{self.pack} processes ({per} thread{'s' * (per > 1)} each)", self.processes_ips))
        lines = [f"{self.pack} runs of {self.arch} (width {self.width}, batch {self.batch}, {self.image_size} px, "
                 f"DST step) on {self.device}, {self.threads} threads, {platform.processor() or platform.machine()}",
                 f"  {'':<34}{'train img/s':>12}{'vs one after another':>22}"]
        lines += [f"  {name:<34}{ips:>12,.0f}{ips / seq:>21.2f}×" for name, ips in rows]
        return "\n".join(lines)


def _trainers(arch, width, batch, image_size, pack, device, amp):
    out = []
    for k in range(pack):
        cfg = ExperimentConfig(dataset="cifar100", arch=arch, width=width, density=0.1, sparse_init="ERK",
                               update_frequency=100, batch_size=batch, seed=k)
        model, trainer = dst_trainer(cfg, device, GROWTH_CYCLE[k % len(GROWTH_CYCLE)], amp)
        out.append((model, trainer))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, image_size, image_size, generator=gen).to(device).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    return out, x, y


def bench_pack(arch: str = "resnet18", device: str = "cpu", *, pack: int = 4, width: float = 0.25, batch: int = 32,
               image_size: int = 32, steps: int = 3, repeats: int = 3, amp: bool | None = None,
               processes: bool = True) -> PackBench:
    dev = select_device(device)
    if dev.type == "cpu":
        keep_freed_memory()
    amp = dev.type == "cuda" if amp is None else amp
    runs, x, y = _trainers(arch, width, batch, image_size, pack, dev, amp)
    packed_step = PackedStep(runs[0][0])

    def packed():
        requests = [StepRequest(1, tr, x, y) for _, tr in runs]
        for r, args in zip(requests, packed_step.backward(requests)):
            r.trainer.finish_step(*args)

    def sequential():
        for _, tr in runs:
            tr.step(x, y)

    packed(), sequential()  # warm-up
    best = {"packed": float("inf"), "sequential": float("inf")}
    for _ in range(repeats):
        for name, fn in (("packed", packed), ("sequential", sequential)):
            best[name] = min(best[name], timed(lambda fn=fn: [fn() for _ in range(steps)], dev) / steps)
    images = pack * batch
    procs = _processes(arch, width, batch, image_size, pack, device, amp, steps * repeats) if processes else None
    return PackBench(arch, width, batch, image_size, pack, str(dev), torch.get_num_threads(),
                     images / best["packed"], images / best["sequential"], procs)


def _worker(args, barrier, results) -> None:
    arch, width, batch, image_size, device, amp, steps, threads, k = args
    torch.set_num_threads(threads)
    dev = select_device(device)
    runs, x, y = _trainers(arch, width, batch, image_size, 1, dev, amp)
    trainer = runs[0][1]
    trainer.step(x, y)  # warm-up
    sync_device(dev)
    barrier.wait()
    start = time.time()
    for _ in range(steps):
        trainer.step(x, y)
    sync_device(dev)
    results.put((start, time.time()))


def _processes(arch, width, batch, image_size, pack, device, amp, steps) -> float:
    """R processes, each with its share of the cores, stepping their own run at once."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(pack), ctx.Queue()
    threads = max(1, torch.get_num_threads() // pack)
    procs = [ctx.Process(target=_worker, args=((arch, width, batch, image_size, device, amp, steps, threads, k),
                                               barrier, results)) for k in range(pack)]
    for p in procs:
        p.start()
    spans = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    return pack * batch * steps / wall


def run_pack_bench(device: str, archs: tuple[str, ...], pack: int, *, width: float, batch: int | None,
                   steps: int, repeats: int, amp: bool | None, processes: bool = True) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    out = [f"cldst bench --pack {pack}: training images/s of {pack} runs; load average {load:.1f} at the start"]
    for arch in archs:
        b = bench_pack(arch, device, pack=pack, width=width, batch=batch or 32, steps=steps, repeats=repeats,
                       amp=amp, processes=processes)
        out.append(b.table())
    return "\n".join(out)

