"""CPU-time profile of the Breakout-MinAtar TD step at batch 32, flax nn.Conv against im2col
(cnn_apply).

Each piece runs 2,000 times in one jitted fori_loop; the best of 3 process-CPU-time measurements
per iteration is printed (process time is less sensitive to other load than wall time). Run pinned:
    taskset -c 0 python scripts/profile_cnn_step.py
    taskset -c 0 python scripts/profile_cnn_step.py --ops   # also: the im2col TD step's XLA ops

``--ops`` traces 300 iterations of the im2col TD step (``jax.profiler``, as ``benchmark.py
--profile``) and lists the ops with the most self time per iteration, each with its HLO line
(shape and operands) so that ``ynn_fusion.2`` can be read as "the [32,1024] input gradient".
"""
import re
import sys
import time

from jaxdqn.runtime import fast_cpu_compile

fast_cpu_compile()
import jax
import jax.numpy as jnp
import optax

from jaxdqn.buffer import Transition, buffer_add, buffer_init, buffer_sample
from jaxdqn.config import preset
from jaxdqn.networks import init_q_params, make_q_fn, make_q_network
from jaxdqn.update import TrainState, make_optimizer, make_td_update

c = preset("minatar-fast")
key = jax.random.PRNGKey(0)
params = init_q_params(c, key)
cap, N = 10000, 2000
o = jax.random.bernoulli(key, 0.1, (cap, 10, 10, 4))
buf = buffer_add(buffer_init(cap, (10, 10, 4), jnp.bool_),
                 Transition(o, jnp.zeros(cap, jnp.int32), jnp.ones(cap), jnp.zeros(cap, bool), o))
fast, flax_apply = make_q_fn(c), make_q_network(c).apply


def timed(name, body, carry):
    @jax.jit
    def loop(carry, key):
        return jax.lax.fori_loop(0, N, lambda i, ck: body(i, ck), (carry, key))

    comp = loop.lower(carry, key).compile()
    jax.block_until_ready(comp(carry, key))
    best = 1e9
    for _ in range(3):
        t = time.process_time()
        jax.block_until_ready(comp(carry, key))
        best = min(best, time.process_time() - t)
    print(f"{name:45s} {best / N * 1e6:8.1f} us cpu", flush=True)


def sample(key):
    key, k = jax.random.split(key)
    return key, buffer_sample(buf, k, 32)


def profile_network(label, q_fn):
    """The TD step, two forward passes and a forward+backward pass of one way to apply the CNN."""
    opt = make_optimizer(c)
    td = make_td_update(c, q_fn, opt)

    def full(i, ck):
        st, key = ck
        key, b = sample(key)
        st, _ = td(st, b, 0.99)
        return st, key

    timed(f"{label}: sample + TD step (loss, grad, Adam)", full,
          TrainState(params, params, opt.init(params)))

    def fwd(i, ck):
        acc, key = ck
        key, b = sample(key)
        return acc + q_fn(params, b.obs).sum() + q_fn(params, b.next_obs).sum(), key

    timed(f"{label}: sample + 2 forward passes", fwd, jnp.float32(0))

    def grad(i, ck):
        p, key = ck
        key, b = sample(key)
        g = jax.grad(lambda p: q_fn(p, b.obs)[:, 0].sum())(p)
        return jax.tree.map(lambda a, b: a + 1e-9 * b, p, g), key

    timed(f"{label}: sample + forward+backward", grad, params)


for label, q_fn in (("flax nn.Conv", flax_apply), ("im2col (cnn_apply)", fast)):
    profile_network(label, q_fn)


def samp(i, ck):
    acc, key = ck
    key, b = sample(key)
    return acc + b.obs.sum() + b.next_obs.sum(), key


timed("sample only", samp, jnp.int32(0))
opt = make_optimizer(c)


def adam(i, ck):
    (p, s), key = ck
    u, s = opt.update(p, s, p)
    return (optax.apply_updates(p, u), s), key


timed("Adam update only (132k params)", adam, (params, opt.init(params)))


def act(i, ck):
    acc, key = ck
    frame = jax.lax.dynamic_index_in_dim(o, i, keepdims=False)
    return acc + fast(params, frame).sum(), key


timed("acting forward, one frame (im2col)", act, jnp.float32(0))

if "--ops" in sys.argv:
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from benchmark import _profile
    opt = make_optimizer(c)
    td = make_td_update(c, fast, opt)
    st = TrainState(params, params, opt.init(params))
    n_ops = 300

    @jax.jit
    def steps(st, key):
        def body(i, ck):
            st, key = ck
            key, b = sample(key)
            return td(st, b, 0.99)[0], key
        return jax.lax.fori_loop(0, n_ops, body, (st, key))

    comp = steps.lower(st, key).compile()
    jax.block_until_ready(comp(st, key))
    hlo = comp.as_text()
    table = _profile(lambda: comp(st, key), "/tmp/profile_cnn_step", 1)
    print(f"\nim2col TD step, traced: {table['traced_op_ms'] * 1e3 / n_ops:.0f} us per step "
          "(tracing adds about 1 us per op)")
    for kind, v in table["by_kind"].items():
        print(f"  {kind:40s} {v['ms'] * 1e3 / n_ops:8.1f} us")
    for op in table["top_ops"][:15]:
        m = re.search(rf"%{re.escape(op['op'])} = ([^ ]+) (\w+[-\w]*)\(([^)]*)\)", hlo)
        what = f"{m.group(1)} {m.group(2)}({m.group(3)[:60]})" if m else ""
        per_step = op["ms"] * 1e3 / n_ops
        print(f"  {op['op']:28s} {per_step:7.1f} us  {op['calls'] / n_ops:.0f}x  {what}")
