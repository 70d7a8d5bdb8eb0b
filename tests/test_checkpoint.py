"""Checkpoints and resume states round-trip exactly and refuse what does not fit; files are
written atomically."""

import os

import jax
import numpy as np
import pytest
from flax import serialization

import jaxdqn
from jaxdqn import DQNConfig, init_q_params
from jaxdqn.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_resume_state,
    network_shape,
    save_checkpoint,
    save_resume_state,
)
from jaxdqn.io import atomic_open, atomic_write, atomic_write_json
from jaxdqn.train import make_trainer

CFG = DQNConfig(total_timesteps=400, buffer_size=200, learning_starts=64, batch_size=32,
                hidden_sizes=(16, 8))


def _params(config, num_seeds=3, seed=0):
    """Random params of ``config``'s network for ``num_seeds`` runs (numpy: no compilation)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: init_q_params(config, jax.random.PRNGKey(0)))
    return jax.tree.map(lambda s: rng.standard_normal((num_seeds, *s.shape)).astype(s.dtype),
                        shapes)


def test_checkpoint_round_trip_is_exact_and_records_config_version_and_shape(tmp_path):
    params = _params(CFG)
    path = tmp_path / "ckpt.msgpack"
    save_checkpoint(path, params, CFG, {"seed": 7, "note": "x"})
    ckpt = load_checkpoint(path)
    assert ckpt.config == CFG and ckpt.num_seeds == 3
    assert ckpt.jaxdqn_version == jaxdqn.__version__
    assert ckpt.metadata == {"seed": 7, "note": "x"}
    assert jax.tree.structure(ckpt.params) == jax.tree.structure(params)
    for got, want in zip(jax.tree.leaves(ckpt.params), jax.tree.leaves(params)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    raw = serialization.msgpack_restore(path.read_bytes())
    assert raw["network"] == {"obs_shape": [4], "num_actions": 2, "hidden_sizes": [16, 8]}
    assert raw["config"]["hidden_sizes"] == [16, 8] and raw["config"]["learning_starts"] == 64
    # A config with the same network shape loads it; the params still run through the Q-network.
    q = jax.jit(jax.vmap(jaxdqn.make_q_fn(CFG), in_axes=(0, None)))(ckpt.params, np.ones((5, 4)))
    assert q.shape == (3, 5, 2)


@pytest.mark.parametrize("other, words", [
    (CFG.replace(hidden_sizes=(64,)), ["4 -> 16 -> 8 -> 2", "4 -> 64 -> 2", "hidden_sizes=[64]"]),
    (CFG.replace(env_id="Probe4"), ["4 -> 16 -> 8 -> 2", "1 -> 16 -> 8 -> 2", "Probe4"]),
])
def test_loading_with_a_config_of_another_network_shape_fails_clearly(tmp_path, other, words):
    path = tmp_path / "ckpt.msgpack"
    save_checkpoint(path, _params(CFG, 2), CFG)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, config=other)
    for word in words:
        assert word in str(err.value)
    # A config that differs only in settings that do not shape the network is accepted.
    assert load_checkpoint(path, config=CFG.replace(gamma=0.5, buffer_size=300)).num_seeds == 2


CNN = CFG.replace(env_id="Breakout-MinAtar", conv_channels=(16,), conv_kernel_size=3,
                  hidden_sizes=(128,))


def test_a_cnn_checkpoint_records_its_convolutions_and_refuses_other_ones(tmp_path):
    path = tmp_path / "ckpt.msgpack"
    save_checkpoint(path, _params(CNN, 2), CNN)
    raw = serialization.msgpack_restore(path.read_bytes())
    assert raw["network"] == {"obs_shape": [10, 10, 4], "num_actions": 3, "hidden_sizes": [128],
                              "kind": "cnn", "conv_channels": [16], "conv_kernel_size": 3}
    assert load_checkpoint(path, config=CNN).num_seeds == 2
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, config=CNN.replace(conv_kernel_size=5))
    assert "10x10x4 -> conv16k3 -> 128 -> 3" in str(err.value)
    assert "10x10x4 -> conv16k5 -> 128 -> 3" in str(err.value)


def test_a_cnn_checkpoint_written_before_convolutions_were_recorded_still_loads(tmp_path):
    old = {"obs_shape": [10, 10, 4], "num_actions": 3, "hidden_sizes": [128]}
    path = tmp_path / "ckpt.msgpack"
    path.write_bytes(serialization.msgpack_serialize(
        {"format": "jaxdqn-checkpoint", "format_version": 1, "jaxdqn_version": "0.1.0",
         "config": CNN.to_dict(), "network": old, "num_seeds": 2, "metadata": {},
         "params": jax.device_get(_params(CNN, 2))}))
    assert load_checkpoint(path, config=CNN).num_seeds == 2
    # What the old record does hold is still checked.
    path.write_bytes(serialization.msgpack_serialize(
        {"format": "jaxdqn-checkpoint", "format_version": 1, "jaxdqn_version": "0.1.0",
         "config": CNN.to_dict(), "network": {**old, "num_actions": 4}, "num_seeds": 2,
         "metadata": {}, "params": jax.device_get(_params(CNN, 2))}))
    with pytest.raises(CheckpointError, match="records network 10x10x4 -> 128 -> 4 but its config "
                                              "builds 10x10x4 -> conv16k3 -> 128 -> 3"):
        load_checkpoint(path)


def test_saving_params_that_do_not_fit_the_config_is_refused(tmp_path):
    wrong_layer = r"layer .*Dense_0.*bias.* has shape \(64,\), but a 4 -> 16 -> 8 -> 2 network"
    with pytest.raises(CheckpointError, match=wrong_layer + r" needs \(16,\)"):
        save_checkpoint(tmp_path / "c.msgpack", _params(CFG.replace(hidden_sizes=(64, 8))), CFG)
    with pytest.raises(CheckpointError, match="missing"):
        save_checkpoint(tmp_path / "c.msgpack", _params(CFG.replace(hidden_sizes=(16,))), CFG)
    with pytest.raises(CheckpointError, match="leading seed axis"):  # unbatched params
        save_checkpoint(tmp_path / "c.msgpack", init_q_params(CFG, jax.random.PRNGKey(0)), CFG)
    assert not (tmp_path / "c.msgpack").exists()


def _payload(**changes):
    params = jax.device_get(_params(CFG, 2))
    payload = {"format": "jaxdqn-checkpoint", "format_version": 1, "jaxdqn_version": "0.1.0",
               "config": CFG.to_dict(), "network": network_shape(CFG), "num_seeds": 2,
               "metadata": {}, "params": params}
    payload.update(changes)
    return serialization.msgpack_serialize(payload)


@pytest.mark.parametrize("content, message", [
    (None, "cannot read checkpoint"),
    (b"", "not a jaxdqn checkpoint"),
    (b"this is not msgpack \x00\xff", "not a jaxdqn checkpoint"),
    ("truncated", "not a jaxdqn checkpoint"),
    (serialization.msgpack_serialize({"params": {}}), "not a jaxdqn checkpoint"),
    (_payload(format_version=99), "format version 99"),
    (_payload(config={**CFG.to_dict(), "gamma": 7.0}), "invalid config: DQNConfig.gamma=7.0"),
    (_payload(network={"obs_shape": [4], "num_actions": 2, "hidden_sizes": [99]}),
     "records network 4 -> 99 -> 2 but its config builds 4 -> 16 -> 8 -> 2"),
    (_payload(num_seeds=5), "leading axes"),
])
def test_unreadable_or_inconsistent_checkpoints_raise_one_clear_error(tmp_path, content, message):
    path = tmp_path / "ckpt.msgpack"
    if content == "truncated":
        content = _payload()[:-100]
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value) and "ckpt.msgpack" in str(err.value)


def test_resume_state_round_trip_is_exact_and_checks_config(tmp_path):
    trainer = make_trainer(CFG)
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    template = jax.eval_shape(jax.vmap(trainer.init), keys)
    rng = np.random.default_rng(0)  # every leaf random, so nothing round-trips by accident
    state = jax.tree.map(lambda s: (rng.uniform(0, 100, s.shape)).astype(s.dtype), template)
    path = tmp_path / "resume.msgpack"
    save_resume_state(path, state, CFG, {"rows_done": 2})
    restored, meta = load_resume_state(path, template, CFG)
    assert meta == {"rows_done": 2}
    payload = serialization.msgpack_restore(path.read_bytes())
    assert payload["num_runs"] == 2 and "num_seeds" not in payload  # a sweep's runs are not seeds
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(CheckpointError, match="another config: total_timesteps: 400"):
        load_resume_state(path, template, CFG.replace(total_timesteps=800))
    three = jax.eval_shape(jax.vmap(trainer.init), jax.random.split(jax.random.PRNGKey(1), 3))
    with pytest.raises(CheckpointError, match=r"has shape \(2,"):
        load_resume_state(path, three, CFG)
    save_checkpoint(tmp_path / "c.msgpack", state.train.params, CFG)
    with pytest.raises(CheckpointError, match="not a jaxdqn resume state"):
        load_resume_state(tmp_path / "c.msgpack", template, CFG)


def test_atomic_write_replaces_whole_files_and_leaves_the_old_one_on_failure(tmp_path):
    path = tmp_path / "f.json"
    atomic_write_json(path, {"a": [1, 2], "nan": float("nan"), "np": np.float32(0.5)})
    assert path.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "nan": null,\n  "np": 0.5\n}\n'
    mode = path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # not mkstemp's 0600
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write(b"half a fi")
        raise RuntimeError("crash while writing")
    assert path.read_text().startswith('{\n  "a"')  # the old content survives
    atomic_write(path, "new")
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]  # no temporary files left
