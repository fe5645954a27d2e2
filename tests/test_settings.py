"""The settings' help (one source for `cldst run --help` and the notebook), --version, and --dry-run."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from cldst.cli import build_parser, main
from cldst.config import DATASET_DEFAULTS, QUIRKS, ExperimentConfig, load_preset, settings
from cldst.runner import provenance
from cldst.runner.estimate import MEASURED

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(num_tasks=2, num_classes=4, num_classes_per_task=2, width=0.125, epochs=2, batch_size=64,
            update_frequency=4, device="cpu")


def test_every_setting_has_one_line_of_help():
    for f in fields(ExperimentConfig):
        assert settings.HELP.get(f.name), f"give {f.name!r} its help: setting(default, help) in cldst/config/experiment_config.py"
        for text in (settings.cli_help(f.name), settings.notebook_comment(f.name)):
            assert "\n" not in text and not text.endswith("."), f.name
        if f.default is None:  # says what None becomes
            assert "None" not in settings.none_means(f.name), f.name
    assert set(settings.HELP) == {f.name for f in fields(ExperimentConfig)}, "help for a field that is gone"
    assert set(settings.CHOICES) <= set(settings.HELP)


def test_help_texts():
    growth = ("how pruned weights are regrown (none: a static mask; bandit: chosen at each update; several, "
              "or adaptive: each task chooses)")
    assert settings.cli_help("growth") == f"{growth}; default: gradient"
    assert settings.cli_metavar("growth") == "{random,unfired,gradient,momentum,none,bandit}"
    assert settings.notebook_comment("growth") == f"{growth}: random, unfired, gradient, momentum, none or bandit"
    per_dataset = ", ".join(f"{d} {v['density']}" for d, v in DATASET_DEFAULTS.items())
    assert settings.cli_help("density") == \
        f"fraction of each task's mask that is active, in (0, 1] (several: each task chooses); default: the " \
        f"dataset's ({per_dataset})"
    assert settings.notebook_comment("density") == \
        f"fraction of each task's mask that is active, in (0, 1] (several: each task chooses); None: the " \
        f"dataset's ({per_dataset})"
    assert settings.cli_metavar("compile") == "{true,false}" and settings.cli_metavar("lr") == "FLOAT"
    assert settings.cli_help(QUIRKS[0]).endswith("; default: the protocol's (on for reference, off for clean)")


def test_cli_help_lists_every_setting_with_its_help(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping (argparse breaks lines at hyphens too)
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert out.startswith("usage: cldst run [-f PRESET] [--out DIR] [--resume] [--dry-run] [--SETTING VALUE ...]")
    for f in fields(ExperimentConfig):
        assert f"--{f.name} {settings.cli_metavar(f.name)}" in out, f.name
        assert settings.cli_help(f.name) in out, f.name
    for title in settings.SECTIONS.values():
        assert f" {title} settings:" in out


def test_cli_description_keeps_its_lines():
    """The description is shown as written (RawDescriptionHelpFormatter), examples on their own lines."""
    text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert "\n  cldst run -f presets/cifar100-5task.yaml --seed 1 --dry-run    # the resolved config, nothing trained\n" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out == provenance.version_text(provenance.code_version()) + "\n"
    assert re.fullmatch(r"cldst \d+\.\d+\.\d+(, git [0-9a-f]{12}( \(modified\))?)?\n", out)


def test_run_dry_run(tmp_path, capsys):
    preset = ROOT / "presets" / "cifar100-5task.yaml"
    assert main(["run", "-f", str(preset), "--seed", "1", "--dry-run"]) == 0
    cfg = ExperimentConfig.from_dict({**load_preset(preset), "seed": 1})
    assert capsys.readouterr().out == (settings.config_text(cfg) + "\n"
                                       f"dry run: nothing trained; the run folder is runs/{cfg.run_id()}\n")
    lines = settings.config_text(cfg).splitlines()
    assert lines[0] == "dataset              = 'cifar100'" and "seed                 = 1" in lines
    assert lines[-1] == f"run id               = {cfg.run_id()}"
    assert len(lines) == len(fields(ExperimentConfig)) + 1
    # a finished run folder is said so; nothing is written
    (tmp_path / "metrics.json").write_text("{}")
    assert main(["run", "--dry-run", "--out", str(tmp_path), "--density", "0.1"]) == 0
    out = capsys.readouterr().out
    assert out.endswith(f"dry run: nothing trained; the run folder is {tmp_path} (finished: its metrics.json exists)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_run_dry_run_bad_setting(capsys):
    assert main(["run", "--dry-run", "--density", "2"]) == 2
    assert capsys.readouterr().err == "cldst: error: density=2.0 is not allowed: expected a number in (0, 1]\n"


def test_sweep_dry_run(tmp_path, capsys):
    grid = tmp_path / "grid.json"  # JSON is YAML
    grid.write_text(json.dumps({"base": str(ROOT / "presets" / "split-mnist-smoke.yaml"), "set": TINY,
                                "grid": {"width": [0.125, 0.25], "seed": [0, 1]}, "root": str(tmp_path / "sweep")}))
    configs = {(c.width, c.seed): c for c in (ExperimentConfig.from_dict({**TINY, "width": w, "seed": s})
                                              for w in (0.125, 0.25) for s in (0, 1))}
    ids = {key: cfg.run_id() for key, cfg in configs.items()}
    done = tmp_path / "sweep" / ids[0.125, 0]
    done.mkdir(parents=True)
    (done / "metrics.json").write_text(json.dumps({"config": configs[0.125, 0].to_dict(), "device": "cpu",
                                                   "images_per_s": [100.0, 300.0]}))
    assert main(["sweep", str(grid), "--dry-run"]) == 0
    # 2 tasks × 2 epochs × 12 full batches of 64 (800 training images per task of 2 digits) = 3,072 images
    measured = MEASURED["resnet18", 0.25, 28]
    assert capsys.readouterr().out == "\n".join([
        f"sweep grid: 4 runs in {tmp_path / 'sweep'}: 1 finished, 3 to run",
        f"  finished  {ids[0.125, 0]}",
        f"  to run    {ids[0.125, 1]}",
        f"  to run    {ids[0.25, 0]}",
        f"  to run    {ids[0.25, 1]}",
        "estimate, not a measurement, for the 3 runs to run (training images ÷ training images/s; "
        "evaluation and start-up not counted):",
        "  1 runs of resnet18 (width 0.125, 28 px): 3,072 training images; about 0.0043 CPU-hours at 200 images/s "
        f"(the mean of 1 finished run of this backbone in {tmp_path / 'sweep'} (ran on cpu))",
        "  no GPU throughput is recorded for resnet18 (width 0.125, 28 px): run one run of the grid on a GPU "
        "(or `cldst bench --device cuda`) for an estimate in GPU-hours",
        f"  2 runs of resnet18 (width 0.25, 28 px): 6,144 training images; about "
        f"{6144 / measured.images_per_s / 3600:.2g} CPU-hours at {measured.images_per_s:,.0f} images/s ({measured.source})",
        "  no GPU throughput is recorded for resnet18 (width 0.25, 28 px): run one run of the grid on a GPU "
        "(or `cldst bench --device cuda`) for an estimate in GPU-hours",
        ""])
    assert not any((tmp_path / "sweep" / ids[key]).exists() for key in ids if key != (0.125, 0))  # nothing ran


def test_sweep_dry_run_on_a_gpu_and_unmeasured(tmp_path, capsys):
    grid = tmp_path / "g.json"
    grid.write_text(json.dumps({"set": {**TINY, "dataset": "split-mnist"}, "grid": {"width": [0.375], "seed": [0, 1]},
                                "root": str(tmp_path / "s")}))
    assert main(["sweep", str(grid), "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "  2 runs of resnet18 (width 0.375, 28 px): 6,144 training images; no throughput measured for this "
        "backbone: finish one run of the grid, then --dry-run estimates from its images/s")
    cfg = ExperimentConfig.from_dict({**TINY, "width": 0.375, "seed": 0})
    (tmp_path / "s" / cfg.run_id()).mkdir(parents=True)
    (tmp_path / "s" / cfg.run_id() / "metrics.json").write_text(json.dumps(
        {"config": cfg.to_dict(), "device": "cuda:0", "images_per_s": [1000.0]}))
    assert main(["sweep", str(grid), "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "  1 runs of resnet18 (width 0.375, 28 px): 3,072 training images; about 0.00085 GPU-hours at 1,000 "
        f"images/s (the mean of 1 finished run of this backbone in {tmp_path / 's'} (ran on cuda:0))")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is visible")
def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    assert main(["run", "--device", "cuda", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == \
        "cldst: error: device='cuda' is not allowed: no CUDA GPU is visible; use cpu or auto"
    assert not (tmp_path / "run").exists()


def test_the_settings_page_is_generated_from_the_fields_help():
    page = (ROOT / "docs" / "settings.md").read_text()
    assert page == settings.markdown_reference(), "regenerate: python -m cldst.config.settings > docs/settings.md"
    for f in fields(ExperimentConfig):
        assert f"| `{f.name}` | {settings.HELP[f.name]}" in page
