"""Process settings for entry points: they only touch XLA_FLAGS, and never override the user's."""

import os
import subprocess
import sys

import pytest

from jaxdqn import runtime
from jaxdqn.runtime import FAST_CPU_COMPILE_FLAG, fast_cpu_compile, use_all_cpu_cores


@pytest.fixture
def flags(monkeypatch):
    """A clean XLA_FLAGS, as in an entry point before it imports JAX."""
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("JAX_NUM_CPU_DEVICES", raising=False)
    monkeypatch.delitem(sys.modules, "jax", raising=False)  # restored after the test
    return monkeypatch


def test_use_all_cpu_cores_exposes_one_device_per_usable_core(flags):
    flags.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert use_all_cpu_cores() == 3
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=3"


def test_use_all_cpu_cores_keeps_other_flags_and_a_users_count(flags):
    flags.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    flags.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    assert use_all_cpu_cores() == 2
    assert os.environ["XLA_FLAGS"] == ("--xla_cpu_enable_fast_math=false "
                                       "--xla_force_host_platform_device_count=2")
    flags.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    assert use_all_cpu_cores() == 0
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=1"


def test_one_core_sets_nothing(flags):
    flags.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert use_all_cpu_cores() == 0
    assert "XLA_FLAGS" not in os.environ


def test_importing_jaxdqn_does_not_import_jax():
    # JAX reads XLA_FLAGS at import: entry points rely on setting them after importing jaxdqn.
    # A config needs no JAX either (tests/test_startup.py); the training loop does.
    code = ("import sys, jaxdqn, jaxdqn.runtime; assert 'jax' not in sys.modules; "
            "from jaxdqn import DQNConfig; print(DQNConfig().gamma); "
            "assert 'jax' not in sys.modules; from jaxdqn import make_train; "
            "assert 'jax' in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "0.99", out.stderr[-2000:]


def test_after_jax_is_imported_the_flag_is_refused_loudly(flags):
    _jaxlib(flags, "0.10.2")
    flags.setitem(sys.modules, "jax", sys.modules.get("jax") or object())
    with pytest.warns(RuntimeWarning, match="after JAX was imported"):
        fast_cpu_compile()


def _jaxlib(monkeypatch, version):
    def fake_version(name):
        assert name == "jaxlib"
        return version
    monkeypatch.setattr(runtime.metadata, "version", fake_version)


def test_fast_cpu_compile_sets_the_flag_only_for_a_jaxlib_that_knows_it(flags):
    # XLA aborts the whole process on an unknown flag; jaxlib 0.11 dropped this one.
    _jaxlib(flags, "0.11.2")
    fast_cpu_compile()
    assert "XLA_FLAGS" not in os.environ
    _jaxlib(flags, "0.10.2.dev20260101")
    fast_cpu_compile()
    assert os.environ["XLA_FLAGS"] == FAST_CPU_COMPILE_FLAG


def test_fast_cpu_compile_respects_an_explicit_choice(flags):
    _jaxlib(flags, "0.10.2")
    fast_cpu_compile()
    assert os.environ["XLA_FLAGS"] == FAST_CPU_COMPILE_FLAG
    flags.setenv("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=true")
    fast_cpu_compile()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_use_fusion_emitters=true"


def test_every_export_is_the_object_not_a_same_named_submodule():
    # Importing a submodule sets it as a package attribute; no export may share a submodule's name.
    import importlib
    import inspect
    import pkgutil

    import jaxdqn

    for info in pkgutil.walk_packages(jaxdqn.__path__, "jaxdqn."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    for name in jaxdqn.__all__:
        assert not inspect.ismodule(getattr(jaxdqn, name)), name


def test_compiler_options_turn_the_fusion_emitters_on_for_a_cnn_on_cpu_only(monkeypatch):
    import jax

    from jaxdqn.config import preset

    cnn, mlp = preset("minatar-fast"), preset("cartpole")
    assert runtime.compiler_options(mlp) is None
    monkeypatch.setattr(runtime, "_jaxlib_has_fusion_emitter_flag", lambda: True)
    expected = {"xla_cpu_use_fusion_emitters": True} if jax.default_backend() == "cpu" else None
    assert runtime.compiler_options(cnn) == expected
    monkeypatch.setattr(runtime, "_jaxlib_has_fusion_emitter_flag", lambda: False)
    assert runtime.compiler_options(cnn) is None  # jaxlib 0.11+: no such flag, emitters always on


def test_the_cnn_compiler_option_compiles_and_keeps_the_values():
    """A program compiled with the option computes what the default one does, to float rounding."""
    import jax
    import jax.numpy as jnp

    from jaxdqn.config import preset

    options = runtime.compiler_options(preset("minatar-fast"))
    x = jnp.linspace(0.0, 2.0, 1000, dtype=jnp.float32)
    f = lambda v: jnp.sqrt(v) / (v + 1e-8) - 0.9 * v  # noqa: E731 - Adam-like elementwise ops
    plain, optioned = jax.jit(f)(x), jax.jit(f, compiler_options=options)(x)
    assert jnp.allclose(plain, optioned, rtol=1e-6, atol=0)


@pytest.mark.parametrize("entry", ["make_train_seeds", "make_runs"])
def test_the_training_programs_compile_with_the_configs_compiler_options(monkeypatch, entry):
    """Both builders of a training program pass ``compiler_options(config)`` to XLA: an option
    XLA does not know, put in its place, fails the compile by name."""
    import jax
    import jax.numpy as jnp

    import jaxdqn.runs
    from jaxdqn.config import DQNConfig

    cfg = DQNConfig(total_timesteps=80, buffer_size=80, batch_size=8, learning_starts=10,
                    train_frequency=10, log_interval=40, hidden_sizes=(4,))
    probe = {"xla_jaxdqn_probe_option": True}
    monkeypatch.setattr(jaxdqn.runs, "compiler_options", lambda config: probe)
    keys = jax.random.key_data(jax.random.split(jax.random.key(0), 1))
    if entry == "make_train_seeds":
        # Uncached: the cached builder would keep the probe's program for later callers.
        lowered = jaxdqn.runs._make_train_seeds.__wrapped__(cfg, None, None, None).lower(
            keys, None)
    else:
        batch = jaxdqn.runs.make_runs(cfg, 1, devices=jax.devices()[:1])
        lowered = batch.run.lower(jax.eval_shape(batch.init, jnp.asarray(keys), None), None, 0, 2)
    with pytest.raises(Exception, match="xla_jaxdqn_probe_option"):
        lowered.compile()
