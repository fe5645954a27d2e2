"""A network small enough to count its multiply-adds by hand (tests/test_flops.py, tests/test_methods.py)."""

from torch import nn


class Tiny(nn.Module):
    """Conv2d(2→3, 3×3, stride 1, pad 1) on 2×4×4 → 3×4×4 (16 positions), global average pool, Linear(3→5)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, 1, 1, bias=False)
        self.linear = nn.Linear(3, 5, bias=False)

    def forward(self, x):
        return self.linear(nn.functional.adaptive_avg_pool2d(self.conv(x), 1).flatten(1))
