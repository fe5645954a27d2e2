"""ExperimentConfig validation (one case per rule), defaults, aliases, run id, and the CLI's errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cldst.cli import build_parser, config_from_args, main
from cldst.config import ConfigError, ExperimentConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("values, message", [
    ({"density": 0}, "density=0 is not allowed"),
    ({"density": 1.5}, "density=1.5 is not allowed"),
    ({"density": -0.1}, "density=-0.1 is not allowed"),
    ({"num_tasks": 5, "num_classes_per_task": 3},
     "num_tasks × num_classes_per_task = 5 × 3 = 15 must equal num_classes=10"),
    ({"num_tasks": 3}, "num_tasks=3 is not allowed: expected a divisor of num_classes=10"),
    ({"dataset": "imagenet"}, "dataset='imagenet' is not allowed"),
    ({"arch": "vgg16"}, "arch='vgg16' is not allowed"),
    ({"sparse_init": "gaussian"}, "sparse_init='gaussian' is not allowed"),
    ({"growth": "magnitude"}, "growth='magnitude' is not allowed"),
    ({"protocol": "strict"}, "protocol='strict' is not allowed"),
    ({"epochs": 0}, "epochs=0 is not allowed"),
    ({"batch_size": 0}, "batch_size=0 is not allowed"),
    ({"update_frequency": -1}, "update_frequency=-1 is not allowed"),
    ({"reuse": "some"}, "reuse='some' is not allowed"),
    ({"isolation": "yes"}, "isolation='yes' is not allowed"),
    ({"growth": "static"}, "growth='static' is not allowed"),
    ({"lr": 0}, "lr=0 is not allowed"),
    ({"lr": -1}, "lr=-1 is not allowed"),
    ({"dens": 0.1}, "unknown setting 'dens'"),
], ids=lambda v: re.sub(r"\W+", "_", str(v))[:40])
def test_invalid_setting(values, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        ExperimentConfig.from_dict(values)
    assert "\n" not in str(info.value)


def test_non_string_device_is_a_config_error():
    with pytest.raises(ConfigError, match="device=0"):
        ExperimentConfig(device=0)


def test_dataset_defaults_fill_in():
    c = ExperimentConfig(dataset="cifar100", num_tasks=5)
    assert (c.arch, c.batch_size, c.update_frequency, c.num_classes, c.num_classes_per_task) == \
        ("mobilenetv2", 64, 400, 100, 20)
    assert (c.image_size, c.density, c.width) == (32, 0.2, 1.0)
    c = ExperimentConfig(dataset="miniimagenet")
    assert (c.arch, c.batch_size, c.num_tasks, c.num_classes_per_task) == ("resnet18", 128, 10, 10)
    c = ExperimentConfig()
    assert (c.dataset, c.num_tasks, c.num_classes_per_task, c.image_size) == ("split-mnist", 5, 2, 28)
    # given values win over the defaults
    assert ExperimentConfig(dataset="cifar100", batch_size=32).batch_size == 32
    # resolved config is concrete: no None left but amp, which follows the device the run gets
    resolved = ExperimentConfig(dataset="cifar100").to_dict()
    assert [k for k, v in resolved.items() if v is None] == ["amp"]


def test_aliases():
    assert ExperimentConfig(growth="random_unfired").growth == "unfired"
    assert ExperimentConfig(sparse_init="erk").sparse_init == "ERK"
    assert ExperimentConfig(dataset="miniImagenet100").dataset == "miniimagenet"
    assert ExperimentConfig(dataset="cifar-100").dataset == "cifar100"
    assert ExperimentConfig(arch="mobilenet").arch == "mobilenetv2"
    assert ExperimentConfig(protocol="Reference").protocol == "reference"


def test_run_id():
    base = ExperimentConfig(dataset="cifar100", density=0.1)
    assert base.run_id() == ExperimentConfig(dataset="cifar100", density=0.1).run_id()
    assert base.run_id() != ExperimentConfig(dataset="cifar100", density=0.2).run_id()
    assert base.run_id() != ExperimentConfig(dataset="cifar100", density=0.1, seed=1).run_id()
    assert base.run_id() == ExperimentConfig(dataset="cifar100", density=0.1, data_dir="/elsewhere").run_id()
    assert base.run_id() == ExperimentConfig(dataset="cifar100", density=0.1, device="cpu").run_id()
    # only the device differs (amp follows it at run time)
    assert ExperimentConfig(dataset="cifar100", density=0.1, device="cuda:1").run_id() == base.run_id()
    assert ExperimentConfig(dataset="cifar100", density=0.1, amp=True).run_id() != base.run_id()
    assert base.run_id().startswith("cifar100-ERK-gradient-d0.1-s0-")
    # round trip through to_dict/from_dict keeps the id
    assert ExperimentConfig.from_dict(base.to_dict()).run_id() == base.run_id()


# ---------------------------------------------------------------------- CLI


def test_cli_bad_density_is_one_line_error(capsys):
    assert main(["run", "--density", "0"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cldst: error:") and "density" in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["run", "--init", "ERK", "--growth", "random_unfired"],
    ["run", "--sparse_init", "uniform", "--growth", "unfired"],
])
def test_cli_growth_aliases(argv):
    cfg = config_from_args(build_parser().parse_args(argv))
    assert cfg.growth == "unfired"
    assert cfg.sparse_init == argv[2]


def test_cli_original_flag_names():
    args = build_parser().parse_args(["run", "--net_name", "mobilenet", "--l2", "0.0005", "--death_rate", "0.3",
                                      "--density", "0.1", "--dataset", "cifar100", "--death", "magnitude"])
    cfg = config_from_args(args)
    assert (cfg.arch, cfg.weight_decay, cfg.prune_rate, cfg.density) == ("mobilenetv2", 0.0005, 0.3, 0.1)


@pytest.mark.slow
def test_console_script_bad_density():
    proc = subprocess.run([sys.executable, "-m", "cldst.cli", "run", "--density", "2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["cldst: error: density=2.0 is not allowed: expected a number in (0, 1]"]
