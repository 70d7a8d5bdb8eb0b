"""Seeds across devices and in rounds (seeds_at_once): ``train_seeds`` equals
``jit(vmap(train))`` run by run.

The two-device checks run in a child process, because ``XLA_FLAGS`` must force the CPU device
count before JAX starts and this process has already started it with one device.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn import DQNConfig, HParams, make_train
from jaxdqn.parallel import pad_runs, seed_mesh, shard_runs, sharded_vmap, split_on_axis
from jaxdqn.runs import even_round_size, hparams_axes, run_devices, train_seeds

# A short CartPole run that learns (about 400 gradient steps), with the default network.
# (XLA:CPU picks matmul kernels by size; with tiny layers the kernel, and so the last bits, can
# depend on how many runs share a batch: see docs/benchmarks.md.)
SMALL = dict(total_timesteps=2000, buffer_size=1000, learning_starts=256, batch_size=32,
             train_frequency=4, num_envs=4, target_update_freq=200, log_interval=400)


def _assert_trees_equal(actual, expected, what):
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(expected)]
    for path, a, e in zip(paths, jax.tree.leaves(actual), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(e), err_msg=f"{what}: {path}")


def test_seeds_at_once_equals_plain_vmap_bit_for_bit():
    """5 runs at most 2 at a time (padded to 3 rounds of 2), one learning rate per run and the
    other hparams shared: every leaf equals the plain vmapped program's."""
    cfg = DQNConfig(**SMALL)
    keys = jax.random.split(jax.random.key(3), 5)
    lr = jnp.array([1e-3, 2e-3, 3e-3, 4e-3, 5e-3], jnp.float32)
    hp = HParams.from_config(cfg)._replace(learning_rate=lr)
    axes = HParams(0, *(None,) * (len(HParams._fields) - 1))
    expected = jax.jit(jax.vmap(make_train(cfg), in_axes=(0, axes)))(keys, hp)
    one = jax.devices()[:1]  # rounds on one device: bit for bit (across devices: rounding)
    out = train_seeds(cfg, keys, hp, seeds_at_once=2, devices=one)
    assert out.metrics.env_steps.shape == (5, cfg.num_log_rows)
    _assert_trees_equal(out, expected, "train_seeds in rounds vs jit(vmap(train))")
    # The learning rates really were used per run: final params differ between runs.
    kernels = np.asarray(out.params["params"]["Dense_0"]["kernel"])
    assert not np.allclose(kernels[0], kernels[4])
    # Legacy uint32 keys name the same runs as typed keys (same compiled program, no recompile).
    legacy = train_seeds(cfg, jax.random.key_data(keys), hp, seeds_at_once=2, devices=one)
    _assert_trees_equal(legacy, expected, "legacy uint32 keys vs typed keys")


@pytest.mark.device_count
def test_one_run_is_the_unbatched_program():
    """A batch of one skips vmap (faster to compile) and equals ``jit(train)(key)`` bit for bit."""
    cfg = DQNConfig(**SMALL)
    key = jax.random.key(9)
    out = train_seeds(cfg, key[None])
    assert out.metrics.env_steps.shape == (1, cfg.num_log_rows)
    expected = jax.tree.map(lambda x: x[None], jax.jit(make_train(cfg))(key))
    _assert_trees_equal(out, expected, "train_seeds(one key) vs jit(train)")


def test_run_devices_uses_every_device_but_not_more_than_the_runs():
    devices = ["d0", "d1", "d2", "d3"]  # only counted and sliced
    assert [len(run_devices(n, devices)) for n in (1, 2, 3, 4, 6, 8, 9, 12)] == \
        [1, 2, 3, 4, 4, 4, 4, 4]
    assert run_devices(6, devices) == devices
    assert run_devices(5, devices[:2]) == ["d0", "d1"]


def test_split_on_axis_with_one_device_is_the_function_itself():
    def f(x):
        return x * 2

    assert split_on_axis(f, jax.devices()[:1], 0, 0) is f


def test_even_round_size_and_padding():
    assert [even_round_size(n, 16) for n in (1, 16, 17, 100, 112)] == [1, 16, 9, 15, 16]
    assert even_round_size(64, 8) == 8 and even_round_size(5, 2) == 2 and even_round_size(3, 1) == 1
    tree = {"a": jnp.arange(5), "b": jnp.arange(10).reshape(5, 2)}
    padded, n = pad_runs(tree, 4)
    assert n == 5
    np.testing.assert_array_equal(padded["a"], [0, 1, 2, 3, 4, 4, 4, 4])
    np.testing.assert_array_equal(padded["b"][-1], [8, 9])
    same, n = pad_runs(tree, 5)
    assert n == 5 and same is tree
    with pytest.raises(ValueError, match="disagree"):
        pad_runs({"a": jnp.zeros(3), "b": jnp.zeros(4)}, 2)


@pytest.mark.device_count
def test_sharded_vmap_with_shared_arguments_and_rounds_matches_vmap():
    def f(x, scale, offset):
        return {"y": x * scale["s"] + offset, "z": jnp.sum(x)}

    x = jnp.arange(12.0).reshape(6, 2)
    scale = {"s": jnp.arange(6.0)[:, None]}
    expected = jax.vmap(f, in_axes=(0, {"s": 0}, None))(x, scale, 3.0)
    for at_once in (None, 2, 4):
        got = jax.jit(sharded_vmap(f, seed_mesh(), in_axes=(0, {"s": 0}, None),
                                   at_once=at_once))(x, scale, 3.0)
        _assert_trees_equal(got, expected, f"at_once={at_once}")
    with pytest.raises(ValueError, match="0 or None"):
        sharded_vmap(f, in_axes=(1, 0, None))(x, scale, 3.0)


def test_hparams_axes_marks_arrays_as_per_run():
    hp = HParams.from_config(DQNConfig())._replace(gamma=jnp.array([0.9, 0.99]))
    assert hparams_axes(hp) == HParams(None, 0, *(None,) * (len(HParams._fields) - 2))
    assert hparams_axes(None) is None


@pytest.mark.parametrize("kwargs, match", [
    (dict(keys=jnp.zeros((3,), jnp.uint32)), "legacy uint32 keys of shape"),
    (dict(keys=jax.random.split(jax.random.key(0), 0)), "empty"),
    (dict(seeds_at_once=0), "seeds_at_once=0 is invalid"),
    (dict(hparams=HParams.from_config(DQNConfig())._replace(
        learning_rate=jnp.array([1e-3, 2e-3, 3e-3]))), "leading size num_seeds=2"),
])
def test_bad_arguments_are_refused_before_compiling(kwargs, match):
    args = dict(keys=jax.random.split(jax.random.key(0), 2), hparams=None, seeds_at_once=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        train_seeds(DQNConfig(**SMALL), args["keys"], args["hparams"],
                    seeds_at_once=args["seeds_at_once"])


def test_shard_runs_places_leading_axes_and_refuses_scalars():
    one = seed_mesh(jax.devices()[:1])
    placed = shard_runs({"a": jnp.zeros((3, 2))}, one)  # one device: any size splits
    assert placed["a"].shape == (3, 2)
    with pytest.raises(ValueError, match="leading axis"):
        shard_runs(jnp.float32(1.0), one)


@pytest.mark.device_count
def test_padded_runs_never_reach_an_output():
    """3 runs on every device (2 in CI's second pass: padded to 4): segments, results, saved and
    restored states hold the 3 real runs, and each equals the run its key gives alone."""
    from jaxdqn.parallel import place_as_output
    from jaxdqn.runs import evaluation_keys, make_runs, run_in_segments, seed_keys

    cfg = DQNConfig(env_id="Probe3", total_timesteps=400, buffer_size=200, learning_starts=64,
                    batch_size=32, hidden_sizes=(8,), log_interval=40)
    keys, half = seed_keys(4, 3), cfg.num_log_rows // 2
    runs = make_runs(cfg, 3)
    assert len(runs.devices) == min(3, jax.device_count())
    state = runs.init(keys, None)
    assert state.obs.shape[0] == runs.num_padded == -(-3 // len(runs.devices)) * len(runs.devices)
    segments = run_in_segments(runs, state, None, 0, half)
    first = next(segments)
    saved = first.saved_state()  # before the next segment consumes first.state
    (second,) = segments
    assert first.metrics.env_steps.shape == (3, half)
    assert saved.obs.shape[0] == 3 and saved.buffer.pos.shape == ()
    assert jax.tree.map(lambda x: x.shape, saved) == jax.tree.map(
        lambda x: x.shape, runs.state_shape(keys, None))
    restored = place_as_output(runs.restored_state(saved), runs.init, keys, None)
    (again,) = run_in_segments(runs, restored, None, half, half)
    _assert_trees_equal(again.metrics, second.metrics, "resumed from a saved state")
    returns = runs.results(runs.evaluate(second.state.train.params, evaluation_keys(4, 3), 2))
    params = runs.results(second.state.train.params)
    assert returns.shape == (3, 2) and params["params"]["Dense_0"]["kernel"].shape[0] == 3
    alone = make_runs(cfg, 1, devices=jax.devices()[:1])
    (last,) = run_in_segments(alone, alone.init(keys[2:], None), None, 0, cfg.num_log_rows)
    np.testing.assert_array_equal(last.metrics.episode_return[0, half:],
                                  second.metrics.episode_return[2])


# ---------------------------------------------------------------------------------------------
# Two forced CPU devices, in a child process

CHILD = textwrap.dedent("""
    import json, re, sys
    import jax, numpy as np
    import jaxdqn
    from jaxdqn.parallel import seed_mesh, shard_runs
    from jaxdqn.runs import make_train_seeds, train_seeds

    cfg = jaxdqn.DQNConfig(**json.loads(sys.argv[1]))
    out_path = sys.argv[2]
    keys = jax.random.split(jax.random.key(5), 4)
    devices = jax.devices()
    single = jax.jit(jax.vmap(jaxdqn.make_train(cfg)))(keys)   # one device, plain vmap
    sharded = train_seeds(cfg, keys)                           # split across both devices
    padded = train_seeds(cfg, keys[:3])                        # 3 runs padded to 4
    mesh = seed_mesh()
    fn = make_train_seeds(cfg, None, mesh=mesh)
    kd = shard_runs(jax.random.key_data(keys), mesh)
    hlo = fn.lower(kd, None).compile().as_text()
    collectives = sorted(set(re.findall(
        r"all-gather|all-reduce|collective-permute|all-to-all|reduce-scatter", hlo)))
    arrays = {}
    for name, tree in (("single", single), ("sharded", sharded), ("padded", padded)):
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            arrays[name + jax.tree_util.keystr(path)] = np.asarray(leaf)
    # The CLI's and the sweep's path (jaxdqn.sweep): the same code, no device argument, splits the
    # seeds across both devices; devices=[first] is the single-device run.
    from jaxdqn.runs import make_runs, seed_keys
    from jaxdqn.sweep import run_sweep

    def in_segments(devices):  # the first row, then the rest one row at a time (one program)
        batch = make_runs(cfg, 4, devices=devices)
        state = batch.init(seed_keys(0, 4), None)
        state, m1 = batch.run(state, None, 0, 1)
        rest = []
        for row in range(1, cfg.num_log_rows):
            state, m = batch.run(state, None, row, 1)
            rest.append(m)
        m2 = jax.tree.map(lambda *rows: np.concatenate(rows, axis=1), *rest)
        returns = batch.evaluate(state.train.params, seed_keys(1, 4), 3)
        return state, m1, m2, returns

    cli_sharded, cli_single = in_segments(None), in_segments(devices[:1])
    sweep_devices = {}
    for name, devs in (("sw_sharded", None), ("sw_single", devices[:1])):
        results, _ = run_sweep(cfg, {"learning_rate": [1e-3, 3e-3]}, num_seeds=4, seed=2,
                               num_episodes=3, devices=devs)
        tree = (results[0].metrics, results[0].params, results[0].eval_returns)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            arrays[name + jax.tree_util.keystr(path)] = np.asarray(leaf)
    for name, tree in (("cli_sharded", cli_sharded), ("cli_single", cli_single)):
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            arrays[name + jax.tree_util.keystr(path)] = np.asarray(leaf)
    cli_devices = sorted({d.id for d in cli_sharded[0].obs.sharding.device_set})
    np.savez(out_path, **arrays)
    shard_devices = sorted({d.id for d in sharded.params["params"]["Dense_0"]["kernel"]
                            .sharding.device_set})
    print(json.dumps({"num_devices": len(devices), "shard_devices": shard_devices,
                      "collectives": collectives, "cli_devices": cli_devices}))
""")


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_devices") / "arrays.npz"
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(SMALL), str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    with np.load(out) as data:
        arrays = dict(data)
    return info, arrays


def _group(arrays, prefix):
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


# Reduction results that XLA's SPMD pipeline may round differently in the last bit: the batch
# means of Q logged as metrics. They never feed back into training (params stay bit-identical).
ROUNDING_ONLY = (".metrics.q_taken", ".metrics.q_max")


def test_two_devices_run_the_seeds_split_and_without_communication(two_devices):
    info, _ = two_devices
    assert info["num_devices"] == 2
    assert info["shard_devices"] == [0, 1]
    assert info["collectives"] == []


def test_sharded_run_on_two_devices_equals_the_single_device_run(two_devices):
    _, arrays = two_devices
    single, sharded = _group(arrays, "single"), _group(arrays, "sharded")
    assert set(single) == set(sharded) and len(single) > 10
    for path, expected in single.items():
        if path in ROUNDING_ONLY:
            np.testing.assert_allclose(sharded[path], expected, rtol=1e-6, atol=1e-6,
                                       err_msg=path)
        else:
            np.testing.assert_array_equal(sharded[path], expected, err_msg=path)
    # The runs learned something, so the comparison is not between untouched initial values.
    assert np.all(np.isfinite(single[".metrics.td_loss"][:, -1]))
    assert np.all(single[".metrics.updates"][:, -1] > 0)


def test_padded_sharded_run_keeps_only_the_requested_seeds(two_devices):
    _, arrays = two_devices
    single, padded = _group(arrays, "single"), _group(arrays, "padded")
    for path, expected in single.items():
        assert padded[path].shape[0] == 3, path
        if path not in ROUNDING_ONLY:
            np.testing.assert_array_equal(padded[path], expected[:3], err_msg=path)


# The segmented CLI/sweep programs: the acting trajectory (returns, lengths, step and episode
# counts, greedy evaluation) is identical; float state may differ in the last bits, because
# XLA:CPU splits its float reductions by per-device shape (docs/benchmarks.md).
EXACT = ("episode_return", "episode_length", "episodes", "env_steps", "updates", "epsilon")


def _compare_runs(sharded, single, what):
    assert set(sharded) == set(single) and len(single) > 10, what
    exact = 0
    for path, expected in single.items():
        is_eval = path in ("[3]", "[2]")  # (state, m1, m2, returns) / (metrics, params, returns)
        if is_eval or any(name in path for name in EXACT):
            np.testing.assert_array_equal(sharded[path], expected, err_msg=f"{what}: {path}")
            exact += 1
        else:
            np.testing.assert_allclose(sharded[path], expected, rtol=1e-4, atol=1e-5,
                                       err_msg=f"{what}: {path}")
    assert exact >= 7 and ("[3]" in single or "[2]" in single), what


def test_cli_path_splits_seeds_across_two_devices_and_equals_one_device(two_devices):
    info, arrays = two_devices
    assert info["cli_devices"] == [0, 1]  # make_runs with no devices argument used both
    sharded, single = _group(arrays, "cli_sharded"), _group(arrays, "cli_single")
    _compare_runs(sharded, single, "jaxdqn train path")
    assert np.all(single["[2].updates"][:, -1] > 0)  # it learned: real updates were compared


def test_sweep_path_on_two_devices_equals_one_device(two_devices):
    _, arrays = two_devices
    _compare_runs(_group(arrays, "sw_sharded"), _group(arrays, "sw_single"), "sweep path")
