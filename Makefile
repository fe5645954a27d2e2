# make test: create .venv if missing, install, run the whole test suite (unit tests + nbval).
# make demo: run the offline default study (Split-MNIST) into runs/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch and torchvision are installed together from the registry so that they match.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch torchvision
	$(BIN)/pip install -e ".[dev]"
	$(BIN)/python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/cldst run --dataset split-mnist --num_tasks 5 --num_classes 10 --num_classes_per_task 2 \
		--sparse_init ERK --growth gradient --density 0.2 --epochs 3 --update_frequency 10 \
		--out runs/demo --resume

clean:
	rm -rf $(VENV) .pytest_cache
