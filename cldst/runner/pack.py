"""Packs on disk: several runs trained as one batched computation (cldst/method/pack.py), each into
its own run folder, written by the same observers as a run alone (cldst/runner/experiment.py).

A pack runs in one process, not through papermill: ``python -m cldst.runner.pack PACK_JSON``. Each
member's folder ends up with what a sweep run's folder holds (config.json, metrics.json,
history.csv, checkpoint.pt, progress.json) except the executed notebook; its ``papermill.log``
holds the pack's word on it (finished, or its error and traceback). A finished member is never
rerun; the others resume from their checkpoints. A member that fails is reported as a failed run,
and the others go on. A pack of one is a run alone (``run_experiment``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cldst.config import ConfigError, ExperimentConfig
from cldst.data import ImageSplit, data_key, load_benchmark
from cldst.method.device import select_device
from cldst.method.events import LearnerObserver, Preempted
from cldst.method.pack import MemberOutcome, check_pack, drive_pack, pack_key, pack_refusal
from cldst.runner.experiment import RunSession, run_experiment
from cldst.runner.jobs import RunJob, one_line
from cldst.runner.run_dir import RUN_LOG
from cldst.runner.stop import StopRequest, request_stop

JOB_ONLY = ("out_dir", "resume", "progress")  # a sweep job's parameters that are not settings


def run_pack(cfgs: Sequence[ExperimentConfig], outs: Sequence[str | Path], *, progress: bool = False,
             checkpoint_minutes: float = 0.0, observers: Sequence[LearnerObserver | None] | None = None,
             stop=None) -> list[MemberOutcome]:
    """Run (or resume) the runs ``cfgs`` as one pack, each into its folder in ``outs``. Returns each
    member's outcome; a finished member's ``value`` is its metrics. A ConfigError (one line) if the
    runs cannot pack together. ``observers``: one more observer per member (or None);
    ``stop()``: asked after every step, for every member, beside its STOP file and the signals."""
    check_pack(cfgs)
    observers = list(observers) if observers is not None else [None] * len(cfgs)
    if len(cfgs) == 1:  # a pack of one: the run alone
        try:
            return [MemberOutcome("finished", run_experiment(
                cfgs[0], outs[0], resume=True, progress=progress, checkpoint_minutes=checkpoint_minutes,
                observer=observers[0], stop=stop))]
        except Preempted as e:
            return [MemberOutcome("preempted", error=e)]
        except Exception as e:
            return [MemberOutcome("failed", error=e, trace=traceback.format_exc())]
    data = SharedData(progress)
    signals = StopRequest()  # one handler for the pack's signals; each member also has its STOP file
    asked = _Latch((lambda: signals() or stop()) if stop is not None else signals)
    runs: list[RunSession | None] = []
    outcomes: list[MemberOutcome] = []
    for cfg, out, obs in zip(cfgs, outs, observers):
        try:  # a member that cannot start (its data, its checkpoint) fails alone
            run = RunSession(cfg, out, resume=True, progress=progress, checkpoint_minutes=checkpoint_minutes,
                             observer=obs, stop=asked, data=data)
            runs.append(run)
            outcomes.append(MemberOutcome("finished", run.result))
        except Exception as e:
            runs.append(None)
            outcomes.append(MemberOutcome("failed", error=e, trace=traceback.format_exc()))
    live = [i for i, r in enumerate(runs) if r is not None and r.learner is not None]
    if not live:
        return outcomes
    _check_steps([runs[i].learner for i in live])
    previous = signals.install()
    try:
        ended = drive_pack([runs[i].learner.run_steps() for i in live], runs[live[0]].learner.model,
                           on_end=lambda k, outcome: _close(runs[live[k]], outcome), before_round=asked.read)
    finally:
        StopRequest.uninstall(previous)
    for k, outcome in zip(live, ended):
        outcomes[k] = outcome
    return outcomes


class SharedData:
    """A pack's images: loaded once, onto the device, for all members with equal data settings
    (cldst.data.DATA_SETTINGS), so R members hold one copy instead of R. Only indices into it are
    each member's own (its tasks, its validation hold-out); nothing writes to the images."""

    def __init__(self, progress: bool = False):
        self.progress = progress
        self.loaded: dict[tuple, ImageSplit] = {}

    def __call__(self, cfg: ExperimentConfig) -> ImageSplit:
        key = data_key(cfg)
        if key not in self.loaded:
            self.loaded[key] = load_benchmark(cfg, self.progress).to(select_device(cfg.device))
        return self.loaded[key]


class _Latch:
    """The pack's stop request (signals, ``stop``), read once per batched step: every member of
    the step gets the same answer, so the members stop together and resume in step."""

    def __init__(self, ask):
        self.ask, self.value = ask, False

    def read(self) -> None:
        self.value = bool(self.ask())

    def __call__(self) -> bool:
        return self.value


def _check_steps(learners) -> None:
    """The members must take the same steps in every task (equal training images per task)."""
    steps = {tuple(lr.steps_per_epoch(t) for t in range(lr.cfg.num_tasks)) for lr in learners}
    if len(steps) > 1:
        raise ConfigError(f"the runs of a pack train different numbers of steps per task ({sorted(steps)}): "
                          "their data splits differ in size")


def _close(run: RunSession, outcome: MemberOutcome) -> None:
    """A member ended: write its metrics (finished) or its status (preempted, failed)."""
    try:
        run.close(outcome.value if outcome.status == "finished" else outcome.status)
    except Exception as e:  # writing its folder failed: the member failed, not the pack
        outcome.status, outcome.error, outcome.trace = "failed", e, traceback.format_exc()


# ---------------------------------------------------------------- packs of a sweep
@dataclass
class PackJob:
    """A sweep's pack: its members' jobs (plain values, pickled for Slurm)."""

    members: list[RunJob]

    @property
    def run_id(self) -> str:
        return "pack-" + self.members[0].run_id

    @property
    def run_dir(self) -> str:  # where its process's own output goes: the first member's folder
        return self.members[0].run_dir

    @property
    def finished(self) -> bool:
        return all(m.finished for m in self.members)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "cldst.runner.pack",
                json.dumps([vars(m) for m in self.members])]

    def execute(self) -> dict[str, str | None]:
        """Run the pack in its own process (Slurm); each member's error line, or None."""
        log = Path(self.run_dir) / "pack.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            code = subprocess.run(self.command(), stdout=out, stderr=subprocess.STDOUT).returncode
        return self.errors(code)

    def errors(self, returncode: int) -> dict[str, str | None]:
        return {m.run_id: None if m.finished else member_error(m, returncode) for m in self.members}

    def request_stop(self, wait_s: float) -> None:
        for m in self.members:  # every member stops at its next step check
            (Path(m.run_dir) / "STOP").touch()
        deadline = time.monotonic() + wait_s
        for m in self.members:
            request_stop(m.run_dir, max(1.0, deadline - time.monotonic()))


def member_error(job: RunJob, returncode: int) -> str:
    log = Path(job.run_dir) / RUN_LOG
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.is_file() else []
    error = [ln for ln in lines if ln.startswith("error: ")]
    return one_line(error[0][len("error: "):]) if error else f"the pack's process exited with code {returncode}"


def make_packs(jobs: Sequence[RunJob], cfgs: Sequence[ExperimentConfig], size: int):
    """Group the jobs into packs of at most ``size`` runs that share every shape-setting. Returns
    (units, refused): units are RunJobs (a pack of one is a run alone) and PackJobs; ``refused``
    maps each reason a run cannot pack to its number of runs (they run alone)."""
    groups: dict[tuple, list[RunJob]] = {}
    units: list = []
    refused: dict[str, int] = {}
    for job, cfg in zip(jobs, cfgs):
        reason = pack_refusal(cfg) if size > 1 else None
        if reason:
            refused[reason] = refused.get(reason, 0) + 1
            units.append(job)
        else:
            groups.setdefault(pack_key(cfg), []).append(job)
    for members in groups.values():
        for k in range(0, len(members), size):
            chunk = members[k:k + size]
            units.append(chunk[0] if len(chunk) == 1 else PackJob(chunk))
    return units, refused


def pack_summary(units: list, size: int, refused: dict[str, int]) -> str:
    """One line (and one per refusal): how the runs to run were grouped."""
    packs = [u for u in units if isinstance(u, PackJob)]
    alone = len(units) - len(packs)
    line = (f"packs of at most {size}: {sum(len(p.members) for p in packs)} runs in {len(packs)} packs "
            f"({', '.join(str(len(p.members)) for p in packs) or 'none'} runs each), {alone} alone")
    for reason, n in refused.items():
        line += f"\n{n} runs alone: {reason}"
    return line


def _main(members: list[dict]) -> int:
    jobs = [RunJob(**m) for m in members]
    cfgs = [ExperimentConfig.from_dict({k: v for k, v in j.parameters.items() if k not in JOB_ONLY})
            for j in jobs]
    outcomes = run_pack(cfgs, [j.run_dir for j in jobs])
    for job, outcome in zip(jobs, outcomes):
        text = f"{outcome.status} in a pack of {len(jobs)} ({jobs[0].run_id} ...)\n"
        if outcome.error is not None:
            text += f"error: {one_line(f'{type(outcome.error).__name__}: {outcome.error}')}\n{outcome.trace}"
        (Path(job.run_dir) / RUN_LOG).write_text(text)
        print(f"{job.run_id}: {outcome.status}" + (f": {outcome.error}" if outcome.error else ""), flush=True)
    return 0 if all(o.status == "finished" for o in outcomes) else 1


if __name__ == "__main__":  # one pack, as the local executor starts it: python -m cldst.runner.pack JSON
    sys.exit(_main(json.loads(sys.argv[1])))
