"""The notebooks run through papermill: parameters, injected settings, bad settings, every figure.

(nbval executes them with their default parameters too: see notebooks/ and pyproject.toml.)
"""

from __future__ import annotations

import ast
import json
from dataclasses import fields
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill as pm
import pytest
import yaml
from nbclient import NotebookClient
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from cldst import notebook
from cldst.cli import build_parser, config_from_args, main
from cldst.config import GROWTHS, ConfigError, ExperimentConfig, load_preset, settings
from cldst.plots.study import STUDY_FIGURES, update_frequency_effect

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "notebooks" / "experiment.ipynb"
FIGURES = ROOT / "notebooks" / "figures.ipynb"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PRESETS = sorted((ROOT / "presets").glob("*.yaml"))
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
    expected = {f.name for f in fields(ExperimentConfig)} | set(notebook.NOTEBOOK_PARAMETERS)
    assert set(params) == expected
    assert all(p["inferred_type_name"] != "None" for p in params.values()), "every parameter has a type"
    assert params["dataset"]["default"] == '"split-mnist"' and params["smoke"]["default"] == "None"
    for name in ("density", "epochs", "width", "num_tasks", "num_classes"):  # the dataset's default
        assert params[name]["default"] == "None", name


def test_parameters_cell_is_written_from_the_settings():
    """Defaults are ExperimentConfig's, comments cldst/config/settings.py's: `make notebooks` rewrites the cell."""
    nb = nbformat.read(EXPERIMENT, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert cell.source == notebook.parameters_cell(), "run: .venv/bin/python tools/refresh_notebooks.py"
    params = pm.inspect_notebook(str(EXPERIMENT))
    for f in fields(ExperimentConfig):
        assert params[f.name]["help"] == settings.notebook_comment(f.name), f.name
        assert ast.literal_eval(params[f.name]["default"]) == f.default, f.name
    for name, (_, default, help_text) in notebook.NOTEBOOK_PARAMETERS.items():
        assert params[name]["help"] == help_text and ast.literal_eval(params[name]["default"]) == default, name


def test_every_notebook_names_the_project_kernel():
    for path in NOTEBOOKS:
        kernelspec = nbformat.read(path, as_version=4).metadata.get("kernelspec")
        assert kernelspec == notebook.KERNEL, f"{path.name}: run tools/refresh_notebooks.py --strip-only {path}"


# ---------------------------------------------------------------------- the parameters, as papermill gives them
def papermill_cells(parameters: dict | str | None) -> list[str]:
    """The sources of the cells before the config cell, as papermill prepares them for these parameters
    (a dict for -p values, a file path for -f), and nothing injected for None."""
    nb = load_notebook_node(str(EXPERIMENT))  # as papermill's execute_notebook reads it
    if parameters is not None:
        nb = parameterize_notebook(nb, parameters)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    config_cell = next(i for i, source in enumerate(code) if "config_from_parameters" in source)
    return code[:config_cell]


def notebook_config(parameters: dict | str | None) -> ExperimentConfig:
    """The config the notebook resolves, papermill-free: run the cells papermill would run before the
    config cell (the imports, the parameters, the injected values) and the config cell's call."""
    cells = papermill_cells(parameters)
    namespace: dict = {}
    exec("from typing import Optional", namespace)
    for source in cells[1:]:  # the first cell only imports cldst and moves to the repository root
        exec(source, namespace)
    return notebook.config_from_parameters(namespace, history=cells)


def cli_config(argv: list[str]) -> ExperimentConfig:
    return config_from_args(build_parser().parse_args(["run", *argv]))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_a_preset_is_the_same_run_in_the_notebook_and_the_cli(preset):
    through_notebook = notebook_config(str(preset))  # papermill -f PRESET
    through_cli = cli_config(["-f", str(preset)])
    assert through_notebook.to_dict() == through_cli.to_dict()
    assert through_notebook.run_id() == through_cli.run_id()


@pytest.mark.parametrize("values, argv", [
    ({"dataset": "cifar100"}, ["--dataset", "cifar100"]),
    ({"density": 0.1}, ["--density", "0.1"]),
    ({"seed": 1, "growth": "random"}, ["--seed", "1", "--growth", "random"]),
    ({"num_tasks": 2, "smoke": True}, ["--num_tasks", "2", "--num_classes", "6", "--width", "0.25", "--epochs", "2"]),
    ({"smoke": False}, []),
], ids=["dataset", "density", "two", "smoke-on", "smoke-off"])
def test_p_values_are_the_same_run_in_the_notebook_and_the_cli(values, argv):
    through_notebook, through_cli = notebook_config(values), cli_config(argv)
    assert through_notebook.to_dict() == through_cli.to_dict()
    assert through_notebook.run_id() == through_cli.run_id()


def test_run_all_is_smoke_scale(capsys):
    cfg = notebook_config(None)
    assert (cfg.dataset, cfg.num_tasks, cfg.num_classes, cfg.width, cfg.epochs) == ("split-mnist", 3, 6, 0.25, 2)
    assert capsys.readouterr().out == "smoke scale: num_tasks=3, num_classes=6, width=0.25, epochs=2 " \
                                      "(smoke=False: the dataset's defaults)\n"
    # papermill setting only what is not a setting (where the run goes) keeps the smoke scale
    assert notebook_config({"out_dir": "/tmp/x", "progress": False}).to_dict() == cfg.to_dict()


def test_a_misspelt_parameter_is_an_error():
    with pytest.raises(ConfigError, match=r"^unknown parameter 'densty' \(did you mean 'density'\?\): "
                                          r"papermill --help-notebook lists the notebook's parameters$"):
        notebook_config({"densty": 0.1})


def test_history_outside_papermill():
    params = "a: int = 1\nb: str = 'x'"
    injected = "# Parameters\nb = 'y'\n"
    assert notebook.split_history(["import os", params, injected, "print(a)"]) == (["a", "b"], ["b"])
    # run again after the injected cell (JupyterLab): the parameters cell has reset the values
    assert notebook.split_history([params, injected, params]) == (["a", "b"], [])
    assert notebook.split_history(["import os"]) == (None, [])


@pytest.mark.slow
def test_the_kernel_resolves_a_preset_as_cldst_run_does(tmp_path, capsys):
    """A real kernel runs papermill's prepared notebook up to the config cell: it prints the config and
    run id of `cldst run -f PRESET --dry-run` (the first cells only: nothing is trained)."""
    preset = ROOT / "presets" / "cifar100-5task.yaml"
    prepared = tmp_path / "prepared.ipynb"
    pm.execute_notebook(str(EXPERIMENT), str(prepared), parameters=load_preset(preset), prepare_only=True,
                        progress_bar=False, log_output=False)
    nb = nbformat.read(prepared, as_version=4)
    config_cell = next(i for i, c in enumerate(nb.cells) if "config_from_parameters" in c.source)
    nb.cells = nb.cells[:config_cell + 1]
    NotebookClient(nb, timeout=600, kernel_name=notebook.KERNEL["name"],
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert main(["run", "-f", str(preset), "--dry-run"]) == 0
    dry_run = capsys.readouterr().out
    assert dry_run.startswith(printed) and "smoke" not in printed
    assert f"run id               = {cli_config(['-f', str(preset)]).run_id()}\n" in printed


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


@pytest.mark.slow
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
    assert len(images) == 6  # accuracy matrix, accuracy over time, capacity, layer density, reuse, layer capacity
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"run id               = {metrics['run_id']}" in text
    assert "task 2" in text and "total" in text  # the mask table


@pytest.mark.slow
def test_misspelt_parameter_stops_at_the_first_cell(tmp_path):
    out = tmp_path / "out.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as info:
        execute(EXPERIMENT, out, densty=0.1, out_dir=str(tmp_path / "run"))
    assert info.value.ename == "ConfigError"
    assert info.value.evalue == ("unknown parameter 'densty' (did you mean 'density'?): "
                                 "papermill --help-notebook lists the notebook's parameters")
    code = [c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"]
    first = next(i for i, c in enumerate(code) if "injected-parameters" in c.metadata.get("tags", [])) + 1
    assert [o.traceback for o in code[first].outputs if o.output_type == "error"] == [[
        f"ConfigError: {info.value.evalue}"]]
    assert all(c.execution_count is None for c in code[first + 1:])  # nothing else ran
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
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


@pytest.mark.slow
def test_figures_notebook_makes_every_figure(tmp_path):
    table = tmp_path / "results.csv"
    fake_results().to_csv(table, index=False)
    figures = tmp_path / "figures"
    nb = execute(FIGURES, tmp_path / "figures.ipynb", results_csv=str(table), figures_dir=str(figures))
    names = [*STUDY_FIGURES, "fig5-accuracy-matrix", "fig7-acc-vs-training-flops", "fig8-layer-capacity",
             "fig9-adaptive-acc-vs-cost", "fig10-chosen-per-task", "fig11-methods-acc-vs-flops",
             "fig12-methods-capacity-vs-task"]
    for name in names:
        for ext in ("png", "pdf"):
            assert (figures / f"{name}.{ext}").stat().st_size > 1000, f"{name}.{ext}"
    assert len(list(figures.iterdir())) == 2 * len(names)
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(shown) == len(names)


def test_single_update_frequency_is_said_not_failed():
    fig = update_frequency_effect(fake_results(update_frequencies=(10,), seeds=(0,)))
    assert "one update frequency only (10 steps)" in fig._suptitle.get_text()
