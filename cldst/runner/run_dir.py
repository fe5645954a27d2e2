"""A run directory: config.json, metrics.json, history.csv and checkpoint.pt, written atomically.

``metrics.json`` is written once, when the run has finished: its presence means "done".
``checkpoint.pt`` is rewritten at every epoch end and task boundary and lets ``--resume`` continue.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

from cldst.config import ConfigError, ExperimentConfig
from cldst.config.atomic_files import atomic_write, atomic_write_bytes
from cldst.runner.provenance import code_version

# The files of a run folder, named once.
CONFIG, METRICS, HISTORY, CHECKPOINT = "config.json", "metrics.json", "history.csv", "checkpoint.pt"
PROGRESS = "progress.json"  # where the run stands (cldst/runner/observers.py)
STOP_FILE = "STOP"  # a request to checkpoint and stop (cldst/runner/stop.py; submitit's checkpoint() writes it)
RUN_NOTEBOOK = "experiment.ipynb"  # a sweep's executed copy of the notebook that ran the run
RUN_LOG = "papermill.log"  # a sweep run's output
TENSORBOARD = "tensorboard"  # the folder of TensorBoard events (--tensorboard)
HISTORY_FIELDS = ("kind", "task", "epoch", "step", "loss", "train_acc", "lr", "prune_rate",
                  "regrown_new", "seconds")


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def default_for(cls, cfg: ExperimentConfig, root: str | Path = "runs") -> RunDir:
        return cls(Path(root) / cfg.run_id())

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def finished(self) -> bool:
        return self.file(METRICS).is_file()

    def write_config(self, cfg: ExperimentConfig) -> None:
        """Every setting, resolved, then the code version (cldst/runner/provenance.py) that starts the run."""
        atomic_write_json(self.file(CONFIG), {**cfg.to_dict(), **code_version()})

    def write_metrics(self, metrics: dict) -> None:
        """The metrics, with the code version that finished the run added (to ``metrics`` too)."""
        metrics.update(code_version())
        atomic_write_json(self.file(METRICS), metrics)

    def read_metrics(self) -> dict:
        return json.loads(self.file(METRICS).read_text())

    def write_history(self, rows: list[dict]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(self.file(HISTORY), buf.getvalue().encode())

    def write_checkpoint(self, state: dict) -> None:
        import torch  # here, not at import: a sweep's wrapper process needs no torch

        atomic_write(self.file(CHECKPOINT), lambda f: torch.save(state, f))

    def read_checkpoint(self) -> dict | None:
        """The checkpoint's state (tensors and plain values only: ``weights_only``), or None without one.

        A file that cannot be loaded (cut short by a lost write or an interrupted copy, corrupted, or
        holding a pickled object that ``weights_only`` refuses) is a ConfigError: one line naming the
        file, what is wrong with it and what to do, instead of PyTorch's traceback."""
        path = self.file(CHECKPOINT)
        if not path.is_file():
            return None
        import torch  # here, not at import: a sweep's wrapper process needs no torch

        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as e:
            restart = "delete it to restart the run from the beginning"
            try:
                complete = zipfile.is_zipfile(path)  # torch.save writes a zip archive; its index comes last
                size = path.stat().st_size
            except OSError as os_error:
                raise ConfigError(f"checkpoint {path} cannot be read ({os_error.strerror or os_error}): "
                                  "check its permissions and its filesystem") from None
            if not complete:
                raise ConfigError(f"checkpoint {path} is damaged (cut short or overwritten: {size} bytes, "
                                  f"not a complete PyTorch file): {restart}") from None
            text = " ".join(str(e).split())
            found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
            if isinstance(e, pickle.UnpicklingError) and found:  # a complete file, an object weights_only refuses
                raise ConfigError(f"checkpoint {path} holds a pickled {found.group(1)}, which loading with "
                                  "weights_only refuses (cldst checkpoints hold only tensors and plain values): "
                                  f"{restart}") from None
            if isinstance(e, pickle.UnpicklingError):
                reason = "a complete archive whose pickled state cannot be read"
            else:  # PyTorch's first sentence, e.g. PytorchStreamReader failed reading zip archive: ...
                reason = text.split(". ")[0] or type(e).__name__
            raise ConfigError(f"checkpoint {path} is damaged ({reason}): {restart}") from None
