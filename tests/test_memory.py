"""Memory estimates: the buffer's exact size and the refusal (with advice that works) of runs that
will not fit. The estimate against XLA's own figure: tests/test_memory_xla.py."""

import jax
import pytest

import jaxdqn
from jaxdqn import DQNConfig, memory, runs
from jaxdqn.buffer import buffer_bytes, buffer_init
from jaxdqn.envs import env_spec
from jaxdqn.memory import USABLE_FRACTION, check_fits, estimate_memory, free_bytes, transition_bytes


@pytest.mark.parametrize("env_id, buffer_size, expected", [
    # obs f32[4] + action i32 + reward f32 + terminated bool + next_obs f32[4] = 16+4+4+1+16
    ("CartPole-v1", 10_000, 41),
    # obs f32[6]: 24+4+4+1+24
    ("Acrobot-v1", 5_000, 57),
    # obs f32[1]: 4+4+4+1+4
    ("Probe3", 1_000, 17),
])
def test_buffer_is_exactly_capacity_times_transition_bytes(env_id, buffer_size, expected):
    cfg = DQNConfig(env_id=env_id, buffer_size=buffer_size)
    assert transition_bytes(cfg) == expected
    est = estimate_memory(cfg, 1)
    assert est.buffer_bytes == buffer_size * expected
    obs_shape = env_spec(cfg).obs_shape
    assert buffer_bytes(buffer_init(buffer_size, obs_shape)) == buffer_size * expected


def test_estimate_scales_with_runs_per_device_and_seeds_at_once():
    cfg = DQNConfig()
    one = estimate_memory(cfg, 1)
    many = estimate_memory(cfg, 64)
    assert many.device_bytes - one.device_bytes == 63 * (one.run_bytes + one.metrics_bytes)
    split = estimate_memory(cfg, 64, num_devices=4)  # 16 runs per device
    assert split.runs_per_device == 16
    assert split.device_bytes == estimate_memory(cfg, 16).device_bytes
    limited = estimate_memory(cfg, 64, seeds_at_once=8)
    assert limited.concurrent_runs == 8
    assert limited.device_bytes < many.device_bytes / 4


class FakeAccelerator:
    """A device that reports its allocator's limit, as GPUs and TPUs do."""

    platform = "gpu"
    process_index = 0

    def __init__(self, limit, in_use):
        self.stats = {"bytes_limit": limit, "bytes_in_use": in_use}

    def memory_stats(self):
        return self.stats


def test_a_run_that_does_not_fit_is_refused_with_advice_that_works():
    cfg = DQNConfig()
    est = estimate_memory(cfg, 4096)
    results = est.runs_per_device * est.output_bytes * 2
    # Exactly 1000 runs fit at once in what is free.
    free = (1000 * est.run_bytes + results + memory.FIXED_BYTES) / USABLE_FRACTION + 1
    device = FakeAccelerator(limit=int(free) + 10**9, in_use=10**9)
    with pytest.raises(ValueError) as err:
        check_fits(cfg, 4096, devices=[device])
    message = str(err.value)
    for part in ("4096 runs need about", "per device", "seeds_at_once=1000",
                 "replay buffer 400.4 KiB each", "gpu device memory is free per device"):
        assert part in message, (part, message)
    check_fits(cfg, 4096, devices=[device], seeds_at_once=1000)  # the advice fits
    with pytest.raises(ValueError):
        check_fits(cfg, 4096, devices=[device], seeds_at_once=1001)
    # Two such devices hold 2048 runs each; the busiest device decides.
    small = FakeAccelerator(limit=int(free) // 2 + 10**9, in_use=10**9)
    with pytest.raises(ValueError, match="on 2 gpu devices"):
        check_fits(cfg, 4096, devices=[device, small])


def test_not_even_one_run_fitting_says_so():
    with pytest.raises(ValueError, match="not even one run fits"):
        check_fits(DQNConfig(), 8, devices=[FakeAccelerator(limit=10**6, in_use=0)])


def test_train_seeds_refuses_before_compiling(monkeypatch):
    def no_compiling(*args, **kwargs):
        raise AssertionError("train_seeds compiled a run that does not fit")

    monkeypatch.setattr(runs, "make_train_seeds", no_compiling)
    monkeypatch.setattr(memory, "free_bytes", lambda devices: (10**6, "test memory"))
    with pytest.raises(ValueError, match=r"only 976\.6 KiB of test memory is free"):
        runs.train_seeds(DQNConfig(), jax.random.split(jax.random.key(0), 64))


def test_cpu_devices_share_the_host_memory():
    free, where = free_bytes(jax.devices("cpu"))
    assert where == "available host memory" and free > 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_seeds=0), "num_seeds=0"),
    (dict(num_seeds=4, num_devices=0), "num_devices=0"),
    (dict(num_seeds=4, seeds_at_once=0), "seeds_at_once=0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        estimate_memory(jaxdqn.DQNConfig(), **kwargs)
