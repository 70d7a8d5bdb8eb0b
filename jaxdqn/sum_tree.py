"""The sum tree: priorities of one run's replay slots, sampled in proportion to them.

Layout: the state is the leaves alone, ``leaves: f32[L]``: slot ``i``'s priority at ``leaves[i]``,
``L`` the capacity rounded up to a multiple of ``WIDTH^d`` (the padding leaves 0, so never drawn).
The tree above them has ``d`` levels of ``WIDTH``-ary nodes and a top level of at most ``TOP_MAX``
nodes (100k slots: 16-ary levels of 6256 and 391 nodes); ``sum_tree_sample`` builds it from the
leaves each time it draws (``reshape(-1, WIDTH).sum`` per level).

Why: on XLA:CPU a scatter is a loop over its indices, so the ``log2 L``-level binary tree this
replaces cost ``log2 L`` scatter loops per ``sum_tree_set`` (2300 scalar trips per gradient step at
batch 128, buffer 100k), ``log2 L`` dependent gathers per draw and copies of the tree between
them: 3-5x the uniform learning step. Here a set is one scatter of ``K`` leaves (in place inside a
``lax.scan`` or ``fori_loop`` whose carry holds the tree), and ``B`` draws cost one dense,
vectorised pass over the leaves (``O(L)`` adds) plus ``d`` gathers of ``B x WIDTH`` sums.

Exact by construction: nothing but the leaves is stored, so every sum is recomputed from them
and there is no drift to accumulate. Trees that add ``new - old`` to their upper nodes
(Dopamine's, in float64; flashbax's) keep every update's rounding error for good: flashbax's
float32 tree is reported to drift from its leaves under repeated priority updates until sampling
returns all-zero experiences (instadeepai/flashbax#52, worked around by an optional float64 tree
in #58); after 10^6 updates of 2^17 leaves a float32 delta tree's root is 1.1e-4 off relative.

Sampling draws ``P(i) = leaf_i / total`` by inverting prefix sums (over the top level, then over
the children of the node chosen, level by level); a float32 prefix sum strictly increases only at a
nonzero addend, so the search, which takes the first prefix sum above ``u``, never returns a zero
leaf while the total is positive.

Under ``jax.vmap`` over runs each run's work is its own ``O(L)`` pass and ``K`` or ``B`` paths:
the cost per run does not grow with the number of runs.

Priorities must be finite and >= 0; they are not checked (the functions are traced).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

WIDTH = 16  # children per inner node below the top level
TOP_MAX = 512  # at most this many top-level nodes (the levels below them are WIDTH-ary)
SQUARE_MAX_K = 256  # sum_tree_set resolves repeats by a K x K comparison up to this many indices


class SumTree(NamedTuple):
    """The leaves of a sum tree (one run's; vmap adds a leading run axis)."""

    leaves: jax.Array  # f32[L]: slot i's priority at leaves[i]; the padding past capacity 0


def _depth(leaves: int) -> int:
    """``d``, the static number of ``WIDTH``-ary levels below the top: the least with
    ``ceil(leaves / WIDTH^d) <= TOP_MAX``."""
    depth = 0
    while -(-leaves // WIDTH**depth) > TOP_MAX:
        depth += 1
    return depth


def sum_tree_init(capacity: int) -> SumTree:
    """An all-zero tree of ``capacity`` leaves, rounded up to a multiple of ``WIDTH^d``."""
    if not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"sum_tree_init: capacity={capacity!r}; must be an int >= 1")
    group = WIDTH ** _depth(capacity)
    return SumTree(leaves=jnp.zeros((-(-capacity // group) * group,), jnp.float32))


def _levels(tree: SumTree) -> list[jax.Array]:
    """The node sums, leaves first: ``f32[L], f32[L / WIDTH], ..., f32[L / WIDTH^d]`` (the top),
    each node the sum of its ``WIDTH`` children."""
    levels = [tree.leaves]
    for _ in range(_depth(tree.leaves.shape[-1])):
        levels.append(levels[-1].reshape(-1, WIDTH).sum(axis=1))
    return levels


def sum_tree_total(tree: SumTree) -> jax.Array:
    """The sum of all leaves, ``f32[]`` (the sum of the top level, as sampling uses it)."""
    return jnp.sum(_levels(tree)[-1])


def sum_tree_leaves(tree: SumTree, index: jax.Array) -> jax.Array:
    """The leaves of slots ``index: i32[K]``, ``f32[K]``."""
    return tree.leaves[index]


def sum_tree_set(tree: SumTree, index: jax.Array, value: jax.Array) -> SumTree:
    """Sets leaf ``index[k]`` (``i32[K]``, each in ``[0, capacity)``) to ``value[k]`` (``f32[K]``).

    When an index repeats, its LAST occurrence wins: every occurrence writes the value of the
    last one, so the scatter's order among duplicates cannot matter.
    """
    index = jnp.asarray(index, jnp.int32)
    value = jnp.asarray(value, jnp.float32)
    return SumTree(leaves=tree.leaves.at[index].set(_last_occurrence_values(index, value)))


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
    levels = _levels(tree)
    top = jnp.cumsum(levels[-1])  # f32[T]
    total = top[-1]
    u = jax.random.uniform(key, shape, jnp.float32) * total
    u = jnp.minimum(u, jnp.nextafter(total, jnp.float32(0)))
    node = jnp.minimum(_first_above(top, u), top.shape[0] - 1)  # < T unless total = 0
    u = u - jnp.where(node > 0, top[jnp.maximum(node - 1, 0)], 0.0)
    for level in reversed(levels[:-1]):
        siblings = jnp.cumsum(level.reshape(-1, WIDTH)[node], axis=-1)  # f32[*shape, WIDTH]
        u = jnp.minimum(u, jnp.nextafter(siblings[..., -1], jnp.float32(0)))
        child = jnp.minimum(_first_above(siblings, u), WIDTH - 1)
        u = u - jnp.where(child > 0, jnp.take_along_axis(
            siblings, jnp.maximum(child - 1, 0)[..., None], axis=-1)[..., 0], 0.0)
        node = node * WIDTH + child
    return jnp.where(total > 0, node, 0)
