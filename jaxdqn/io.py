"""Files: atomic writes (a reader never sees half a file) and config files (TOML or JSON).

Every file jaxdqn writes goes through ``atomic_write``: the bytes go to a temporary file in the
target's folder, are flushed to disk, and then ``os.replace`` swaps it in, so an interrupted or
crashed write leaves either the old file or the new one, never a truncated mix.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib


class ConfigFileError(ValueError):
    """A config file that cannot be read or does not hold a table of settings."""


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Opens a temporary file next to ``path``; on a clean exit it replaces ``path`` atomically.

    On an exception (including ``KeyboardInterrupt``) the temporary file is removed and ``path`` is
    left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode={mode!r} is invalid: must be 'w' or 'wb'")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        text = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
        with os.fdopen(fd, mode, **text) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Writes ``data`` (bytes, or text as UTF-8) to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``obj`` as indented JSON; NaN and infinities become ``null`` (JSON has neither)."""
    atomic_write(path, json.dumps(_json_safe(obj), indent=2, allow_nan=False) + "\n")


def atomic_write_csv(path: str | os.PathLike, header: Sequence[str],
                     rows: Iterable[Sequence]) -> None:
    """Writes a CSV table with a header row; floats are written with full precision."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in row])
    atomic_write(path, buf.getvalue())


def atomic_save_npz(path: str | os.PathLike, arrays: Mapping[str, Any]) -> None:
    """Saves named arrays as an uncompressed ``.npz`` atomically."""
    import numpy as np

    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def atomic_savefig(fig, path: str | os.PathLike, **kwargs) -> None:
    """Saves a matplotlib figure atomically; the format comes from ``path``'s suffix."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=fmt, **kwargs)


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a TOML (``.toml``) or JSON (any other suffix) file holding one table of settings.

    A run folder's ``config.json`` (settings under ``"config"``, with ``"seeds"`` and ``"seed"``
    beside it) is returned as it is; the caller picks the parts it needs.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigFileError(f"cannot read config file {str(path)!r}: {e.strerror or e}") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise ConfigFileError(f"config file {str(path)!r} is not valid {kind}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"config file {str(path)!r} must hold a table of settings "
                              f"(field = value), not a {type(data).__name__}")
    return data


def _json_safe(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays as Python values and non-finite floats as None."""
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy / jax scalars and arrays
        return _json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
