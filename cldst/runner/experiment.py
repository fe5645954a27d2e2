"""One experiment in a run folder: start or resume it, write what the learner emits (history,
checkpoints, progress.json, TensorBoard), and stop it cleanly on request (SIGTERM, SIGUSR1, SIGUSR2
or a STOP file)."""

from __future__ import annotations

from pathlib import Path

from cldst.config import ConfigError, ExperimentConfig
from cldst.method.events import LearnerObserver, Observers, Preempted
from cldst.method.learner import ContinualLearner
from cldst.runner.observers import ProgressFile, RunFolderWriter
from cldst.runner.run_dir import STOP_FILE, TENSORBOARD, RunDir
from cldst.runner.stop import StopRequest


def run_experiment(cfg: ExperimentConfig, out: str | Path | None = None, *, resume: bool = False,
                   progress: bool = True, max_tasks: int | None = None, checkpoint_minutes: float = 0.0,
                   observer: LearnerObserver | None = None, stop=None, progress_file: bool = True,
                   tensorboard: bool = False) -> dict | None:
    """Run (or resume) one experiment into ``out`` (default ``runs/<run id>``); return its metrics.

    Checkpoints are written at every task boundary and at epoch boundaries, at most every
    ``checkpoint_minutes`` (0: every epoch). On SIGTERM, SIGUSR1 or SIGUSR2 (or a STOP file in the
    run folder, or when ``stop()`` turns true), the run checkpoints its current step and raises
    :class:`cldst.method.events.Preempted`. ``progress_file``: keep ``progress.json`` up to date.
    ``tensorboard``: also write TensorBoard events to ``<run folder>/tensorboard/``
    (cldst/runner/tensorboard_log.py; a ConfigError, before anything is loaded, without the package).
    None of these changes what the run computes.
    """
    run = RunSession(cfg, out, resume=resume, progress=progress, checkpoint_minutes=checkpoint_minutes,
                     observer=observer, stop=stop, progress_file=progress_file, tensorboard=tensorboard)
    if run.learner is None:
        return run.result
    previous = run.request.install()
    try:
        result = run.learner.run(max_tasks=max_tasks)
    except Preempted as e:
        run.close("preempted")
        raise Preempted(f"{e}; a checkpoint is written: --resume continues") from None
    except BaseException:
        run.close("failed")
        raise
    finally:
        StopRequest.uninstall(previous)
    run.close(result)
    return result


class RunSession:
    """One run folder and its learner, ready to train: the part of ``run_experiment`` that a pack
    (cldst/runner/pack.py) shares. ``learner`` is None when the folder holds a finished run that
    is resumed (``result``: its metrics). ``stop``: asked beside the run's own request (a STOP file;
    the signals are caught by whoever calls ``request.install()``). ``data``: the run's images, or a
    function of its config that gives them (called only when the run trains); default: its benchmark."""

    def __init__(self, cfg: ExperimentConfig, out: str | Path | None = None, *, resume: bool = False,
                 progress: bool = True, checkpoint_minutes: float = 0.0,
                 observer: LearnerObserver | None = None, stop=None, progress_file: bool = True,
                 tensorboard: bool = False, data=None):
        self.run_dir = run_dir = RunDir(out) if out is not None else RunDir.default_for(cfg)
        self.learner: ContinualLearner | None = None
        self.result: dict | None = None
        if run_dir.finished and resume:
            self.result = run_dir.read_metrics()
            return
        saved = run_dir.read_checkpoint() if run_dir.path.exists() else None
        if (run_dir.finished or saved is not None) and not resume:
            raise ConfigError(f"out={str(run_dir.path)!r} already holds a run: pass --resume to continue "
                              "it, or choose another --out")
        observers: list[LearnerObserver] = [RunFolderWriter(run_dir, checkpoint_minutes)]
        if progress_file:
            observers.append(ProgressFile(run_dir.path, cfg.num_tasks, cfg.epochs))
        board = None
        if tensorboard:
            from cldst.runner.tensorboard_log import TensorBoardLog, steps_per_task

            board = TensorBoardLog(run_dir.file(TENSORBOARD))  # fails here without the tensorboard package
            observers.append(board)
        if observer is not None:
            observers.append(observer)
        self.request = request = StopRequest(run_dir.file(STOP_FILE))
        should_stop = (lambda: request() or stop()) if stop is not None else request
        if callable(data):
            data = data(cfg)
        self.learner = ContinualLearner(cfg, data=data, observers=observers, should_stop=should_stop,
                                        checkpoint=saved, progress=progress)
        if board is not None:
            board.set_steps(steps_per_task(self.learner))
        run_dir.write_config(cfg)
        run_dir.file(STOP_FILE).unlink(missing_ok=True)  # a stale request from a previous job
        self.events = Observers(observers)

    def close(self, outcome: dict | str | None) -> None:
        """The run ended: with its metrics (written to metrics.json), None (stopped by max_tasks),
        or "preempted" / "failed"."""
        try:
            if isinstance(outcome, dict):
                self.run_dir.write_metrics(outcome)
            if isinstance(outcome, str):
                self.events.stopped(outcome)
        finally:
            self.events.close()
        if isinstance(outcome, dict):
            self.events.stopped("finished")
