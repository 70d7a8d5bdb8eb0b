"""MinAtar: gymnax's games with bool observations, the CNN Q-network (shapes, parameter count,
its im2col form against flax's), bool observations in the replay buffer and the memory estimate,
and a short vmapped run."""

import json

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn import DQNConfig, QNetwork, init_q_params, make_q_fn, run_folder
from jaxdqn.buffer import Transition, buffer_add, buffer_bytes, buffer_init, buffer_sample
from jaxdqn.checkpoint import save_checkpoint
from jaxdqn.cli import main
from jaxdqn.config import preset
from jaxdqn.envs import MINATAR_ENV_IDS, env_spec, make_env
from jaxdqn.memory import estimate_memory, transition_bytes
from jaxdqn.networks import network_kind, num_params
from jaxdqn.original_minatar import original_env, original_returns
from jaxdqn.policy import make_acting_q_fn
from jaxdqn.runs import make_train_seeds

CHANNELS = {"Asterix-MinAtar": (4, 5), "Breakout-MinAtar": (4, 3), "Freeway-MinAtar": (7, 3),
            "Seaquest-MinAtar": (10, 6), "SpaceInvaders-MinAtar": (6, 4)}


@pytest.mark.parametrize("env_id", MINATAR_ENV_IDS)
def test_every_minatar_id_resets_to_gymnax_frames_as_bools(env_id):
    env, params = make_env(env_id)
    raw_env, raw_params = gymnax.make(env_id)
    channels, actions = CHANNELS[env_id]
    assert env.num_actions == actions
    assert env.observation_space(params).shape == (10, 10, channels)
    assert env.observation_space(params).dtype == jnp.bool_
    keys = jax.random.split(jax.random.key(0), 4)
    obs, _ = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    raw_obs, _ = jax.vmap(raw_env.reset, in_axes=(0, None))(keys, raw_params)
    assert obs.dtype == jnp.bool_ and obs.shape == (4, 10, 10, channels)
    assert set(np.unique(np.asarray(raw_obs))) <= {0.0, 1.0}  # the cast loses nothing
    np.testing.assert_array_equal(obs, raw_obs)


@pytest.mark.parametrize("env_id", ["Breakout-MinAtar", "SpaceInvaders-MinAtar"])
def test_gymnax_games_play_frame_by_frame_like_the_original_minatar(env_id):
    pytest.importorskip("minatar")  # the minatar extra: the original games
    """Same start, same actions (no sticky actions): the same bool frames, rewards and ends in
    gymnax (through make_env) and in the original numpy game, including the channel order. These
    two games draw no random numbers after the reset; Breakout's reset coin is copied over."""
    env, params = make_env(env_id)
    orig = original_env(env_id, seed=3, sticky_action_prob=0.0)
    step = jax.jit(env.step_env)
    reset = jax.jit(env.reset)
    minimal = orig.minimal_action_set()  # n, l, r (+ u, d, f in Space Invaders)
    rng = np.random.default_rng(0)
    steps, total = 0, 0.0
    for episode in range(4):
        if episode:
            orig.reset()
        _, state = reset(jax.random.key(episode), params)
        if env_id == "Breakout-MinAtar":
            g = orig.env
            state = state.replace(ball_x=jnp.asarray(g.ball_x),
                                  ball_dir=jnp.asarray(g.ball_dir), last_x=jnp.asarray(g.last_x))
        for t in range(200):
            a = int(rng.integers(len(minimal)))
            if env_id == "Breakout-MinAtar" and rng.random() < 0.9:
                g = orig.env  # aim where the ball will come down (walls ignored)
                dx = 1 if g.ball_dir in (1, 2) else -1
                aim = np.clip(g.ball_x + dx * (9 - g.ball_y), 0, 9)
                a = 0 if g.pos == aim else (1 if aim < g.pos else 2)
            obs, state, reward, done, _ = step(jax.random.key(t), state, a, params)
            r, terminal = orig.act(minimal[a])
            assert obs.dtype == jnp.bool_
            np.testing.assert_array_equal(obs, orig.state(), err_msg=f"step {t}")
            assert (float(reward), bool(done)) == (r, terminal), t
            steps, total = steps + 1, total + r
            if terminal:
                break
    assert steps > 100 and total >= 5, (steps, total)


def test_minatar_picks_the_papers_cnn_with_132179_parameters():
    cfg = preset("minatar")
    assert network_kind(cfg) == "cnn"
    params = init_q_params(cfg, jax.random.key(0))["params"]
    shapes = jax.tree.map(lambda x: x.shape, params)
    assert shapes == {"Conv_0": {"kernel": (3, 3, 4, 16), "bias": (16,)},
                      "Dense_0": {"kernel": (8 * 8 * 16, 128), "bias": (128,)},
                      "Dense_1": {"kernel": (128, 3), "bias": (3,)}}
    # conv 3*3*4*16 + 16, dense 1024*128 + 128, head 128*3 + 3
    assert num_params(params) == 592 + 131_200 + 387 == 132_179
    with pytest.raises(ValueError, match="network='mlp' is invalid for env_id='Breakout-MinAtar'"):
        network_kind(cfg.replace(network="mlp"))


def test_cnn_q_fn_equals_flax_qnetwork_and_its_gradients():
    env_id, conv_channels, kernel = "Breakout-MinAtar", (6, 5), 3  # two convolutions
    cfg = DQNConfig(env_id=env_id, hidden_sizes=(32, 16), conv_channels=conv_channels,
                    conv_kernel_size=kernel)
    obs_shape, num_actions = env_spec(cfg).obs_shape, env_spec(cfg).num_actions
    params = init_q_params(cfg, jax.random.key(1))
    params = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(2), x.shape),
                          params)  # nonzero biases too
    flax_net = QNetwork(num_actions, (32, 16), conv_channels, kernel)
    obs = jax.random.bernoulli(jax.random.key(3), 0.3, (2, 5, *obs_shape))  # any leading axes
    q_fn = make_q_fn(cfg)
    q, ref = jax.jit(q_fn)(params, obs), jax.jit(flax_net.apply)(params, obs)
    assert q.shape == (2, 5, num_actions)
    np.testing.assert_allclose(q, ref, rtol=1e-5, atol=1e-5)
    loss = lambda f: lambda p: jnp.sum(jnp.sin(f(p, obs)))  # noqa: E731
    grads, ref_grads = (jax.jit(jax.grad(loss(f)))(params) for f in (q_fn, flax_net.apply))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 grads, ref_grads)


def test_bool_observations_are_stored_and_sampled_exactly():
    obs = jax.random.bernoulli(jax.random.key(0), 0.2, (7, 10, 10, 4))
    next_obs = jnp.logical_not(obs)
    buf = buffer_init(5, (10, 10, 4), jnp.bool_)
    batch = Transition(obs, jnp.arange(7), jnp.arange(7.0), jnp.arange(7) % 2 == 0, next_obs)
    buf = buffer_add(buf, batch)  # wraps: slots hold transitions 5, 6, 2, 3, 4
    assert buf.data.obs.dtype == jnp.bool_ and buf.data.next_obs.dtype == jnp.bool_
    np.testing.assert_array_equal(buf.data.obs, obs[np.array([5, 6, 2, 3, 4])])
    sample = buffer_sample(buf, jax.random.key(1), 64)
    assert sample.obs.dtype == jnp.bool_
    for o, n, a in zip(sample.obs, sample.next_obs, sample.action):
        np.testing.assert_array_equal(o, obs[a])
        np.testing.assert_array_equal(n, next_obs[a])
    # 400 + 400 bool cells, action i32, reward f32, terminated bool
    assert buffer_bytes(buf) == 5 * 809


def test_memory_estimate_counts_bool_observations():
    cfg = preset("minatar-fast")
    assert transition_bytes(cfg) == 809
    assert estimate_memory(cfg, 1).buffer_bytes == 100_000 * 809  # 80.9 MB (f32: 320.9 MB)


def test_a_short_minatar_run_compiles_and_runs_vmapped_within_its_memory_estimate():
    cfg = preset("minatar-fast").replace(total_timesteps=400, buffer_size=256, learning_starts=64,
                                         target_update_freq=100, log_interval=200)
    keys = jax.random.key_data(jax.random.split(jax.random.key(0), 2))
    fn = make_train_seeds(cfg, None)
    compiled = fn.lower(keys, None).compile()
    stats = compiled.memory_analysis()
    actual = stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
    assert actual <= estimate_memory(cfg, 2, len(jax.devices())).device_bytes
    out = compiled(keys, None)
    assert out.metrics.updates.shape == (2, 2)
    # first update after iteration ceil(64 / 4) - 1 = 15 of 100 (4 env steps each)
    np.testing.assert_array_equal(out.metrics.updates[0], [50 - 15, 100 - 15])
    assert np.isfinite(np.asarray(out.metrics.td_loss)).all()
    assert not np.allclose(out.params["params"]["Conv_0"]["kernel"][0],
                           out.params["params"]["Conv_0"]["kernel"][1])


def test_evaluate_minatar_replays_each_seed_in_the_original_beside_gymnax(tmp_path, capsys):
    pytest.importorskip("minatar")  # the minatar extra: the original games
    cfg = preset("minatar-fast").replace(buffer_size=1000, learning_starts=100)
    params = jax.vmap(lambda k: init_q_params(cfg, k))(jax.random.split(jax.random.key(0), 2))
    save_checkpoint(tmp_path / run_folder.FINAL_CHECKPOINT, params, cfg, {"seed": 0})
    argv = ["evaluate", str(tmp_path), "--episodes", "3", "--minatar", "--epsilon", "0.05",
            "--sticky-action-prob", "0.2",
            "--json", str(tmp_path / "eval.json")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "original MinAtar" in out and "minatar mean" in out and "gymnax mean" in out
    assert "epsilon-greedy (0.05) evaluation" in out
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["jax"]["epsilon"] == result["minatar"]["epsilon"] == 0.05
    assert result["minatar"]["sticky_action_prob"] == 0.2
    q_fn = jax.jit(make_acting_q_fn(cfg))
    for i in range(2):  # the same episodes again, from the documented seeds
        returns, _ = original_returns(cfg, q_fn, jax.tree.map(lambda x, i=i: x[i], params), 3, 0, i,
                                      epsilon=0.05, sticky_action_prob=0.2)
        assert result["minatar"]["per_seed"][i]["mean"] == pytest.approx(returns.mean())
    # CartPole has no original MinAtar game: one line, exit 2, before any compilation.
    cp = DQNConfig()
    save_checkpoint(tmp_path / "cp.msgpack", jax.vmap(lambda k: init_q_params(cp, k))(
        jax.random.split(jax.random.key(0), 1)), cp, {"seed": 0})
    assert main(["evaluate", str(tmp_path / "cp.msgpack"), "--minatar"]) == 2
    assert "--minatar cross-checks the MinAtar games" in capsys.readouterr().err
