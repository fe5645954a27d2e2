"""cldst's papermill runs start the notebooks' kernel (``cldst``) as this Python from any install: with
no kernelspec registered (a plain ``pip install -e .``), and with a ``cldst`` kernelspec of another
environment on the Jupyter path. Without ipykernel, one line names the fix."""

from __future__ import annotations

import json
import site
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from cldst.config import ConfigError
from cldst.runner import kernel
from cldst.runner.jobs import RunJob, execute_run

OTHER_PYTHON = "/nonexistent/other-env/bin/python"


@pytest.fixture
def jupyter_paths(tmp_path, monkeypatch):
    """A Jupyter path of empty temp folders only: JUPYTER_PATH, the user's data dir, a fake prefix
    (this environment's share/jupyter, where `make install` registers cldst), no system folders.
    Returns JUPYTER_PATH's kernels folder, to register decoys in."""
    import jupyter_core.paths

    prefix = tmp_path / "prefix"
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.setattr(jupyter_core.paths, "ENV_JUPYTER_PATH", [str(prefix / "share" / "jupyter")])
    monkeypatch.setattr(jupyter_core.paths, "SYSTEM_JUPYTER_PATH", [])
    monkeypatch.setattr(site, "ENABLE_USER_SITE", False)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter-path"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    kernels = tmp_path / "jupyter-path" / "kernels"
    kernels.mkdir(parents=True)
    return kernels


def register_decoy(kernels: Path) -> None:
    """A `cldst` kernelspec of another environment (e.g. an older install's, in ~/.local)."""
    (kernels / kernel.KERNEL["name"]).mkdir()
    (kernels / kernel.KERNEL["name"] / "kernel.json").write_text(json.dumps({
        "argv": [OTHER_PYTHON, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (cldst)", "language": "python"}))


def test_with_no_kernelspec_registered_cldst_is_this_python(jupyter_paths):
    with pytest.raises(NoSuchKernel):  # what papermill alone runs into after a plain pip install
        KernelSpecManager().get_kernel_spec(kernel.KERNEL["name"])
    spec = kernel.kernel_spec_manager().get_kernel_spec(kernel.KERNEL["name"])
    assert spec.argv[0] == sys.executable
    assert spec.argv[spec.argv.index("-m") + 1] == "ipykernel_launcher" and "{connection_file}" in spec.argv
    assert spec.language == "python" and spec.display_name == kernel.KERNEL["display_name"]
    km = kernel.kernel_manager_class()(kernel_name=kernel.KERNEL["name"])
    assert km.kernel_spec.argv[0] == sys.executable  # what nbclient starts
    assert not any(jupyter_paths.parent.parent.rglob("kernel.json"))  # nothing registered, nothing written


def test_another_environments_cldst_kernelspec_is_not_used(jupyter_paths):
    register_decoy(jupyter_paths)
    assert KernelSpecManager().get_kernel_spec(kernel.KERNEL["name"]).argv[0] == OTHER_PYTHON
    km = kernel.kernel_manager_class()(kernel_name=kernel.KERNEL["name"])
    assert km.kernel_spec.argv[0] == sys.executable


def test_other_kernel_names_are_looked_up_as_usual(jupyter_paths):
    (jupyter_paths / "other").mkdir()
    (jupyter_paths / "other" / "kernel.json").write_text(json.dumps(
        {"argv": [OTHER_PYTHON, "-f", "{connection_file}"], "display_name": "other", "language": "python"}))
    assert kernel.kernel_spec_manager().get_kernel_spec("other").argv[0] == OTHER_PYTHON


def test_papermill_gets_the_kernel_manager(monkeypatch):
    import papermill

    calls = []
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **kw: calls.append((a, kw)))
    kernel.execute_notebook("in.ipynb", Path("out.ipynb"), parameters={"seed": 1})
    (args, kwargs), = calls
    assert args == ("in.ipynb", "out.ipynb")
    assert kwargs["kernel_name"] == kernel.KERNEL["name"] and kwargs["parameters"] == {"seed": 1}
    assert kwargs["kernel_manager_class"] is kernel.kernel_manager_class()


def without_ipykernel(monkeypatch):
    real = kernel.importlib.util.find_spec
    monkeypatch.setattr(kernel.importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("ipykernel") else real(name, *a))


def test_without_ipykernel_one_line_names_the_fix(monkeypatch, tmp_path):
    without_ipykernel(monkeypatch)
    with pytest.raises(kernel.KernelError) as info:
        kernel.check_kernel()
    message = str(info.value)
    assert "\n" not in message and f"{sys.executable} -m pip install ipykernel" in message
    assert isinstance(info.value, ConfigError)  # the CLI prints it as its one line
    with pytest.raises(kernel.KernelError):
        kernel.execute_notebook("in.ipynb", tmp_path / "out.ipynb")

    # A sweep's run fails with that line, before papermill, and leaves no notebook behind.
    job = RunJob("r", str(tmp_path / "r"), "in.ipynb", {})
    assert execute_run(job) == message
    assert not job.output.exists()


def test_without_an_interpreter_one_line_names_the_fix():
    with pytest.raises(kernel.KernelError) as info:
        kernel.check_kernel("")
    assert "\n" not in str(info.value) and kernel.REGISTER in str(info.value)


def tiny_notebook(path: Path) -> Path:
    """A notebook naming the cldst kernel that writes, as a finished run does, metrics.json: here the
    kernel's interpreter."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(kernel.KERNEL)
    params = nbformat.v4.new_code_cell("out_dir = None")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "import json, pathlib, sys\n"
        "pathlib.Path(out_dir, 'metrics.json').write_text(json.dumps({'python': sys.executable}))\n"
        "print(sys.executable)")]
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_a_run_executes_in_this_python_despite_another_cldst_kernel(jupyter_paths, tmp_path, monkeypatch):
    """A real kernel: with only another environment's cldst kernelspec on the Jupyter path, a sweep's
    run (execute_run) still executes its notebook, in this Python."""
    register_decoy(jupyter_paths)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    job = RunJob("r", str(tmp_path / "run"), str(tiny_notebook(tmp_path / "tiny.ipynb")),
                 {"out_dir": str(tmp_path / "run")})
    assert execute_run(job) is None
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["python"] == sys.executable
    executed = nbformat.read(job.output, as_version=4)
    assert executed.metadata["kernelspec"]["name"] == kernel.KERNEL["name"]  # JupyterLab opens it in cldst
    assert executed.cells[-1].outputs[0]["text"].strip() == sys.executable
