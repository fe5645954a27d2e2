"""Which code made a run: recorded in config.json and metrics.json, and a warning when resume reuses
results of other code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import cldst
from cldst.cli import main
from cldst.config import ExperimentConfig
from cldst.notebook import warn_if_code_changed
from cldst.runner import provenance
from cldst.runner.run_dir import RunDir

ROOT = Path(__file__).resolve().parents[1]
OTHER = {"cldst_version": "0.0.9", "git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": False}


def test_code_version_in_this_checkout():
    tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11
    version = provenance.code_version()
    assert set(version) == set(provenance.KEYS)
    assert version["cldst_version"] == cldst.__version__
    assert cldst.__version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    if (ROOT / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", version["git_commit"]) and isinstance(version["git_dirty"], bool)


def test_code_version_outside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "ROOT", tmp_path)
    assert provenance.code_version() == {"cldst_version": cldst.__version__, "git_commit": None, "git_dirty": None}
    assert provenance.version_text(provenance.code_version()) == f"cldst {cldst.__version__}"


def test_dirty_means_code_not_results(tmp_path, monkeypatch):
    """Refreshed tables, figures, docs and drawing notebooks leave a checkout clean; code does not."""
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path), *args],
                       check=True, capture_output=True)

    files = ["cldst/x.py", "figures/demo/results.csv", "docs/a.md", "README.md", "notebooks/figures.ipynb",
             "notebooks/experiment.ipynb"]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("0")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "x")
    monkeypatch.setattr(provenance, "ROOT", tmp_path.resolve())
    assert provenance.code_version()["git_dirty"] is False
    for f in files[1:5]:
        (tmp_path / f).write_text("1")
    (tmp_path / "untracked.py").write_text("1")
    assert provenance.code_version()["git_dirty"] is False
    for f in ("notebooks/experiment.ipynb", "cldst/x.py"):
        (tmp_path / f).write_text("1")
        assert provenance.code_version()["git_dirty"] is True
        git("checkout", "--", f)


def test_describe():
    assert provenance.version_text(OTHER) == "cldst 0.0.9, git 0123456789ab"
    assert provenance.version_text({**OTHER, "git_dirty": True}) == "cldst 0.0.9, git 0123456789ab (modified)"


def test_config_and_metrics_record_the_code(tmp_path):
    run = RunDir(tmp_path)
    cfg = ExperimentConfig(density=0.1)
    run.write_config(cfg)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config == {**cfg.to_dict(), **provenance.code_version()}
    metrics = {"acc": 1.0}
    run.write_metrics(metrics)
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"acc": 1.0, **provenance.code_version()}
    assert metrics == {"acc": 1.0, **provenance.code_version()}
    # a run's config.json works as a preset
    args = ["run", "-f", str(tmp_path / "config.json"), "--dry-run"]
    assert main(args) == 0


def write_finished(folder: Path, version: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {"acc": 90.0, "bwt": 0.0, "forgetting": 0.0, "capacity": [0.2, 0.3], **version}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_resume_warning(tmp_path):
    now = provenance.code_version()
    assert provenance.resume_warning(tmp_path / "missing") is None
    write_finished(tmp_path / "same", now)
    assert provenance.resume_warning(tmp_path / "same") is None
    write_finished(tmp_path / "other", OTHER)
    assert provenance.resume_warning(tmp_path / "other") == (
        f"warning: {tmp_path / 'other'} was written by cldst 0.0.9, git 0123456789ab, not by this code "
        f"({provenance.version_text(now)}); resuming, its results are returned as they are: use another out dir "
        "to recompute")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(json.dumps(ExperimentConfig().to_dict()))  # unfinished, old
    assert provenance.resume_warning(tmp_path / "old") == (
        f"warning: {tmp_path / 'old'} was written by a cldst that did not record its version, not by this code "
        f"({provenance.version_text(now)}); resuming, its finished tasks are kept: use another out dir to recompute")


def test_resume_warns_in_the_cli_and_the_notebook(tmp_path, capsys):
    write_finished(tmp_path / "run", OTHER)
    assert main(["run", "--out", str(tmp_path / "run"), "--resume", "--no-progress"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"cldst: {provenance.resume_warning(tmp_path / 'run')}"
    assert warn_if_code_changed(tmp_path / "run", resume=True) == provenance.resume_warning(tmp_path / "run")
    assert capsys.readouterr().err == provenance.resume_warning(tmp_path / "run") + "\n"
    assert warn_if_code_changed(tmp_path / "run", resume=False) is None
    assert capsys.readouterr().err == ""
