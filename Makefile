# The two commands of the README: `make demo` and `make test`. Both build the environment first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
DEMO_OUT ?= demo_out
STAMP := $(VENV)/.radfuse-installed

.PHONY: env demo test test-slow bench clean

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	# torch first, pinned: an unpinned torch would pull several GB of CUDA wheels on a CPU-only machine.
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

# The main job on the built-in demo cohort; every stage prints what it is doing.
demo: env
	$(BIN)/python -m radfuse.stages.prepare paths.out=$(DEMO_OUT)
	$(BIN)/python train.py experiment=demo run=demo paths.out=$(DEMO_OUT) trainer.enable_progress_bar=false
	# cross-fitting: one CNN per CV fold, trained without that fold; fuse fits on their out-of-fold scores
	$(BIN)/python train.py -m experiment=demo data.fold=0,1,2,3,4 'run=demo_fold$${data.fold}' paths.out=$(DEMO_OUT) \
		trainer.enable_progress_bar=false
	$(BIN)/python extract.py radiomics=liu2025 extract.workers=2 extract.deep.train_run=demo \
		extract.deep.crossfit.train_runs=demo_fold paths.out=$(DEMO_OUT)
	$(BIN)/python fuse.py report.train_run=demo paths.out=$(DEMO_OUT)

test: env
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --timeout 900

test-slow: env
	$(BIN)/python -m pytest -q -m slow --timeout 1800

clean:
	rm -rf $(VENV) $(DEMO_OUT) outputs multirun
