"""The measurement harness behind docs/benchmarks.md: run from a checkout, not part of the installed package.

``python -m benchmarks.bench`` (ours vs timm's DLA), ``python -m benchmarks.bench_dcn`` (deformable conv
implementations), ``python -m benchmarks.gpu_check`` (every CUDA path in one run); ``measure`` is the one harness
they share.
"""
