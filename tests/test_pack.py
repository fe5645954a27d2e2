"""Packed runs (cldst/method/pack.py, cldst/runner/pack.py): a pack of one is the run alone, bit
for bit; a packed member computes what the run alone computes up to floating-point reduction
order; refusals; resume of a stopped pack; a failed member does not stop the others."""

import csv
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cldst import run_experiment
from cldst.config import ConfigError
from cldst.data import load_benchmark
from cldst.method import dst
from cldst.method.events import LearnerObserver
from cldst.method.learner import ContinualLearner
from cldst.method.pack import PackedStep, check_pack, drive_pack
from cldst.runner import pack as pack_runner
from cldst.runner.jobs import NOTEBOOK, make_job
from cldst.runner.pack import PackJob, make_packs, run_pack
from cldst.runner.run_dir import RunDir

RUN_FILES = ("config.json", "metrics.json", "history.csv", "checkpoint.pt", "progress.json")
TIMES = ("task_seconds", "images_per_s", "total_seconds")  # what varies between two runs of the same code


def computed(metrics):
    """Everything a run's metrics.json holds but its timings."""
    return {k: v for k, v in metrics.items() if k not in TIMES}
# At smoke scale, floating-point reduction order alone moves a run's accuracy by several points:
# the same run alone with 1 and with 2 threads differs by up to 5.5 points in A[1][1] (measured,
# tiny_cfg with 2 tasks). A packed member is held to the same bound, with margin.
ACC_TOLERANCE = 10.0


def two_tasks(tiny_cfg, **kw):
    return tiny_cfg(num_tasks=2, num_classes=4, **kw)


def members(tiny_cfg):
    """Three runs that differ in init, growth, density, update frequency and seed."""
    return [two_tasks(tiny_cfg, sparse_init="ERK", growth="gradient", density=0.2, update_frequency=4, seed=0),
            two_tasks(tiny_cfg, sparse_init="uniform", growth="random", density=0.2, update_frequency=3, seed=1),
            two_tasks(tiny_cfg, sparse_init="ERK", growth="momentum", density=0.1, update_frequency=5, seed=2)]


def equal_masks(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for ma, mb in zip(a, b) for x, y in zip(ma, mb))


class UpdateMasks(LearnerObserver):
    """The task's masks after each topology update: DynamicSparsity.update is wrapped to leave them
    in LAST, and the learner tells its observers right after the update, before any other member
    runs."""
    LAST: list = []

    def __init__(self):
        self.masks = []

    def update(self, t, update):
        self.masks.append(UpdateMasks.LAST.pop())


@pytest.fixture
def record_updates(monkeypatch):
    original = dst.DynamicSparsity.update

    def update(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        UpdateMasks.LAST.append([m.clone() for m in self.masks])
        return out

    monkeypatch.setattr(dst.DynamicSparsity, "update", update)


def test_pack_of_one_is_the_run_alone(tiny_cfg, tmp_path, one_thread):
    """Driven by the pack's driver, one run computes bit for bit what it computes alone; and
    run_pack with one run is run_experiment (its folder holds the same results)."""
    cfg = two_tasks(tiny_cfg, growth="momentum")
    alone, packed = ContinualLearner(cfg, progress=False), ContinualLearner(cfg, progress=False)
    expected = alone.run()
    [outcome] = drive_pack([packed.run_steps()], packed.model)
    assert outcome.status == "finished"
    assert computed(outcome.value) == computed(expected)
    assert equal_masks(alone.backbone.task_masks, packed.backbone.task_masks)
    assert all(torch.equal(a, b) for a, b in zip(alone.backbone.merged, packed.backbone.merged))
    [one] = run_pack([cfg], [tmp_path / "pack"])
    assert computed(one.value) == computed(run_experiment(cfg, tmp_path / "alone", progress=False))
    assert all((tmp_path / "pack" / f).is_file() for f in RUN_FILES)
    assert history(tmp_path / "pack") == history(tmp_path / "alone")


def history(run_dir):
    """history.csv without its seconds column."""
    rows = list(csv.DictReader(open(run_dir / "history.csv")))
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_packed_step_gradients_match_alone(tiny_cfg):
    """The batched forward and backward pass: each member's loss and logits equal its own step's to
    1e-5 and 1e-4 relative; its gradients differ from its own step's by no more than twice what
    the run alone's differ between 1 and 2 threads (measured: 0.1-1 % of the gradient's norm, as
    much for pack vs alone as for 1 vs 2 threads: BatchNorm divides near-constant channels of a
    smoke-scale net by sqrt(var + eps), which magnifies rounding)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        learners = [ContinualLearner(c, progress=False) for c in members(tiny_cfg)]
        requests = [next(lr.run_steps()) for lr in learners]
        out = PackedStep(learners[0].model).backward(requests)
        for r, (loss, logits, features) in zip(requests, out):
            tr = r.trainer
            packed = torch.cat([p.grad.flatten() for p in tr.model.parameters()])
            own = {}
            for threads in (1, 2):
                torch.set_num_threads(threads)
                tr.optimizer.zero_grad()
                own_logits = tr.forward(r.x).float()
                own_loss = F.cross_entropy(own_logits[:, tr.class_slice], r.y)
                own_loss.backward()
                own[threads] = torch.cat([p.grad.flatten() for p in tr.model.parameters()])
                if threads == 1:
                    assert abs(float(own_loss.detach()) - float(loss)) <= 1e-5
                    assert torch.allclose(own_logits.detach(), logits, rtol=1e-4,
                                          atol=1e-4 * float(own_logits.detach().abs().max()))
            norm = float(own[1].norm())
            assert float((packed - own[1]).norm()) <= 2 * float((own[2] - own[1]).norm()) + 1e-4 * norm
            assert features.shape[0] == r.x.shape[0]
    finally:
        torch.set_num_threads(before)


def test_packed_members_match_their_runs_alone(tiny_cfg, one_thread, record_updates):
    """Three different runs in one pack. Every member makes the same topology updates as its run
    alone, with the same active count per layer at each; which positions are active may differ
    (reduction order decides near-ties in magnitude and score: so it does between 1 and 2 threads
    alone). Accuracy within ACC_TOLERANCE; dead tasks equal."""
    cfgs = members(tiny_cfg)
    alone_obs = [UpdateMasks() for _ in cfgs]
    alone = [ContinualLearner(c, progress=False, observers=[o]) for c, o in zip(cfgs, alone_obs)]
    expected = [lr.run() for lr in alone]
    packed_obs = [UpdateMasks() for _ in cfgs]
    packed = [ContinualLearner(c, progress=False, observers=[o]) for c, o in zip(cfgs, packed_obs)]
    outcomes = drive_pack([lr.run_steps() for lr in packed], packed[0].model)
    for want, got, a, p in zip(expected, outcomes, alone_obs, packed_obs):
        assert got.status == "finished"
        assert len(a.masks) == len(p.masks) > 2
        for ma, mp in zip(a.masks, p.masks):
            assert [int(m.sum()) for m in ma] == [int(m.sum()) for m in mp]
        assert got.value["dead_tasks"] == want["dead_tasks"]
        for row_a, row_b in zip(want["acc_matrix"], got.value["acc_matrix"]):
            for x, y in zip(row_a, row_b):
                assert (x is None) == (y is None)
                assert x is None or abs(x - y) <= ACC_TOLERANCE


def test_static_members_keep_exact_masks_and_frozen_weights(tiny_cfg, one_thread):
    """Without topology updates, masks and capacity of a packed member equal the run alone's
    exactly, in every task; and while task 1 trains, every member's frozen weights (task 0's) hold
    their merged values bit for bit."""
    cfgs = [two_tasks(tiny_cfg, growth="none", seed=s, density=d, sparse_init=i)
            for s, d, i in ((0, 0.2, "ERK"), (1, 0.3, "uniform"), (2, 0.1, "ERK"))]
    alone = [ContinualLearner(c, progress=False) for c in cfgs]
    expected = [lr.run() for lr in alone]

    class Frozen(LearnerObserver):
        def __init__(self):
            self.learner, self.checked = None, 0

        def step(self, t, *args):
            if t == 1:
                bb = self.learner.backbone
                reused = 0
                for p, u, w in zip(bb.params, bb.owned, bb.merged):
                    live = u & (p.detach() != 0)  # owned positions in this task's mask (the others are 0)
                    assert torch.equal(p.detach()[live], w[live])
                    reused += int(live.sum())
                assert reused > 0
                self.checked += 1

    watchers = [Frozen() for _ in cfgs]
    packed = [ContinualLearner(c, progress=False, observers=[w]) for c, w in zip(cfgs, watchers)]
    for w, lr in zip(watchers, packed):
        w.learner = lr
    outcomes = drive_pack([lr.run_steps() for lr in packed], packed[0].model)
    for a, p, want, got, w in zip(alone, packed, expected, outcomes, watchers):
        assert got.status == "finished", got.trace
        assert equal_masks(a.backbone.task_masks, p.backbone.task_masks)
        assert got.value["capacity"] == want["capacity"]
        assert got.value["layer_density"] == want["layer_density"]
        assert w.checked > 0


def test_refusals_and_grouping(tiny_cfg, tmp_path):
    cfg = two_tasks(tiny_cfg)
    with pytest.raises(ConfigError, match="^sparse_init/growth/density with candidates"):
        check_pack([cfg, two_tasks(tiny_cfg, growth="gradient,momentum", val_fraction=0.1, epochs=2)])
    with pytest.raises(ConfigError, match="^compile=true cannot pack"):
        check_pack([two_tasks(tiny_cfg, compile=True)])
    for method in ("packnet", "supsup", "wsn"):
        with pytest.raises(ConfigError, match=f"^method={method} cannot pack"):
            check_pack([cfg, two_tasks(tiny_cfg, method=method, epochs=2)])
    with pytest.raises(ConfigError, match="^batch_size differs within a pack"):
        check_pack([cfg, two_tasks(tiny_cfg, batch_size=32)])
    check_pack([cfg, two_tasks(tiny_cfg, isolation=False), two_tasks(tiny_cfg, reuse="none", growth="none"),
                two_tasks(tiny_cfg, growth="bandit", seed=4)])
    reference = two_tasks(tiny_cfg, protocol="reference", growth="unfired", seed=3)
    check_pack([reference, two_tasks(tiny_cfg, protocol="reference", seed=5)])
    with pytest.raises(ConfigError, match="^keep_last_batch differs within a pack"):  # the reference trains it
        check_pack([cfg, reference])
    cfgs = [two_tasks(tiny_cfg, seed=s, batch_size=b) for b in (32, 64) for s in range(3)]
    cfgs.append(two_tasks(tiny_cfg, growth="gradient,momentum", val_fraction=0.1, epochs=2))
    jobs = [make_job(c, tmp_path, tmp_path / "nb.ipynb") for c in cfgs]
    units, refused = make_packs(jobs, cfgs, 2)
    packs = [u for u in units if isinstance(u, PackJob)]
    assert sorted(len(p.members) for p in packs) == [2, 2]  # 3 runs per batch size: a pack of 2 and one alone
    assert len(units) == 5 and sum(refused.values()) == 1
    for p in packs:
        assert len({cfgs[jobs.index(m)].batch_size for m in p.members}) == 1


def test_stopped_pack_resumes_to_the_uninterrupted_pack(tiny_cfg, tmp_path, one_thread):
    """A pack stopped mid-task (every member at the same step) and resumed gives every member the
    uninterrupted pack's metrics, bit for bit; its files are a run's files."""
    cfgs = members(tiny_cfg)
    full = run_pack(cfgs, [tmp_path / f"full{i}" for i in range(3)])
    calls = itertools.count(1)
    cut = [tmp_path / f"cut{i}" for i in range(3)]
    stopped = run_pack(cfgs, cut, stop=lambda: next(calls) >= 20)  # task 1, mid-epoch
    assert [o.status for o in stopped] == ["preempted"] * 3
    for d in cut:
        assert RunDir(d).read_checkpoint()["task"]["task"] == 1
        assert json.loads((d / "progress.json").read_text())["status"] == "preempted"
    resumed = run_pack(cfgs, cut)
    for a, b, d in zip(full, resumed, cut):
        assert b.status == "finished"
        assert computed(a.value) == computed(b.value)
        assert all((d / f).is_file() for f in RUN_FILES)


# A pack's process (python -m cldst.runner.pack) killed with SIGKILL at the start of its Nth batched
# step: every member then stands at the same step, and its last checkpoint is the same save point.
KILLED_AT_STEP = """
import json, os, signal, sys
from cldst.method import pack
from cldst.runner.pack import _main

real, calls = pack.PackedStep.backward, [0]

def backward(self, requests):
    calls[0] += 1
    if calls[0] == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, requests)

pack.PackedStep.backward = backward
sys.exit(_main(json.loads(sys.argv[2])))
"""


@pytest.mark.slow
def test_a_killed_pack_process_resumes_to_the_uninterrupted_pack(tiny_cfg, tmp_path, one_thread):
    """SIGKILL of a pack's process mid-task (no handler runs, nothing is flushed): no member is
    finished, every member has a checkpoint; the pack's process run again resumes every member from
    it, to the uninterrupted pack's metrics and history, bit for bit (one thread in both)."""
    cfgs = [two_tasks(tiny_cfg, epochs=2, **{k: v for k, v in vars(c).items() if k in ("sparse_init", "growth",
            "density", "update_frequency", "seed")}) for c in members(tiny_cfg)]
    job = PackJob([make_job(c, tmp_path / "cut", NOTEBOOK) for c in cfgs])
    members_json = json.dumps([vars(m) for m in job.members])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    learner = ContinualLearner(cfgs[0], progress=False)
    at = 2 * learner.steps_per_epoch(0) + learner.steps_per_epoch(1) + 3  # task 1, its second epoch
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_STEP, str(at), members_json], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    cut = [Path(m.run_dir) for m in job.members]
    for d in cut:
        assert not (d / "metrics.json").exists()
        snapshot = RunDir(d).read_checkpoint()
        assert snapshot["task"]["task"] == 1 and snapshot["task"]["epoch"] == 1
    rerun = subprocess.run(job.command(), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    full = run_pack(cfgs, [tmp_path / f"full{i}" for i in range(3)])
    for outcome, d, i in zip(full, cut, range(3)):
        resumed, expected = computed(json.loads((d / "metrics.json").read_text())), computed(outcome.value)
        assert resumed["config"].pop("data_dir") == str(Path("data").resolve())  # a sweep job's: absolute
        expected["config"].pop("data_dir")
        assert resumed == expected
        assert history(d) == history(tmp_path / f"full{i}")
        assert all((d / f).is_file() for f in RUN_FILES)


def test_a_failed_member_does_not_stop_the_others(tiny_cfg, tmp_path, one_thread):
    """A member that raises mid-task fails alone; the others finish; a rerun skips the finished
    members (never rerun) and resumes the failed one from its checkpoint."""
    cfgs = members(tiny_cfg)
    outs = [tmp_path / f"m{i}" for i in range(3)]

    class Boom(LearnerObserver):
        def update(self, t, update):
            if t == 1:
                raise RuntimeError("boom")

    outcomes = run_pack(cfgs, outs, observers=[None, Boom(), None])
    assert [o.status for o in outcomes] == ["finished", "failed", "finished"]
    assert "boom" in str(outcomes[1].error)
    assert json.loads((outs[1] / "progress.json").read_text())["status"] == "failed"
    assert not (outs[1] / "metrics.json").exists() and RunDir(outs[1]).read_checkpoint() is not None
    written = [(outs[i] / "metrics.json").stat().st_mtime_ns for i in (0, 2)]
    again = run_pack(cfgs, outs)
    assert [o.status for o in again] == ["finished"] * 3
    assert [(outs[i] / "metrics.json").stat().st_mtime_ns for i in (0, 2)] == written
    assert again[0].value == outcomes[0].value


def test_a_pack_out_of_memory_fails_its_members_with_one_line(tiny_cfg, tmp_path, one_thread, monkeypatch):
    """The batched step running out of memory fails each member in it with one line that says what
    to do; a rerun at a size that fits resumes them to the end."""
    cfgs = members(tiny_cfg)
    outs = [tmp_path / f"m{i}" for i in range(3)]
    real = PackedStep.backward
    calls = itertools.count()

    def backward(self, requests):
        if next(calls) == 5:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, requests)

    monkeypatch.setattr(PackedStep, "backward", backward)
    outcomes = run_pack(cfgs, outs)
    assert [o.status for o in outcomes] == ["failed"] * 3
    for o, out in zip(outcomes, outs):
        assert isinstance(o.error, MemoryError) and "\n" not in str(o.error)
        assert str(o.error).startswith("3 runs packed do not fit in memory: rerun the sweep with a smaller --pack")
        assert json.loads((out / "progress.json").read_text())["status"] == "failed"
    monkeypatch.setattr(PackedStep, "backward", real)
    assert [o.status for o in run_pack(cfgs, outs)] == ["finished"] * 3


def test_members_with_equal_data_settings_share_one_load(tiny_cfg, tmp_path, one_thread, monkeypatch):
    """A pack loads its images once per distinct data setting: the three members of members()
    hold the same tensor (equal to a load of their own), a member with another data_seed its own."""
    loads, images = [], []
    monkeypatch.setattr(pack_runner, "load_benchmark",
                        lambda cfg, progress=False: loads.append(cfg.seed) or load_benchmark(cfg, progress))
    init = ContinualLearner.__init__

    def keep_images(self, cfg, **kw):
        init(self, cfg, **kw)
        images.append(self.images)

    monkeypatch.setattr(ContinualLearner, "__init__", keep_images)
    cfgs = members(tiny_cfg) + [two_tasks(tiny_cfg, class_order="seeded", data_seed=1, seed=3)]
    outcomes = run_pack(cfgs, [tmp_path / f"m{i}" for i in range(4)])
    assert [o.status for o in outcomes] == ["finished"] * 4
    assert loads == [0, 3]
    assert images[1].train_x is images[0].train_x and images[2].test_x is images[0].test_x
    assert images[3].train_x is not images[0].train_x
    own = load_benchmark(cfgs[0])
    assert torch.equal(images[0].train_x, own.train_x) and torch.equal(images[0].train_y, own.train_y)
    assert not torch.equal(images[3].train_y[:50], images[0].train_y[:50])  # its own class order


def test_data_settings_name_every_setting_the_loaders_read():
    """DATA_SETTINGS (what a pack's shared load is keyed by) is exactly what cldst/data reads."""
    import pathlib
    import re

    from cldst.data import DATA_SETTINGS
    source = "".join(p.read_text() for p in pathlib.Path(load_benchmark.__code__.co_filename).parent.glob("*.py"))
    assert set(re.findall(r"\bcfg\.([a-z_]+)", source)) == set(DATA_SETTINGS)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_global_pooling_as_a_mean_is_adaptive_avg_pool_bit_for_bit(dtype):
    """The backbones pool with out.mean((2, 3)), which vmap batches (adaptive_avg_pool2d falls back
    to a loop over the pack's members); it is adaptive_avg_pool2d(out, 1)'s value and gradient, bit
    for bit, at the final feature maps of 32, 64 and 84 px inputs."""
    torch.manual_seed(0)
    for shape in [(32, 128, 4, 4), (64, 512, 4, 4), (16, 1280, 1, 1), (8, 512, 8, 8), (8, 512, 11, 11)]:
        x = torch.randn(shape, dtype=dtype, requires_grad=True)
        pooled = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        assert torch.equal(pooled, x.mean((2, 3)))
        weights = torch.randn(pooled.shape, dtype=dtype)
        (a,) = torch.autograd.grad((pooled * weights).sum(), x)
        (b,) = torch.autograd.grad((x.mean((2, 3)) * weights).sum(), x)
        assert torch.equal(a, b)
