import os
import shutil
import tempfile

from jaxdqn.runtime import fast_cpu_compile

fast_cpu_compile()  # before the first JAX computation: halves XLA:CPU compile time of the suite

# The tests compare against float64 numpy references; on GPUs JAX's default float32 matmul is
# TF32 (10-bit mantissa), which is ~1e-3 off. On CPU "highest" is what XLA does anyway.
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "device_count: the behaviour depends on how many devices JAX has; .ci/run runs "
        "these again with two forced CPU devices (pytest -m device_count)")
    # Every `jaxdqn` command a test calls builds its jitted functions anew, so a sweep stopped and
    # resumed compiles the same programs again in each call. A compilation cache that lives as long
    # as the session loads them instead: the same executables, compiled once. Set here, not in the
    # environment, so child processes compile for themselves.
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        import jax

        config.xla_cache_dir = tempfile.mkdtemp(prefix="jaxdqn-tests-xla-cache-")
        jax.config.update("jax_compilation_cache_dir", config.xla_cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def pytest_unconfigure(config):
    if getattr(config, "xla_cache_dir", None):
        shutil.rmtree(config.xla_cache_dir, ignore_errors=True)
