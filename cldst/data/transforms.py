"""Batched augmentation on the device: random crop with zero padding, flip, normalise.

The same transform as torchvision's RandomCrop(size, padding) → RandomHorizontalFlip →
ToTensor → Normalize, done for a whole uint8 batch in a few tensor ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class BatchTransform:
    def __init__(self, mean, std, device: torch.device, pad: int = 4, hflip: bool = True):
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)  # x/255 → (x/255 − mean)/std as one multiply-add
        self.shift = mean_t / std_t
        self.pad = pad
        self.hflip = hflip
        self.device = device

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().mul_(self.scale).sub_(self.shift)
        x = x.contiguous(memory_format=torch.channels_last)  # the model's layout
        return x

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crop (zero padding ``pad``) and, if allowed, a random horizontal flip of uint8 x."""
        b, c, h, w = x.shape
        if self.pad:
            padded = F.pad(x, (self.pad,) * 4)
            off = torch.randint(0, 2 * self.pad + 1, (2, b), generator=generator).to(x.device)
            rows = (off[0, :, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (off[1, :, None] + torch.arange(w, device=x.device))[:, None, None, :]
            batch = torch.arange(b, device=x.device)[:, None, None, None]
            chan = torch.arange(c, device=x.device)[None, :, None, None]
            x = padded[batch, chan, rows, cols]
        if self.hflip:
            flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x

    def train(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.normalise(self.augment(x, generator))
