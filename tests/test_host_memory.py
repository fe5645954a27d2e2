"""Freed host memory is reused without page faults once ``keep_freed_memory`` ran (glibc only).

Measured in a fresh process: in a long test session other allocations fragment the heap, and a
few cycles of the allocation pattern are not enough to reach its steady state.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

CYCLES = """
import resource, sys, torch
from cldst.method.device import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory() is True and keep_freed_memory() is True  # a second call is a no-op
faults = []
for _ in range(16):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = torch.empty(2**24)  # 64 MiB: above glibc's largest mmap threshold, so mmapped by default
    a.fill_(1.0)
    del a
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults[-8:])  # steady state: glibc's heap settles after a few cycles
"""


def _steady_state_faults(mode: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", CYCLES, mode], capture_output=True, text=True, check=True)
    return [int(v) for v in out.stdout.split()]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.slow
def test_a_freed_64_mib_tensor_comes_back_without_page_faults():
    assert min(_steady_state_faults("default")) > 16_000  # 16,384 pages of 4 KiB, faulted in every time
    keep = sorted(_steady_state_faults("keep"))
    assert keep[len(keep) // 2] < 200, keep  # most cycles reuse the freed memory (a late one may still fault)
