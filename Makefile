# make test: create .venv if missing, install, run the whole test suite (unit tests + nbval).
# make demo: run the offline demo study (Split-MNIST grid) into sweeps/, its figures into figures/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo notebooks install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch and torchvision are installed together from the registry so that they match.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch torchvision
	$(BIN)/pip install -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3  # the kernel papermill and nbval start
	$(BIN)/python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest

# 32 smoke-scale runs, 2 at a time (one core each), then the table and the figures: about 8 min on 2 cores.
DEMO := sweeps/demo-split-mnist
JOBS ?= 2
demo: $(STAMP)
	$(BIN)/cldst sweep grids/demo-split-mnist.yaml --jobs $(JOBS)
	$(BIN)/cldst results $(DEMO)
	$(BIN)/papermill notebooks/figures.ipynb $(DEMO)/figures.ipynb --log-level WARNING \
		-p results_csv $(DEMO)/results.csv -p figures_dir figures -p run_dir best

# Re-execute the committed notebooks and strip volatile metadata (after changing checked outputs).
notebooks: $(STAMP)
	$(BIN)/python tools/refresh_notebooks.py

clean:
	rm -rf $(VENV) .pytest_cache
