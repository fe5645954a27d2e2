"""What every benchmark loader returns: uint8 image tensors, labels and how they were made."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch


class DataError(RuntimeError):
    """A dataset that is missing or malformed. The message says what to do, in one line."""


@dataclass
class ImageSplit:
    """Images as uint8 (N, C, H, W) and int64 labels, for the train and test sets."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool = True  # whether horizontal flips are a valid augmentation (not for digits)
    info: dict = field(default_factory=dict)  # source, split seed, ...: recorded in the run

    def __post_init__(self) -> None:
        for name in ("train_x", "test_x"):
            t = getattr(self, name)
            if t.dtype != torch.uint8 or t.dim() != 4:
                raise DataError(f"{name} must be a uint8 (N, C, H, W) tensor, got {t.dtype} {tuple(t.shape)}")

    def to(self, device: torch.device) -> ImageSplit:
        """The same split with its tensors on ``device`` (itself where they are there already)."""
        return replace(self, **{k: getattr(self, k).to(device) for k in ("train_x", "train_y", "test_x", "test_y")})
