"""The circular buffer against the seed's concatenating ReplayBuffer as a reference model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdqn.buffer import (
    Transition,
    buffer_add,
    buffer_bytes,
    buffer_init,
    buffer_sample,
    uniform_index,
)


class SeedReplayBuffer:
    """The seed's buffer (numpy part): concatenate, keep the last ``buffer_size``."""

    def __init__(self, buffer_size, obs_shape):
        self.buffer_size = buffer_size
        self.obs = np.empty((0, *obs_shape), dtype=np.float32)
        self.actions = np.empty(0, dtype=np.int32)
        self.rewards = np.empty(0, dtype=np.float32)
        self.terminated = np.empty(0, dtype=bool)
        self.next_obs = np.empty((0, *obs_shape), dtype=np.float32)

    def add(self, obs, action, reward, terminated, next_obs):
        self.obs = np.concatenate([self.obs, [obs]])[-self.buffer_size:]
        self.actions = np.concatenate([self.actions, [action]])[-self.buffer_size:]
        self.rewards = np.concatenate([self.rewards, [reward]])[-self.buffer_size:]
        self.terminated = np.concatenate([self.terminated, [terminated]])[-self.buffer_size:]
        self.next_obs = np.concatenate([self.next_obs, [next_obs]])[-self.buffer_size:]


_add = jax.jit(buffer_add)


def _chronological(state):
    """The buffer's contents oldest first: the circular layout unrolled at ``pos``."""
    size, pos, cap = int(state.size), int(state.pos), state.capacity
    order = np.arange(size) if size < cap else (pos + np.arange(cap)) % cap
    return jax.tree.map(lambda x: np.asarray(x)[order], state.data)


def _transitions(rng, n, t0):
    ids = np.arange(t0, t0 + n)  # unique ids make every stored row identifiable
    return Transition(
        obs=np.stack([ids, -ids], 1).astype(np.float32),
        action=(ids % 3).astype(np.int32),
        reward=rng.normal(size=n).astype(np.float32),
        terminated=rng.random(n) < 0.3,
        next_obs=np.stack([ids + 0.5, -ids], 1).astype(np.float32),
    )


@settings(max_examples=40, deadline=None)
@given(
    capacity=st.integers(1, 9),
    batch_sizes=st.lists(st.integers(1, 9), min_size=1, max_size=12),
    seed=st.integers(0, 2**16),
)
def test_circular_buffer_holds_exactly_what_the_seed_buffer_holds(capacity, batch_sizes, seed):
    rng = np.random.default_rng(seed)
    ref = SeedReplayBuffer(capacity, (2,))
    state = buffer_init(capacity, (2,))
    t = 0
    for n in batch_sizes:
        n = min(n, capacity)
        batch = _transitions(rng, n, t)
        t += n
        state = _add(state, batch)
        for i in range(n):
            ref.add(*(x[i] for x in batch if x is not None))
        got = _chronological(state)
        assert int(state.size) == len(ref.rewards)
        np.testing.assert_array_equal(got.obs, ref.obs)
        np.testing.assert_array_equal(got.action, ref.actions)
        np.testing.assert_array_equal(got.reward, ref.rewards)
        np.testing.assert_array_equal(got.terminated, ref.terminated)
        np.testing.assert_array_equal(got.next_obs, ref.next_obs)


def test_add_writes_only_n_rows_and_wraps():
    state = buffer_init(5, (1,))
    batch = Transition(jnp.ones((3, 1)), jnp.array([1, 2, 3]), jnp.ones(3), jnp.zeros(3, bool),
                       jnp.ones((3, 1)))
    state = buffer_add(buffer_add(state, batch), batch)
    assert int(state.pos) == 1 and int(state.size) == 5
    # second batch lands in slots 3, 4, 0
    np.testing.assert_array_equal(state.data.action, [3, 2, 3, 1, 2])


def test_sample_is_uniform_over_the_filled_part_only():
    state = buffer_init(100, (1,))
    n = 10
    ids = jnp.arange(n)
    state = buffer_add(state, Transition(ids[:, None] * 1.0, ids, ids * 1.0,
                                         jnp.zeros(n, bool), ids[:, None] * 1.0))
    batch = jax.jit(buffer_sample, static_argnums=2)(state, jax.random.key(0), 20_000)
    counts = np.bincount(np.asarray(batch.action), minlength=100)
    assert counts[n:].sum() == 0  # never an empty slot
    # Each of the 10 filled slots: expected 2000, sd ~42; 5 sd is a loose, reliable bound.
    assert np.all(np.abs(counts[:n] - 2000) < 5 * 42)
    # rows stay aligned across fields
    np.testing.assert_array_equal(batch.obs[:, 0], batch.action.astype(np.float32))


@pytest.mark.parametrize("n", [1, 3, 1000, 50_000])
def test_uniform_index_is_the_64_bit_draw_mod_n(n):
    # Below 2**16 the fold is exact: index = (hi * 2**32 + lo) mod n, as jax.random.randint
    # computes.
    key = jax.random.key(7)
    hi, lo = (np.asarray(x, dtype=np.uint64) for x in jax.random.bits(key, (2, 500), jnp.uint32))
    expected = ((hi.astype(object) << 32) + lo.astype(object)) % n
    got = np.asarray(uniform_index(key, (500,), n))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected.astype(np.int64))


def test_buffer_is_vmappable_and_footprint_is_capacity_times_transition():
    states = jax.vmap(lambda _: buffer_init(7, (4,)))(jnp.arange(3))
    batch = Transition(jnp.ones((3, 2, 4)), jnp.ones((3, 2), jnp.int32), jnp.ones((3, 2)),
                       jnp.ones((3, 2), bool), jnp.ones((3, 2, 4)))
    states = jax.vmap(buffer_add)(states, batch)
    assert states.size.tolist() == [2, 2, 2]
    one = buffer_init(7, (4,))
    # obs + next_obs (2 x 4 f32) + action i32 + reward f32 + terminated bool = 41 bytes
    assert buffer_bytes(one) == 7 * 41
