"""nbval runs these notebooks in place, with their default parameters (``make test``).

experiment.ipynb writes its run to runs/<run id> by default; under the tests that goes to a fresh
temporary folder instead, so a test never reads back a stale run (the kernel inherits this variable).
"""

import atexit
import os
import shutil
import tempfile

os.environ["CLDST_RUNS_ROOT"] = tempfile.mkdtemp(prefix="cldst-nbval-")
atexit.register(shutil.rmtree, os.environ["CLDST_RUNS_ROOT"], ignore_errors=True)
