"""The sum tree against hand-computed leaves and totals, exact probabilities and float64 sums."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn.sum_tree import (
    sum_tree_init,
    sum_tree_leaves,
    sum_tree_sample,
    sum_tree_set,
    sum_tree_total,
)

# 0.999 quantiles of the chi-square distribution (scipy.stats.chi2.ppf(0.999, df), as in every
# chi-square table): a test at a fixed key fails by chance with probability 1e-3 at most, and
# with the key fixed it either always passes or always fails.
CHI2_999 = {5: 20.515, 7: 24.322}


@pytest.fixture(scope="module")
def tree_set():
    return jax.jit(sum_tree_set)


@pytest.fixture(scope="module")
def tree_sample():
    return jax.jit(sum_tree_sample, static_argnums=2)


def _tree(tree_set, capacity, leaves):
    """A tree of ``capacity`` with leaf ``i`` set to ``leaves[i]``."""
    index = jnp.arange(len(leaves), dtype=jnp.int32)
    return tree_set(sum_tree_init(capacity), index, jnp.asarray(leaves, jnp.float32))


def _chi_square(draws, probs):
    n = len(draws)
    counts = np.bincount(np.asarray(draws), minlength=len(probs))
    nonzero = probs > 0
    expected = n * probs[nonzero]
    return counts, float(np.sum((counts[nonzero] - expected) ** 2 / expected))


def test_init_rounds_capacity_up_to_whole_groups_and_is_zero():
    # up to 64 leaves: all of them the top level; beyond, whole groups of 16 (or 16^2, ...)
    # below a top of at most 64 nodes, each level above the leaves stored
    def shapes(capacity):
        tree = sum_tree_init(capacity)
        return tree.leaves.shape[0], [level.shape[0] for level in tree.sums]

    assert shapes(5) == (5, [])
    assert shapes(1) == (1, [])
    assert shapes(64) == (64, [])
    assert shapes(512) == (512, [32])
    assert shapes(600) == (38 * 16, [38])
    assert shapes(100_000) == (25 * 16**3, [6400, 400, 25])  # 391 groups of 256 > 64
    assert float(sum_tree_total(sum_tree_init(5))) == 0.0
    with pytest.raises(ValueError, match="capacity=0"):
        sum_tree_init(0)


def test_a_set_recomputes_exactly_the_parents_it_touches(tree_set):
    # 4096 leaves: levels of 256 and 16 nodes above them
    tree = tree_set(sum_tree_init(4096), jnp.array([0, 17, 4095]), jnp.array([1.0, 2.0, 4.0]))
    low, top = (np.asarray(level) for level in tree.sums)
    assert low[0] == 1 and low[1] == 2 and low[255] == 4 and low.sum() == 7
    assert top[0] == 3 and top[15] == 4 and top.sum() == 7
    # slot 17 twice: the last value wins in the leaf and in both ancestors
    tree = tree_set(tree, jnp.array([17, 3, 17]), jnp.array([5.0, 0.25, 0.5]))
    low, top = (np.asarray(level) for level in tree.sums)
    assert low[0] == 1.25 and low[1] == 0.5 and top[0] == 1.75 and top[15] == 4
    assert float(sum_tree_total(tree)) == 5.75


def test_stored_levels_equal_sums_of_their_children_after_many_small_sets():
    capacity, steps, k = 5000, 300, 8  # 5008 leaves: levels of 313 and 20 nodes

    @jax.jit
    def run(key):
        def body(i, tree):
            index_key, value_key = jax.random.split(jax.random.fold_in(key, i))
            index = jax.random.randint(index_key, (k,), 0, capacity)
            value = jax.random.uniform(value_key, (k,), minval=0.0, maxval=10.0)
            return sum_tree_set(tree, index, value)

        return jax.lax.fori_loop(0, steps, body, sum_tree_init(capacity))

    tree = run(jax.random.key(12))
    below = np.asarray(tree.leaves, np.float64)
    for level in tree.sums:
        below = below.reshape(-1, 16).sum(axis=1)
        np.testing.assert_allclose(np.asarray(level), below, rtol=1e-6)


def test_set_writes_the_leaves_and_the_total_follows(tree_set):
    tree = tree_set(sum_tree_init(5), jnp.array([0, 2, 4]), jnp.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(tree.leaves, np.array([1, 0, 2, 0, 3], np.float32))
    assert float(sum_tree_total(tree)) == 6.0
    np.testing.assert_array_equal(sum_tree_leaves(tree, jnp.array([4, 0, 1])), [3.0, 1.0, 0.0])
    # overwrite slot 2 with 0.5 and set slot 1
    tree = tree_set(tree, jnp.array([2, 1]), jnp.array([0.5, 4.0]))
    np.testing.assert_array_equal(tree.leaves, np.array([1, 4, 0.5, 0, 3], np.float32))
    assert float(sum_tree_total(tree)) == 8.5
    # capacity 600: 38 groups of 16 leaves; slots 3, 300 and 599 in groups 0, 18 and 37
    tree = tree_set(sum_tree_init(600), jnp.array([3, 300, 599]), jnp.array([1.0, 2.0, 4.0]))
    assert tree.leaves.shape == (608,) and float(sum_tree_total(tree)) == 7.0


def test_repeated_indices_the_last_occurrence_wins(tree_set):
    tree = tree_set(sum_tree_init(5), jnp.array([0, 2, 4]), jnp.array([1.0, 2.0, 3.0]))
    tree = tree_set(tree, jnp.array([1, 3, 1, 1, 3]), jnp.array([5.0, 2.0, 7.0, 4.0, 9.0]))
    # leaves [1, 4, 2, 9, 3, 0, 0, 0]: slot 1 takes 4 (its third write), slot 3 takes 9
    np.testing.assert_array_equal(sum_tree_leaves(tree, jnp.arange(5)), [1, 4, 2, 9, 3])
    assert float(sum_tree_total(tree)) == 19.0
    # 64 writes to one slot, values 0..63: the last, 63, wins; the root is the sum of the leaves
    tree = tree_set(tree, jnp.full((64,), 2), jnp.arange(64, dtype=jnp.float32))
    np.testing.assert_array_equal(sum_tree_leaves(tree, jnp.arange(5)), [1, 4, 63, 9, 3])
    assert float(sum_tree_total(tree)) == 80.0


def test_repeated_indices_in_a_large_set_the_last_occurrence_wins(tree_set):
    # 1000 writes (above SQUARE_MAX_K: resolved by sorting) to slots k % 10 with value k: slot j
    # ends at 990 + j; the root is 990 * 10 + 45
    index = jnp.arange(1000, dtype=jnp.int32) % 10
    tree = tree_set(sum_tree_init(16), index, jnp.arange(1000, dtype=jnp.float32))
    np.testing.assert_array_equal(sum_tree_leaves(tree, jnp.arange(16)),
                                  [990 + j for j in range(10)] + [0] * 6)
    assert float(sum_tree_total(tree)) == 9945.0


def test_sampling_frequencies_match_the_exact_probabilities(tree_set, tree_sample):
    leaves = np.array([1.0, 0.0, 2.0, 3.0, 0.0, 0.5, 4.0, 1.5], np.float32)  # total 12
    tree = _tree(tree_set, 8, leaves)
    draws = tree_sample(tree, jax.random.key(7), (200_000,))
    assert draws.dtype == jnp.int32 and draws.shape == (200_000,)
    counts, chi2 = _chi_square(draws, leaves / 12.0)
    assert counts[1] == 0 and counts[4] == 0  # zero leaves never drawn
    assert chi2 < CHI2_999[5], (counts, chi2)  # 6 nonzero leaves: df = 5


def test_equal_leaves_sample_uniformly_and_padding_is_never_drawn(tree_set, tree_sample):
    tree = _tree(tree_set, 8, [2.0] * 8)
    _, chi2 = _chi_square(tree_sample(tree, jax.random.key(3), (200_000,)), np.full(8, 1 / 8))
    assert chi2 < CHI2_999[7]
    # capacity 6 in a tree of 8 leaves: slots 6 and 7 are padding
    tree = _tree(tree_set, 6, [1.0] * 6)
    draws = np.asarray(tree_sample(tree, jax.random.key(4), (100_000,)))
    assert draws.min() == 0 and draws.max() == 5
    # the last slot is the only nonzero one: every draw is it, never the padding beside it
    tree = tree_set(sum_tree_init(6), jnp.array([5]), jnp.array([1e-30]))
    np.testing.assert_array_equal(tree_sample(tree, jax.random.key(5), (1000,)), 5)


def test_sample_shape_and_zero_tree(tree_sample):
    draws = tree_sample(sum_tree_init(5), jax.random.key(0), (4, 8))
    assert draws.shape == (4, 8)
    np.testing.assert_array_equal(draws, 0)  # zero total: every draw is slot 0


def test_rounding_never_draws_a_zero_leaf(tree_set, tree_sample):
    # 4096 leaves (16 top nodes of 16 groups of 16) spread over nine decades, every third leaf
    # and the last 5 of each group zero: float32 prefix sums of such leaves round, and u minus
    # the siblings before can land at or past a node's own children's sum. No zero leaf drawn.
    n = 16 * 16 * 16
    values = 10.0 ** jax.random.uniform(jax.random.key(8), (n,), minval=-6.0, maxval=3.0)
    zero = (jnp.arange(n) % 3 == 0) | (jnp.arange(n) % 16 >= 11)
    tree = _tree(tree_set, n * 8, jnp.where(zero, 0.0, values))  # 32768 leaves: 2 levels
    draws = np.asarray(tree_sample(tree, jax.random.key(9), (200_000,)))
    assert draws.max() < n and not np.any(np.asarray(zero)[draws])
    # one huge and one tiny leaf in the last group, after zeros: both drawn, nothing else
    tree = tree_set(sum_tree_init(n), jnp.array([n - 16, n - 1]), jnp.array([1e7, 1.0]))
    draws = np.asarray(tree_sample(tree, jax.random.key(10), (100_000,)))
    assert set(np.unique(draws)) <= {n - 16, n - 1} and n - 16 in draws


def test_root_does_not_drift_over_a_million_updates():
    # 31250 sets of 32 random slots of a 100k-capacity tree: 10^6 leaf updates,
    # values spread over six decades so that delta updates would lose the small ones
    capacity, steps, k = 100_000, 31_250, 32

    @jax.jit
    def run(key):
        def body(i, tree):
            index_key, value_key = jax.random.split(jax.random.fold_in(key, i))
            index = jax.random.randint(index_key, (k,), 0, capacity)
            value = 10.0 ** jax.random.uniform(value_key, (k,), minval=-3.0, maxval=3.0)
            return sum_tree_set(tree, index, value)

        return jax.lax.fori_loop(0, steps, body, sum_tree_init(capacity))

    tree = run(jax.random.key(11))
    leaves = np.asarray(tree.leaves).astype(np.float64)
    assert np.all(leaves[capacity:] == 0)
    exact = leaves.sum()
    total = float(sum_tree_total(tree))
    assert abs(total - exact) <= 1e-5 * exact, (total, exact)


def test_vmap_over_trees_equals_each_tree_alone(tree_set, tree_sample):
    index = jnp.array([[0, 1, 2, 3], [4, 4, 9, 0], [7, 2, 7, 5]], jnp.int32)
    value = jnp.array([[1, 2, 3, 4], [5, 6, 0.5, 1], [2, 3, 8, 0.25]], jnp.float32)
    keys = jax.random.split(jax.random.key(2), 3)
    trees = jax.vmap(lambda _: sum_tree_init(10))(jnp.arange(3))
    trees = jax.jit(jax.vmap(sum_tree_set))(trees, index, value)
    draws = jax.jit(jax.vmap(lambda t, key: sum_tree_sample(t, key, (64,))))(trees, keys)
    for run in range(3):
        alone = tree_set(sum_tree_init(10), index[run], value[run])
        np.testing.assert_array_equal(trees.leaves[run], alone.leaves)
        np.testing.assert_array_equal(draws[run], tree_sample(alone, keys[run], (64,)))
    # run 1: slot 4 set twice, the last (6) wins; root 6 + 0.5 + 1
    assert float(sum_tree_total(jax.tree.map(lambda x: x[1], trees))) == 7.5


def test_vmapped_ops_make_no_array_across_runs_and_set_only_scatters():
    # the cost per run must not grow with the number of runs: no op of vmapped set or sample
    # makes an array larger than the runs' own leaves, and set's only dense op is the scatter
    # into them (in place in a scan)
    runs, capacity = 3, 100_000
    trees = jax.vmap(lambda _: sum_tree_init(capacity))(jnp.arange(runs))
    size = trees.leaves.size
    keys = jax.random.split(jax.random.key(0), runs)
    index, value = jnp.zeros((runs, 10), jnp.int32), jnp.ones((runs, 10))
    sample = jax.vmap(lambda t, key: sum_tree_sample(t, key, (32,)))
    for fn, args, allowed in [(jax.vmap(sum_tree_set), (trees, index, value), {"scatter"}),
                              (sample, (trees, keys), None)]:
        eqns = jax.make_jaxpr(fn)(*args).jaxpr.eqns
        assert max(v.aval.size for e in eqns for v in e.outvars) <= size
        dense = {e.primitive.name for e in eqns for v in e.outvars if v.aval.size >= size}
        assert allowed is None or dense <= allowed, dense
