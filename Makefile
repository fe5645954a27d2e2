# make test: create .venv if missing, install, run the whole test suite (unit tests + nbval).
# make demo: run the offline demo study (Split-MNIST grid) into sweeps/, its figures into figures/.
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

# The demo grid's 54 smoke-scale runs, 2 at a time (one core each), then the table (committed, in
# figures/demo-split-mnist/), the figures, and figures.ipynb's checked outputs refreshed from the new
# table: about 14 min on 2 cores.
DEMO := sweeps/demo-split-mnist
DEMO_TABLE := figures/demo-split-mnist/results.csv
JOBS ?= 2
demo: install
	$(BIN)/cldst sweep grids/demo-split-mnist.yaml --jobs $(JOBS)
	$(BIN)/cldst results $(DEMO) --out $(DEMO_TABLE)
	$(BIN)/papermill notebooks/figures.ipynb $(DEMO)/figures.ipynb --log-level WARNING \
		-p results_csv $(DEMO_TABLE) -p figures_dir figures
	$(BIN)/python tools/refresh_notebooks.py notebooks/figures.ipynb

# The study on real images (data/tiny-imagenet-200/ and data/CIFAR-10-images/ or CIFAR-10's pickles,
# see data/README.md): 32 Tiny ImageNet runs, about an hour on 2 cores, their table and figures in
# figures/study-tinyimagenet-cpu/; then one Split CIFAR-10 run at the same scale (a few minutes).
STUDY := sweeps/study-tinyimagenet-cpu
STUDY_DIR := figures/study-tinyimagenet-cpu
study-real: install
	$(BIN)/cldst sweep grids/study-tinyimagenet-cpu.yaml --jobs $(JOBS)
	$(BIN)/cldst results $(STUDY) --out $(STUDY_DIR)/results.csv
	$(BIN)/papermill notebooks/figures.ipynb $(STUDY)/figures.ipynb --log-level WARNING \
		-p results_csv $(STUDY_DIR)/results.csv -p figures_dir $(STUDY_DIR)
	$(BIN)/cldst run -f presets/split-cifar10.yaml --width 0.25 --epochs 2 --batch_size 32 \
		--update_frequency 20 --out runs/study-split-cifar10 --resume

# The baselines grid (static, the four growth rules, no reuse, fine-tuning, dense isolated; 45 runs,
# about 10 min on 2 cores), its table (committed) and figures 7 and 8 (figures.ipynb).
BASELINES := sweeps/baselines-split-mnist
BASELINES_TABLE := figures/baselines-split-mnist/results.csv
baselines: install
	$(BIN)/cldst sweep grids/baselines-split-mnist.yaml --jobs $(JOBS)
	$(BIN)/cldst results $(BASELINES) --out $(BASELINES_TABLE)
	$(BIN)/papermill notebooks/figures.ipynb $(BASELINES)/figures.ipynb --log-level WARNING \
		-p results_csv $(DEMO_TABLE) -p baselines_csv $(BASELINES_TABLE) -p figures_dir figures
	$(BIN)/python tools/refresh_notebooks.py notebooks/figures.ipynb

# What each reference-protocol quirk costs (120 Split-MNIST runs, about 40 min on 2 cores): the
# table (committed) and protocols.ipynb's figure and checked outputs refreshed from it.
ABLATION := sweeps/protocol-ablation
ABLATION_TABLE := figures/protocol-ablation/results.csv
protocol-ablation: install
	$(BIN)/cldst sweep grids/protocol-ablation.yaml --jobs $(JOBS)
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
