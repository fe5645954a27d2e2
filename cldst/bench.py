"""``cldst bench``: what DST costs next to a plain PyTorch training loop, measured side by side.

For each backbone, at its preset's batch size, on 32×32×3 images and 100 classes:

1. images/s of a plain dense PyTorch step (same network and batch, data already in memory);
2. images/s of cldst's DST step (``TaskTrainer.step``: isolation of frozen weights, masks, and a
   topology update every 100 steps, amortised), measured as a later task, with frozen weights;
3. their ratio;
4. the time of one topology update (prune + grow + re-mask) for each growth rule;
5. images/s of one epoch end to end: cldst's data path (uint8 tensors, batched augmentation on the
   device) against a torchvision DataLoader with per-image PIL transforms and 2 workers, both
   feeding the same DST step, on the same images; and the two data paths alone, with no training;
6. peak memory (CUDA: allocated by torch; CPU: the process's peak resident set so far).

Steps are timed in alternation (dense, DST, dense, ...) after warm-up, so both sides see the same
machine load. The best repeat of each side is reported, as ``timeit`` does: on a shared machine
the other repeats measure the neighbours too. The median of the per-pair ratios is printed beside.
"""

from __future__ import annotations

import functools
import platform
import resource
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cldst.config import GROWTHS, ExperimentConfig
from cldst.config.benchmarks import BENCHMARKS
from cldst.data.transforms import BatchTransform
from cldst.method.device import autocast, keep_freed_memory, select_device
from cldst.method.masks import Backbone
from cldst.method.models import build_model
from cldst.method.task_trainer import TaskTrainer, epoch_batches

# each backbone at the batch size of the benchmark the original runs it on: miniImageNet's, CIFAR-100's
PRESET_BATCH = {"resnet18": BENCHMARKS["miniimagenet"].defaults["batch_size"],
                "mobilenetv2": BENCHMARKS["cifar100"].defaults["batch_size"]}
NUM_CLASSES = BENCHMARKS["cifar100"].num_classes
MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
UPDATE_FREQUENCY = 100


@dataclass
class BenchResult:
    arch: str
    batch: int
    dense_ips: float  # best repeat
    dst_ips: float  # best repeat, topology updates amortised
    paired_ratio: float  # median over repeats of dense time / DST time
    update_s: dict[str, float]
    epoch_cldst_ips: float | None
    epoch_loader_ips: float | None
    data_cldst_ips: float | None  # the data path alone, no training
    data_loader_ips: float | None
    peak_mb: float

    @property
    def ratio(self) -> float:
        return self.dst_ips / self.dense_ips


def sync_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    sync_device(device)
    start = time.perf_counter()
    fn()
    sync_device(device)
    return time.perf_counter() - start


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _autocast(device: torch.device, amp: bool):
    return functools.partial(autocast, device, amp)


def dst_trainer(cfg: ExperimentConfig, device: torch.device, growth: str, amp: bool):
    """A model on its second task: task 0's weights frozen, task 1 training with DST."""
    torch.manual_seed(0)
    model = build_model(cfg.arch, NUM_CLASSES, 3, cfg.width).to(device, memory_format=torch.channels_last)
    forward = torch.compile(model) if cfg.compile else model
    bb = Backbone(model)
    gen = torch.Generator().manual_seed(0)
    first = bb.new_task_mask(cfg.density, cfg.sparse_init, gen)
    bb.start_weights(first, free_from_theta0=True)
    bb.merge(first)
    mask = bb.new_task_mask(cfg.density, cfg.sparse_init, gen)
    bb.start_weights(mask, free_from_theta0=False)
    cfg.growth = growth
    trainer = TaskTrainer(cfg, model, forward, bb, mask, slice(10, 20), 10**9, gen, _autocast(device, amp))
    return model, trainer


def bench_arch(arch: str, device: torch.device, *, width: float = 1.0, repeats: int = 7, steps: int = 3,
               warmup: int = 2, epoch_batches: int = 8, epoch_repeats: int = 3, amp: bool = False,
               compile: bool = False, batch: int | None = None, loader: bool = True) -> BenchResult:
    batch = batch or PRESET_BATCH[arch]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cfg = ExperimentConfig(dataset="cifar100", arch=arch, width=width, density=0.1, sparse_init="ERK",
                           update_frequency=UPDATE_FREQUENCY, batch_size=batch, compile=compile)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch * epoch_batches, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(10, 20, (len(images),), generator=gen)
    transform = BatchTransform(MEAN, STD, device)
    x = transform.normalise(images[:batch].to(device))  # channels_last, as both models
    y = labels[:batch].to(device) - 10

    # 1. plain dense PyTorch: the ceiling
    torch.manual_seed(0)
    dense = build_model(arch, NUM_CLASSES, 3, width).to(device, memory_format=torch.channels_last)
    dense_forward = torch.compile(dense) if compile else dense
    dense_opt = torch.optim.Adam(dense.parameters(), lr=1e-3)
    autocast = _autocast(device, amp)

    def dense_step():
        with autocast():
            loss = F.cross_entropy(dense_forward(x).float()[:, 10:20], y)
        dense_opt.zero_grad()
        loss.backward()
        dense_opt.step()

    # 2. the DST step of the task loop, topology updates kept out of the per-step timing
    model, trainer = dst_trainer(cfg, device, "momentum", amp)
    trainer.topology.update_frequency = 10**9

    def dst_step():
        trainer.step(x, y)

    for _ in range(warmup):
        dense_step()
        dst_step()
    dense_times, dst_times = [], []
    for _ in range(repeats):
        dense_times.append(timed(lambda: [dense_step() for _ in range(steps)], device) / steps)
        dst_times.append(timed(lambda: [dst_step() for _ in range(steps)], device) / steps)

    # 4. one topology update per growth rule (optimizer state and gradients are in place)
    update_s = {}
    for rule in GROWTHS:
        trainer.topology.growth = rule
        update_s[rule] = min(timed(lambda: (trainer.topology.update(UPDATE_FREQUENCY, trainer.optimizer),
                                             trainer.isolation.refresh()), device) for _ in range(5))
    amortised = update_s["momentum"] / UPDATE_FREQUENCY
    step_s = min(dst_times) + amortised
    paired = statistics.median(d / (s + amortised) for d, s in zip(dense_times, dst_times))

    # 5. one epoch end to end, and the data path alone
    epoch_cldst = epoch_loader = data_cldst = data_loader = None
    if loader:
        trainer.topology.update_frequency = UPDATE_FREQUENCY
        trainer.topology.growth = "momentum"
        cldst_epoch = _cldst_epoch(images, labels, transform, batch, device)
        loader_epoch = _dataloader_epoch(images, labels, batch, device)
        epoch_c, epoch_l, data_c, data_l = [], [], [], []
        for _ in range(epoch_repeats):
            epoch_c.append(timed(lambda: cldst_epoch(trainer), device))
            epoch_l.append(timed(lambda: loader_epoch(trainer), device))
            data_c.append(timed(lambda: cldst_epoch(None), device))
            data_l.append(timed(lambda: loader_epoch(None), device))
        n = epoch_batches * batch
        epoch_cldst, epoch_loader, data_cldst, data_loader = (n / min(t) for t in (epoch_c, epoch_l, data_c, data_l))
    del model
    return BenchResult(arch, batch, batch / min(dense_times), batch / step_s, paired, update_s,
                       epoch_cldst, epoch_loader, data_cldst, data_loader, _peak_mb(device))


def _cldst_epoch(images, labels, transform, batch, device):
    """cldst's data path (``train.epoch_batches``, as the task loop runs it) on uint8 images on the
    device. Returns epoch(trainer); trainer None runs the data path alone."""
    data_x, data_y = images.to(device), labels.to(device)
    idx = torch.arange(len(data_x), device=device)
    gen = torch.Generator().manual_seed(1)

    def epoch(trainer):
        for xb, yb in epoch_batches(data_x, data_y, idx, batch, transform, gen):
            if trainer is not None:
                trainer.step(xb, yb - 10)

    return epoch


def _dataloader_epoch(images, labels, batch, device):
    """The conventional pipeline: PIL images, per-image transforms in 2 DataLoader workers, which
    start again each epoch (the default). Returns epoch(trainer), as ``_cldst_epoch``."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    pil = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    ys = labels.tolist()

    class PILDataset(Dataset):
        def __len__(self):
            return len(pil)

        def __getitem__(self, i):
            return tf(pil[i]), ys[i]

    loader = DataLoader(PILDataset(), batch_size=batch, shuffle=True, num_workers=2, drop_last=True,
                        pin_memory=device.type == "cuda")

    def epoch(trainer):
        for xb, yb in loader:
            xb = xb.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            yb = yb.to(device, non_blocking=True) - 10
            if trainer is not None:
                trainer.step(xb, yb)

    return epoch


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_table(results: list[BenchResult], device: torch.device, repeats: int, steps: int) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    lines = [
        f"cldst bench: {device.type} ({name}), {torch.get_num_threads()} CPU threads, torch {torch.__version__}",
        f"best of {repeats} alternating repeats of {steps} steps; 32×32×3 inputs, 100 classes, density 0.1 ERK, "
        f"momentum growth, update frequency {UPDATE_FREQUENCY} (update cost amortised)",
        "",
        "| backbone | batch | dense step img/s | DST step img/s | DST / dense | DST / dense, median of pairs "
        "| peak memory MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.arch} | {r.batch} | {r.dense_ips:.0f} | {r.dst_ips:.0f} | {r.ratio:.3f} | "
                     f"{r.paired_ratio:.3f} | {r.peak_mb:.0f} |")
    lines += ["", "| backbone | " + " | ".join(f"update, {g} (s)" for g in GROWTHS) + " |",
              "|---|" + "---|" * len(GROWTHS)]
    for r in results:
        lines.append(f"| {r.arch} | " + " | ".join(f"{r.update_s[g]:.4f}" for g in GROWTHS) + " |")
    if any(r.epoch_loader_ips for r in results):
        lines += ["", "| backbone | epoch cldst img/s | epoch DataLoader img/s | cldst / DataLoader "
                  "| data path alone: cldst img/s | DataLoader img/s | cldst / DataLoader |",
                  "|---|---|---|---|---|---|---|"]
        for r in results:
            if r.epoch_loader_ips:
                lines.append(f"| {r.arch} | {r.epoch_cldst_ips:.0f} | {r.epoch_loader_ips:.0f} | "
                             f"{r.epoch_cldst_ips / r.epoch_loader_ips:.2f} | {r.data_cldst_ips:.0f} | "
                             f"{r.data_loader_ips:.0f} | {r.data_cldst_ips / r.data_loader_ips:.1f} |")
    return "\n".join(lines)


def run_bench(device: str = "cpu", archs=("resnet18", "mobilenetv2"), *, width: float = 1.0,
              repeats: int = 7, steps: int = 3, amp: bool | None = None, compile: bool = False,
              loader: bool = True, batch: int | None = None, epoch_batches: int = 8, epoch_repeats: int = 3) -> str:
    dev = select_device(device)
    if dev.type == "cpu":
        keep_freed_memory()  # as the task loop does; both sides of every comparison share it
    amp = dev.type == "cuda" if amp is None else amp
    results = [bench_arch(a, dev, width=width, repeats=repeats, steps=steps, amp=amp, compile=compile,
                          loader=loader, batch=batch, epoch_batches=epoch_batches, epoch_repeats=epoch_repeats)
               for a in archs]
    return format_table(results, dev, repeats, steps)
