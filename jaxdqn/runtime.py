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
