"""The Jupyter kernel that cldst's papermill runs use: this Python (``sys.executable``), from any install.

The notebooks name the kernel ``cldst`` (:data:`KERNEL`, their metadata). JupyterLab, nbval and a
papermill command typed by hand look that name up among the kernelspecs on the Jupyter path, which
``make install`` registers (``python -m ipykernel install --sys-prefix --name cldst``) but a plain
``pip install -e .`` does not. cldst's own runs (a sweep's, a Slurm job's: cldst/runner/jobs.py)
do not look the name up at all: :func:`execute_notebook` hands papermill a kernel manager that
resolves ``cldst`` to a kernelspec made in memory, ``sys.executable -m ipykernel_launcher``. So

- nothing needs registering, and nothing is written (a read-only prefix is no obstacle);
- a ``cldst`` kernelspec of another environment (e.g. ~/.local/share/jupyter/kernels/cldst from an
  older install, found before this environment's) is never used: the executed notebook runs in the
  very Python, and the very cldst, that runs the sweep;
- the executed notebook still names ``cldst``, so JupyterLab opens it in the registered kernel.

The one thing it needs is ipykernel in this Python (a dependency of cldst); without it,
:func:`check_kernel` says so in one line that names the fix.

Nothing Jupyter is imported until a notebook runs: a sweep's wrapper processes stay light.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from typing import Any

from cldst.config import ConfigError

# The Jupyter kernel the notebooks name (their metadata), that nbval (pyproject.toml's
# --nbval-kernel-name) and `make lab` start, and that cldst's papermill runs resolve to this Python.
KERNEL = {"name": "cldst", "display_name": "Python (cldst)", "language": "python"}

# What registers the kernel for JupyterLab, nbval and papermill typed by hand (cldst's runs need none).
REGISTER = f"python -m ipykernel install --sys-prefix --name {KERNEL['name']}"


class KernelError(ConfigError):
    """This Python cannot run the notebooks' kernel. The message is one line that names the fix (the
    CLI prints a ConfigError as that line)."""


def check_kernel(executable: str | None = None) -> None:
    """Raise :class:`KernelError` (one line, naming the fix) when this Python cannot start the
    notebooks' kernel: no interpreter to run, or no ipykernel to import. ``executable`` (default
    sys.executable) is the interpreter the message names."""
    executable = sys.executable if executable is None else executable
    if not executable:
        raise KernelError("cannot tell which Python runs cldst (sys.executable is empty), so no kernel can "
                          f"start: run cldst from a python executable, or register the kernel: {REGISTER}")
    if importlib.util.find_spec("ipykernel_launcher") is None:
        raise KernelError(f"the notebooks' Jupyter kernel needs ipykernel, which {executable} lacks: "
                          f"{executable} -m pip install ipykernel")


def kernel_argv(executable: str | None = None) -> list[str]:
    """The command that starts the kernel: what ``python -m ipykernel install`` writes for this Python."""
    executable = sys.executable if executable is None else executable
    frozen = ["-Xfrozen_modules=off"] if sys.version_info >= (3, 11) else []  # as ipykernel's, for its debugger
    return [executable, *frozen, "-m", "ipykernel_launcher", "-f", "{connection_file}"]


def kernel_spec(executable: str | None = None):
    """The ``cldst`` kernelspec for ``executable`` (default this Python), in memory: the kernel.json
    that ``python -m ipykernel install --name cldst`` writes (its metadata too, e.g. the encryption
    the kernel supports), with our name and interpreter."""
    from jupyter_client.kernelspec import KernelSpec

    try:
        from ipykernel import kernelspec as ipykernel_spec

        fields, resources = ipykernel_spec.get_kernel_dict(), str(ipykernel_spec.RESOURCES)
    except Exception:  # an ipykernel without them: a plain spec
        fields, resources = {"metadata": {"debugger": True}}, ""
    fields.update(name=KERNEL["name"], argv=kernel_argv(executable), display_name=KERNEL["display_name"],
                  language=KERNEL["language"], resource_dir=resources)
    known = set(KernelSpec.class_trait_names())
    return KernelSpec(**{key: value for key, value in fields.items() if key in known})


@functools.cache
def _classes() -> tuple[type, type]:
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class CurrentPythonKernelSpecManager(KernelSpecManager):
        """The Jupyter path's kernelspecs, except ``cldst``: this Python's, whatever is registered."""

        def get_kernel_spec(self, kernel_name: str, *args: Any, **kwargs: Any):
            if kernel_name == KERNEL["name"]:
                return kernel_spec()
            return super().get_kernel_spec(kernel_name, *args, **kwargs)

    class CurrentPythonKernelManager(AsyncKernelManager):
        """nbclient's kernel manager (papermill's), starting ``cldst`` as this Python."""

        @default("kernel_spec_manager")
        def _current_python_spec_manager(self):
            return CurrentPythonKernelSpecManager(data_dir=self.data_dir)

    return CurrentPythonKernelSpecManager, CurrentPythonKernelManager


def kernel_spec_manager():
    """A KernelSpecManager whose ``cldst`` is this Python's kernel (others: as registered)."""
    return _classes()[0]()


def kernel_manager_class() -> type:
    """The kernel manager class to give nbclient (papermill's ``kernel_manager_class``)."""
    return _classes()[1]


def execute_notebook(input_path: str | Path, output_path: str | Path, **kwargs: Any):
    """``papermill.execute_notebook``, its kernel this Python (the ``cldst`` kernel, in memory).

    Raises :class:`KernelError` (one line) first when this Python cannot start it."""
    check_kernel()
    import papermill

    return papermill.execute_notebook(str(input_path), str(output_path), kernel_name=KERNEL["name"],
                                      kernel_manager_class=kernel_manager_class(), **kwargs)
