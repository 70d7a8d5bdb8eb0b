import os

from jaxdqn.runtime import fast_cpu_compile

fast_cpu_compile()  # before the first JAX computation: halves XLA:CPU compile time of the suite

# The tests compare against float64 numpy references; on GPUs JAX's default float32 matmul is
# TF32 (10-bit mantissa), which is ~1e-3 off. On CPU "highest" is what XLA does anyway.
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "device_count: the behaviour depends on how many devices JAX has; .ci/run runs "
        "these again with two forced CPU devices (pytest -m device_count)")
