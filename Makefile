# `make` runs the main job (set-up, smoke experiments, notebooks, report); `make test` runs every test.
CONFIG ?= configs/smoke.yaml

.PHONY: all setup test benchmark clean-build
all:
	bash scripts/main.sh $(CONFIG)
setup:
	bash scripts/setup.sh
test:
	bash scripts/test.sh
benchmark:
	.venv/bin/python benchmarks/masking.py
	.venv/bin/python benchmarks/population.py
clean-build:
	rm -rf build
