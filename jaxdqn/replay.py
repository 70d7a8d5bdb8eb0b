"""How a minibatch is drawn from the replay buffer and weighted: uniform or prioritized, one-step
or n-step; and how priorities are kept.

``replay_sample`` returns one ``Sample``: the transitions, the discount of each sample's bootstrap
and, for prioritized replay, importance weights and the slots drawn. With ``n_step=1`` and uniform
replay it is ``buffer_sample`` itself, and the TD update gets the scalar ``gamma`` as before.

Prioritized replay is Schaul et al. (2016)'s proportional variant: slot ``i`` holds priority
``p_i = |delta_i| + priority_epsilon`` of its last TD error, the sum tree holds ``p_i^alpha`` and
sampling draws ``P(i) = p_i^alpha / sum_j p_j^alpha``. A new transition enters at the largest
``p`` seen so far (1.0 before any), so it is drawn soon; the loop writes the priorities of an
iteration's new slots once, at its end (``insert_priorities``), since nothing samples in between,
and after each gradient step sets those of the slots it drew (``update_priorities``).

n-step returns are computed here, at sampling time, from the circular arrays: nothing is stored but
one bool per slot (``Transition.truncated``). Stored returns would cost a reward, a discount and a
second observation per slot (the observation dominates: MinAtar's 400 bytes, twice), would have to
be rewritten as each window fills, and would freeze ``gamma`` into the buffer; computed here,
``gamma`` stays a traced hyperparameter (sweepable) and a sample costs ``n`` gathers of a reward and
two flags per transition, next to the one gather of ``obs`` and ``next_obs`` it always does.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdqn.buffer import BufferState, Transition, buffer_sample, uniform_index
from jaxdqn.sum_tree import sum_tree_sample_with_leaves, sum_tree_set


class Sample(NamedTuple):
    """A minibatch and how to use it."""

    batch: Transition  # reward: the m-step discounted reward sum; terminated, truncated and
    # next_obs: those of the window's last step
    discount: jax.Array | None  # f32[B]: gamma^m per sample; None: one-step (the scalar gamma)
    weight: jax.Array | None  # f32[B]: importance weights; None: uniform replay
    index: jax.Array | None  # i32[B]: the slots drawn (for priority updates); None: uniform


def replay_sample(buffer: BufferState, key: jax.Array, batch_size: int, gamma, *,
                  n_step: int = 1, stride: int = 1, importance_exponent=None) -> Sample:
    """``batch_size`` samples drawn with replacement from the filled slots, uniformly or, when
    ``buffer`` holds priorities, in proportion to them with importance weights of exponent
    ``importance_exponent`` (beta); each the ``n_step`` return from its slot (``n_step_window``;
    ``stride``: slots between consecutive transitions of one env copy, ``num_envs``). ``gamma``
    and ``importance_exponent`` may be traced."""
    if buffer.priorities is None:
        if n_step == 1:
            return Sample(buffer_sample(buffer, key, batch_size), None, None, None)
        index = uniform_index(key, (batch_size,), jnp.maximum(buffer.size, 1))
        weight = None
    else:
        index, leaves = sum_tree_sample_with_leaves(buffer.priorities, key, (batch_size,))
        weight = importance_weights(leaves, importance_exponent)
    if n_step == 1:
        batch, discount = jax.tree.map(lambda x: x[index], buffer.data), None
    else:
        batch, discount = n_step_window(buffer, index, n_step, stride, gamma)
    return Sample(batch, discount, weight, None if weight is None else index)


def importance_weights(leaves: jax.Array, importance_exponent) -> jax.Array:
    """``f32[B]``: ``w_i = (N P(i))^-beta / max_j w_j`` of a batch whose tree leaves are
    ``leaves = p^alpha`` (``P(i)`` = leaf / total, ``N`` the filled slots).

    Normalised by the batch max, as DQN Zoo does (Schaul et al. divide by "max_i w_i" without
    saying over what): the weights are at most 1, so they only ever shrink a step, and the max over
    all ``N`` slots would need the smallest priority in the buffer (a second, min tree). ``N`` and
    the total cancel in the ratio: ``w_i = (min_j leaf_j / leaf_i)^beta``. ``beta = 0``: all 1.
    """
    return (jnp.min(leaves) / leaves) ** importance_exponent


def importance_exponent_at(env_steps, initial, total_timesteps: int):
    """beta after ``env_steps``: ``initial`` at step 0, linearly to 1 at ``total_timesteps``."""
    fraction = jnp.minimum(env_steps / total_timesteps, 1.0)
    return initial + (1.0 - initial) * fraction


def insert_priorities(buffer: BufferState, first_slot, count: int, priority_exponent
                      ) -> BufferState:
    """The ``count`` slots written from ``first_slot`` on (mod capacity) at the largest priority
    so far: leaves ``max_priority^alpha``."""
    index = (first_slot + jnp.arange(count, dtype=jnp.int32)) % buffer.capacity
    value = jnp.full((count,), buffer.max_priority ** priority_exponent, jnp.float32)
    return buffer._replace(priorities=sum_tree_set(buffer.priorities, index, value))


def update_priorities(buffer: BufferState, index: jax.Array, td_error: jax.Array,
                      priority_exponent, priority_epsilon) -> BufferState:
    """Priorities ``p = |td_error| + epsilon`` of the slots ``index: i32[B]`` just trained on
    (a slot drawn twice keeps its last sample's), and the running max of ``p``."""
    priority = jnp.abs(td_error) + priority_epsilon
    return buffer._replace(
        priorities=sum_tree_set(buffer.priorities, index, priority ** priority_exponent),
        max_priority=jnp.maximum(buffer.max_priority, jnp.max(priority)))


def n_step_window(buffer: BufferState, index: jax.Array, n: int, stride: int, gamma
                  ) -> tuple[Transition, jax.Array]:
    """The ``m``-step transition from each slot of ``index: i32[B]`` and its discount
    ``gamma^m: f32[B]``, ``1 <= m <= n``.

    Layout: each vector step writes its ``num_envs`` transitions to consecutive slots, so an env
    copy's next transition is ``stride = num_envs`` slots on (mod capacity; the capacity is a
    multiple of ``stride``). The window from slot ``t`` holds steps ``t, t + stride, ...``:

    - it ends after the first step whose episode ended (``terminated``: no bootstrap;
      ``truncated``: bootstrap from that step's stored true final observation);
    - it never crosses the write head: only slots written after ``t`` (and not overwritten
      since) are read, so a window the buffer does not hold yet is cut to the part it holds,
      still an exact ``m``-step return.

    Returns ``reward = sum_{k<m} gamma^k r_{t+k}`` and the window's last ``terminated``,
    ``truncated`` and ``next_obs``, with ``obs``, ``action`` (and ``buffer_age_metrics``' ``step``
    and ``behaviour_prob``) of slot ``t``; the target is then
    ``reward + gamma^m (1 - terminated) v(next_obs)``.
    """
    data, capacity = buffer.data, buffer.capacity
    steps = stride * jnp.arange(n, dtype=jnp.int32)
    slots = (index[:, None] + steps) % capacity  # i32[B, n]
    # Slots written from t on, t included: t .. pos - 1 around the circle (1 .. capacity).
    written = (buffer.pos - 1 - index) % capacity + 1
    ended = jnp.logical_or(data.terminated[slots], data.truncated[slots])  # bool[B, n]
    ended_before = jnp.cumsum(ended, axis=1, dtype=jnp.int32) - ended > 0
    in_window = jnp.logical_and(steps < written[:, None], ~ended_before)  # a prefix of each row
    m = in_window.sum(axis=1, dtype=jnp.int32)  # >= 1
    powers = [jnp.float32(1.0)]
    for _ in range(n):
        powers.append(powers[-1] * jnp.asarray(gamma, jnp.float32))
    powers = jnp.stack(powers)  # f32[n + 1]: gamma^0 .. gamma^n
    reward = jnp.sum(jnp.where(in_window, powers[:n] * data.reward[slots], 0.0), axis=1)
    last = jnp.take_along_axis(slots, (m - 1)[:, None], axis=1)[:, 0]
    batch = Transition(obs=data.obs[index], action=data.action[index], reward=reward,
                       terminated=data.terminated[last], next_obs=data.next_obs[last],
                       truncated=data.truncated[last],
                       **{name: getattr(data, name)[index] for name in ("step", "behaviour_prob")
                          if getattr(data, name) is not None})
    return batch, powers[m]
