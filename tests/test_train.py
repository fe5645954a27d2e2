import json

import pytest
import torch

from cldst import run_experiment
from cldst.cli import main
from cldst.method.learner import ContinualLearner
from cldst.runner.run_dir import RunDir


@pytest.mark.parametrize("growth", ["gradient", "random"])
@pytest.mark.slow
def test_zero_forgetting_clean_protocol(tiny_cfg, growth):
    learner = ContinualLearner(tiny_cfg(growth=growth), progress=False)
    m = learner.run()
    a = m["acc_matrix"]
    for j in range(3):
        for i in range(j, 3):
            assert a[i][j] == a[j][j]  # exactly: task j's weights never move after task j
        for i in range(j):
            assert a[i][j] is None
    assert m["bwt"] == 0.0 and m["forgetting"] == 0.0
    assert m["capacity"] == sorted(m["capacity"]) and m["capacity"][0] < m["capacity"][-1]


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(tiny_cfg, tmp_path):
    cfg = tiny_cfg()
    full = run_experiment(cfg, tmp_path / "full", progress=False)
    assert run_experiment(cfg, tmp_path / "cut", progress=False, max_tasks=1) is None
    assert not RunDir(tmp_path / "cut").finished
    assert run_experiment(cfg, tmp_path / "cut", resume=True, progress=False, max_tasks=1) is None
    resumed = run_experiment(cfg, tmp_path / "cut", resume=True, progress=False)
    for key in ("acc_matrix", "acc", "bwt", "forgetting", "capacity", "layer_density"):
        assert resumed[key] == full[key], key
    a = RunDir(tmp_path / "full").read_checkpoint()["backbone"]
    b = RunDir(tmp_path / "cut").read_checkpoint()["backbone"]
    assert all(torch.equal(x, y) for x, y in zip(a["merged"], b["merged"]))
    assert all(torch.equal(x, y) for ms, ns in zip(a["task_masks"], b["task_masks"]) for x, y in zip(ms, ns))


@pytest.mark.slow
def test_existing_run_needs_resume(tiny_cfg, tmp_path):
    from cldst import ConfigError

    cfg = tiny_cfg(num_tasks=2, num_classes=4)
    run_experiment(cfg, tmp_path, progress=False, max_tasks=1)
    with pytest.raises(ConfigError, match="--resume"):
        run_experiment(cfg, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="other settings"):
        run_experiment(tiny_cfg(num_tasks=2, num_classes=4, density=0.3), tmp_path, resume=True, progress=False)


@pytest.mark.slow
def test_cli_run_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--dataset", "split-mnist", "--num_tasks", "2", "--num_classes", "4",
            "--num_classes_per_task", "2", "--sparse_init", "uniform", "--growth", "unfired",
            "--density", "0.1", "--epochs", "1", "--update_frequency", "5", "--width", "0.125",
            "--batch_size", "64", "--device", "cpu", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert "ACC" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["acc_matrix"]) == 2 and m["acc_matrix"][0][1] is None
    assert m["acc"] == pytest.approx(sum(m["acc_matrix"][1]) / 2)
    assert len(m["capacity"]) == 2 and len(m["task_seconds"]) == 2 and len(m["images_per_s"]) == 2
    assert all(len(v) == 2 for v in m["layer_density"].values())
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["growth"] == "unfired" and cfg["density"] == 0.1
    header = (out / "history.csv").read_text().splitlines()[0]
    assert header.startswith("kind,task,epoch,step")
    assert (out / "checkpoint.pt").is_file()
    # A finished run is not redone by --resume.
    assert main(argv + ["--resume"]) == 0


@pytest.mark.slow
def test_uniform_layer_density_is_exact(tiny_cfg):
    learner = ContinualLearner(tiny_cfg(sparse_init="uniform", density=0.25, num_tasks=2, num_classes=4),
                               progress=False)
    m = learner.run()
    for name, p in zip(learner.backbone.names, learner.backbone.params):
        expected = round(0.25 * p.numel()) / p.numel()
        assert m["layer_density"][name] == [pytest.approx(expected, abs=1e-7)] * 2


def test_lr_milestones():
    from cldst.config.schedule import lr_milestones

    assert lr_milestones(100) == [50, 75]
    assert lr_milestones(3) == [1, 2]
    assert lr_milestones(2) == [1, 1]
    assert lr_milestones(1) == []  # not [0, 0], which would start at lr/100
