"""What the command line imports before it needs to: ``--help``, ``--version``, ``config`` and
every argument or config error answer without importing JAX or gymnax (about 4 s before; the
figures are in the closing note of issue 21, not here: no speed thresholds in tests)."""

import subprocess
import sys

import pytest

PROBE = """
import contextlib, io, sys
from jaxdqn.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    code = main(sys.argv[1:])
heavy = sorted(m for m in ("jax", "gymnax", "flax", "optax", "matplotlib") if m in sys.modules)
print(code, ",".join(heavy) or "-")
"""


@pytest.mark.parametrize("argv, code", [
    (["--help"], 0), (["--version"], 0), (["train", "--help"], 0), (["sweep", "--help"], 0),
    (["config"], 0), (["config", "--preset", "minatar"], 0),
    (["train", "--seeds", "-3"], 2), (["train", "--set", "gamma=2"], 2),
    (["train", "--set", "nope=1"], 2), (["train", "--env", "Nope-v0"], 2),
    (["suite", "run", "--help"], 0), (["suite", "run", "x", "--game", "Nope", "--variant", "a"], 2),
])
def test_commands_that_do_no_work_import_neither_jax_nor_gymnax(argv, code):
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(code), "-"]


def test_the_env_ids_need_no_env_module():
    from jaxdqn.envs import PROBES, known_env_ids
    from jaxdqn.envs.ids import MAX_BIAS_ENV_IDS, PROBE_IDS

    assert tuple(PROBES) == PROBE_IDS
    assert set(PROBE_IDS + MAX_BIAS_ENV_IDS) <= set(known_env_ids())
