"""Which code made a run: cldst's version and the git commit of the checkout, with a dirty flag.

``config.json`` and ``metrics.json`` record :func:`code_version`, and so does the results table, so a
number can be traced back to the code that computed it. ``git_commit`` and ``git_dirty`` are None
when cldst does not run from a git checkout (an installed wheel) or git is not available. Dirty means
tracked files that can change what a run computes differ from the commit: untracked files do not
count, nor do NOT_CODE, the files the *-refresh targets rewrite (so that one refresh's new tables
and figures do not mark the next refresh's runs dirty).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from cldst.config.version import __version__

KEYS = ("cldst_version", "git_commit", "git_dirty")
# Committed results, their figures, the docs and the notebooks that only draw results: not code.
NOT_CODE = ("figures", "docs", "*.md", "notebooks/figures.ipynb", "notebooks/protocols.ipynb")
ROOT = Path(__file__).resolve().parents[2]  # the checkout, when cldst runs from one


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "--no-optional-locks", "-C", str(ROOT), *args], capture_output=True,
                              text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """{"cldst_version", "git_commit", "git_dirty"} of the code running now."""
    commit = dirty = None
    top = _git("rev-parse", "--show-toplevel")
    if top is not None and Path(top).resolve() == ROOT:  # not a repository that merely contains cldst
        commit = _git("rev-parse", "HEAD")
        status = _git("status", "--porcelain", "--untracked-files=no", "--", ".",
                      *(f":(exclude){path}" for path in NOT_CODE))
        dirty = None if commit is None or status is None else bool(status)
    return {"cldst_version": __version__, "git_commit": commit, "git_dirty": dirty}


def version_text(version: dict[str, Any]) -> str:
    """``cldst 0.1.0, git 81e6022abc12 (modified)``; ``cldst 0.1.0`` outside a checkout."""
    text = f"cldst {version.get('cldst_version') or '(unknown version)'}"
    if version.get("git_commit"):
        text += f", git {version['git_commit'][:12]}" + (" (modified)" if version.get("git_dirty") else "")
    return text


def recorded(run_dir: str | Path) -> dict[str, Any] | None:
    """The code version a run folder records: from metrics.json when finished, else config.json;
    None when neither exists. Runs written before cldst recorded it give all-None values."""
    for name in ("metrics.json", "config.json"):
        path = Path(run_dir) / name
        if path.is_file():
            try:
                values = json.loads(path.read_text())
            except (OSError, ValueError):
                return None
            return {key: values.get(key) for key in KEYS}
    return None


def resume_warning(run_dir: str | Path, current: dict[str, Any] | None = None) -> str | None:
    """One line when resuming ``run_dir`` would reuse results of other code than this one, else None."""
    before = recorded(run_dir)
    if before is None:
        return None
    now = current or code_version()
    if all(before[key] == now[key] for key in KEYS):
        return None
    done = (Path(run_dir) / "metrics.json").is_file()
    what = "its results are returned as they are" if done else "its finished tasks are kept"
    who = version_text(before) if before["cldst_version"] else "a cldst that did not record its version"
    return (f"warning: {run_dir} was written by {who}, not by this code ({version_text(now)}); "
            f"resuming, {what}: use another out dir to recompute")
