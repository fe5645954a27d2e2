"""`cldst sweep GRID --dry-run`: the runs of a grid, which are finished, and an estimate of what the
rest cost in device hours.

The estimate is training images ÷ training throughput, nothing more: evaluation, data loading and
start-up are not counted. Training images per run = num_tasks × epochs × the full batches of one
task's training images (the clean protocol drops the last partial batch; keep_last_batch trains it). Throughput (images/s)
comes, per backbone (arch, width, image size), from the finished runs in the sweep's folder when
there are any (their metrics.json ``images_per_s``), else from MEASURED below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cldst.config import ExperimentConfig
from cldst.config.benchmarks import BENCHMARKS
from cldst.config.schedule import steps_per_epoch
from cldst.runner.jobs import NOTEBOOK, make_job


@dataclass(frozen=True)
class Throughput:
    images_per_s: float
    device: str  # "cpu" or "cuda": what the hours are hours of
    source: str  # where the number comes from


# Measured training throughput (images/s) per backbone: (arch, width, image size) → Throughput.
# Only CPU numbers have been measured so far; a GPU row needs `cldst bench --device cuda` (its
# "DST step img/s" column) or a finished run's images_per_s on a GPU, and replaces the CPU row.
MEASURED: dict[tuple[str, float, int], Throughput] = {
    ("resnet18", 1.0, 32): Throughput(228, "cpu", "cldst bench's DST step at batch 128, 2 threads of the 2-core "
                                                  "development VM (AMD EPYC), bench/README.md, 2026-11-21"),
    ("mobilenetv2", 1.0, 32): Throughput(755, "cpu", "cldst bench's DST step at batch 64, 2 threads of the 2-core "
                                                     "development VM (AMD EPYC), bench/README.md, 2026-11-21"),
    ("resnet18", 0.25, 28): Throughput(280, "cpu", "a run of presets/split-mnist-smoke.yaml (batch 16), 1 thread "
                                                   "of the 2-core development VM (Intel Xeon), 2026-11-29"),
}


# Measured throughput of R packed runs ÷ the same R runs one after another, per device kind:
# (ratio, where it comes from). Only the CPU's is measured (`cldst bench --pack`).
PACK_GAIN: dict[str, tuple[float, str]] = {}


def backbone(cfg: ExperimentConfig | dict) -> tuple[str, float, int]:
    get = cfg.get if isinstance(cfg, dict) else lambda name: getattr(cfg, name)
    return get("arch"), float(get("width")), int(get("image_size"))


def training_images(cfg: ExperimentConfig) -> int | None:
    """Images one run trains on, over all its tasks and epochs; None for an unknown benchmark."""
    if cfg.dataset not in BENCHMARKS:
        return None
    per_task = BENCHMARKS[cfg.dataset].train_per_class * cfg.num_classes_per_task
    if cfg.keep_last_batch:  # every image, the last partial batch included
        return cfg.num_tasks * cfg.epochs * per_task
    return cfg.num_tasks * cfg.epochs * steps_per_epoch(per_task, cfg.batch_size) * min(per_task, cfg.batch_size)


def finished_throughput(root: Path) -> dict[tuple[str, float, int], Throughput]:
    """Per backbone, the mean training images/s of the finished runs under ``root``."""
    runs: dict[tuple[str, float, int], list[tuple[float, str]]] = {}
    for path in sorted(Path(root).rglob("metrics.json")) if Path(root).is_dir() else []:
        try:
            metrics = json.loads(path.read_text())
            key = backbone(metrics["config"])
            speed = float(np.mean(metrics["images_per_s"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        runs.setdefault(key, []).append((speed, str(metrics.get("device", "cpu"))))
    out = {}
    for key, found in runs.items():
        devices = sorted({d for _, d in found})
        kind = "cuda" if all(d.startswith("cuda") for d in devices) else "cpu" if devices == ["cpu"] else "device"
        out[key] = Throughput(float(np.mean([s for s, _ in found])), kind,
                              f"the mean of {len(found)} finished run{'s' * (len(found) > 1)} of this backbone "
                              f"in {root} (ran on {', '.join(devices)})")
    return out


def _hours_unit(device: str) -> str:
    return {"cuda": "GPU-hours", "cpu": "CPU-hours"}.get(device, "hours")


def sweep_plan(grid, pack: int = 1) -> str:
    """The text of `cldst sweep GRID --dry-run`: every run with its state, then the estimate
    (with ``pack`` > 1: how the runs to run are packed, and the packed throughput)."""
    jobs = [(cfg, make_job(cfg, grid.root, NOTEBOOK)) for cfg in grid.configs]
    todo = [cfg for cfg, job in jobs if not job.finished]
    lines = [f"sweep {grid.name}: {len(jobs)} runs in {grid.root}: {len(jobs) - len(todo)} finished, "
             f"{len(todo)} to run"]
    lines += [f"  {'finished' if job.finished else 'to run':<9} {job.run_id}" for _, job in jobs]
    if not todo:
        lines.append("nothing to run")
        return "\n".join(lines)
    gain = 1.0
    if pack > 1:
        from cldst.runner.pack import make_packs, pack_summary

        todo_jobs = [job for _, job in jobs if not job.finished]
        units, refused = make_packs(todo_jobs, todo, pack)
        lines.append(pack_summary(units, pack, refused))
    groups: dict[tuple[str, float, int], list[ExperimentConfig]] = {}
    for cfg in todo:
        groups.setdefault(backbone(cfg), []).append(cfg)
    measured = {**MEASURED, **finished_throughput(grid.root)}
    lines.append(f"estimate, not a measurement, for the {len(todo)} runs to run (training images ÷ training "
                 "images/s; evaluation and start-up not counted):")
    for key, cfgs in groups.items():
        arch, width, size = key
        name = f"{arch} (width {width}, {size} px)"
        images = [training_images(cfg) for cfg in cfgs]
        unknown = sum(n is None for n in images)
        total = sum(n for n in images if n is not None)
        speed = measured.get(key)
        head = f"  {len(cfgs)} runs of {name}: {total:,} training images"
        if unknown:
            head += f" ({unknown} runs of a benchmark whose size is not in cldst/config/benchmarks.py left out)"
        if speed is None:
            lines.append(f"{head}; no throughput measured for this backbone: finish one run of the grid, "
                         "then --dry-run estimates from its images/s")
            continue
        if pack > 1:
            gain = PACK_GAIN.get(speed.device, (1.0, ""))[0]
            lines.append(f"  packed: {PACK_GAIN[speed.device][1]}" if speed.device in PACK_GAIN else
                         f"  packed: no packed throughput is measured on {speed.device}; the estimate "
                         "assumes packing gains nothing")
        hours = total / (speed.images_per_s * gain) / 3600
        shown = f"{hours:,.1f}" if hours >= 0.1 else f"{hours:.2g}"
        lines.append(f"{head}; about {shown} {_hours_unit(speed.device)} at {speed.images_per_s:,.0f} "
                     f"images/s ({speed.source})")
        if speed.device != "cuda":
            lines.append(f"  no GPU throughput is recorded for {name}: run one run of the grid on a GPU "
                         "(or `cldst bench --device cuda`) for an estimate in GPU-hours")
    return "\n".join(lines)
