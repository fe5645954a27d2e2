"""A run folder whose checkpoint.pt cannot be loaded stops with one line naming the file, what is wrong
with it and what to do, not PyTorch's traceback: a file cut short (a lost write, a copy cut short) and
one holding a pickled object that ``weights_only`` refuses."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cldst import cli
from cldst.config import ConfigError
from cldst.runner.run_dir import CHECKPOINT, RunDir


class NotAllowed:
    """Not a tensor nor a plain value: weights_only refuses to unpickle it."""


def checkpoint_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save({"task": 1, "weights": torch.zeros(256), "history": [{"loss": 0.5}]}, buf)
    return buf.getvalue()


def truncated(run: Path, keep: float = 0.5) -> Path:
    data = checkpoint_bytes()
    run.mkdir(parents=True, exist_ok=True)
    (run / CHECKPOINT).write_bytes(data[:int(len(data) * keep)])
    return run / CHECKPOINT


def with_custom_object(run: Path) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    torch.save({"task": 1, "weights": torch.zeros(4), "extra": NotAllowed()}, run / CHECKPOINT)
    return run / CHECKPOINT


def read_error(run: Path) -> str:
    with pytest.raises(ConfigError) as info:
        RunDir(run).read_checkpoint()
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained traceback
    return str(info.value)


def test_a_whole_checkpoint_still_loads(tmp_path):
    (tmp_path / CHECKPOINT).write_bytes(checkpoint_bytes())
    assert RunDir(tmp_path).read_checkpoint()["task"] == 1
    assert RunDir(tmp_path / "none").read_checkpoint() is None


@pytest.mark.parametrize("keep", [0.0, 0.01, 0.5, 0.999])
def test_a_truncated_checkpoint_is_one_line(tmp_path, keep):
    path = truncated(tmp_path / "run", keep)
    message = read_error(path.parent)
    assert "\n" not in message
    assert str(path) in message
    assert "damaged" in message and "delete it to restart the run" in message
    assert "PytorchStreamReader" not in message and "Errno" not in message


def test_a_checkpoint_with_a_pickled_object_is_one_line(tmp_path):
    path = with_custom_object(tmp_path / "run")
    message = read_error(path.parent)
    assert "\n" not in message
    assert str(path) in message
    assert f"{__name__}.NotAllowed" in message and "weights_only" in message
    assert "delete it to restart the run" in message
    assert "torch.serialization" not in message  # not PyTorch's advice to allowlist the class


def test_a_corrupted_archive_is_one_line(tmp_path):
    """A complete zip archive whose pickled state is garbage: damaged, not 'a pickled object'."""
    import zipfile

    source = zipfile.ZipFile(io.BytesIO(checkpoint_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for info in source.infolist():
            data = source.read(info)
            archive.writestr(info, b"g" * len(data) if info.filename.endswith("data.pkl") else data)
    (tmp_path / CHECKPOINT).write_bytes(out.getvalue())
    message = read_error(tmp_path)
    assert "\n" not in message and str(tmp_path / CHECKPOINT) in message and "damaged" in message


def cli_args(out: Path) -> list[str]:
    return ["run", "--dataset", "split-mnist", "--num_tasks", "2", "--width", "0.125", "--epochs", "1",
            "--device", "cpu", "--out", str(out), "--resume", "--no-progress"]


@pytest.mark.parametrize("damage", [truncated, with_custom_object])
def test_cldst_run_resume_stops_with_one_line(tmp_path, capsys, damage):
    path = damage(tmp_path / "run")
    assert cli.main(cli_args(path.parent)) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("cldst: error:")]
    assert len(errors) == 1 and str(path) in errors[0], err
    assert "Traceback" not in err
    assert path.is_file()  # nothing is deleted: the user decides


@pytest.mark.slow
def test_the_cldst_command_prints_one_line(tmp_path):
    """The installed entry point, as a user runs it: exit code 2, no traceback."""
    path = truncated(tmp_path / "run")
    proc = subprocess.run([sys.executable, "-c", "import sys; from cldst.cli import main; sys.exit(main())",
                           *cli_args(path.parent)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"cldst: error: checkpoint {path} is damaged" in proc.stderr
