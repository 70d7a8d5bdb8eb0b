"""How a minibatch is drawn from the replay buffer and weighted: uniform or n-step samples.

``replay_sample`` returns one ``Sample``: the transitions, the discount of each sample's bootstrap
and, for prioritized replay, importance weights and the slots drawn. With ``n_step=1`` and uniform
replay it is ``buffer_sample`` itself, and the TD update gets the scalar ``gamma`` as before.

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


class Sample(NamedTuple):
    """A minibatch and how to use it."""

    batch: Transition  # reward: the m-step discounted reward sum; terminated, truncated and
    # next_obs: those of the window's last step
    discount: jax.Array | None  # f32[B]: gamma^m per sample; None: one-step (the scalar gamma)
    weight: jax.Array | None  # f32[B]: importance weights; None: uniform replay
    index: jax.Array | None  # i32[B]: the slots drawn (for priority updates); None: uniform


def replay_sample(buffer: BufferState, key: jax.Array, batch_size: int, gamma, *,
                  n_step: int = 1, stride: int = 1) -> Sample:
    """``batch_size`` samples drawn uniformly with replacement from the filled slots, each the
    ``n_step`` return from its slot (``n_step_window``; ``stride``: slots between consecutive
    transitions of one env copy, ``num_envs``). ``gamma`` may be traced."""
    if n_step == 1:
        return Sample(buffer_sample(buffer, key, batch_size), None, None, None)
    index = uniform_index(key, (batch_size,), jnp.maximum(buffer.size, 1))
    batch, discount = n_step_window(buffer, index, n_step, stride, gamma)
    return Sample(batch, discount, None, None)


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
    ``truncated`` and ``next_obs``, with ``obs`` and ``action`` of slot ``t``; the target is then
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
                       truncated=data.truncated[last])
    return batch, powers[m]
