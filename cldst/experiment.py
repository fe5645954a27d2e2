"""One experiment in a run folder: start or resume it, keep its checkpoints and progress file up to
date, and stop it cleanly on request (SIGTERM, SIGUSR1, SIGUSR2 or a STOP file)."""

from __future__ import annotations

from pathlib import Path

from . import checkpoint as ckpt
from .config import ConfigError, ExperimentConfig
from .progress import Observers, ProgressFile, RunObserver
from .runs import RunDir
from .train import ContinualLearner


def run_experiment(cfg: ExperimentConfig, out: str | Path | None = None, *, resume: bool = False,
                   progress: bool = True, max_tasks: int | None = None, checkpoint_minutes: float = 0.0,
                   observer: RunObserver | None = None, stop=None, progress_file: bool = True,
                   tensorboard: bool = False) -> dict | None:
    """Run (or resume) one experiment into ``out`` (default ``runs/<run id>``); return its metrics.

    Checkpoints are written at every task boundary and at epoch boundaries, at most every
    ``checkpoint_minutes`` (0: every epoch). On SIGTERM, SIGUSR1 or SIGUSR2 (or a STOP file in the
    run folder, or when ``stop()`` turns true), the run checkpoints its current step and raises
    :class:`cldst.checkpoint.Preempted`. ``progress_file``: keep ``progress.json`` up to date.
    ``tensorboard``: also write TensorBoard events to ``<run folder>/tensorboard/``
    (cldst/tensorboard_log.py; a ConfigError, before anything is loaded, without the package).
    None of these changes what the run computes.
    """
    run_dir = RunDir(out) if out is not None else RunDir.default_for(cfg)
    saved = run_dir.read_checkpoint() if run_dir.path.exists() else None
    if run_dir.finished and resume:
        return run_dir.read_metrics()
    if (run_dir.finished or saved is not None) and not resume:
        raise ConfigError(f"out={str(run_dir.path)!r} already holds a run: pass --resume to continue "
                          "it, or choose another --out")
    board = None
    if tensorboard:
        from .tensorboard_log import TENSORBOARD, TensorBoardLog, steps_per_task

        board = TensorBoardLog(run_dir.file(TENSORBOARD))  # fails here without the tensorboard package
    learner = ContinualLearner(cfg, progress=progress)
    if saved is not None:
        learner.restore(saved)
    run_dir.write_config(cfg)
    run_dir.file(ckpt.STOP_FILE).unlink(missing_ok=True)  # a stale request from a previous job
    learner.run_dir = run_dir
    learner.checkpoint_timer = ckpt.CheckpointTimer(checkpoint_minutes)
    observers = [ProgressFile(run_dir.path, cfg.num_tasks, cfg.epochs)] if progress_file else []
    if board is not None:
        board.set_steps(steps_per_task(learner))
        observers.append(board)
    learner.observer = Observers(observers + ([observer] if observer is not None else []))
    request = ckpt.StopRequest(run_dir.file(ckpt.STOP_FILE))
    learner.should_stop = (lambda: request() or stop()) if stop is not None else request
    previous = request.install()
    try:
        result = learner.run(run_dir, max_tasks=max_tasks)
    except ckpt.Preempted:
        learner.observer.stopped("preempted")
        raise
    except BaseException:
        learner.observer.stopped("failed")
        raise
    finally:
        ckpt.StopRequest.uninstall(previous)
        learner.observer.close()
    if result is not None:
        learner.observer.stopped("finished")
    return result
