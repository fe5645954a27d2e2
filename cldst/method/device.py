"""The device a run uses, its autocast, and, on the CPU, freed host memory kept in the process.

Keeping freed memory: CPU training then does not pay a page fault per 4 KiB.

glibc serves large allocations (activations, gradients, selection buffers) with fresh ``mmap``
regions and unmaps them on free; every later allocation of the same size then faults its pages
in again. On the 2-core VM a page fault costs 2–5 µs: a resnet18 training step at batch 128 took
about 40,000 of them (~12 % of the step) and a topology update up to 10,000 (half its time).
With ``mmap`` switched off for allocations and heap trimming disabled, freed memory is reused
with no fault. PyTorch's CPU tuning guide recommends jemalloc or tcmalloc for the same reason;
this needs no preloaded library. The cost: the process keeps its peak memory until it exits.

The setting is process-wide and cannot be undone: the training loop calls :func:`keep_freed_memory`
for every CPU run (cldst/method/learner.py), so in a Jupyter kernel the first CPU run changes malloc for the
kernel's whole life. Everything else that kernel runs afterwards (other runs, pandas, plotting) also
keeps its freed memory, and the kernel's resident memory only grows, to its peak, until the kernel
is restarted. Restart the kernel to get the default behaviour back; a papermill run or a sweep run
has its own kernel, which ends with the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools

import torch

from cldst.config import ConfigError

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's malloc once per process; True if it took effect (False on other C libraries)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def select_device(name: str) -> torch.device:
    """``auto``: a GPU when there is one; a CUDA device asked for without one is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} is not allowed: no CUDA GPU is visible; use cpu or auto")
    return torch.device(name)


def autocast(device: torch.device, amp: bool | None) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device``; ``amp`` None: on for CUDA, off elsewhere."""
    enabled = device.type == "cuda" if amp is None else amp
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
