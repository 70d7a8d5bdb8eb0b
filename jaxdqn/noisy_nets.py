"""Noisy networks (Fortunato et al. 2018): dense layers whose weights carry learned Gaussian noise,
the exploration of Rainbow.

A noisy dense layer of fan-in ``p`` and ``q`` outputs computes::

    y = x @ (mu_W + sigma_W * eps_W) + mu_b + sigma_b * eps_b

with factorised noise (the paper's eqs. 10-11): ``eps_W[i, j] = f(eps_in[i]) f(eps_out[j])`` and
``eps_b = f(eps_out)``, ``f(x) = sign(x) sqrt(|x|)``, from ``p + q`` unit normals instead of
``p q + q``. Its params are ``kernel`` and ``bias`` (the means ``mu``: the names of a plain
``nn.Dense``, so code that reads a network's layers reads a noisy one's means unchanged) and
``sigma_kernel``, ``sigma_bias``. The paper's factorised initialisation: ``mu ~ U(-1/sqrt(p),
1/sqrt(p))``, every ``sigma = sigma_0 / sqrt(p)`` (``sigma_0 = 0.5``).

``dense_apply`` is the one function that applies a dense layer, noisy or not: without noise it is
the plain layer of the means (deterministic: evaluation and saved agents act on it). Noise is a
``LayerNoise`` per layer, drawn by ``draw_noise`` for all noisy layers of a network at once (one
random call).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

NOISY_SIGMA0 = 0.5
"""``sigma_0`` of the paper's factorised initialisation (Fortunato et al. 2018, section 3.2)."""


class LayerNoise(NamedTuple):
    """One draw of a layer's factorised noise, ``f`` already applied. ``f32[p]`` and ``f32[q]``:
    one draw for every input row; ``f32[..., p]`` and ``f32[..., q]``: one per row of the input's
    leading axes."""

    eps_in: jax.Array
    eps_out: jax.Array


def factorised(x: jax.Array) -> jax.Array:
    """``f(x) = sign(x) sqrt(|x|)`` (the paper's eq. 11), elementwise."""
    return jnp.sign(x) * jnp.sqrt(jnp.abs(x))


def dense_apply(layer: dict, x: jax.Array, noise: LayerNoise | None = None) -> jax.Array:
    """A dense layer ``{"kernel": f32[p, q], "bias": f32[q]}`` (``bias`` optional) applied to
    ``x: f32[..., p]`` -> ``f32[..., q]``: ``x @ kernel + bias``.

    With ``noise`` the layer is noisy (it also holds ``sigma_kernel``, ``sigma_bias``) and
    ``kernel``, ``bias`` are its means. One draw for all rows forms the perturbed weights once
    and takes one product; a draw per row computes ``((x * eps_in) @ sigma_kernel) * eps_out``,
    the same sum row by row without a weight matrix per row.
    """
    if noise is None:
        y = x @ layer["kernel"]
        return y + layer["bias"] if "bias" in layer else y
    eps_in, eps_out = noise
    if eps_in.ndim == 1:
        y = x @ (layer["kernel"] + layer["sigma_kernel"] * jnp.outer(eps_in, eps_out))
    else:
        y = x @ layer["kernel"] + ((x * eps_in) @ layer["sigma_kernel"]) * eps_out
    if "bias" in layer:
        y = y + (layer["bias"] + layer["sigma_bias"] * eps_out)
    return y


def noisy_layer_shapes(params: dict) -> dict[str, tuple[int, int]]:
    """``{layer name: (p, q)}`` of the noisy layers of ``params`` (of one network, or of several
    on leading axes), in name order."""
    layers = params["params"]
    return {name: layers[name]["kernel"].shape[-2:] for name in sorted(layers)
            if "sigma_kernel" in layers[name]}


def draw_noise(key: jax.Array, params: dict, batch_shape: tuple[int, ...] = (),
               per_row: bool = False) -> dict[str, LayerNoise]:
    """Fresh draws of every noisy layer's factorised noise, ``{layer name: LayerNoise}`` with
    leading axes ``batch_shape`` (``()``: one draw).

    One normal draw ``f32[*batch_shape, sum(p + q)]`` for all layers and draws (each random call
    is a threefry loop of its own on XLA:CPU), cut into each layer's ``eps_in`` and ``eps_out``
    in layer-name order. ``per_row``: the leading axes are an input's rows, one draw each (each
    env copy acting); else each draw serves all rows of a pass (a gradient step's passes, with
    one leading axis per network that is vmapped over).
    """
    shapes = noisy_layer_shapes(params)
    total = sum(p + q for p, q in shapes.values())
    z = factorised(jax.random.normal(key, (*batch_shape, total), jnp.float32))
    if not per_row:  # a draw for all rows: every weight and row reads it
        z = _materialised(z)
    noise, offset = {}, 0
    for name, (p, q) in shapes.items():
        noise[name] = LayerNoise(z[..., offset:offset + p], z[..., offset + p:offset + p + q])
        offset += p + q
    return noise


def _materialised(z: jax.Array) -> jax.Array:
    """``z``, computed once into a buffer of its own.

    The normal's inverse CDF and ``f`` end in cheap elementwise operations that XLA:CPU fuses
    into every consumer, recomputing them for each weight of the outer products and each
    output row (a CartPole gradient step 5x slower). XLA drops ``lax.optimization_barrier``
    before fusing, and a ``lax.cond`` on a traced predicate becomes a select under ``vmap``;
    it does not fuse a reduction into its consumers. So ``z`` is the max over a new axis of two
    copies of itself: exactly ``z``, one read of each value. (A sort by index along the last
    axis did the same at ``n log n``: 10% of a MinAtar Rainbow gradient step.) A draw per row
    needs none of this: each of its values is read by one row.
    """
    pair = jnp.broadcast_to(z[..., None], (*z.shape, 2))
    return jax.lax.reduce(pair, jnp.array(-jnp.inf, z.dtype), jax.lax.max, (z.ndim,))


class NoisyDense(nn.Module):
    """A noisy dense layer (see the module docstring); ``noise`` None applies the means.

    Flax's ``init`` draws the paper's factorised initialisation with ``sigma0``;
    ``networks.init_q_params`` draws the same distribution for whole networks in one call.
    """

    features: int
    use_bias: bool = True
    sigma0: float = NOISY_SIGMA0

    @nn.compact
    def __call__(self, x: jax.Array, noise: LayerNoise | None = None) -> jax.Array:
        p = x.shape[-1]
        bound = 1.0 / math.sqrt(p)

        def uniform(key, shape, dtype=jnp.float32):
            return jax.random.uniform(key, shape, dtype, -bound, bound)

        sigma = nn.initializers.constant(self.sigma0 * bound)
        layer = {"kernel": self.param("kernel", uniform, (p, self.features)),
                 "sigma_kernel": self.param("sigma_kernel", sigma, (p, self.features))}
        if self.use_bias:
            layer["bias"] = self.param("bias", uniform, (self.features,))
            layer["sigma_bias"] = self.param("sigma_bias", sigma, (self.features,))
        return dense_apply(layer, x, noise)
