"""MAC counts of masked layers (cldst/method/flops.py), checked against hand counts."""

import pytest
import torch
from tiny_net import Tiny
from torch import nn

from cldst.method.flops import (
    TrainingFlops,
    dense_forward_macs,
    forward_macs,
    layer_output_sizes,
    task_inference_macs,
)
from cldst.method.masks import Backbone, masked_parameters
from cldst.method.models import MobileNetV2, ResNet18


def exact_mask(shape, k, seed=0):
    """A bool mask of ``shape`` with exactly k active positions."""
    mask = torch.zeros(shape, dtype=torch.bool)
    mask.view(-1)[torch.randperm(mask.numel(), generator=torch.Generator().manual_seed(seed))[:k]] = True
    return mask


def test_tiny_network_by_hand():
    model = Tiny()
    sizes = layer_output_sizes(model, (2, 4, 4))
    assert sizes == {"conv.weight": 16, "linear.weight": 1}  # 4×4 output positions; one vector
    names = list(sizes)
    # conv: Cout·Cin·k·k·H·W = 3·2·3·3·16 = 864; linear: 3·5 = 15
    assert dense_forward_macs(model, sizes) == 3 * 2 * 3 * 3 * 16 + 3 * 5 == 879
    masks = [exact_mask((3, 2, 3, 3), 7), exact_mask((5, 3), 4)]
    assert forward_macs(masks, sizes, names) == 7 * 16 + 4 * 1 == 116
    assert forward_macs([7, 4], sizes, names) == 116  # active counts instead of masks
    full = [torch.ones(3, 2, 3, 3, dtype=torch.bool), torch.ones(5, 3, dtype=torch.bool)]
    assert forward_macs(full, sizes, names) == 879
    with pytest.raises(ValueError):
        forward_macs([7], sizes, names)


def test_stride_two_and_depthwise_convs():
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False),  # 8×8 → floor((8 + 2 − 3)/2) + 1 = 4: 4×4
        nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False),  # depthwise, weight (4, 1, 3, 3), 4×4
        nn.Conv2d(4, 6, 3, bias=False),  # no padding: 4 − 3 + 1 = 2: 2×2
    )
    sizes = layer_output_sizes(model, (2, 8, 8))
    assert sizes == {"0.weight": 16, "1.weight": 16, "2.weight": 4}
    # 4·2·3·3·16 = 1152;  4·(4/4)·3·3·16 = 576;  6·4·3·3·4 = 864
    assert dense_forward_macs(model, sizes) == 4 * 2 * 9 * 16 + 4 * 1 * 9 * 16 + 6 * 4 * 9 * 4 == 2592
    assert forward_macs([10, 3, 0], sizes, list(sizes)) == 10 * 16 + 3 * 16 + 0


def test_resnet18_dense_macs_per_32x32_image():
    model = ResNet18(num_classes=100)
    sizes = layer_output_sizes(model, (3, 32, 32))
    assert list(sizes) == [n for n, _ in masked_parameters(model)]
    assert sizes["conv1.weight"] == 16 * 16 and sizes["layer4.1.conv2.weight"] == 2 * 2
    assert sizes["layer2.0.shortcut.0.weight"] == 8 * 8 and sizes["linear.weight"] == 1
    # The 7×7 stride-2 stem gives 16×16 (no max-pool); the stages run at 16², 8², 4², 2²:
    stem = 64 * 3 * 49 * 256  # 2,408,448
    layer1 = 4 * (64 * 64 * 9 * 256)  # four 3×3 convs 64→64 at 16×16: 37,748,736
    # Each later stage halves the side and doubles the channels, so every one costs the same:
    # 3×3 c→2c, three 3×3 2c→2c and the 1×1 c→2c shortcut, at side s (c = 64·2^i, s = 16/2^(i+1)).
    layer2 = (128 * 64 * 9 + 3 * 128 * 128 * 9 + 128 * 64) * 64  # 33,554,432
    layer3 = (256 * 128 * 9 + 3 * 256 * 256 * 9 + 256 * 128) * 16
    layer4 = (512 * 256 * 9 + 3 * 512 * 512 * 9 + 512 * 256) * 4
    head = 512 * 100
    expected = stem + layer1 + layer2 + layer3 + layer4 + head
    assert layer2 == layer3 == layer4 == 33_554_432
    assert expected == 140_871_680
    dense = dense_forward_macs(model, sizes)
    assert dense == expected
    assert abs(dense - 141e6) / 141e6 < 0.01  # the notes' "about 141 M MACs per 32×32 image"


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_model_unchanged(mode):
    torch.manual_seed(0)
    model = ResNet18(num_classes=10, width=0.125)
    getattr(model, mode)()
    model.layer1.eval()  # a mixed state must come back as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {n: m.training for n, m in model.named_modules()}
    layer_output_sizes(model, (3, 32, 32))
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert not any(m._forward_hooks for m in model.modules())


def test_mobilenetv2_reaches_1x1_maps():
    # 32×32 shrinks to 1×1 before the last conv; BatchNorm with batch statistics needs > 1 example.
    model = MobileNetV2(num_classes=10, width=0.125)
    sizes = layer_output_sizes(model, (3, 32, 32))
    assert sizes["conv1.weight"] == 16 * 16 and sizes["conv2.weight"] == 1 and sizes["linear.weight"] == 1
    assert sizes["layers.0.conv2.weight"] == 16 * 16  # depthwise at stride 1
    dense = sum(p.numel() * sizes[n] for n, p in masked_parameters(model))
    assert dense_forward_macs(model, sizes) == dense


def test_task_inference_macs():
    model = Tiny()
    bb = Backbone(model)
    sizes = layer_output_sizes(model, (2, 4, 4))
    bb.merge([exact_mask((3, 2, 3, 3), 7), exact_mask((5, 3), 4)])
    macs, ratio = task_inference_macs(bb, 0, sizes)
    assert macs == 7 * 16 + 4 == 116
    assert ratio == pytest.approx(116 / 879)


def test_training_flops_by_hand():
    f_s, f_d, batch = 100.0, 400.0, 8  # forward MACs per example: sparse mask, dense
    costs = {}
    for growth in ("gradient", "random", "unfired", "momentum"):
        acc = TrainingFlops(f_d, growth)
        for step in range(1, 11):  # 10 steps, topology updates after steps 5 and 10
            acc.step(f_s, batch)
            if step % 5 == 0:
                acc.topology_update()
        assert (acc.steps, acc.updates) == (10, 2)
        costs[growth] = acc.total
    # every step: forward f_S + backward 2·f_S = 300 per example: 10·300·8 = 24,000
    assert costs["random"] == costs["unfired"] == 10 * 3 * 100 * 8 == 24_000
    # RigL: the 2 update steps cost 2·f_S + f_D = 600 instead of 300: + 2·(400 − 100)·8 = 4,800
    assert costs["gradient"] == 8 * 300 * 8 + 2 * (2 * 100 + 400) * 8 == 28_800
    # SNFS (momentum): dense gradient at every step, 10·(2·100 + 400)·8
    assert costs["momentum"] == 10 * 600 * 8 == 48_000


def test_training_flops_mask_changes_at_updates():
    # f_S = 100 for steps 1–5, 120 after the update at step 5; the update at step 10 reads step
    # 10's gradient, taken with the f_S = 120 mask.
    acc = TrainingFlops(400.0, "gradient")
    for step in range(1, 11):
        acc.step(100.0 if step <= 5 else 120.0, 8)
        if step % 5 == 0:
            acc.topology_update()
    assert acc.total == 5 * 300 * 8 + 5 * 360 * 8 + (400 - 100) * 8 + (400 - 120) * 8 == 31_040
    # a dense network (f_S = f_D) costs 3·f_D per example whatever the growth rule
    dense = TrainingFlops(400.0, "gradient")
    dense.step(400.0, 8)
    dense.topology_update()
    assert dense.total == 3 * 400 * 8


def test_training_flops_errors():
    with pytest.raises(ValueError):
        TrainingFlops(1.0, "magnitude")
    with pytest.raises(RuntimeError):
        TrainingFlops(1.0, "gradient").topology_update()
