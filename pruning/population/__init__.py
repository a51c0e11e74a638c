"""The population trainer's maths: one batched SGD step for many LeNets at once (``batched``), its conv
paths (``lenet_convs``) and fused C++ kernels (``kernels``, C++ in ``kernels/``). Imports ``core`` and ``nets``."""
