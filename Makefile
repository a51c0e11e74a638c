# `make` runs the main job (set-up, smoke experiments, notebooks, report); `make test` runs every test.
CONFIG ?= configs/smoke.yaml
# Where the runs train: `make EXECUTOR=ray` (embedded Ray), `make EXECUTOR=ray ADDRESS=head:6379` (a cluster).
EXECUTOR ?= local
ADDRESS ?=

.PHONY: all setup test publish benchmark clean-build
all:
	bash scripts/main.sh $(CONFIG) --executor $(EXECUTOR) $(if $(ADDRESS),--address $(ADDRESS))
setup:
	bash scripts/setup.sh
test:
	bash scripts/test.sh
# Re-render a results set from its run store and publish it to docs/ (paper, poster, results.csv, experiment.json).
publish:
	bash scripts/setup.sh
	.venv/bin/python -m pruning publish $(CONFIG)
benchmark:
	.venv/bin/python benchmarks/masking.py
	.venv/bin/python benchmarks/population.py
	.venv/bin/python benchmarks/executors.py
clean-build:
	rm -rf build
