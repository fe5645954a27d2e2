"""The sweep's progress bar: counts of finished, running and failed runs, and the failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from cldst.runner.jobs import RunJob


@dataclass
class SweepBar:
    """Counts shown in the sweep's bar, and the failures reported at the end."""

    total: int
    skipped: int
    finished: int = 0
    running: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # run id → error line
    bar: Any = None

    def start(self, show: bool, name: str) -> None:
        self.bar = tqdm(total=self.total, initial=self.skipped, desc=f"sweep {name}", unit="run",
                        disable=not show, dynamic_ncols=True)
        self.refresh()

    def refresh(self, redraw: bool = True) -> None:
        if self.bar is not None:
            counts = {"finished": self.skipped + self.finished, "running": self.running,
                      "failed": len(self.failures)}
            self.bar.set_postfix(counts, refresh=redraw)

    def done(self, job: RunJob, error: str | None) -> None:
        if error is None:
            self.finished += 1
        else:
            self.failures[job.run_id] = error
        self.refresh(redraw=False)
        self.bar.update()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
