"""TD targets, losses and one optimizer step against values computed by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdqn import (
    DQNConfig,
    TrainState,
    Transition,
    double_dqn_target,
    dqn_target,
    init_q_params,
    make_optimizer,
    make_q_fn,
    make_td_update,
    sync_target,
    td_loss,
)

REWARD = jnp.array([1.0, 0.5, -1.0, 2.0])
TERMINATED = jnp.array([False, True, False, True])
NEXT_Q_TARGET = jnp.array([[1.0, 3.0], [5.0, 2.0], [-2.0, -4.0], [0.0, 1.0]])
NEXT_Q_ONLINE = jnp.array([[2.0, 1.0], [0.0, 1.0], [0.0, 1.0], [3.0, 1.0]])


def test_dqn_targets_cut_bootstrap_only_on_terminated_rows():
    y = dqn_target(REWARD, TERMINATED, 0.9, NEXT_Q_TARGET)
    # row 0: 1 + 0.9 * max(1, 3); row 1: terminal -> 0.5; row 2: -1 + 0.9 * -2; row 3: terminal
    np.testing.assert_allclose(y, [1 + 0.9 * 3, 0.5, -1 + 0.9 * -2, 2.0], rtol=1e-6)


def test_double_dqn_targets_online_picks_target_values():
    y = double_dqn_target(REWARD, TERMINATED, 0.9, NEXT_Q_TARGET, NEXT_Q_ONLINE)
    # row 0: online argmax = 0 -> target Q 1.0; row 2: online argmax = 1 -> target Q -4.0
    np.testing.assert_allclose(y, [1 + 0.9 * 1.0, 0.5, -1 + 0.9 * -4.0, 2.0], rtol=1e-6)
    # Double DQN's value never exceeds DQN's max on the same target Q-values
    assert np.all(y <= dqn_target(REWARD, TERMINATED, 0.9, NEXT_Q_TARGET) + 1e-6)


def test_targets_carry_no_gradient():
    g = jax.grad(lambda q: dqn_target(REWARD, TERMINATED, 0.9, q).sum())(NEXT_Q_TARGET)
    np.testing.assert_array_equal(g, 0.0)


def test_losses_by_hand():
    pred, target = jnp.array([0.0, 1.0, 3.0]), jnp.array([0.5, -1.0, 3.0])
    assert float(td_loss(pred, target, "mse")) == pytest.approx((0.25 + 4.0 + 0.0) / 3)
    # Huber(delta=1): 0.5 * 0.25 (quadratic); 1 * (2 - 0.5) (linear); 0
    assert float(td_loss(pred, target, "huber", 1.0)) == pytest.approx((0.125 + 1.5) / 3)


@pytest.fixture(scope="module")
def probe_setup():
    cfg = DQNConfig(env_id="Probe4", hidden_sizes=(8,), buffer_size=256, learning_starts=128,
                    learning_rate=1e-2, batch_size=4)
    params = init_q_params(cfg, jax.random.key(0))
    q_fn = make_q_fn(cfg)
    optimizer = make_optimizer(cfg)
    state = TrainState(params, params, optimizer.init(params))
    batch = Transition(obs=jnp.array([[0.0], [1.0], [-1.0], [0.5]]), action=jnp.array([0, 1, 1, 0]),
                       reward=jnp.array([1.0, -1.0, 0.0, 2.0]),
                       terminated=jnp.array([True, False, True, False]),
                       next_obs=jnp.array([[0.0], [2.0], [-1.0], [1.5]]))
    return cfg, q_fn, state, batch


def test_one_update_matches_the_seeds_training_step_by_hand(probe_setup):
    cfg, q_fn, state, batch = probe_setup
    # A target network that differs from the online one, so the two roles are distinguishable.
    target_params = jax.tree.map(lambda x: x + 0.1, state.params)
    state = state._replace(target_params=target_params)
    td_update = make_td_update(cfg, q_fn, make_optimizer(cfg))
    new_state, info = td_update(state, batch, 0.9)

    p = jax.tree.map(np.asarray, state.params["params"])
    tp = jax.tree.map(np.asarray, target_params["params"])

    def forward(w, x):
        h = np.maximum(x @ w["Dense_0"]["kernel"] + w["Dense_0"]["bias"], 0)
        return h @ w["Dense_1"]["kernel"] + w["Dense_1"]["bias"]

    obs, act = np.asarray(batch.obs), np.asarray(batch.action)
    q = forward(p, obs)
    q_taken = q[np.arange(4), act]
    y = np.asarray(batch.reward) + 0.9 * forward(tp, np.asarray(batch.next_obs)).max(1) * (
        1 - np.asarray(batch.terminated))
    assert float(info.loss) == pytest.approx(np.mean((y - q_taken) ** 2), rel=1e-5)
    assert float(info.q_taken) == pytest.approx(q_taken.mean(), rel=1e-5)
    assert float(info.q_max) == pytest.approx(q.max(1).mean(), rel=1e-5)
    # d loss / d head-bias[a] = mean_i 2 (q_i - y_i) [a_i = a]; Adam's first step is
    # -lr * sign(grad) per coordinate (bias-corrected m / sqrt(v) = g / |g|).
    grad_bias = np.array([np.sum(2 * (q_taken - y) * (act == a)) / 4 for a in (0, 1)])
    new_bias = np.asarray(new_state.params["params"]["Dense_1"]["bias"])
    np.testing.assert_allclose(new_bias - p["Dense_1"]["bias"], -1e-2 * np.sign(grad_bias),
                               rtol=1e-4, atol=1e-7)
    # The target network is untouched by a gradient step.
    jax.tree.map(np.testing.assert_array_equal, new_state.target_params, target_params)


def test_gradient_clipping_bounds_the_global_norm(probe_setup):
    cfg, q_fn, state, batch = probe_setup
    clipped = cfg.replace(max_grad_norm=1e-3, learning_rate=1.0)
    opt = make_optimizer(clipped)
    # With SGD semantics hidden behind Adam, check the clipped gradient directly through optax.
    grads = jax.tree.map(jnp.ones_like, state.params)
    updates, _ = optax.clip_by_global_norm(1e-3).update(grads, None)
    assert float(optax.tree.norm(updates)) == pytest.approx(1e-3, rel=1e-5)
    _, info = make_td_update(clipped, q_fn, opt)(
        TrainState(state.params, state.params, opt.init(state.params)), batch, 0.9)
    assert float(info.grad_norm) > 1e-3  # reported before clipping


def test_double_q_update_uses_online_argmax(probe_setup):
    cfg, q_fn, state, batch = probe_setup
    target_params = jax.tree.map(lambda x: -x, state.params)
    state = state._replace(target_params=target_params)
    _, info = make_td_update(cfg.replace(estimator="double_dqn"), q_fn, make_optimizer(cfg))(
        state, batch, 0.9)
    next_online = q_fn(state.params, batch.next_obs)
    next_target = q_fn(target_params, batch.next_obs)
    pick = jnp.argmax(next_online, -1)
    y = batch.reward + 0.9 * next_target[jnp.arange(4), pick] * (1 - batch.terminated)
    assert float(info.target) == pytest.approx(float(y.mean()), rel=1e-5)


def test_sync_target_hard_and_soft(probe_setup):
    _, _, state, _ = probe_setup
    state = state._replace(target_params=jax.tree.map(jnp.zeros_like, state.params))
    hard = sync_target(state, jnp.bool_(True), 1.0)
    jax.tree.map(np.testing.assert_array_equal, hard.target_params, state.params)
    kept = sync_target(state, jnp.bool_(False), 1.0)
    jax.tree.map(np.testing.assert_array_equal, kept.target_params, state.target_params)
    soft = sync_target(state, jnp.bool_(True), 0.25)
    jax.tree.map(lambda t, p: np.testing.assert_allclose(t, 0.25 * p, rtol=1e-6),
                 soft.target_params, state.params)


def test_td_update_vmaps_over_a_batch_of_agents(probe_setup):
    cfg, q_fn, state, batch = probe_setup
    td_update = make_td_update(cfg, q_fn, make_optimizer(cfg))
    states = jax.tree.map(lambda x: jnp.stack([x, x]), state)
    batches = jax.tree.map(lambda x: jnp.stack([x, x]), batch)
    _, info = jax.vmap(td_update)(states, batches, jnp.array([0.9, 0.0]))
    _, single_info = td_update(state, batch, 0.9)
    np.testing.assert_allclose(info.loss[0], single_info.loss, rtol=1e-6)
    assert float(info.loss[0]) != float(info.loss[1])  # gamma differs per agent


def test_anneal_lr_decays_the_step_linearly_to_zero():
    """Plain SGD of rate 1 on a gradient of ones: the update of count ``k`` is ``-(1 - k / N)``
    over the run's ``N`` gradient steps, and 0 from ``N`` on (fails if ``anneal_lr`` is
    ignored)."""
    cfg = DQNConfig(env_id="Probe1", optimizer="sgd", learning_rate=1.0, anneal_lr=True,
                    total_timesteps=200, buffer_size=100, batch_size=10, train_frequency=10)
    n = cfg.num_updates
    assert n == 11
    opt = make_optimizer(cfg)
    params = {"w": jnp.zeros(())}
    state = opt.init(params)
    grads = {"w": jnp.ones(())}
    for k in range(n + 2):
        updates, state = opt.update(grads, state, params)
        assert float(updates["w"]) == pytest.approx(-max(1 - k / n, 0.0), abs=1e-6), k
    constant = make_optimizer(cfg.replace(anneal_lr=False))
    state = constant.init(params)
    for _ in range(n):
        updates, state = constant.update(grads, state, params)
    assert float(updates["w"]) == -1.0


def test_adam_eps_enters_the_first_adam_step():
    """Adam's first step is ``-lr * g / (|g| + eps)`` (bias-corrected moments ``g`` and ``g^2``):
    with ``g = 1e-3``, ``lr = 1``: ``-1e-3 / (1e-3 + 1e-8)`` at the default epsilon and
    ``-1e-3 / 1.3125e-3 = -0.7619...`` at Dopamine's 3.125e-4."""
    params, grads = {"w": jnp.zeros(())}, {"w": jnp.float32(1e-3)}
    for eps, expected in ((1e-8, -1e-3 / (1e-3 + 1e-8)), (3.125e-4, -1e-3 / 1.3125e-3)):
        opt = make_optimizer(DQNConfig(learning_rate=1.0, adam_eps=eps))
        updates, _ = opt.update(grads, opt.init(params), params)
        assert float(updates["w"]) == pytest.approx(expected, rel=1e-5), eps
