"""cldst: continual learning with dynamic sparse training (Yildirim et al., CPAL 2024), reproduced."""

from .config import ConfigError, ExperimentConfig

__all__ = ["ConfigError", "ExperimentConfig", "ContinualLearner", "run_experiment"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # torch is imported on first use of the training code, not by `import cldst`: a sweep's
    # per-run wrapper process (python -m cldst.sweep) only starts papermill.
    if name == "ContinualLearner":
        from .train import ContinualLearner
        return ContinualLearner
    if name == "run_experiment":
        from .experiment import run_experiment
        return run_experiment
    raise AttributeError(f"module 'cldst' has no attribute {name!r}")
