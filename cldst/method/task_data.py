"""A benchmark on the run's device, split into tasks: images, labels and each task's indices into
them (training, validation held out of the training images, test), with the batched transform.
The learner trains from it and evaluation reads it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cldst.config import ConfigError
from cldst.data import ImageSplit, task_class_range
from cldst.data.transforms import BatchTransform
from cldst.data.validation import hold_out


@dataclass
class TaskImages:
    train_x: torch.Tensor  # uint8, on the device
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    transform: BatchTransform
    train_idx: list[torch.Tensor]  # per task: the indices into train_x of the images it trains on
    test_idx: list[torch.Tensor]
    val_idx: list[torch.Tensor]  # per task: held out of its training images (empty without val_fraction)

    @classmethod
    def on_device(cls, data: ImageSplit, num_tasks: int, classes_per_task: int, device: torch.device,
                  val_fraction: float = 0.0, data_seed: int = 0) -> TaskImages:
        train_x, train_y = data.train_x.to(device), data.train_y.to(device)
        test_x, test_y = data.test_x.to(device), data.test_y.to(device)
        transform = BatchTransform(data.mean, data.std, device, pad=4, hflip=data.hflip)
        ranges = [task_class_range(t, classes_per_task) for t in range(num_tasks)]
        split = [hold_out(train_y, class_indices(train_y, sl), val_fraction, data_seed, t)
                 for t, sl in enumerate(ranges)]
        return cls(train_x, train_y, test_x, test_y, transform, [train for train, _ in split],
                   [class_indices(test_y, sl) for sl in ranges], [val for _, val in split])


def class_indices(y: torch.Tensor, sl: slice) -> torch.Tensor:
    """The indices of the labels in ``sl``; a ConfigError if there are none."""
    idx = torch.nonzero((y >= sl.start) & (y < sl.stop)).squeeze(1)
    if idx.numel() == 0:
        raise ConfigError(f"classes {sl.start}..{sl.stop - 1} have no images in this dataset")
    return idx
