"""Process-level settings for jaxdqn's entry points (CLI, scripts, tests).

JAX reads ``XLA_FLAGS`` when it is imported, so call these before ``import jax`` (importing
``jaxdqn.runtime`` does not import it). Library code never calls them: importing jaxdqn changes no
global setting.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from importlib import metadata

# XLA:CPU's MLIR fusion emitters take ~1.5x longer to compile jaxdqn's training loop (1.8 s -> 1.2 s
# for preset("cartpole") on a 2-core CPU, jax 0.10.2) for no measurable run-time gain on these
# small kernels. jaxlib 0.11 removed the flag, and XLA aborts the process on a flag it does not
# know.
FAST_CPU_COMPILE_FLAG = "--xla_cpu_use_fusion_emitters=false"
LAST_JAXLIB_WITH_FLAG = (0, 10)
CPU_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
FUSION_EMITTERS_OPTION = "xla_cpu_use_fusion_emitters"


def fast_cpu_compile() -> None:
    """Prefer XLA:CPU's faster-compiling legacy emitters, unless ``XLA_FLAGS`` already says."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_use_fusion_emitters" in flags or not _jaxlib_has_fusion_emitter_flag():
        return
    if "jax" in sys.modules:
        warnings.warn("fast_cpu_compile() called after JAX was imported: the XLA flag it sets "
                      "may not apply", RuntimeWarning, stacklevel=2)
    os.environ["XLA_FLAGS"] = f"{flags} {FAST_CPU_COMPILE_FLAG}".strip()


def compiler_options(config) -> dict[str, bool] | None:
    """XLA options for the one program that trains ``config``: the fusion emitters on for a
    convolutional Q-network on a CPU backend (with a jaxlib that has the flag), else None.

    ``fast_cpu_compile`` turns the emitters off for the whole process, which costs little at run
    time for MLPs but leaves a CNN's elementwise fusions (Adam over 132k parameters, ReLU masks)
    barely vectorised: on Breakout-MinAtar Adam takes 542 us instead of 83 and a gradient step
    with its 4 env steps 1.15 ms instead of 0.91 (docs/benchmarks.md, MinAtar). Passed as
    ``jax.jit(..., compiler_options=...)``, it applies to that program only; compiling it takes
    about 2 s longer. Changes float rounding, so results are deterministic per option, not
    bit-identical across it.
    """
    import jax

    from jaxdqn.networks import network_kind

    if (network_kind(config) != "cnn" or jax.default_backend() != "cpu"
            or not _jaxlib_has_fusion_emitter_flag()):
        return None
    return {FUSION_EMITTERS_OPTION: True}


def _jaxlib_has_fusion_emitter_flag() -> bool:
    """Whether the installed jaxlib's XLA knows ``--xla_cpu_use_fusion_emitters`` (read from the
    package metadata, without importing JAX)."""
    try:
        version = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return False
    parts = re.findall(r"\d+", version)[:2]
    return tuple(int(p) for p in parts) <= LAST_JAXLIB_WITH_FLAG


def use_all_cpu_cores() -> int:
    """Expose each CPU core this process may run on as a JAX CPU device, unless the user set the
    count (``XLA_FLAGS`` or ``JAX_NUM_CPU_DEVICES``); returns the count set, 0 if none was.

    XLA:CPU runs the small kernels of a training loop mostly on one thread, so one device keeps
    one core busy; with a device per core, ``jaxdqn.parallel`` and ``jaxdqn.sweep`` split the
    seeds of a batch across cores. A single run still uses one device, and GPU/TPU devices are
    unaffected. Before JAX is imported this sets ``XLA_FLAGS``; after, ``jax_num_cpu_devices``
    (which works until JAX's first computation).
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags or "JAX_NUM_CPU_DEVICES" in os.environ:
        return 0
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = max(int(count or 1), 1)
    if count == 1:
        return 0
    if "jax" not in sys.modules:
        os.environ["XLA_FLAGS"] = f"{flags} {CPU_DEVICE_COUNT_FLAG}={count}".strip()
        return count
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", count)
    except (RuntimeError, AttributeError) as err:  # backend running already; or an old jax
        warnings.warn(f"use_all_cpu_cores(): {err}", RuntimeWarning, stacklevel=2)
        return 0
    return count


def start_distributed(coordinator: str | None = None, num_processes: int | None = None,
                      process_id: int | None = None, timeout_s: int = 300) -> None:
    """``jax.distributed.initialize`` for a multi-process run: call it in every process before any
    JAX computation. With no arguments JAX detects the cluster (SLURM, Open MPI, ...); otherwise
    give all three. CPU processes need a cross-process collectives implementation (``to_host``
    gathers results with one), so gloo is selected unless one is already set.
    """
    import jax

    if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id,
                               initialization_timeout=timeout_s)
