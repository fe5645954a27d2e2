"""Grid files: a grid file (YAML) → the validated configs of its runs (cldst/runner/sweep.py runs them).

A grid file::

    base: ../presets/split-mnist-smoke.yaml  # optional; read relative to the grid file
    set: {epochs: 3}                         # optional; fixed settings over the base
    grid:                                    # each setting → a list; runs = the cartesian product
      sparse_init: [uniform, ERK]
      density: [0.2, 0.05]
    root: sweeps/my-study                    # optional; relative to where you run the command
                                             # (default sweeps/<grid file name>)

Several products in one file: ``grids:`` instead of ``grid:``, a list of blocks, each with its own
optional ``set`` (over the base and the top-level ``set``) and ``grid``; the runs are the union of
the blocks' products (a run that two blocks share is run once)::

    grids:
      - grid: {growth: [random, gradient], density: [0.2, 0.05]}
      - set: {density: 0.2}
        grid: {growth: [random, gradient], update_frequency: [4, 40]}

Every run's config is built and checked when the file is read, before anything runs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cldst.config import ConfigError, ExperimentConfig, load_preset

GRID_KEYS = ("base", "set", "grid", "grids", "root")
BLOCK_KEYS = ("set", "grid")  # the keys of one block of ``grids:``


# ---------------------------------------------------------------------- grid → configs
@dataclass
class Grid:
    name: str
    root: Path
    configs: list[ExperimentConfig]


def expand_grid(base: dict[str, Any], fixed: dict[str, Any], grid: dict[str, list]) -> list[dict[str, Any]]:
    """Settings of every run: base, then fixed, then one point of the grid's cartesian product."""
    names = list(grid)
    return [{**base, **fixed, **dict(zip(names, point))} for point in itertools.product(*grid.values())]


def _settings(path: Path, where: str, value: Any, lists: bool) -> dict[str, Any]:
    """A block's 'set' (setting: value) or 'grid' (setting: non-empty list of values), checked."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        kind = "setting: [values]" if lists else "setting: value"
        raise ConfigError(f"{path}: {where} must be a mapping of {kind}, got {value!r}")
    if lists:
        for name, values in value.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{path}: {where}.{name} must be a non-empty list of values, got {values!r}")
    return value


def grid_blocks(spec: dict[str, Any], path: Path) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any], dict[str, list]]]]:
    """The top-level ``set``, and the products the file holds as (label, the block's own ``set``,
    its ``grid``): one product, labelled "", for ``grid:``; one per block for ``grids:``."""
    if "grid" in spec and "grids" in spec:
        raise ConfigError(f"{path}: use either 'grid' (one product) or 'grids' (a list of products), not both")
    if not isinstance(spec.get("set") or {}, dict) or not isinstance(spec.get("grid") or {}, dict):
        raise ConfigError(f"{path}: 'set' and 'grid' must be mappings of setting: value(s)")
    shared = _settings(path, "set", spec.get("set"), lists=False)
    if "grids" not in spec:
        return shared, [("", {}, _settings(path, "grid", spec.get("grid"), lists=True))]
    blocks = spec["grids"]
    if not isinstance(blocks, list) or not blocks:
        raise ConfigError(f"{path}: 'grids' must be a non-empty list of blocks {{set: ..., grid: ...}}, got {blocks!r}")
    out = []
    for k, block in enumerate(blocks, start=1):
        label = f"grids[{k}]"
        if not isinstance(block, dict) or not block:
            raise ConfigError(f"{path}: {label} must be a mapping with 'set' and/or 'grid', got {block!r}")
        unknown = sorted(set(block) - set(BLOCK_KEYS))
        if unknown:
            raise ConfigError(f"{path}: {label}: unknown key {unknown[0]!r}: a block has {', '.join(BLOCK_KEYS)}")
        fixed = _settings(path, f"{label}.set", block.get("set"), lists=False)
        grid = _settings(path, f"{label}.grid", block.get("grid"), lists=True)
        out.append((label, fixed, grid))
    return shared, out


def load_grid(path: str | Path, root: str | Path | None = None) -> Grid:
    """Read and validate a grid file: every run's config is built before anything runs.

    Runs that come out identical (the same run id, e.g. from two overlapping blocks) are kept once.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file {str(path)!r} does not exist")
    spec = load_preset(path)
    unknown = sorted(set(spec) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}: a grid file has {', '.join(GRID_KEYS)}")
    base = load_preset(path.parent / spec["base"]) if spec.get("base") else {}
    shared, blocks = grid_blocks(spec, path)
    runs = []  # (block label, the settings its block names, the run's settings)
    for label, fixed, grid in blocks:
        named = list(dict.fromkeys([*fixed, *grid]))
        runs += [(label, named, values) for values in expand_grid(base, {**shared, **fixed}, grid)]
    configs, seen = [], set()
    for k, (label, named, values) in enumerate(runs):
        try:
            cfg = ExperimentConfig.from_dict(values)
        except ConfigError as e:
            where = ", ".join(f"{n}={values[n]!r}" for n in named)
            where = ": ".join(w for w in (label, where) if w)
            where = f" ({where})" if where else ""
            raise ConfigError(f"{path}: run {k + 1} of {len(runs)}{where}: {e}") from None
        if cfg.run_id() not in seen:  # a grid over settings outside the run id gives duplicates
            seen.add(cfg.run_id())
            configs.append(cfg)
    name = path.stem
    return Grid(name=name, root=Path(root or spec.get("root") or Path("sweeps") / name), configs=configs)
