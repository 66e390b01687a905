# The two commands of the README: `make demo` and `make test`. Both build the environment first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
DEMO_OUT ?= demo_out
STAMP := $(VENV)/.radfuse-installed

# The papers' protocols on demo cohorts shaped for them (docs/papers.md). Pretrained weights are local files:
# RADFUSE_WEIGHTS_DIR/<backbone>_<arch>.<ext> (conf/backbone/*.yaml); without them the CNNs train from scratch.
LIU_OUT ?= liu2025_out
LIU_EPOCHS ?= 8
LIU_FOLDS ?= 5
WANG_OUT ?= wang2025_out
WANG_EPOCHS ?= 6
WANG_MARGINS ?= 0 2 4 6 8 10
WANG_LAYER ?= stage3
RADFUSE_WEIGHTS_DIR ?= weights
export RADFUSE_WEIGHTS_DIR

.PHONY: env demo liu2025 wang2025 test test-slow bench clean

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

# Liu 2025: RadImageNet vs ImageNet ResNet-50 (both cross-fitted), each fused with radiomics, paired DeLong in the
# report (the paper's Table 3). Without both weights files: one ResNet-50 from scratch, said so. LIU_FOLDS: the CV
# folds (one CNN each; the paper's 5).
liu2025: env
	$(BIN)/python -m radfuse.stages.prepare experiment=liu2025 data.split.n_folds=$(LIU_FOLDS) paths.out=$(LIU_OUT)
	@if [ -f "$(RADFUSE_WEIGHTS_DIR)/radimagenet_resnet50.pt" ] && [ -f "$(RADFUSE_WEIGHTS_DIR)/imagenet_resnet50.pth" ]; \
	then backbones="radimagenet imagenet"; else backbones=scratch; \
	  echo "[radfuse] no $(RADFUSE_WEIGHTS_DIR)/radimagenet_resnet50.pt and imagenet_resnet50.pth: the ResNet-50 trains" \
	       "from scratch (put both files there, or set RADFUSE_WEIGHTS_DIR, for the paper's comparison)"; fi; \
	for b in $$backbones; do \
	  $(BIN)/python train.py -m experiment=liu2025 backbone=$$b data.split.n_folds=$(LIU_FOLDS) \
	    "data.fold=$$(seq -s, 0 $$(($(LIU_FOLDS) - 1)))" "run=$${b}_cv\$${data.fold}" \
	    paths.out=$(LIU_OUT) trainer.max_epochs=$(LIU_EPOCHS) trainer.enable_progress_bar=false || exit 1; \
	  $(BIN)/python extract.py experiment=liu2025 run=$$b extract.workers=2 extract.deep.source=null \
	    extract.deep.crossfit.train_runs=$${b}_cv data.split.n_folds=$(LIU_FOLDS) paths.out=$(LIU_OUT) || exit 1; \
	done; \
	if [ "$$backbones" = scratch ]; then $(BIN)/python fuse.py experiment=liu2025 extract_run=scratch run=liu2025 \
	  report.train_run=null data.split.n_folds=$(LIU_FOLDS) paths.out=$(LIU_OUT); \
	else $(BIN)/python fuse.py experiment=liu2025 extract_run=radimagenet run=liu2025 report.train_run=null \
	  data.split.n_folds=$(LIU_FOLDS) paths.out=$(LIU_OUT) \
	  "+tables.deep_imagenet=$(LIU_OUT)/extract/imagenet/deep_crossfit.parquet" \
	  +block@blocks.deep_imagenet=deep_scores "+feature_sets.deep_imagenet=[deep_imagenet]" \
	  "+feature_sets.fused_imagenet=[rad,deep_imagenet]"; fi

# Wang 2025: one 3D ShuffleNet per ROI margin (0-10 voxels), embeddings of each (the paper's single-CNN protocol),
# LASSO + logistic regression per margin beside radiomics, all margins compared in one report (DeLong, DCA).
wang2025: env
	$(BIN)/python -m radfuse.stages.prepare experiment=wang2025 paths.out=$(WANG_OUT)
	$(BIN)/python train.py -m experiment=wang2025 backbone=scratch "data.margin=$$(echo $(WANG_MARGINS) | tr ' ' ,)" \
	  'run=margin$${data.margin}' paths.out=$(WANG_OUT) trainer.max_epochs=$(WANG_EPOCHS) trainer.enable_progress_bar=false
	for m in $(WANG_MARGINS); do \
	  $(BIN)/python extract.py experiment=wang2025 run=margin$$m extract.workers=2 extract.deep.train_run=margin$$m \
	    extract.deep.layer=$(WANG_LAYER) paths.out=$(WANG_OUT) || exit 1; \
	done
	sets="rad:[rad]"; blocks=""; for m in $(WANG_MARGINS); do sets="$$sets,margin_$$m:[deep_m$$m]"; \
	  blocks="$$blocks +tables.deep_m$$m=$(WANG_OUT)/extract/margin$$m/deep_$(WANG_LAYER).parquet \
	    +block@blocks.deep_m$$m=deep blocks.deep_m$$m.pca=null"; done; \
	$(BIN)/python fuse.py experiment=wang2025 run=wang2025 extract_run=margin0 deep_features=embeddings \
	  deep_layer=$(WANG_LAYER) report.train_run=margin0 paths.out=$(WANG_OUT) $$blocks \
	  '~feature_sets' "+feature_sets={$$sets}"

test: env
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --timeout 900

test-slow: env
	$(BIN)/python -m pytest -q -m slow --timeout 1800

clean:
	rm -rf $(VENV) $(DEMO_OUT) $(LIU_OUT) $(WANG_OUT) outputs multirun
