"""A run directory: config.json, metrics.json, history.csv and checkpoint.pt, written atomically.

``metrics.json`` is written once, when the run has finished: its presence means "done".
``checkpoint.pt`` is rewritten at every epoch end and task boundary and lets ``--resume`` continue.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .config import ExperimentConfig
from .provenance import code_version

CONFIG, METRICS, HISTORY, CHECKPOINT = "config.json", "metrics.json", "history.csv", "checkpoint.pt"
HISTORY_FIELDS = ("kind", "task", "epoch", "step", "loss", "train_acc", "lr", "prune_rate",
                  "regrown_new", "seconds")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        """Every setting, resolved, then the code version (cldst/provenance.py) that starts the run."""
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
        buf = io.BytesIO()
        import torch  # here, not at import: a sweep's wrapper process needs no torch

        torch.save(state, buf)
        atomic_write_bytes(self.file(CHECKPOINT), buf.getvalue())

    def read_checkpoint(self) -> dict | None:
        path = self.file(CHECKPOINT)
        if not path.is_file():
            return None
        import torch

        return torch.load(path, map_location="cpu", weights_only=True)
