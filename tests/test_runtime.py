"""Process settings for entry points: they only touch XLA_FLAGS, and never override the user's."""

import os

import pytest

from jaxdqn.runtime import FAST_CPU_COMPILE_FLAG, fast_cpu_compile, use_all_cpu_cores


@pytest.fixture
def flags(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
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
    assert use_all_cpu_cores() == 1
    assert "XLA_FLAGS" not in os.environ


def test_fast_cpu_compile_respects_an_explicit_choice(flags):
    fast_cpu_compile()
    assert os.environ["XLA_FLAGS"] == FAST_CPU_COMPILE_FLAG
    flags.setenv("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=true")
    fast_cpu_compile()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_use_fusion_emitters=true"
