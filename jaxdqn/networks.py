"""The Q-network: an MLP on vector observations or a CNN on image observations, one Q-value per
action (or, with a distributional head, ``K`` values per action); optionally a stack of
independently initialised members (ensemble estimators).

A network is a torso (the convolutions, then the hidden layers) and a head that turns the torso's
features into Q-values: one linear layer, or with ``DQNConfig.dueling`` the dueling head (Wang et
al. 2016), a value and an advantage stream combined by ``dueling_q``. With
``DQNConfig.distributional`` the head has ``K`` outputs per action (``jaxdqn.distributional``: C51's
logits, QR-DQN's quantiles), ``make_head_fn`` gives them, and ``make_q_fn`` their means. Callers
that act or evaluate see only ``q_fn(params, obs) -> f32[..., num_actions]`` (``make_q_fn``),
whatever the head: a head that needs the legal actions (dueling's mean over them) computes them
from the observation, as ``envs.legal_actions_fn`` allows, so no caller passes a mask.

With ``DQNConfig.noisy`` every dense layer (hidden layers and head, dueling's two streams; not the
convolutions) is a ``noisy_nets.NoisyDense``: ``make_q_fn`` applies its mean weights
(deterministic: evaluation, ``jaxdqn.load`` and the bias study read it) and
``make_noisy_q_fn(config)`` a fresh draw of its noise from a key (acting and learning in training;
``make_noise_head_fn`` gives a distributional head's output under drawn noise).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdqn.config import DQNConfig
from jaxdqn.distributional import HEADS
from jaxdqn.envs import env_spec
from jaxdqn.noisy_nets import LayerNoise, NoisyDense, dense_apply, draw_noise

QFn = Callable[[dict, jax.Array], jax.Array]
NoisyQFn = Callable[[dict, jax.Array, jax.Array], jax.Array]  # (params, obs, key) -> f32[..., A]
HeadFn = Callable[[dict, jax.Array], jax.Array]
"""``head_fn(params, obs) -> f32[..., A, K]``: a distributional head's raw output (``f32[..., A]``
for the scalar head)."""


class QNetwork(nn.Module):
    """Convolutions (if any), then Linear-ReLU for each hidden size, then a linear head (with
    ``dueling``, the dueling head: see ``dueling_q``).

    With no convolutions it is the seed's ``QNetwork``: for CartPole (4 -> 120 -> 84 -> 2) it has
    10,934 parameters. With neither hidden layers nor convolutions it is ``Q(s) = s @ W``, linear
    in the observation and without a bias: on one-hot observations ``W`` is exactly a table (a
    bias would be shared by all states and couple their entries). With ``conv_channels`` the
    observation is an image ``[..., H, W, C]``; each convolution is ``conv_kernel_size`` square,
    stride 1, no padding, then ReLU (the MinAtar paper's network is ``conv_channels=(16,)``,
    kernel 3, ``hidden_sizes=(128,)``).

    With ``dueling`` the last hidden layer's features feed two linear layers, ``value`` (one
    output) and ``advantage`` (one per action), in place of the head ``Dense_{n}``: a shared torso
    and two linear streams, as Dopamine's ``FullRainbowNetwork`` (dopamine/jax/networks.py) and the
    MinAtar networks of "Revisiting Rainbow" (Obando-Ceron and Castro 2021, networks_new.py) build
    it. ``legal: bool[..., num_actions]`` (None: all legal) is read by the dueling head only.

    With ``noisy`` every dense layer is a ``NoisyDense`` of the same name; ``noise`` (``{layer
    name: LayerNoise}``, ``noisy_nets.draw_noise``) perturbs them, None applies their means.
    With ``num_atoms`` K > 0 (a distributional head) the output is ``f32[..., num_actions, K]``:
    the head layer has ``num_actions * K`` outputs, reshaped; dueling's ``value`` has K and its
    ``advantage`` ``num_actions * K``, combined per atom over the actions (``dueling_head``).
    """

    num_actions: int
    hidden_sizes: Sequence[int] = (120, 84)
    conv_channels: Sequence[int] = ()
    conv_kernel_size: int = 3
    dueling: bool = False
    noisy: bool = False
    num_atoms: int = 0

    @nn.compact
    def __call__(self, obs: jax.Array, legal: jax.Array | None = None,
                 noise: dict[str, LayerNoise] | None = None) -> jax.Array:
        def dense(features, name, use_bias=True):
            if not self.noisy:
                return nn.Dense(features, use_bias=use_bias, name=name)
            layer = NoisyDense(features, use_bias=use_bias, name=name)
            return lambda x: layer(x, None if noise is None else noise[name])

        x = obs.astype(jnp.float32)
        if self.conv_channels:
            k = self.conv_kernel_size
            for channels in self.conv_channels:
                x = nn.relu(nn.Conv(channels, (k, k), padding="VALID")(x))
            x = x.reshape(*x.shape[:-3], -1)
        for i, size in enumerate(self.hidden_sizes):
            x = nn.relu(dense(size, f"Dense_{i}")(x))
        use_bias = not is_linear(self)
        per_action = self.num_atoms or 1
        if self.dueling:
            value = dense(per_action, "value", use_bias)(x)
            advantage = dense(self.num_actions * per_action, "advantage", use_bias)(x)
            return dueling_head(value, advantage, legal, self.num_atoms)
        return split_atoms(dense(self.num_actions * per_action,
                                 f"Dense_{len(self.hidden_sizes)}", use_bias)(x), self.num_atoms)


def split_atoms(x: jax.Array, num_atoms: int) -> jax.Array:
    """``f32[..., A * K]`` as ``f32[..., A, K]`` for ``num_atoms`` K > 0; ``x`` itself for 0."""
    return x.reshape(*x.shape[:-1], -1, num_atoms) if num_atoms else x


def dueling_head(value: jax.Array, advantage: jax.Array, legal: jax.Array | None,
                 num_atoms: int) -> jax.Array:
    """The dueling head's output from its streams' layers: ``dueling_q`` of ``value: f32[..., 1]``
    and ``advantage: f32[..., A]``, or with ``num_atoms`` K > 0 of ``value: f32[..., K]`` and
    ``advantage: f32[..., A * K]`` per atom, the mean over the (legal) actions taken for each atom
    (as Dopamine's ``FullRainbowNetwork`` does on logits): ``f32[..., A, K]``."""
    if not num_atoms:
        return dueling_q(value, advantage, legal)
    return dueling_q(split_atoms(value, num_atoms), split_atoms(advantage, num_atoms),
                     None if legal is None else legal[..., None], axis=-2)


def dueling_q(value: jax.Array, advantage: jax.Array, legal: jax.Array | None = None,
              axis: int = -1) -> jax.Array:
    """The dueling head's Q-values (Wang et al. 2016, eq. 9): ``Q = V + A - mean_a A``.

    ``value: f32[..., 1]``, ``advantage: f32[..., A]``, ``legal: bool[..., A]`` or None ->
    ``f32[..., A]``. The mean ranges over the legal actions (all with ``legal=None``), so the
    advantages of the actions the agent may take average to 0 and ``V`` is their mean Q-value;
    an illegal action's advantage is left out of the mean, and its Q-value is never read (every
    max and argmax masks it). A state without legal actions takes a mean of 0. ``axis``: the
    actions' axis (-2 for a distributional head's ``f32[..., A, K]``, with ``value: f32[..., 1,
    K]`` and ``legal: bool[..., A, 1]``).
    """
    if legal is None:
        mean = jnp.mean(advantage, axis=axis, keepdims=True)
    else:
        total = jnp.sum(jnp.where(legal, advantage, 0.0), axis=axis, keepdims=True)
        mean = total / jnp.maximum(jnp.sum(legal, axis=axis, keepdims=True), 1)
    return value + (advantage - mean)


def is_linear(network: QNetwork) -> bool:
    """Whether ``network`` is linear in the observation: no convolutions, no hidden layers."""
    return not network.hidden_sizes and not network.conv_channels


def network_kind(config: DQNConfig) -> str:
    """``"mlp"`` or ``"cnn"``: ``config.network``, or by observation rank when ``"auto"``."""
    obs_shape = env_spec(config).obs_shape
    kind = config.network
    if kind == "auto":
        kind = "cnn" if len(obs_shape) == 3 else "mlp"
    want = 3 if kind == "cnn" else 1
    if len(obs_shape) != want:
        raise ValueError(f"DQNConfig.network={config.network!r} is invalid for env_id="
                         f"{config.env_id!r}: observations have shape {obs_shape}, the {kind} "
                         f"Q-network expects {'[H, W, C] images' if kind == 'cnn' else 'vectors'}")
    return kind


def make_q_network(config: DQNConfig) -> QNetwork:
    num_actions = env_spec(config).num_actions
    conv = tuple(config.conv_channels) if network_kind(config) == "cnn" else ()
    return QNetwork(num_actions=num_actions, hidden_sizes=tuple(config.hidden_sizes),
                    conv_channels=conv, conv_kernel_size=config.conv_kernel_size,
                    dueling=config.dueling, noisy=config.noisy,
                    num_atoms=HEADS[config.distributional].size(config))


def make_q_fn(config: DQNConfig) -> QFn:
    """A pure ``q_fn(params, obs: [..., *obs_shape]) -> f32[..., num_actions]`` for one network.

    Params with a member axis (``config.num_members > 1``) are applied with
    ``jax.vmap(q_fn, in_axes=(0, None))``: ``f32[members, ..., num_actions]``.
    For the scalar head it is ``make_head_fn(config)``; for a distributional head the means of
    its distributions (``distributional.Head.mean``): C51's ``sum_k softmax(logits)_k z_k``,
    QR-DQN's mean quantile.
    """
    head_fn = make_head_fn(config)
    mean = HEADS[config.distributional].mean
    if mean is None:
        return head_fn
    return lambda params, obs: mean(head_fn(params, obs), config)


def make_head_fn(config: DQNConfig) -> HeadFn:
    """A pure ``head_fn(params, obs: [..., *obs_shape])`` -> the network's raw output: ``f32[...,
    num_actions, K]`` for a distributional head, ``f32[..., num_actions]`` (the Q-values) for the
    scalar one.

    A CNN is applied by ``cnn_apply`` (the same function as ``QNetwork.apply`` on the same
    params, computed faster on a CPU). A dueling network on an env with a legal-action mask
    computes the mask of ``obs`` itself (``EnvSpec.legal_fn``) for its mean over legal actions.
    A noisy network is applied with its mean weights.
    """
    network = make_q_network(config)
    legal_fn = env_spec(config).legal_fn if network.dueling else None
    if network.conv_channels:
        num_convs, atoms = len(network.conv_channels), network.num_atoms
        if legal_fn is not None:
            return lambda params, obs: cnn_apply(params, obs, num_convs, legal_fn(obs),
                                                 num_atoms=atoms)
        return lambda params, obs: cnn_apply(params, obs, num_convs, num_atoms=atoms)
    if legal_fn is not None:
        return lambda params, obs: network.apply(params, obs, legal_fn(obs))
    return network.apply


def make_noisy_q_fn(config: DQNConfig, per_row: bool = False) -> NoisyQFn:
    """A pure ``q_fn(params, obs: [..., *obs_shape], key) -> f32[..., num_actions]`` of one noisy
    network (``config.noisy``) under a fresh draw of its noise from ``key`` (``draw_noise``: one
    random call): one draw for all of ``obs`` (a pass over a minibatch), or with ``per_row`` one
    for each observation of ``obs``'s leading axes (each env copy acting). The same key gives the
    same noise. ``make_noise_q_fn`` applies noise drawn beforehand.
    """
    apply = make_noise_q_fn(config)
    obs_rank = len(env_spec(config).obs_shape)

    def q_fn(params, obs, key):
        batch = obs.shape[:obs.ndim - obs_rank] if per_row else ()
        return apply(params, obs, draw_noise(key, params, batch, per_row))

    return q_fn


def make_noise_q_fn(config: DQNConfig) -> Callable[[dict, jax.Array, dict], jax.Array]:
    """A pure ``q_fn(params, obs: [..., *obs_shape], noise) -> f32[..., num_actions]`` of one noisy
    network under ``noise`` (``{layer name: LayerNoise}``, ``noisy_nets.draw_noise``): one draw
    for all of ``obs``, or one per row of its leading axes; a distributional head's means.
    Members: ``jax.vmap(q_fn, in_axes=(0, None, 0))`` over their params and draws."""
    head_fn = make_noise_head_fn(config)
    mean = HEADS[config.distributional].mean
    if mean is None:
        return head_fn
    return lambda params, obs, noise: mean(head_fn(params, obs, noise), config)


def make_noise_head_fn(config: DQNConfig) -> Callable[[dict, jax.Array, dict], jax.Array]:
    """``make_head_fn``'s output of one noisy network under ``noise`` (see ``make_noise_q_fn``):
    ``f32[..., num_actions, K]`` for a distributional head, the Q-values for the scalar one."""
    if not config.noisy:
        raise ValueError(f"noisy Q-values need DQNConfig.noisy=True, not {config.noisy!r}")
    network = make_q_network(config)
    legal_fn = env_spec(config).legal_fn if network.dueling else None
    num_convs, atoms = len(network.conv_channels), network.num_atoms

    def head_fn(params, obs, noise):
        legal = None if legal_fn is None else legal_fn(obs)
        if num_convs:
            return cnn_apply(params, obs, num_convs, legal, noise=noise, num_atoms=atoms)
        return network.apply(params, obs, legal, noise)

    return head_fn


def cnn_apply(params: dict, obs: jax.Array, num_convs: int, legal: jax.Array | None = None, *,
              noise: dict[str, LayerNoise] | None = None, num_atoms: int = 0) -> jax.Array:
    """``QNetwork.apply`` for a CNN, each convolution computed as one matrix product (im2col).

    ``obs: [..., H, W, C]`` (any dtype; cast to f32) -> ``f32[..., num_actions]`` (``f32[...,
    num_actions, num_atoms]`` for a distributional head, ``num_atoms > 0``). For every
    kernel offset ``(i, j)`` the input's ``[i : i + H - k + 1, j : j + W - k + 1]`` window is a
    slice; the ``k * k`` slices concatenated along channels are the patches ``[..., H', W',
    k * k * C]`` in the order of the flax kernel ``[k, k, C, C']`` flattened, so one matmul with
    it is the VALID, stride-1 convolution. XLA:CPU runs its convolution and, above all, the
    convolution's kernel gradient as slow generic loops at these sizes (a 10x10x4 image, batch
    32); as matmuls the gradient step is about 3x faster. Sums are taken in another order than
    ``nn.Conv``'s, so outputs agree to float rounding (tests/test_networks.py). Params with
    ``value`` and ``advantage`` layers are a dueling network's (``legal`` is read by its head).
    Every dense layer goes through ``dense_apply``; ``noise`` (``{layer name: LayerNoise}``)
    perturbs a noisy network's, None applies their means.
    """
    p = params["params"]
    x = obs.astype(jnp.float32)
    for n in range(num_convs):
        kernel, bias = p[f"Conv_{n}"]["kernel"], p[f"Conv_{n}"]["bias"]
        kh, kw, c_in, c_out = kernel.shape
        oh, ow = x.shape[-3] - kh + 1, x.shape[-2] - kw + 1
        patches = jnp.concatenate(
            [x[..., i:i + oh, j:j + ow, :] for i in range(kh) for j in range(kw)], axis=-1)
        x = jax.nn.relu(patches @ kernel.reshape(kh * kw * c_in, c_out) + bias)
    x = x.reshape(*x.shape[:-3], -1)
    dense = sorted((k for k in p if k.startswith("Dense_")), key=lambda k: int(k.split("_")[1]))
    dueling = "advantage" in p

    def layer(name, x):
        return dense_apply(p[name], x, None if noise is None else noise[name])

    for name in dense if dueling else dense[:-1]:
        x = jax.nn.relu(layer(name, x))
    if dueling:
        value, advantage = (layer(n, x) for n in ("value", "advantage"))
        return dueling_head(value, advantage, legal, num_atoms)
    return split_atoms(layer(dense[-1], x), num_atoms)


def init_q_params(config: DQNConfig, key: jax.Array, num_members: int | None = None,
                  noisy_sigma0=None) -> dict:
    """Fresh Q-network parameters drawn from ``key``: flax's default distribution for each layer.

    Kernels (dense and convolution alike) are LeCun-normal: a normal truncated at 2 standard
    deviations, rescaled to variance ``1 / fan_in`` with ``fan_in`` the product of all kernel axes
    but the last (``kh * kw * c_in`` for a convolution); biases are zero, as ``QNetwork.init``
    would draw them. All layers of all members come from one draw: each random call is a separate
    threefry loop that XLA:CPU compiles and runs on its own, and ``QNetwork.init`` makes two per
    layer. With ``num_members`` (default ``config.num_members``) > 1 every leaf has a leading
    member axis, and the members are independent draws.

    A linear Q (``is_linear``) starts at zero, as tables do (Sutton and Barto initialise Q to 0):
    without a hidden layer there is no symmetry for random weights to break.

    A noisy network (``config.noisy``) is drawn by ``_noisy_init``, its ``sigma`` from
    ``noisy_sigma0`` (None: ``config.noisy_sigma0``; it may be traced).
    """
    members = config.num_members if num_members is None else num_members
    network = make_q_network(config)
    obs_shape = env_spec(config).obs_shape
    shapes = jax.eval_shape(network.init, key, jnp.zeros(obs_shape, jnp.float32))
    if network.noisy:
        sigma0 = config.noisy_sigma0 if noisy_sigma0 is None else noisy_sigma0
        return _noisy_init(shapes, key, members, sigma0, is_linear(network))
    if is_linear(network):
        return jax.tree.map(
            lambda x: jnp.zeros((members, *x.shape) if members > 1 else x.shape, x.dtype), shapes)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    kernels = [(i, leaf.shape) for i, (path, leaf) in enumerate(leaves)
               if _leaf_name(path) == "kernel"]
    per_member = sum(math.prod(shape) for _, shape in kernels)
    z = jax.random.truncated_normal(key, -2.0, 2.0, (members, per_member), jnp.float32)
    values = [jnp.zeros((members, *leaf.shape), leaf.dtype) for _, leaf in leaves]
    offset = 0
    for i, shape in kernels:
        size = math.prod(shape)
        std = 1.0 / math.sqrt(math.prod(shape[:-1])) / _TRUNCATED_NORMAL_STD
        values[i] = std * z[:, offset:offset + size].reshape(members, *shape)
        offset += size
    if members == 1:
        values = [v[0] for v in values]
    return jax.tree_util.tree_unflatten(treedef, values)


def _noisy_init(shapes: dict, key: jax.Array, members: int, sigma0, linear: bool) -> dict:
    """A noisy network's params of ``shapes`` (``init_q_params``), every random leaf of every
    member from one uniform draw ``u ~ U[-1, 1)``: the noisy layers' means (``kernel``, ``bias``)
    ``u / sqrt(p)``, the paper's ``U(-1/sqrt(p), 1/sqrt(p))``, and their ``sigma_*``
    ``sigma0 / sqrt(p)`` (Fortunato et al. 2018, section 3.2; ``p``: the layer's fan-in); the
    convolutions keep ``init_q_params``'s LeCun-normal kernels (the normal truncated at 2, from
    ``u`` by its inverse CDF) and zero biases. A linear Q's means start at zero.
    """
    layers = shapes["params"]
    fan_in = {name: math.prod(layer["kernel"].shape[:-1]) for name, layer in layers.items()}
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    named = [(_leaf_name(path[:-1]), _leaf_name(path), leaf.shape) for path, leaf in leaves]
    drawn = [i for i, (layer, name, _) in enumerate(named)
             if not linear and (name == "kernel" or (name == "bias" and "sigma_bias" in
                                                     layers[layer]))]
    sizes = [math.prod(named[i][2]) for i in drawn]
    u = jax.random.uniform(key, (members, sum(sizes)), jnp.float32, -1.0, 1.0)
    values = []
    for layer, name, shape in named:
        scale = 1.0 / math.sqrt(fan_in[layer])
        if name.startswith("sigma_"):
            values.append(jnp.full((members, *shape), sigma0 * scale, jnp.float32))
        else:
            values.append(jnp.zeros((members, *shape), jnp.float32))
    offset = 0
    for i, size in zip(drawn, sizes):
        layer, _, shape = named[i]
        part = u[:, offset:offset + size].reshape(members, *shape)
        offset += size
        if "sigma_kernel" in layers[layer]:
            values[i] = part / math.sqrt(fan_in[layer])
        else:  # a convolution's kernel: the normal truncated to [-2, 2] at the quantile (u+1)/2
            z = math.sqrt(2.0) * jax.scipy.special.erfinv(part * math.erf(math.sqrt(2.0)))
            values[i] = z / math.sqrt(fan_in[layer]) / _TRUNCATED_NORMAL_STD
    if members == 1:
        values = [v[0] for v in values]
    return jax.tree_util.tree_unflatten(treedef, values)


def _leaf_name(path) -> str:
    last = path[-1]
    return str(getattr(last, "key", getattr(last, "name", last)))


# Standard deviation of a unit normal truncated to [-2, 2] (the constant in flax's
# variance_scaling).
_TRUNCATED_NORMAL_STD = 0.87962566103423978


def num_params(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))
