"""A uniform choice among the true entries of a mask: a random legal action and a tie broken at
random, for acting (``policy``) and for the targets' argmax (``estimators``).

Imported with the estimator records, so it loads JAX only when it first runs (``jaxdqn.lazy``).
"""

from __future__ import annotations

from jaxdqn.lazy import LazyModule

jnp = LazyModule("jax.numpy")


def kth_true(mask, u):
    """``i32[...]``: for ``mask: bool[..., n]`` and ``u: f32[...]`` in [0, 1), the index of the
    ``floor(u * count)``-th true entry of each row: uniform over the true entries when ``u`` is."""
    count = mask.sum(axis=-1, dtype=jnp.int32)
    k = jnp.minimum((u * count).astype(jnp.int32), count - 1)
    return jnp.argmax(jnp.cumsum(mask, axis=-1, dtype=jnp.int32) > k[..., None],
                      axis=-1).astype(jnp.int32)
