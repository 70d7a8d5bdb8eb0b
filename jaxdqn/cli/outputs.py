"""Output folders: refusing to overwrite a run or a sweep (whose files ``jaxdqn.run_folder``
names), provenance."""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxdqn.cli.parser import PROG, UserError
from jaxdqn.run_folder import LOGGER_DIRS


def prepare_out(out: str | None, default: str, files: Sequence[str], overwrite: bool) -> Path:
    """Creates the output folder; refuses one that holds any of ``files`` (``RUN_FILES`` or
    ``SWEEP_FILES``) unless ``overwrite``, which removes them and the old run's logger folders
    (``LOGGER_DIRS``); other files stay."""
    path = Path(out if out is not None else default)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {str(path)!r} is a file, not a folder")
    existing = [f for f in files if (path / f).exists()]
    if existing and not overwrite:
        raise UserError(f"{str(path)!r} already holds a run ({', '.join(existing)}); pass "
                        "--overwrite to replace it or choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        for f in existing:
            (path / f).unlink()
        for d in LOGGER_DIRS if overwrite else ():
            if (path / d).is_dir():
                shutil.rmtree(path / d)
    except OSError as e:
        raise UserError(f"cannot prepare output folder {str(path)!r}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"output folder {str(path)!r} is not writable")
    return path


def default_out(prefix: str, env_id: str) -> str:
    return f"runs/{prefix}{env_id}-{time.strftime('%Y%m%d-%H%M%S')}"


def provenance(argv: Sequence[str]) -> dict[str, Any]:
    """Versions, backend, devices, ``XLA_FLAGS`` and the command line, for ``config.json``."""
    import jax
    import jaxlib

    from jaxdqn import __version__

    return {
        "jaxdqn_version": __version__,
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "num_devices": jax.local_device_count(),
        "num_processes": jax.process_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "python": platform.python_version(),
        "command": shlex.join([PROG, *argv]),
    }
