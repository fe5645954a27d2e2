"""What a run is: the typed config (experiment_config), the settings' values and checks
(vocabulary, validation), the benchmarks' defaults (benchmarks) and each setting's help (settings).
No torch here."""

from cldst.config.benchmarks import DATASETS
from cldst.config.experiment_config import ExperimentConfig, load_preset
from cldst.config.vocabulary import (
    ALIASES,
    ARCHS,
    BANDIT,
    CLASS_ORDERS,
    DATASET_DEFAULTS,
    FREE_INITS,
    GROWTHS,
    INITS,
    METHODS,
    NOT_IN_RUN_ID,
    OPTIMIZERS,
    PROTOCOLS,
    QUIRKS,
    REUSES,
    RUN_ID_NEUTRAL,
    STATIC,
    ConfigError,
    is_static,
)

__all__ = ["ALIASES", "ARCHS", "BANDIT", "CLASS_ORDERS", "DATASETS", "DATASET_DEFAULTS", "FREE_INITS", "GROWTHS",
           "INITS", "METHODS", "NOT_IN_RUN_ID", "OPTIMIZERS", "PROTOCOLS", "QUIRKS", "REUSES", "RUN_ID_NEUTRAL", "STATIC",
           "ConfigError", "ExperimentConfig", "is_static", "load_preset"]
