"""The sum tree: priorities of one run's replay slots, sampled in proportion to them.

Layout: ``leaves: f32[L]`` holds slot ``i``'s priority at ``leaves[i]``, ``L`` the capacity rounded
up to a multiple of ``WIDTH^d`` (the padding leaves 0, so never drawn); ``sums`` holds the ``d``
levels above them, bottom first, each node the sum of its ``WIDTH`` children; the last level, the
top, has at most ``TOP_MAX`` nodes (100k slots: 16-ary levels of 6400, 400 and 25 nodes).

Why this shape, on XLA:CPU: a scatter is a loop over its indices and a gather is cheap, so a set
scatters its ``K`` leaves and then, level by level, recomputes the ``K`` parents it touched from a
``K x WIDTH`` gather of their children (``d + 1`` scatters of ``K``; a ``log2 L``-level binary tree
needs ``log2 L`` of them, 2300 scalar trips per gradient step at batch 128, buffer 100k). ``B``
draws compare ``B`` numbers with the top's prefix sums and then gather ``B x WIDTH`` sums per
level: no pass over the ``L`` leaves (building the levels from the leaves at each draw, as this
module did before, was one such pass per gradient step, a quarter of a CartPole step's cost).

Exact by construction: a node is only ever written as the sum of its children's current values,
recomputed from them whenever one of them changes, never updated by adding deltas, so there is
no drift to accumulate. Trees that add ``new - old`` to their upper nodes (Dopamine's, in float64;
flashbax's) keep every update's rounding error for good: flashbax's float32 tree is reported to
drift from its leaves under repeated priority updates until sampling returns all-zero
experiences (instadeepai/flashbax#52, worked around by an optional float64 tree in #58); after
10^6 updates of 2^17 leaves a float32 delta tree's root is 1.1e-4 off relative.

Sampling draws ``P(i) = leaf_i / total`` by inverting prefix sums (over the top level, then over
the children of the node chosen, level by level); a float32 prefix sum strictly increases only at a
nonzero addend, so the search, which takes the first prefix sum above ``u``, never returns a zero
leaf while the total is positive.

Under ``jax.vmap`` over runs each run's work is its own ``K`` or ``B`` paths: the cost per run
does not grow with the number of runs.

Priorities must be finite and >= 0; they are not checked (the functions are traced).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

WIDTH = 16  # children per inner node
TOP_MAX = 64  # at most this many top-level nodes
SQUARE_MAX_K = 256  # sum_tree_set resolves repeats by a K x K comparison up to this many indices


class SumTree(NamedTuple):
    """A sum tree's nodes (one run's; vmap adds a leading run axis to each)."""

    leaves: jax.Array  # f32[L]: slot i's priority at leaves[i]; the padding past capacity 0
    sums: tuple[jax.Array, ...]  # f32[L / WIDTH], ..., f32[L / WIDTH^d] (the top): node sums


def _depth(leaves: int) -> int:
    """``d``, the static number of ``WIDTH``-ary levels above the leaves: the least with
    ``ceil(leaves / WIDTH^d) <= TOP_MAX``."""
    depth = 0
    while -(-leaves // WIDTH**depth) > TOP_MAX:
        depth += 1
    return depth


def sum_tree_init(capacity: int) -> SumTree:
    """An all-zero tree of ``capacity`` leaves, rounded up to a multiple of ``WIDTH^d``."""
    if not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"sum_tree_init: capacity={capacity!r}; must be an int >= 1")
    depth = _depth(capacity)
    leaves = -(-capacity // WIDTH**depth) * WIDTH**depth
    return SumTree(leaves=jnp.zeros((leaves,), jnp.float32),
                   sums=tuple(jnp.zeros((leaves // WIDTH**level,), jnp.float32)
                              for level in range(1, depth + 1)))


def _children(level: jax.Array, node: jax.Array) -> jax.Array:
    """``f32[*node.shape, WIDTH]``: the values in ``level`` of the children of each ``node``."""
    return level[node[..., None] * WIDTH + jnp.arange(WIDTH, dtype=jnp.int32)]


def sum_tree_total(tree: SumTree) -> jax.Array:
    """The sum of all leaves, ``f32[]`` (the sum of the top level, as sampling uses it)."""
    return jnp.sum(tree.sums[-1] if tree.sums else tree.leaves)


def sum_tree_leaves(tree: SumTree, index: jax.Array) -> jax.Array:
    """The leaves of slots ``index: i32[K]``, ``f32[K]``."""
    return tree.leaves[index]


def sum_tree_set(tree: SumTree, index: jax.Array, value: jax.Array) -> SumTree:
    """Sets leaf ``index[k]`` (``i32[K]``, each in ``[0, capacity)``) to ``value[k]`` (``f32[K]``)
    and recomputes every node above them from its children.

    When an index repeats, its LAST occurrence wins: every occurrence writes the value of the
    last one, so the scatter's order among duplicates cannot matter (nor can it for a parent
    touched twice: both writes are the same sum of the same children). With ``K * WIDTH >= L``
    (a bulk set, e.g. filling the tree) the levels are rebuilt from the leaves instead.
    """
    index = jnp.asarray(index, jnp.int32)
    value = jnp.asarray(value, jnp.float32)
    leaves = tree.leaves.at[index].set(_last_occurrence_values(index, value))
    if index.shape[0] * WIDTH >= leaves.shape[0]:
        sums, below = [], leaves
        for _ in tree.sums:
            below = below.reshape(-1, WIDTH).sum(axis=1)
            sums.append(below)
        return SumTree(leaves=leaves, sums=tuple(sums))
    sums, below, node = [], leaves, index
    for level in tree.sums:
        node = node // WIDTH
        below = level.at[node].set(jnp.sum(_children(below, node), axis=-1))
        sums.append(below)
    return SumTree(leaves=leaves, sums=tuple(sums))


def _last_occurrence_values(index: jax.Array, value: jax.Array) -> jax.Array:
    """``f32[K]``: for each ``k``, the value of the last ``k'`` with ``index[k'] == index[k]``.

    A K x K comparison up to ``SQUARE_MAX_K`` indices (on one CPU core about 3x faster than the
    sort at K = 32, even at K = 512), a stable sort beyond, where K^2 memory and time would
    dominate (K = 10^5 would take 40 GB).
    """
    k = index.shape[0]
    if k <= SQUARE_MAX_K:
        same = index[:, None] == index[None, :]  # bool[K, K]
        later = jnp.where(same, jnp.arange(k, dtype=jnp.int32)[None, :], -1)
        return value[jnp.max(later, axis=1)]
    order = jnp.argsort(index, stable=True)  # repeats stay in call order
    ordered = index[order]
    last = jnp.searchsorted(ordered, ordered, side="right") - 1  # the last of each run
    return jnp.zeros_like(value).at[order].set(value[order][last], unique_indices=True)


def _first_above(prefix: jax.Array, u: jax.Array) -> jax.Array:
    """``i32[...]``: how many entries of the nondecreasing ``prefix`` (last axis) are <= ``u``,
    i.e. the index of the first one above it (a vectorised comparison: no search loop)."""
    return jnp.sum(prefix <= u[..., None], axis=-1, dtype=jnp.int32)


def sum_tree_sample(tree: SumTree, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Independent draws of slots, ``i32[*shape]``, with ``P(i) = leaf_i / total``.

    ``u ~ U[0, total)`` (clipped below the total, which float32 ``uniform * total`` can round up
    to); the top node drawn is the first whose cumulative sum exceeds ``u``; then, a level at a
    time, the first child whose cumulative sum among its siblings exceeds ``u`` minus the siblings
    before its parent (clipped below the siblings' own cumulative sum, which rounding can leave
    under it). Every search stops where a prefix sum rose, so at a nonzero node and in the end a
    nonzero leaf. With a zero total every draw is slot 0.
    """
    return sum_tree_sample_with_leaves(tree, key, shape)[0]


def sum_tree_sample_with_leaves(tree: SumTree, key: jax.Array, shape: tuple[int, ...]
                                ) -> tuple[jax.Array, jax.Array]:
    """``sum_tree_sample``'s draws and their leaves, ``(i32[*shape], f32[*shape])``.

    The leaves come from the gather of siblings the last step of the search makes anyway. Read
    apart (``tree.leaves[index]``) they would be a second reader of the leaves that nothing
    orders before a later in-place ``sum_tree_set`` (importance weights feed the loss, not the
    new priorities), and XLA would copy the whole leaf array, twice, at every gradient step.
    """
    levels = (tree.leaves, *tree.sums)
    top = jnp.cumsum(levels[-1])  # f32[T]
    total = top[-1]
    u = jax.random.uniform(key, shape, jnp.float32) * total
    u = jnp.minimum(u, jnp.nextafter(total, jnp.float32(0)))
    node = jnp.minimum(_first_above(top, u), top.shape[0] - 1)  # < T unless total = 0
    if not tree.sums:
        node = jnp.where(total > 0, node, 0)
        return node, tree.leaves[node]
    u = u - jnp.where(node > 0, top[jnp.maximum(node - 1, 0)], 0.0)
    for level in reversed(levels[:-1]):
        children = _children(level, node)  # f32[*shape, WIDTH]
        siblings = jnp.cumsum(children, axis=-1)
        u = jnp.minimum(u, jnp.nextafter(siblings[..., -1], jnp.float32(0)))
        child = jnp.minimum(_first_above(siblings, u), WIDTH - 1)
        u = u - jnp.where(child > 0, jnp.take_along_axis(
            siblings, jnp.maximum(child - 1, 0)[..., None], axis=-1)[..., 0], 0.0)
        node = node * WIDTH + child
    leaf = jnp.take_along_axis(children, child[..., None], axis=-1)[..., 0]
    return jnp.where(total > 0, node, 0), leaf  # a zero total: every leaf is 0, slot 0's too
