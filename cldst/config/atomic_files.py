"""Atomic file writes: a temp file in the target's folder, flushed to disk, then renamed over the
target, so a reader never sees half a file. The data caches use it (cldst/data/image_folders.py),
and so does the run folder (cldst/runner/run_dir.py): a killed run never leaves a metrics.json
that looks finished. It sits in the first layer, beside the config, because both use it and it
needs no torch: a sweep's per-run wrapper process imports the run folder's names without torch."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """``write(f)`` into a temp file beside ``path``, then replace ``path`` with it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))
