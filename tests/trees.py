"""Pytree comparisons for tests: the structures must match before leaves are compared, so a
missing or extra leaf fails instead of being dropped silently by ``zip``."""

import jax
import numpy as np


def assert_same_structure(a, b) -> None:
    sa, sb = jax.tree.structure(a), jax.tree.structure(b)
    assert sa == sb, f"pytree structures differ:\n{sa}\n{sb}"


def assert_trees_equal(a, b, err_msg: str = "") -> None:
    """Same structure and every leaf equal bit for bit."""
    assert_same_structure(a, b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y, err_msg=err_msg)


def assert_trees_close(a, b, **tolerances) -> None:
    """Same structure and every leaf close (``np.testing.assert_allclose`` keywords)."""
    assert_same_structure(a, b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, **tolerances)


def trees_equal(a, b) -> bool:
    """Same structure and every leaf equal (a bool, for counting)."""
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
