"""--pack auto (cldst/method/pack_memory.py, cldst/runner/pack_probe.py): the fit arithmetic on
hand-made numbers, the probe's packs of 2 and 3 trained through the pack's driver (on the CPU, with
a stand-in meter: the GPU's memory is not measured here), and the sweep's choice of R."""

import pytest

from cldst.cli import main
from cldst.config import ConfigError
from cldst.data import load_benchmark
from cldst.method.pack import PackedStep
from cldst.method.pack_memory import MARGIN, PackMemory, probe_pack_memory, probe_steps
from cldst.runner.pack_probe import CAP, choose_pack_size

GIB = 2 ** 30


def test_largest_pack_that_fits():
    memory = PackMemory(base=2 * GIB, per_member=GIB, free=20 * GIB, total=24 * GIB)
    assert MARGIN == 0.85 and memory.need(15) == 17 * GIB
    assert memory.largest(cap=32) == 15  # 0.85 × 20 = 17 GiB: 2 + 15 × 1
    assert memory.largest(cap=8) == 8
    assert memory.largest(cap=32, share=2) == 6  # 8.5 GiB each: 2 + 6 × 1
    assert PackMemory(base=18 * GIB, per_member=GIB, free=20 * GIB, total=24 * GIB).largest(32) == 0
    assert memory.text() == "2.00 GiB + 1.00 GiB per run, 20.0 of 24.0 GiB free"


class Meter:
    """Stands in for CudaPeak: the peaks it is told, in order."""

    def __init__(self, peaks):
        self.peaks, self.starts = list(peaks), 0

    def start(self):
        self.starts += 1

    def peak(self):
        return self.peaks.pop(0)

    def free(self):
        return 20 * GIB, 24 * GIB


def test_probe_trains_packs_of_2_and_3_past_the_first_update(tiny_cfg, one_thread, monkeypatch):
    cfg = tiny_cfg(num_tasks=2, num_classes=4, update_frequency=4)
    batched = []
    real = PackedStep.backward
    monkeypatch.setattr(PackedStep, "backward", lambda self, rs: batched.append(len(rs)) or real(self, rs))
    meter = Meter([5 * GIB, 7 * GIB])
    memory = probe_pack_memory(cfg, load_benchmark(cfg), meter)
    assert probe_steps(cfg) == 5 and probe_steps(tiny_cfg(growth="none")) == 2
    assert batched == [2] * 5 + [3] * 5  # every step batched, the 5th after the first update
    assert meter.starts == 2
    assert memory == PackMemory(base=GIB, per_member=2 * GIB, free=20 * GIB, total=24 * GIB)


def test_auto_chooses_from_the_measurement(tiny_cfg):
    cfgs = [tiny_cfg(seed=s, device="auto") for s in range(3)] + [tiny_cfg(batch_size=32, device="auto")]
    lines, probed = [], []

    def measure(cfg, device):
        probed.append((cfg.batch_size, device))
        per = GIB if cfg.batch_size == 64 else GIB // 2
        return PackMemory(base=GIB, per_member=per, free=40 * GIB, total=80 * GIB)

    size = choose_pack_size(cfgs, executor="local", jobs=2, devices=["0"], log=lines.append, measure=measure)
    assert probed == [(64, "0"), (32, "0")]  # one probe per set of shape-settings, on the first GPU
    assert size == 16  # 2 packs at a time: 17 GiB each, 1 + 16 × 1 (batch 64: the smaller of 16 and 32)
    assert lines[0] == ("--pack auto: 16 runs of resnet18 (width 0.125, batch 64) fit per pack: 1.00 GiB + "
                        "1.00 GiB per run, 40.0 of 80.0 GiB free on GPU 0, 2 pack(s) at a time per GPU")
    assert choose_pack_size(cfgs, executor="local", jobs=1, devices=["0", "1"], log=lines.append,
                            measure=lambda c, d: PackMemory(GIB, 100 * GIB, 40 * GIB, 80 * GIB)) == 1
    assert lines[-1] == "--pack auto: 1 (no packs): two runs of a pack do not fit beside each other"
    assert choose_pack_size(cfgs, executor="local", jobs=1, devices=["0"], log=lines.append,
                            measure=lambda c, d: PackMemory(0, 1, 1000 * GIB, 1000 * GIB)) == CAP == 32


def test_auto_on_the_cpu_and_under_slurm(tiny_cfg):
    lines = []
    never = lambda c, d: pytest.fail("no probe on the CPU")  # noqa: E731
    assert choose_pack_size([tiny_cfg()], executor="local", jobs=1, devices=["0"], log=lines.append,
                            measure=never) == 1
    assert choose_pack_size([tiny_cfg(device="auto")], executor="local", jobs=1, devices=[], log=lines.append,
                            measure=never) == 1
    assert lines == ["--pack auto: 1 (no packs): the runs train on the CPU, where packing is slower than runs "
                     "one after another (docs/packing.md)"] * 2
    assert choose_pack_size([tiny_cfg(device="auto", compile=True)], executor="local", jobs=1, devices=["0"],
                            log=lines.append, measure=never) == 1
    assert lines[-1] == "--pack auto: 1 (no packs): no run of the grid can pack"
    with pytest.raises(ConfigError, match="^--pack auto measures the GPU the sweep runs on"):
        choose_pack_size([tiny_cfg(device="auto")], executor="slurm", jobs=1, devices=["0"], log=print)
    assert choose_pack_size([tiny_cfg(device="auto")], executor="local", jobs=1, devices=["0"], log=lines.append,
                            dry_run=True, measure=never) == 1
    assert lines[-1].startswith("--pack auto: R is measured when the sweep starts (a memory probe on GPU 0")


def test_sweep_pack_option(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "grid.yaml", "--pack", "0"])
    assert "--pack: expected auto or a whole number ≥ 1, got '0'" in capsys.readouterr().err
