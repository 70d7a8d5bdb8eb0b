"""The replay buffer: fixed-capacity circular arrays in a pytree, where transitions are stored.

``buffer_add`` writes ``n`` transitions at ``pos .. pos+n-1 (mod capacity)`` in O(n), so the buffer
always holds exactly the last ``capacity`` transitions, like the seed's concatenating
``ReplayBuffer``; ``buffer_sample`` draws uniformly, with replacement, from the filled part.
With prioritized replay the buffer also holds each slot's priority in a sum tree (``priorities``);
``jaxdqn.replay`` samples by it and keeps it current.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdqn.sum_tree import SumTree, sum_tree_init


class Transition(NamedTuple):
    """One or more transitions ``(s, a, r, terminated, s')``; leading axes are batch axes.

    The optional leaves are None unless an option needs them, so a buffer without them is the same
    pytree (and the same memory) as before they existed.
    """

    obs: jax.Array  # f32[..., *obs_shape]
    action: jax.Array  # i32[...]
    reward: jax.Array  # f32[...]
    terminated: jax.Array  # bool[...]
    next_obs: jax.Array  # f32[..., *obs_shape]: the true next observation, never an auto-reset one
    # Optional leaves, None unless an option needs them (the buffer of other configs is unchanged):
    truncated: jax.Array | None = None  # bool[...]: cut by the time limit (stored with n_step > 1)
    # buffer_age_metrics: the global env step at which it was stored, and the probability that the
    # behaviour policy (epsilon-greedy at that step) took its action
    step: jax.Array | None = None  # i32[...]
    behaviour_prob: jax.Array | None = None  # f32[...]


class BufferState(NamedTuple):
    data: Transition  # each leaf has leading axis `capacity`
    pos: jax.Array  # i32[]: where the next transition goes
    size: jax.Array  # i32[]: how many slots hold data, <= capacity
    # Prioritized replay only (None otherwise): each slot's p^alpha, and the largest p so far.
    priorities: SumTree | None = None
    max_priority: jax.Array | None = None  # f32[]: raw |TD error| + epsilon, 1.0 at the start

    @property
    def capacity(self) -> int:
        return self.data.reward.shape[0]


def buffer_init(capacity: int, obs_shape: tuple[int, ...], obs_dtype=jnp.float32, *,
                truncated: bool = False, prioritized: bool = False, behaviour: bool = False
                ) -> BufferState:
    """An empty buffer of ``capacity`` transitions; with ``truncated`` it also stores whether each
    one was cut by the time limit (n-step windows end there), with ``prioritized`` each slot's
    priority (all 0: an empty slot is never drawn), with ``behaviour`` each one's ``step`` and
    ``behaviour_prob`` (8 bytes more per transition)."""
    obs = jnp.zeros((capacity, *obs_shape), obs_dtype)
    data = Transition(
        obs=obs,
        action=jnp.zeros((capacity,), jnp.int32),
        reward=jnp.zeros((capacity,), jnp.float32),
        terminated=jnp.zeros((capacity,), jnp.bool_),
        next_obs=obs,
        truncated=jnp.zeros((capacity,), jnp.bool_) if truncated else None,
    )
    if behaviour:
        data = data._replace(step=jnp.zeros((capacity,), jnp.int32),
                             behaviour_prob=jnp.zeros((capacity,), jnp.float32))
    if not prioritized:
        return BufferState(data=data, pos=jnp.int32(0), size=jnp.int32(0))
    return BufferState(data=data, pos=jnp.int32(0), size=jnp.int32(0),
                       priorities=sum_tree_init(capacity), max_priority=jnp.float32(1.0))


def buffer_add(state: BufferState, batch: Transition) -> BufferState:
    """Stores ``n`` transitions (leading axis ``n <= capacity``), overwriting the oldest."""
    n = batch.reward.shape[0]
    capacity = state.capacity
    idx = (state.pos + jnp.arange(n, dtype=jnp.int32)) % capacity
    data = jax.tree.map(
        lambda store, new: store.at[idx].set(new.astype(store.dtype), unique_indices=True),
        state.data,
        batch,
    )
    return state._replace(
        data=data,
        pos=(state.pos + n) % capacity,
        size=jnp.minimum(state.size + n, capacity),
    )


def buffer_sample(state: BufferState, key: jax.Array, batch_size: int) -> Transition:
    """``batch_size`` transitions drawn uniformly with replacement from the filled slots.

    Sampling an empty buffer returns slot 0 (zeros); the training loop never does so because
    ``learning_starts >= batch_size``.
    """
    idx = uniform_index(key, (batch_size,), jnp.maximum(state.size, 1))
    return jax.tree.map(lambda x: x[idx], state.data)


def uniform_index(key: jax.Array, shape: tuple[int, ...], n) -> jax.Array:
    """``i32`` indices uniform on ``[0, n)``, ``1 <= n < 2**31`` (``n`` may be traced).

    The method of ``jax.random.randint`` (two 32-bit words folded mod ``n``, which makes the modulo
    bias negligible), drawn with one threefry call instead of its three: on XLA:CPU each call is a
    separate loop, and this one runs at every gradient step.
    """
    n = jnp.asarray(n, jnp.uint32)
    hi, lo = jax.random.bits(key, (2, *shape), jnp.uint32)
    multiplier = (jnp.uint32(1 << 16) % n) ** 2 % n  # 2**32 mod n
    return ((hi % n * multiplier + lo % n) % n).astype(jnp.int32)


def buffer_bytes(state: BufferState) -> int:
    """Bytes held by the transition arrays: capacity times the size of one transition."""
    return sum(x.nbytes for x in jax.tree.leaves(state.data))
