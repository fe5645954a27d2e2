"""cldst: continual learning with dynamic sparse training (Yildirim et al., CPAL 2024), reproduced.

Layers, each importing only from those before it (tests/test_layers.py): config → data → method
→ runner → analysis → plots → entry points (cli, notebook, bench).
"""

from cldst.config import ConfigError, ExperimentConfig
from cldst.config.version import __version__

__all__ = ["ConfigError", "ExperimentConfig", "ContinualLearner", "run_experiment", "__version__"]


def __getattr__(name: str):
    # torch is imported on first use of the training code, not by `import cldst`: a sweep's
    # per-run wrapper process (python -m cldst.runner.jobs) only starts papermill.
    if name == "ContinualLearner":
        from cldst.method.learner import ContinualLearner
        return ContinualLearner
    if name == "run_experiment":
        from cldst.runner.experiment import run_experiment
        return run_experiment
    raise AttributeError(f"module 'cldst' has no attribute {name!r}")
