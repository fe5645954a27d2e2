# make test: create .venv if missing, install, run the whole test suite (unit tests + nbval).
# make test-fast: the same, less the tests marked slow (papermill, submitit, subprocesses, > 5 s)
#            and the notebooks (nbval): under 1.5 min on 2 cores.
# make demo: run the offline demo study (Split-MNIST grid); its runs, table and figures go to
#            sweeps/demo-split-mnist/ (not committed): it changes no tracked file.
# make baselines, make protocol-ablation, make study-real, make adaptive-study, make methods-study:
#            the other studies, the same way, each into its own sweeps/<grid>/ folder (docs/baselines.md,
#            docs/protocols-and-parity.md, docs/real-images.md, docs/adaptive-study.md,
#            docs/methods-study.md).
# make demo-refresh, baselines-refresh, protocol-ablation-refresh, study-real-refresh,
#            adaptive-study-refresh, methods-study-refresh (maintainers):
#            the study, then its committed table and figures under figures/ (and, where a notebook
#            shows them, its checked outputs) rewritten from it; commit the changes they leave.
# make lab:  JupyterLab on notebooks/, with the project's kernel (cldst).
#
# Variables (make VAR=value ...):
#   PYTHON  the interpreter that creates .venv (default python3)
#   VENV    the environment to install into and run from (default .venv). An existing one is used as
#           it is: `make test VENV=$CONDA_PREFIX` runs the tests in the active conda environment, with
#           no second install of torch (torch is installed only where it cannot be imported).
#   TORCH   cpu: CPU-only torch and torchvision wheels from download.pytorch.org (about 1 GB less to
#           download, no CUDA libraries), for laptops and CI; empty (default): PyPI's, with CUDA on Linux.
#           It only matters where torch is not installed yet (a new .venv: make clean first).
PYTHON ?= python3
VENV ?= .venv
TORCH ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERNEL := cldst
KERNELSPEC := $(VENV)/share/jupyter/kernels/$(KERNEL)/kernel.json
TORCH_INDEX_cpu := --index-url https://download.pytorch.org/whl/cpu
TORCH_INDEX := $(TORCH_INDEX_$(TORCH))

.PHONY: test demo baselines protocol-ablation study-real notebooks install lab clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# torch and torchvision are installed together, so that they match, and only where torch is missing.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -c "import torch, torchvision" 2>/dev/null || \
		$(BIN)/python -m pip install $(TORCH_INDEX) torch torchvision
	$(BIN)/python -m pip install -e ".[dev,lab]"
	$(BIN)/python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

# The Jupyter kernel the notebooks name: papermill, nbval and JupyterLab start it (this environment's Python).
$(KERNELSPEC): $(STAMP)
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python ($(KERNEL))"

install: $(STAMP) $(KERNELSPEC)

test: install
	$(BIN)/pytest

# tests/ only, without nbval (addopts replaced: it turns nbval on) and without @pytest.mark.slow.
.PHONY: test-fast
test-fast: install
	$(BIN)/pytest -o addopts=-q -p no:nbval -m "not slow" tests

# The study targets write only under sweeps/ (not committed); each *-refresh target, for maintainers,
# runs its study and then rewrites the committed table and figures (and notebooks' checked outputs).
.PHONY: demo-refresh baselines-refresh protocol-ablation-refresh study-real-refresh adaptive-study adaptive-study-refresh \
	methods-study methods-study-refresh

# figures.ipynb draws the adaptive and methods studies from their committed tables by default; a
# target about another study leaves them out.
ONLY_STUDY := -p adaptive_csv None -p methods_csv None

# The demo grid's 54 smoke-scale runs, 2 at a time (one core each), then their table and figures in
# the sweep's folder (results.csv, figures/, figures.ipynb): about 14 min on 2 cores.
DEMO := sweeps/demo-split-mnist
DEMO_TABLE := figures/demo-split-mnist/results.csv
JOBS ?= 2
demo: install
	$(BIN)/cldst sweep grids/demo-split-mnist.yaml --jobs $(JOBS)
	$(BIN)/cldst results $(DEMO) --out $(DEMO)/results.csv
	$(BIN)/papermill notebooks/figures.ipynb $(DEMO)/figures.ipynb --log-level WARNING \
		-p results_csv $(DEMO)/results.csv -p figures_dir $(DEMO)/figures $(ONLY_STUDY)

# Maintainers: the demo, then the committed table (figures/demo-split-mnist/), the figures in
# figures/, and figures.ipynb's checked outputs refreshed from the new table.
demo-refresh: demo
	$(BIN)/cldst results $(DEMO) --out $(DEMO_TABLE)
	$(BIN)/papermill notebooks/figures.ipynb $(DEMO)/figures.ipynb --log-level WARNING \
		-p results_csv $(DEMO_TABLE) -p figures_dir figures $(ONLY_STUDY)
	$(BIN)/python tools/refresh_notebooks.py notebooks/figures.ipynb

# The study on real images (data/tiny-imagenet-200/ and data/CIFAR-10-images/ or CIFAR-10's pickles,
# see data/README.md): 32 Tiny ImageNet runs, about an hour on 2 cores, their table and figures in
# the sweep's folder (no baselines figures: those are Split-MNIST's); then one Split CIFAR-10 run at
# the same scale (a few minutes), in runs/study-split-cifar10/.
STUDY := sweeps/study-tinyimagenet-cpu
STUDY_DIR := figures/study-tinyimagenet-cpu
study-real: install
	$(BIN)/cldst sweep grids/study-tinyimagenet-cpu.yaml --jobs $(JOBS)
	$(BIN)/cldst results $(STUDY) --out $(STUDY)/results.csv
	$(BIN)/papermill notebooks/figures.ipynb $(STUDY)/figures.ipynb --log-level WARNING \
		-p results_csv $(STUDY)/results.csv -p figures_dir $(STUDY)/figures -p baselines_csv None $(ONLY_STUDY)
	$(BIN)/cldst run -f presets/split-cifar10.yaml --width 0.25 --epochs 2 --batch_size 32 \
		--update_frequency 20 --out runs/study-split-cifar10 --resume

# Maintainers: the study, then its committed table and figures in figures/study-tinyimagenet-cpu/.
study-real-refresh: study-real
	$(BIN)/cldst results $(STUDY) --out $(STUDY_DIR)/results.csv
	$(BIN)/papermill notebooks/figures.ipynb $(STUDY)/figures.ipynb --log-level WARNING \
		-p results_csv $(STUDY_DIR)/results.csv -p figures_dir $(STUDY_DIR) -p baselines_csv None $(ONLY_STUDY)

# Adaptive DST against fixed choices (docs/adaptive-study.md; the Tiny ImageNet data as for
# study-real): 48 runs, 100 minutes on 2 cores; the comparison and figures 9 and 10 in the sweep's folder.
ADAPTIVE := sweeps/adaptive-tinyimagenet-cpu
ADAPTIVE_TABLE := figures/adaptive-tinyimagenet-cpu/results.csv
adaptive-study: install
	$(BIN)/cldst sweep grids/adaptive-tinyimagenet-cpu.yaml --jobs $(JOBS)
	$(BIN)/cldst results $(ADAPTIVE) --out $(ADAPTIVE)/results.csv
	$(BIN)/papermill notebooks/figures.ipynb $(ADAPTIVE)/figures.ipynb --log-level WARNING -p results_csv None \
		-p baselines_csv None -p adaptive_csv $(ADAPTIVE)/results.csv -p figures_dir $(ADAPTIVE)/figures -p methods_csv None

# Maintainers: the study, then its committed table, figures 9 and 10 in figures/adaptive-tinyimagenet-cpu/,
# and figures.ipynb's checked outputs refreshed (its default adaptive table is the committed one).
adaptive-study-refresh: adaptive-study
	$(BIN)/cldst results $(ADAPTIVE) --out $(ADAPTIVE_TABLE)
	$(BIN)/papermill notebooks/figures.ipynb $(ADAPTIVE)/figures.ipynb --log-level WARNING -p results_csv None \
		-p baselines_csv None -p adaptive_csv $(ADAPTIVE_TABLE) -p figures_dir $(dir $(ADAPTIVE_TABLE)) -p methods_csv None
	$(BIN)/python tools/refresh_notebooks.py notebooks/figures.ipynb

# DST beside PackNet, SupSup and WSN (docs/methods-study.md; Tiny ImageNet as for study-real, and
# CIFAR-10 as data/README.md says): 60 runs, about 100 minutes on 2 cores; the comparison and
# figures 11 and 12 in sweeps/methods-cpu/.
METHODS := sweeps/methods-cpu
METHODS_TABLE := figures/methods-cpu/results.csv
methods-study: install
	$(BIN)/cldst sweep grids/methods-tinyimagenet-cpu.yaml --jobs $(JOBS)
	$(BIN)/cldst sweep grids/methods-cifar10-cpu.yaml --jobs $(JOBS)
	$(BIN)/cldst results $(METHODS) --out $(METHODS)/results.csv
	$(BIN)/papermill notebooks/figures.ipynb $(METHODS)/figures.ipynb --log-level WARNING -p results_csv None \
		-p baselines_csv None -p adaptive_csv None -p methods_csv $(METHODS)/results.csv -p figures_dir $(METHODS)/figures

# Maintainers: the study, then its committed table, figures 11 and 12 in figures/methods-cpu/, and
# figures.ipynb's checked outputs refreshed (its default methods table is the committed one).
methods-study-refresh: methods-study
	$(BIN)/cldst results $(METHODS) --out $(METHODS_TABLE)
	$(BIN)/papermill notebooks/figures.ipynb $(METHODS)/figures.ipynb --log-level WARNING -p results_csv None \
		-p baselines_csv None -p adaptive_csv None -p methods_csv $(METHODS_TABLE) -p figures_dir $(dir $(METHODS_TABLE))
	$(BIN)/python tools/refresh_notebooks.py notebooks/figures.ipynb

# The baselines grid (static, the four growth rules, no reuse, fine-tuning, dense isolated; 45 runs,
# about 10 min on 2 cores), its table and figures 7 and 8 (figures.ipynb, beside the committed demo
# table's 1-6) in the sweep's folder.
BASELINES := sweeps/baselines-split-mnist
BASELINES_TABLE := figures/baselines-split-mnist/results.csv
baselines: install
	$(BIN)/cldst sweep grids/baselines-split-mnist.yaml --jobs $(JOBS)
	$(BIN)/cldst results $(BASELINES) --out $(BASELINES)/results.csv
	$(BIN)/papermill notebooks/figures.ipynb $(BASELINES)/figures.ipynb --log-level WARNING \
		-p results_csv $(DEMO_TABLE) -p baselines_csv $(BASELINES)/results.csv -p figures_dir $(BASELINES)/figures $(ONLY_STUDY)

# Maintainers: the baselines, then the committed table (figures/baselines-split-mnist/), the figures
# in figures/, and figures.ipynb's checked outputs refreshed from it.
baselines-refresh: baselines
	$(BIN)/cldst results $(BASELINES) --out $(BASELINES_TABLE)
	$(BIN)/papermill notebooks/figures.ipynb $(BASELINES)/figures.ipynb --log-level WARNING \
		-p results_csv $(DEMO_TABLE) -p baselines_csv $(BASELINES_TABLE) -p figures_dir figures $(ONLY_STUDY)
	$(BIN)/python tools/refresh_notebooks.py notebooks/figures.ipynb

# What each reference-protocol quirk costs (180 Split-MNIST runs, about 35 min on 2 cores): the
# table and protocols.ipynb's figure in the sweep's folder.
ABLATION := sweeps/protocol-ablation
ABLATION_TABLE := figures/protocol-ablation/results.csv
protocol-ablation: install
	$(BIN)/cldst sweep grids/protocol-ablation.yaml --jobs $(JOBS)
	$(BIN)/cldst results $(ABLATION) --out $(ABLATION)/results.csv
	$(BIN)/papermill notebooks/protocols.ipynb $(ABLATION)/protocols.ipynb --log-level WARNING \
		-p ablation_csv $(ABLATION)/results.csv -p figures_dir $(ABLATION)/figures

# Maintainers: the ablation, then the committed table and figure (figures/protocol-ablation/) and
# protocols.ipynb's checked outputs refreshed from it.
protocol-ablation-refresh: protocol-ablation
	$(BIN)/cldst results $(ABLATION) --out $(ABLATION_TABLE)
	$(BIN)/papermill notebooks/protocols.ipynb $(ABLATION)/protocols.ipynb --log-level WARNING \
		-p ablation_csv $(ABLATION_TABLE) -p figures_dir figures/protocol-ablation
	$(BIN)/python tools/refresh_notebooks.py notebooks/protocols.ipynb

lab: install
	$(BIN)/jupyter lab notebooks/

# Re-execute the committed notebooks and strip volatile metadata (after changing checked outputs).
notebooks: install
	$(BIN)/python tools/refresh_notebooks.py

# Removes the default .venv only, never an environment named with VENV=.
clean:
	rm -rf .venv .pytest_cache
