"""BatchTransform: the batched random crop (zero padding), horizontal flip and normalisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cldst.data.transforms import BatchTransform

MEAN = (0.5071, 0.4865, 0.4409)
STD = (0.2673, 0.2564, 0.2762)
CPU = torch.device("cpu")


def _images(n: int, c: int = 3, h: int = 12, w: int = 12, low: int = 0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, 256, (n, c, h, w), generator=g, dtype=torch.uint8)


def test_shape_and_dtype():
    x = _images(8)
    t = BatchTransform(MEAN, STD, CPU, pad=4, hflip=True)
    out = t.train(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.float32
    aug = t.augment(x, torch.Generator().manual_seed(0))
    assert aug.shape == x.shape and aug.dtype == torch.uint8
    assert t.normalise(x).shape == x.shape and t.normalise(x).dtype == torch.float32
    assert x.dtype == torch.uint8  # input untouched


def test_no_augmentation_is_normalisation():
    x = _images(8)
    t = BatchTransform(MEAN, STD, CPU, pad=0, hflip=False)
    mean = torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
    want = (x.double() / 255 - mean) / std
    for out in (t.train(x, torch.Generator().manual_seed(0)), t.normalise(x)):
        assert (out.double() - want).abs().max() < 1e-6
    assert torch.equal(t.augment(x, torch.Generator().manual_seed(0)), x)


def _match_offsets(x: torch.Tensor, out: torch.Tensor, pad: int, flips: bool) -> list[list[tuple[int, int, bool]]]:
    """Per image: every (row offset, col offset, flipped) for which out equals that crop of the padded x."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad,) * 4)
    hits = [[] for _ in range(b)]
    for a in range(2 * pad + 1):
        for o in range(2 * pad + 1):
            crop = padded[:, :, a:a + h, o:o + w]
            for flip in ((False, True) if flips else (False,)):
                cand = crop.flip(3) if flip else crop
                eq = (cand == out).flatten(1).all(1)
                for i in torch.nonzero(eq).squeeze(1).tolist():
                    hits[i].append((a, o, flip))
    return hits


def test_random_crop_is_a_padded_crop_at_an_offset_in_range():
    pad = 4
    x = _images(600, c=3, low=1)  # no zero pixels: the zero border pins down the offset
    t = BatchTransform(MEAN, STD, CPU, pad=pad, hflip=False)
    out = t.augment(x, torch.Generator().manual_seed(0))
    hits = _match_offsets(x, out, pad, flips=False)
    assert all(len(h) == 1 for h in hits)  # every image is exactly one crop, all channels alike
    rows = [h[0][0] for h in hits]
    cols = [h[0][1] for h in hits]
    assert set(rows) == set(range(2 * pad + 1)) and set(cols) == set(range(2 * pad + 1))  # both ends reached
    # roughly uniform over the 9 offsets per axis: 600/9 = 66.7 each
    for offsets in (rows, cols):
        counts = [offsets.count(k) for k in range(2 * pad + 1)]
        assert min(counts) > 35 and max(counts) < 100, counts
    assert len(set(zip(rows, cols, strict=True))) > 60  # row and column offsets drawn separately
    # seeded: the same generator seed gives the same crops
    assert torch.equal(out, t.augment(x, torch.Generator().manual_seed(0)))
    assert not torch.equal(out, t.augment(x, torch.Generator().manual_seed(1)))


def test_flips_about_half():
    n = 1000
    x = _images(n, c=2, h=6, w=6)
    t = BatchTransform(MEAN[:2], STD[:2], CPU, pad=0, hflip=True)
    out = t.augment(x, torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    assert bool((same | flipped).all())
    assert not bool((same & flipped).any())  # random images are never mirror-symmetric
    assert 430 < int(flipped.sum()) < 570  # Binomial(1000, 1/2): mean 500, sd 15.8


def test_crop_then_flip():
    pad = 2
    x = _images(300, c=1, h=8, w=8, low=1)
    t = BatchTransform((0.5,), (0.25,), CPU, pad=pad, hflip=True)
    out = t.augment(x, torch.Generator().manual_seed(3))
    hits = _match_offsets(x, out, pad, flips=True)
    assert all(len(h) == 1 for h in hits)
    flips = sum(h[0][2] for h in hits)
    assert 100 < flips < 200


@pytest.mark.parametrize("pad", [0, 4])
def test_hflip_false_never_flips(pad):
    x = _images(300, c=1, h=8, w=8, low=1)
    t = BatchTransform((0.5,), (0.25,), CPU, pad=pad, hflip=False)
    out = t.augment(x, torch.Generator().manual_seed(0))
    hits = _match_offsets(x, out, pad, flips=True)
    assert all(len(h) == 1 and not h[0][2] for h in hits)
