"""Exploration: where epsilon decays (the seed's linear schedule) and actions are chosen
(epsilon-greedy and greedy, over legal actions only when the env has a mask)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdqn.choice import kth_true


def epsilon_at(step, start_epsilon, end_epsilon, exploration_fraction, total_timesteps,
               exploration_steps=None):
    """The seed's ``linear_schedule``:
    ``start + (end - start) * min(step / duration, 1)`` with ``duration = fraction * total``, or
    ``exploration_steps`` where that is given and > 0 (``train.HParams`` holds 0 for a config
    that gives the fraction, and a fraction of 0 for one that gives the steps).

    Every argument may be a traced value, so one compiled program serves a grid of schedules.
    Where ``duration`` is a whole number this equals ``optax.linear_schedule``.
    """
    if exploration_fraction is None:
        duration = jnp.asarray(exploration_steps, jnp.float32)
    else:
        duration = jnp.asarray(exploration_fraction, jnp.float32) * total_timesteps
    if exploration_fraction is not None and exploration_steps is not None:
        duration = jnp.where(jnp.asarray(exploration_steps) > 0,
                             jnp.asarray(exploration_steps, jnp.float32), duration)
    progress = jnp.minimum(jnp.asarray(step, jnp.float32) / duration, 1.0)
    return start_epsilon + (end_epsilon - start_epsilon) * progress


def epsilon_greedy(key: jax.Array, q_values: jax.Array, epsilon, legal: jax.Array | None = None,
                   random_tie_break: bool = False) -> jax.Array:
    """Actions ``i32[...]`` for ``q_values: f32[..., num_actions]``.

    Each row independently takes, with probability ``epsilon``, an action uniform over its legal
    actions (``legal: bool[..., num_actions]``; None: all legal), and otherwise the greedy one:
    the legal action of largest Q, the lowest index among ties, or with ``random_tie_break`` one
    of the tied actions uniformly at random (as Sutton and Barto's experiments do; it matters
    when values start equal, as tables at zero do). Every row needs a legal action.
    """
    batch_shape, num_actions = q_values.shape[:-1], q_values.shape[-1]
    if legal is None and not random_tie_break:  # the original program, draw for draw
        greedy = jnp.argmax(q_values, axis=-1).astype(jnp.int32)
        # One draw for both coins (each random call is its own threefry loop on XLA:CPU). u has
        # 2^23 equally likely values, so floor(u * n) is exactly uniform when n is a power of two.
        u = jax.random.uniform(key, (2, *batch_shape))
        random = jnp.minimum((u[1] * num_actions).astype(jnp.int32), num_actions - 1)
        return jnp.where(u[0] < epsilon, random, greedy)
    u = jax.random.uniform(key, (3 if random_tie_break else 2, *batch_shape))
    legal = jnp.ones(q_values.shape, bool) if legal is None else legal
    if random_tie_break:
        masked = jnp.where(legal, q_values, -jnp.inf)
        ties = jnp.logical_and(legal, masked == masked.max(axis=-1, keepdims=True))
        greedy = kth_true(ties, u[2])
    else:
        greedy = greedy_action(q_values, legal)
    return jnp.where(u[0] < epsilon, kth_true(legal, u[1]), greedy)


def greedy_action(q_values: jax.Array, legal: jax.Array | None = None) -> jax.Array:
    """``i32[...]``: the legal action of largest Q (lowest index among ties)."""
    if legal is not None:
        q_values = jnp.where(legal, q_values, -jnp.inf)
    return jnp.argmax(q_values, axis=-1).astype(jnp.int32)


def greedy_probability(q_values: jax.Array, action: jax.Array, legal: jax.Array | None = None,
                       random_tie_break: bool = False) -> jax.Array:
    """``f32[...]``: the probability that the greedy choice of ``epsilon_greedy`` picks ``action``
    (``i32[...]``) at ``q_values: f32[..., A]``: 1 for the legal action of largest Q (lowest index
    among ties) and 0 for the others, or with ``random_tie_break`` ``1/|T|`` for each of the
    ``|T|`` tied legal maxima."""
    if not random_tie_break:
        return (action == greedy_action(q_values, legal)).astype(jnp.float32)
    legal = jnp.ones(q_values.shape, bool) if legal is None else legal
    masked = jnp.where(legal, q_values, -jnp.inf)
    ties = jnp.logical_and(legal, masked == masked.max(axis=-1, keepdims=True))
    taken = jnp.take_along_axis(ties, action[..., None], axis=-1)[..., 0]
    return taken / ties.sum(axis=-1, dtype=jnp.int32)


def epsilon_greedy_probability(q_values: jax.Array, action: jax.Array, epsilon,
                               legal: jax.Array | None = None, random_tie_break: bool = False
                               ) -> jax.Array:
    """``f32[...]``: the probability that ``epsilon_greedy`` with the same arguments picks
    ``action``: ``epsilon * [a legal] / |L| + (1 - epsilon) * greedy_probability``.

    ``epsilon_greedy`` draws its random action as ``floor(u * n)`` from a ``u`` with ``2^23``
    equally likely values, which is uniform on the ``n`` legal actions exactly when ``n`` is a
    power of two, and otherwise within ``2^-23`` of ``1/n``; this returns ``1/n``.
    """
    legal_all = jnp.ones(q_values.shape, bool) if legal is None else legal
    is_legal = jnp.take_along_axis(legal_all, action[..., None], axis=-1)[..., 0]
    uniform = is_legal / legal_all.sum(axis=-1, dtype=jnp.int32)
    return (epsilon * uniform
            + (1.0 - epsilon) * greedy_probability(q_values, action, legal, random_tie_break))


def make_acting_q_fn(config):
    """The Q-values the agent acts on: ``q(params, obs[..., *obs_shape]) -> f32[..., A]``.

    The one place that turns a run's params into acting Q-values, used by training's
    epsilon-greedy, greedy evaluation (during and after training), the bias study and
    ``jaxdqn.load``; the rule is the estimator's ``act`` (``jaxdqn.estimators``). Noisy networks
    act on their mean weights here (deterministic); in training they explore on a fresh draw of
    their noise (``make_noisy_acting_q_fn``). One network
    (``dqn``, ``double_dqn``, ``averaged``, ``maxmin`` of one member) acts on its own Q-values;
    for Averaged-DQN that is the online network, the newest estimate (the snapshot average lags
    it by up to ``N`` target periods and serves to denoise the target). Members:

    - ``double_q``: the mean of the two (van Hasselt 2010 acts on ``Q_A + Q_B``; the mean has the
      same argmax and the same ties);
    - ``maxmin``: the minimum over members (Lan et al. 2020);
    - ``clipped_double``: the first member, whose argmax also picks the target's action, so that
      acting and the target follow one greedy policy (TD3's actor follows ``Q_1`` alone).
    """
    from jaxdqn.estimators import ESTIMATORS
    from jaxdqn.networks import make_q_fn  # networks imports config and envs; keep this light

    q_fn = make_q_fn(config)
    if config.num_members == 1:  # no member axis
        return q_fn
    act = ESTIMATORS[config.estimator].act
    return lambda params, obs: act(q_fn, params, obs)


def make_noisy_acting_q_fn(config):
    """The Q-values a noisy agent (``config.noisy``) explores with in training:
    ``q(params, obs[..., *obs_shape], key) -> f32[..., A]``, ``make_acting_q_fn``'s rule applied
    to networks under a fresh draw of their noise from ``key``.

    Each observation of ``obs``'s leading axes (each env copy) gets its own draw, and each member
    its own: every copy then acts as the single-env agents of Dopamine's full Rainbow and DQN
    Zoo's Rainbow do, on noise drawn for its step alone, and copies explore independently. Both
    share one draw across a minibatch in learning, as ``update.make_td_update`` does.
    """
    from jaxdqn.estimators import ESTIMATORS
    from jaxdqn.networks import make_noisy_q_fn

    q_fn = make_noisy_q_fn(config, per_row=True)
    if config.num_members == 1:
        return q_fn
    act = ESTIMATORS[config.estimator].act

    def q(params, obs, key):
        # The act rules vmap a q_fn(params, obs) over the members' leading axis: the pair
        # (params, key) of each member rides on that axis.
        keys = jax.random.split(key, config.num_members)
        return act(lambda member, o: q_fn(member[0], o, member[1]), (params, keys), obs)

    return q
