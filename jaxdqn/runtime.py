"""Process-level settings for jaxdqn's entry points (CLI, scripts, tests)."""

from __future__ import annotations

import os

# XLA:CPU's MLIR fusion emitters take ~2x longer to compile jaxdqn's training loop (3.1 s -> 1.5 s
# measured on a 2-core CPU, jax 0.10.2) for no measurable run-time gain on these small kernels.
FAST_CPU_COMPILE_FLAG = "--xla_cpu_use_fusion_emitters=false"


def fast_cpu_compile() -> None:
    """Prefer XLA:CPU's faster-compiling legacy emitters, unless ``XLA_FLAGS`` already says.

    Must run before JAX initialises its backend (the first computation); entry points call it at
    start-up. Library code never calls it: importing jaxdqn changes no global setting.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_use_fusion_emitters" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {FAST_CPU_COMPILE_FLAG}".strip()


CPU_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def use_all_cpu_cores() -> int:
    """Expose each CPU core this process may run on as a JAX CPU device, unless ``XLA_FLAGS``
    already sets the count; returns the count in effect (0 if ``XLA_FLAGS`` set it).

    XLA:CPU runs the small kernels of a training loop mostly on one thread, so one device keeps
    one core busy; with a device per core, ``jaxdqn.parallel`` and ``jaxdqn.sweep`` split the
    seeds of a batch across cores (1.65x the per-seed throughput of one device at 64 seeds on
    2 cores, docs/benchmarks.md). A single run still uses one device, and GPU/TPU devices are
    unaffected. Must run before JAX initialises its backend, like ``fast_cpu_compile``.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return 0
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = max(int(count or 1), 1)
    if count > 1:
        os.environ["XLA_FLAGS"] = f"{flags} {CPU_DEVICE_COUNT_FLAG}={count}".strip()
    return count
