"""Distributional heads: a distribution of returns per action in place of one Q-value, one record
of facts per head kind (``DQNConfig.distributional``).

==========  =================================================  =================================
head        network output per action (``K`` values)            loss against the target
==========  =================================================  =================================
``none``    one Q-value (no ``K`` axis)                         the scalar TD loss (``update``)
``c51``     logits of a categorical distribution on the         cross-entropy to the target
            support ``z = linspace(v_min, v_max, num_atoms)``   projected onto ``z``
            (Bellemare, Dabney and Munos 2017)
``qr``      ``num_quantiles`` quantile values at the            quantile Huber loss
            midpoints ``tau_hat_i = (2i + 1) / 2N``
            (Dabney, Rowland, Bellemare and Munos 2018)
==========  =================================================  =================================

The target distribution is that of ``r + discount * Z(s', a*)``: ``discount`` is ``gamma`` (or
``gamma^m`` of an ``m``-step return) times ``1 - terminated``, and ``a*`` the next action the
estimator picks by the distributions' means (``Estimator.distributional_action``). Callers that
want Q-values read ``Head.mean`` of the output: ``networks.make_q_fn`` gives the means, so acting,
evaluation and ``jaxdqn.load`` see Q-values whatever the head.

Of the heads' fields, ``num_atoms`` and ``num_quantiles`` fix array shapes, and ``v_min`` and
``v_max`` fix the support that every Q-value reads (acting, evaluation, ``jaxdqn.load``: from the
config, through ``make_q_fn``): all static. ``kappa`` is read by the loss alone and is traced
(``train.HParams``), so the runs of a sweep over it share one compiled program.

Every function here is pure and takes arrays, so each can be checked by hand
(tests/test_distributional.py). ``config.py`` imports this module for the records' names, so JAX is
imported lazily (``jaxdqn.lazy``), as ``jaxdqn.estimators`` does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from jaxdqn.lazy import LazyModule

jax = LazyModule("jax")
jnp = LazyModule("jax.numpy")
optax = LazyModule("optax")


# ---- C51 ----------------------------------------------------------------------------------------

def c51_support(v_min: float, v_max: float, num_atoms: int):
    """``f32[K]``: the ``num_atoms`` evenly spaced atoms from ``v_min`` to ``v_max``."""
    return jnp.linspace(v_min, v_max, num_atoms, dtype=jnp.float32)


def c51_mean(logits, support):
    """``f32[...]``: the mean ``sum_k softmax(logits)_k z_k`` of ``logits: f32[..., K]``."""
    return jnp.sum(jax.nn.softmax(logits, axis=-1) * support, axis=-1)


def c51_project(atoms, probs, support):
    """``f32[..., K]``: the distributions of atoms ``atoms: f32[..., K']`` with probabilities
    ``probs: f32[..., K']`` projected onto the evenly spaced ``support: f32[K]`` (Bellemare et al.
    2017, Algorithm 1; Dopamine's ``project_distribution``, rlax's ``categorical_l2_project``).

    Each atom is first clipped to ``[z_0, z_{K-1}]`` (an atom beyond an end puts its mass on that
    end), then split between the two support points around it in proportion to its closeness:
    support point ``z_i`` receives ``max(0, 1 - |atom - z_i| / dz)`` of its mass. An atom exactly on
    a support point puts all its mass there; Algorithm 1 as written (``l = floor(b)``,
    ``u = ceil(b)``, ``m_l += p (u - b)``, ``m_u += p (b - l)``) would drop it, since ``l = u``
    gives both shares 0. The weights of one atom sum to 1, so each row stays normalised, and an
    atom inside the support keeps its mean.
    """
    dz = support[1] - support[0]
    clipped = jnp.clip(atoms, support[0], support[-1])
    weights = jnp.clip(1.0 - jnp.abs(clipped[..., None, :] - support[:, None]) / dz, 0.0, 1.0)
    return jnp.sum(weights * probs[..., None, :], axis=-1)


def c51_target(reward, discount, next_logits, support):
    """``f32[B, K]``: the target distribution, ``r + discount * Z'`` projected onto ``support``:
    ``reward, discount: f32[B]``, ``next_logits: f32[B, K]`` (the target network's logits of the
    next action)."""
    atoms = reward[:, None] + discount[:, None] * support
    return c51_project(atoms, jax.nn.softmax(next_logits, axis=-1), support)


def cross_entropy(logits, target_probs):
    """``f32[B]``: ``-sum_k p_k log softmax(logits)_k`` of the target ``p = target_probs``."""
    return optax.softmax_cross_entropy(logits, target_probs)


def _c51_loss(logits, reward, discount, next_logits, config, hparams):
    support = c51_support(config.v_min, config.v_max, config.num_atoms)
    target = jax.lax.stop_gradient(c51_target(reward, discount, next_logits, support))
    return cross_entropy(logits, target)


def _c51_mean(logits, config):
    return c51_mean(logits, c51_support(config.v_min, config.v_max, config.num_atoms))


# ---- QR-DQN -------------------------------------------------------------------------------------

def quantile_midpoints(num_quantiles: int):
    """``f32[N]``: ``tau_hat_i = (2i + 1) / 2N``, the quantile levels a QR head estimates (the
    midpoints of ``N`` equal slices of [0, 1])."""
    return (2 * jnp.arange(num_quantiles, dtype=jnp.float32) + 1) / (2 * num_quantiles)


def quantile_huber_loss(quantiles, targets, kappa):
    """``f32[B]``: the quantile Huber loss of ``quantiles: f32[B, N]`` (at ``quantile_midpoints``)
    against the target samples ``targets: f32[B, N']`` (Dabney et al. 2018, eq. 10 and
    Algorithm 1)::

        u_ij = targets_j - quantiles_i
        rho_ij = |tau_hat_i - 1{u_ij < 0}| * L_kappa(u_ij) / kappa
        loss = sum_i mean_j rho_ij

    with ``L_kappa`` the Huber loss (``u^2 / 2`` where ``|u| <= kappa``, else
    ``kappa (|u| - kappa / 2)``). Divided by ``kappa`` as in the paper and Dopamine: outside
    ``kappa`` the loss is the quantile regression loss ``|tau - 1{u < 0}| |u|`` less a constant,
    whatever ``kappa``. Within ``kappa`` it is quadratic, so where every error stays within it
    the head learns expectiles rather than quantiles. ``kappa`` may be traced.
    """
    u = targets[:, None, :] - quantiles[:, :, None]  # [B, N, N']
    tau = quantile_midpoints(quantiles.shape[-1])[:, None]
    rho = jnp.abs(tau - (u < 0)) * optax.huber_loss(u, delta=kappa) / kappa
    return jnp.sum(jnp.mean(rho, axis=-1), axis=-1)


def qr_target(reward, discount, next_quantiles):
    """``f32[B, N]``: the target samples ``r + discount * theta'_j``, ``reward, discount: f32[B]``,
    ``next_quantiles: f32[B, N]`` (the target network's quantiles of the next action)."""
    return reward[:, None] + discount[:, None] * next_quantiles


def _qr_loss(quantiles, reward, discount, next_quantiles, config, hparams):
    target = jax.lax.stop_gradient(qr_target(reward, discount, next_quantiles))
    return quantile_huber_loss(quantiles, target, hparams.kappa)


def _qr_mean(quantiles, config):
    return jnp.mean(quantiles, axis=-1)


# ---- the records ------------------------------------------------------------------------------

MeanFn = Callable[..., "jax.Array"]
"""``mean(output: f32[..., K], config) -> f32[...]``: each distribution's mean."""
LossFn = Callable[..., "jax.Array"]
"""``loss(predicted: f32[B, K], reward: f32[B], discount: f32[B], next_output: f32[B, K], config,
hparams) -> f32[B]``: each sample's loss against its target distribution, ``r + discount * Z'``
with ``Z'`` the target network's output at the next action (``hparams``: the config or the
loop's traced ``train.HParams``)."""


@dataclasses.dataclass(frozen=True)
class Head:
    """Every fact about one head kind. ``size_field``: the config field that holds ``K``, the
    values per action (None: the scalar head, whose output has no ``K`` axis and whose ``mean``
    and ``loss`` are None: ``update`` applies the scalar TD loss)."""

    name: str
    description: str
    size_field: str | None
    mean: MeanFn | None
    loss: LossFn | None

    def size(self, config) -> int:
        """``K``: values per action of ``config``'s head, 0 for the scalar head."""
        return 0 if self.size_field is None else getattr(config, self.size_field)


HEADS: dict[str, Head] = {h.name: h for h in (
    Head("none", "one Q-value per action", None, None, None),
    Head("c51", "a categorical distribution on num_atoms atoms in [v_min, v_max], cross-entropy "
         "loss (Bellemare et al. 2017)", "num_atoms", _c51_mean, _c51_loss),
    Head("qr", "num_quantiles quantiles, quantile Huber loss (Dabney et al. 2018)",
         "num_quantiles", _qr_mean, _qr_loss),
)}
