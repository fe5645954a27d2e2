"""The notebooks run through papermill: parameters, injected settings, bad settings, every figure.

(nbval executes them with their default parameters too: see notebooks/ and pyproject.toml.)
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill as pm
import pytest
import yaml

from cldst.config import GROWTHS, ExperimentConfig
from cldst.plots import STUDY_FIGURES, update_frequency_effect

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "notebooks" / "experiment.ipynb"
FIGURES = ROOT / "notebooks" / "figures.ipynb"
TINY = dict(num_tasks=2, num_classes=4, num_classes_per_task=2, width=0.125, epochs=2, batch_size=64,
            update_frequency=4, device="cpu")



@pytest.fixture(autouse=True)
def one_thread_per_kernel(monkeypatch):
    """Kernels and runs inherit this: a busy 2-core machine is not oversubscribed."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

def execute(notebook: Path, out: Path, **parameters) -> nbformat.NotebookNode:
    pm.execute_notebook(str(notebook), str(out), parameters=parameters, cwd=str(ROOT),
                        progress_bar=False, log_output=False)
    return nbformat.read(out, as_version=4)


def test_parameters_cell_has_every_config_field():
    params = pm.inspect_notebook(str(EXPERIMENT))
    expected = {f.name for f in fields(ExperimentConfig)} | {"out_dir", "resume", "progress"}
    assert set(params) == expected
    assert all(p["inferred_type_name"] != "None" for p in params.values()), "every parameter has a type"
    assert params["dataset"]["default"] == '"split-mnist"' and params["epochs"]["default"] == "2"
    assert params["density"]["default"] == "None"  # the dataset's default


def test_presets_are_notebook_parameters_and_configs():
    notebook_params = set(pm.inspect_notebook(str(EXPERIMENT)))
    presets = sorted((ROOT / "presets").glob("*.yaml"))
    assert {p.stem for p in presets} >= {"cifar100-5task", "cifar100-10task", "cifar100-20task",
                                          "split-mnist-smoke", "miniimagenet-10task"}
    for preset in presets:
        values = yaml.safe_load(preset.read_text())
        assert set(values) <= notebook_params, preset.name
        cfg = ExperimentConfig.from_dict(values)
        if preset.stem.startswith("cifar100-"):
            assert cfg.num_tasks * cfg.num_classes_per_task == 100
            assert (cfg.arch, cfg.batch_size, cfg.epochs, cfg.update_frequency, cfg.density) == \
                ("resnet18", 64, 100, 100, 0.1)


def test_experiment_notebook_with_injected_parameters(tmp_path):
    run_dir = tmp_path / "run"
    nb = execute(EXPERIMENT, tmp_path / "out.ipynb", out_dir=str(run_dir), sparse_init="uniform",
                 growth="unfired", density=0.1, progress=False, **TINY)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["config"]["sparse_init"] == "uniform" and metrics["config"]["growth"] == "unfired"
    assert metrics["config"]["density"] == 0.1 and metrics["config"]["num_tasks"] == 2
    assert len(metrics["acc_matrix"]) == 2 and metrics["acc_matrix"][0][1] is None
    assert metrics["acc"] == pytest.approx(np.mean(metrics["acc_matrix"][1]))
    assert (run_dir / "checkpoint.pt").is_file() and (run_dir / "history.csv").is_file()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 4  # accuracy matrix, accuracy over time, capacity, layer density
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"run id               = {metrics['run_id']}" in text
    assert "task 2" in text and "total" in text  # the mask table


def test_bad_parameter_stops_at_the_first_cell(tmp_path):
    out = tmp_path / "out.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as info:
        execute(EXPERIMENT, out, density=1.5, out_dir=str(tmp_path / "run"), **TINY)
    assert info.value.ename == "ConfigError"
    assert info.value.evalue == "density=1.5 is not allowed: expected a number in (0, 1]"
    nb = nbformat.read(out, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = next(i for i, c in enumerate(code) if "injected-parameters" in c.metadata.get("tags", [])) + 1
    errors = [o for o in code[first].outputs if o.output_type == "error"]
    assert errors and errors[0].traceback == ["ConfigError: density=1.5 is not allowed: expected a number in (0, 1]"]
    assert all(c.execution_count is None for c in code[first + 1:])  # nothing else ran
    assert not (tmp_path / "run").exists()


def fake_results(update_frequencies=(10, 50), seeds=(0, 1, 2)) -> pd.DataFrame:
    """A results table with the columns the figures read, values made up."""
    rng = np.random.default_rng(0)
    rows = []
    for bench, tasks in (("split-mnist", 5), ("cifar100", 5)):
        for init in ("uniform", "ERK"):
            for growth in GROWTHS:
                for density in (0.2, 0.05):
                    for uf in update_frequencies:
                        for seed in seeds:
                            acc = 90 - 50 * (0.2 - density) + rng.normal(0, 1)
                            caps = list(np.cumsum(np.full(tasks, density * 0.9)))
                            matrix = [[acc if j <= i else None for j in range(tasks)] for i in range(tasks)]
                            rows.append(dict(run_id=f"{bench}-{init}-{growth}-d{density}-u{uf}-s{seed}",
                                             run_dir=f"{bench}-{init}-{growth}-d{density}-u{uf}-s{seed}",
                                             benchmark=f"{bench}, {tasks} tasks", dataset=bench,
                                             num_tasks=tasks, sparse_init=init, growth=growth, density=density,
                                             sparsity=1 - density, update_frequency=uf, seed=seed, acc=acc,
                                             bwt=0.0, forgetting=0.0, capacity_final=caps[-1],
                                             acc_matrix=json.dumps(matrix), capacity=json.dumps(caps)))
    return pd.DataFrame(rows)


def test_figures_notebook_makes_every_figure(tmp_path):
    table = tmp_path / "results.csv"
    fake_results().to_csv(table, index=False)
    figures = tmp_path / "figures"
    nb = execute(FIGURES, tmp_path / "figures.ipynb", results_csv=str(table), figures_dir=str(figures))
    names = [*STUDY_FIGURES, "fig5-accuracy-matrix"]
    for name in names:
        for ext in ("png", "pdf"):
            assert (figures / f"{name}.{ext}").stat().st_size > 1000, f"{name}.{ext}"
    assert len(list(figures.iterdir())) == 2 * len(names)
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(shown) == len(names)


def test_single_update_frequency_is_said_not_failed():
    fig = update_frequency_effect(fake_results(update_frequencies=(10,), seeds=(0,)))
    assert "one update frequency only (10 steps)" in fig._suptitle.get_text()
