"""What a run is: the typed config (experiment_config), the benchmarks' defaults (benchmarks) and
each setting's help (settings). No torch here."""

from cldst.config.experiment_config import *  # noqa: F403
from cldst.config.experiment_config import __all__  # noqa: F401
