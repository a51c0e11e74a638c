# `make` runs the main job (set-up, smoke experiments, notebooks, report); `make test` runs every test.
CONFIG ?= configs/smoke.yaml
# Where the runs train: `make EXECUTOR=ray` (embedded Ray), `make EXECUTOR=ray ADDRESS=head:6379` (a cluster).
EXECUTOR ?= local
ADDRESS ?=

.PHONY: all setup test publish conv2 noise benchmark clean-build
all:
	bash scripts/main.sh $(CONFIG) --executor $(EXECUTOR) $(if $(ADDRESS),--address $(ADDRESS))
setup:
	bash scripts/setup.sh
test:
	bash scripts/test.sh
# Add a run store's finished seeds to docs/<name>/data and render the set from its published data (paper, poster,
# results.csv, experiment.json); `python -m pruning publish docs/<name>` re-renders a published set alone.
publish:
	bash scripts/setup.sh
	.venv/bin/python -m pruning publish $(CONFIG)
# The AlexNet and VGG11 conv2 results sets (about an hour together on 2 CPU cores); a LeNet report rendered after this
# shows their figures beside LeNet's conv1. `make publish CONFIG=configs/alexnet_mnist_cpu.yaml` publishes one.
conv2:
	bash scripts/setup.sh
	.venv/bin/python -m pruning run configs/alexnet_mnist_cpu.yaml
	.venv/bin/python -m pruning run configs/vgg11_mnist_cpu.yaml
# Is a different ticket just numerical noise? The rewound runs of seeds 0 and 1 of the paper CPU config trained again
# through the torch conv path (float rounding apart, the same computation; about 2.3 core-hours here), kept with their
# masks as a replicate that the paper's Q1 compares with this set (issue 20).
noise:
	bash scripts/setup.sh
	PRUNING_KERNELS=torch .venv/bin/python -m pruning run configs/replicates/paper_lenet_mnist_cpu_rewind.yaml \
		--results results/paper_lenet_mnist_cpu_torch_path
	.venv/bin/python -m pruning publish results/paper_lenet_mnist_cpu_torch_path --replicate paper_lenet_mnist_cpu_torch_path
	.venv/bin/python -m pruning publish docs/paper_lenet_mnist_cpu
benchmark:
	.venv/bin/python benchmarks/masking.py
	.venv/bin/python benchmarks/population.py
	.venv/bin/python benchmarks/executors.py
clean-build:
	rm -rf build
