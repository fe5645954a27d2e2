"""``cldst sweep --pack auto``: how many runs a sweep packs together, chosen from a measurement.

On the CPU: 1, no packs (packing is slower there than runs one after another: docs/packing.md).
On a GPU: a probe process, ``python -m cldst.runner.pack_probe CONFIG_JSON`` on the sweep's first
GPU, loads a run's images onto it, trains packs of 2 and 3 for a few steps and prints their memory
(cldst/method/pack_memory.py). The sweep then packs at most the largest R that fits, with the
free memory split among the packs that share a GPU (``--jobs`` over the GPUs), and at most CAP;
one probe per set of shape-settings, the smallest R of them for all.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Sequence

from cldst.config import ConfigError, ExperimentConfig
from cldst.method.pack import pack_key, pack_refusal
from cldst.method.pack_memory import PackMemory

CAP = 32  # the largest R that bench/gpu.sh measures: beyond it the gain is unmeasured


def probe(cfg: ExperimentConfig, device: str) -> PackMemory:
    """Run the probe for ``cfg`` in its own process on GPU ``device`` (a CUDA_VISIBLE_DEVICES
    entry), so that the sweep's process holds no GPU memory; a ConfigError (one line) if it fails."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": device}
    done = subprocess.run([sys.executable, "-m", "cldst.runner.pack_probe", json.dumps(cfg.to_dict())],
                          capture_output=True, text=True, env=env)
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
    if done.returncode != 0:
        raise ConfigError(f"--pack auto: the memory probe failed on GPU {device} "
                          f"({lines[-1] if lines else f'exit code {done.returncode}'}): give --pack R")
    return PackMemory(**json.loads(done.stdout.splitlines()[-1]))


def choose_pack_size(cfgs: Sequence[ExperimentConfig], *, executor: str, jobs: int, devices: list[str],
                     log: Callable[[str], None], dry_run: bool = False,
                     measure: Callable[[ExperimentConfig, str], PackMemory] | None = None) -> int:
    """R for ``--pack auto`` (see the module docstring); says which, and why, in one ``log`` line.
    ``devices``: the GPUs the sweep's runs see. ``dry_run``: say how R will be chosen, probe nothing.
    ``measure(cfg, device)``: the memory of a pack of cfg's runs (default: ``probe``)."""
    packable = [c for c in cfgs if pack_refusal(c) is None]
    gpu = [c for c in packable if c.device != "cpu" and devices]
    if not gpu:
        log("--pack auto: 1 (no packs): " + ("no run of the grid can pack" if not packable else
            "the runs train on the CPU, where packing is slower than runs one after another (docs/packing.md)"))
        return 1
    if executor == "slurm":
        raise ConfigError("--pack auto measures the GPU the sweep runs on, and a Slurm sweep submits from "
                          "another machine: give --pack R (bench/gpu.sh measures R = 8, 16, 32)")
    if dry_run:
        log(f"--pack auto: R is measured when the sweep starts (a memory probe on GPU {devices[0]}, at most "
            f"{CAP}); the plan below packs nothing")
        return 1
    share = math.ceil(jobs / len(devices))  # packs at a time on one GPU
    firsts: dict[tuple, ExperimentConfig] = {}
    for c in gpu:  # one probe per set of shape-settings
        firsts.setdefault(pack_key(c), c)
    sizes = []
    for cfg in firsts.values():
        memory = (measure or probe)(cfg, devices[0])
        size = memory.largest(CAP, share)
        sizes.append(size)
        log(f"--pack auto: {size} runs of {cfg.arch} (width {cfg.width}, batch {cfg.batch_size}) fit per pack: "
            f"{memory.text()} on GPU {devices[0]}, {share} pack(s) at a time per GPU")
    size = min(sizes)
    if size < 2:
        log("--pack auto: 1 (no packs): two runs of a pack do not fit beside each other")
        return 1
    return size


def _main(config: dict) -> int:
    import torch

    from cldst.data import load_benchmark
    from cldst.method.device import select_device
    from cldst.method.pack_memory import CudaPeak, probe_pack_memory

    cfg = ExperimentConfig.from_dict(config)
    device = select_device(cfg.device)
    if device.type != "cuda":
        print(f"the probe measures a GPU's memory, and this run's device is {device}", file=sys.stderr)
        return 1
    torch.cuda.set_device(device)
    memory = probe_pack_memory(cfg, load_benchmark(cfg).to(device), CudaPeak(device))
    print(json.dumps(dataclasses.asdict(memory)))
    return 0


if __name__ == "__main__":  # python -m cldst.runner.pack_probe CONFIG_JSON: prints PackMemory as JSON
    sys.exit(_main(json.loads(sys.argv[1])))
