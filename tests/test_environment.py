"""environment.yml (conda) and pyproject.toml (pip) install the same packages with the same bounds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name → PyPI name, where they differ
CONDA_ONLY = {"pip"}  # the conda environment's tooling, not a dependency of cldst


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pip_packages() -> dict[str, SpecifierSet]:
    """Every package pyproject.toml installs (dependencies and all extras): name → bounds."""
    project = pyproject()
    requirements = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    out: dict[str, SpecifierSet] = {}
    for text in requirements:
        req = Requirement(text)
        out[req.name.lower()] = out.get(req.name.lower(), SpecifierSet()) & req.specifier
    return out


def conda_packages() -> tuple[dict[str, SpecifierSet], list]:
    """environment.yml's conda packages: name (PyPI spelling) → bounds; and its pip section."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    out, pip = {}, []
    for item in env["dependencies"]:
        if isinstance(item, dict):
            pip += item["pip"]
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*([<>=!~].*)?", item.strip())
        assert match, f"environment.yml: cannot read {item!r}"
        name, spec = match.group(1).lower(), (match.group(2) or "").replace(" ", "")
        assert not re.fullmatch(r"=[^=].*", spec), f"environment.yml: {item!r}: write bounds as pip does (>=, ==)"
        out[CONDA_NAMES.get(name, name)] = SpecifierSet(spec)
    return out, pip


def test_same_packages_and_bounds():
    conda, pip_section = conda_packages()
    python = conda.pop("python")
    for name in CONDA_ONLY:
        conda.pop(name, None)
    assert conda == pip_packages()
    assert python == SpecifierSet(pyproject()["requires-python"])
    assert pip_section == ["-e ."]  # cldst itself, its dependencies already there


def test_one_kernel_name_everywhere():
    """`make install` registers the kernel the notebooks name and nbval starts (papermill reads the notebooks')."""
    from cldst.notebook import KERNEL

    tomllib = pytest.importorskip("tomllib")
    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert f"--nbval-kernel-name={KERNEL['name']}" in addopts.split()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^KERNEL := {KERNEL['name']}$", makefile, re.M)
    assert '--sys-prefix --name $(KERNEL) --display-name "Python ($(KERNEL))"' in makefile
    assert KERNEL["display_name"] == f"Python ({KERNEL['name']})"
