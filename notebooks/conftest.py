"""nbval runs these notebooks in place, with their default parameters (``make test``).

experiment.ipynb writes its run to runs/<run id> by default; under the tests that goes to a fresh
temporary folder instead, so a test never reads back a stale run (the kernel inherits this variable).
The notebooks run in the project's kernel (cldst.notebook.KERNEL, pyproject.toml's
--nbval-kernel-name), which `make install` registers; without it, say so once instead of failing
every cell.
"""

import atexit
import os
import shutil
import tempfile

import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from cldst.notebook import KERNEL

try:
    KernelSpecManager().get_kernel_spec(KERNEL["name"])
except NoSuchKernel:
    pytest.exit(f"the Jupyter kernel {KERNEL['name']!r} the notebooks run in is not installed: run `make install` "
                f"(or: python -m ipykernel install --sys-prefix --name {KERNEL['name']})", returncode=4)

os.environ["CLDST_RUNS_ROOT"] = tempfile.mkdtemp(prefix="cldst-nbval-")
atexit.register(shutil.rmtree, os.environ["CLDST_RUNS_ROOT"], ignore_errors=True)
