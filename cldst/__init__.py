"""cldst: continual learning with dynamic sparse training (Yildirim et al., CPAL 2024), reproduced."""

from .config import ConfigError, ExperimentConfig
from .train import ContinualLearner, run_experiment

__all__ = ["ConfigError", "ExperimentConfig", "ContinualLearner", "run_experiment"]
__version__ = "0.1.0"
