"""Re-execute the committed notebooks in place and strip what changes from run to run.

nbval (``make test``) compares the outputs of the cells marked ``# NBVAL_CHECK_OUTPUT`` with the
outputs committed in the notebook, so after a change to those outputs run, from the repository root:

    .venv/bin/python tools/refresh_notebooks.py                 # execute + strip every notebook
    .venv/bin/python tools/refresh_notebooks.py NB              # execute + strip one
    .venv/bin/python tools/refresh_notebooks.py --strip-only NB  # kernelspec, parameters cell, strip; no run

Executed with their default parameters (kernel in notebooks/, like JupyterLab and nbval), runs going
to a temporary folder, whose path is written as ``runs`` in the outputs (what a default run prints).
Stripped: execution timestamps, papermill metadata, widget state and the progress-bar widgets
(random ids), and carriage-return redraws in text streams (keeping the final line). Every notebook
gets the project's kernelspec (cldst.notebook.KERNEL), and experiment.ipynb's parameters cell is
rewritten from cldst/config/settings.py (cldst.notebook.parameters_cell) before it runs.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

import nbformat

from cldst.notebook import KERNEL, parameters_cell

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [ROOT / "notebooks" / name for name in ("experiment.ipynb", "figures.ipynb", "protocols.ipynb")]
WIDGET = "application/vnd.jupyter.widget-view+json"


def execute(path: Path) -> None:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as runs:
        os.environ["CLDST_RUNS_ROOT"] = runs
        NotebookClient(nb, timeout=1800, kernel_name=KERNEL["name"],
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                out.text = out.text.replace(runs, "runs")
    nbformat.write(nb, path)


def sync(path: Path) -> None:
    """The project's kernelspec; experiment.ipynb's parameters cell as cldst/config/settings.py describes it."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = dict(KERNEL)
    if path.name == "experiment.ipynb":
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        cell.source = parameters_cell()
    nbformat.write(nb, path)


def _final_text(text: str) -> str:
    """What a terminal shows: each line's text after its last carriage return, cursor-up codes gone."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def strip(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for key in ("papermill", "widgets", "execution"):
        nb.metadata.pop(key, None)
    for cell in nb.cells:
        for key in ("papermill", "execution", "collapsed", "scrolled"):
            cell.metadata.pop(key, None)
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.outputs:
            if WIDGET in out.get("data", {}):
                continue
            if out.output_type == "stream":
                out.text = _final_text(out.text)
                if not out.text.strip():
                    continue
            outputs.append(out)
        cell.outputs = outputs
    nbformat.validate(nb)
    nbformat.write(nb, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, default=NOTEBOOKS)
    parser.add_argument("--strip-only", action="store_true", help="do not execute, only strip")
    args = parser.parse_args()
    for path in args.notebooks:
        sync(path)
        if not args.strip_only:
            print(f"executing {path}")
            execute(path)
        strip(path)
        print(f"stripped {path}")


if __name__ == "__main__":
    main()
