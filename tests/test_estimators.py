"""The estimator family: targets by hand, members, legal-action masks, and the tabular mode."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from trees import assert_same_structure, stacked_over_keys

from jaxdqn import DQNConfig, init_q_params, make_q_fn, make_trainer
from jaxdqn.buffer import Transition
from jaxdqn.estimators import (
    averaged_target,
    clipped_double_target,
    double_dqn_target,
    double_q_target,
    dqn_target,
    maxmin_target,
)
from jaxdqn.policy import epsilon_greedy
from jaxdqn.update import (
    init_train_state,
    make_optimizer,
    make_td_update,
    schedule_counts,
    sync_target,
)

# Three rows, three actions, gamma 0.5; row 1 is terminal (its large next values must not count).
# Ties: online member 0 row 0 (actions 1, 2), row 2 (actions 0, 1); online member 1 row 0 (0, 1).
R = jnp.array([1.0, 2.0, -1.0])
TERM = jnp.array([False, True, False])
GAMMA = 0.5
TARGET = jnp.array([[[1.0, 3.0, 3.0], [5.0, 0.0, 0.0], [0.0, -2.0, 4.0]],
                    [[2.0, 0.0, 1.0], [1.0, 1.0, 1.0], [3.0, 1.0, -1.0]]])
ONLINE = jnp.array([[[0.0, 2.0, 2.0], [0.0, 0.0, 9.0], [1.0, 1.0, 0.0]],
                    [[4.0, 4.0, 0.0], [0.0, 0.0, 0.0], [0.0, 5.0, 1.0]]])
# Row 0 allows action 0 only, row 2 actions 0 and 1: the illegal 3s and 4 must never be maxed.
LEGAL = jnp.array([[True, False, False], [True, True, True], [True, True, False]])

# (name, target function of (next_legal), by-hand values without a mask, with LEGAL)
CASES = [
    ("dqn", lambda m: dqn_target(R, TERM, GAMMA, TARGET[0], m),
     # max target0: row 0 -> 3, row 2 -> 4 | masked: row 0 -> 1, row 2 -> max(0, -2) = 0
     [1 + 0.5 * 3, 2, -1 + 0.5 * 4], [1 + 0.5 * 1, 2, -1 + 0]),
    ("double_dqn", lambda m: double_dqn_target(R, TERM, GAMMA, TARGET[0], ONLINE[0], m),
     # online0 argmax (lowest of ties): row 0 -> 1 (target 3), row 2 -> 0 (target 0)
     [1 + 0.5 * 3, 2, -1 + 0], [1 + 0.5 * 1, 2, -1 + 0]),
    ("double_q", lambda m: double_q_target(R, TERM, GAMMA, TARGET, ONLINE, m),
     # member 0: argmax online0 valued by target1: row 0 a=1 -> 0, row 2 a=0 -> 3
     # member 1: argmax online1 valued by target0: row 0 a=0 -> 1, row 2 a=1 -> -2
     [[1 + 0, 2, -1 + 1.5], [1 + 0.5, 2, -1 - 1]],
     # masked: member 0 row 0 a=0 -> target1 2, row 2 a=0 -> 3; member 1 row 0 a=0 -> 1,
     # row 2 a=1 -> -2
     [[1 + 1, 2, -1 + 1.5], [1 + 0.5, 2, -1 - 1]]),
    ("clipped_double", lambda m: clipped_double_target(R, TERM, GAMMA, TARGET, ONLINE[0], m),
     # a* by online0 (row 0: 1, row 2: 0); min over targets: row 0 min(3, 0), row 2 min(0, 3)
     [1 + 0, 2, -1 + 0], [1 + 0.5 * 1, 2, -1 + 0]),
    ("maxmin", lambda m: maxmin_target(R, TERM, GAMMA, TARGET, m),
     # min over members: row 0 [1, 0, 1] -> 1; row 2 [0, -2, -1] -> 0
     [1 + 0.5, 2, -1 + 0], [1 + 0.5, 2, -1 + 0]),
    ("averaged", lambda m: averaged_target(R, TERM, GAMMA, TARGET, m),
     # mean over snapshots: row 0 [1.5, 1.5, 2] -> 2; row 2 [1.5, -0.5, 1.5] -> 1.5
     [1 + 1, 2, -1 + 0.75], [1 + 0.75, 2, -1 + 0.75]),
]


@pytest.mark.parametrize("name, fn, plain, masked", CASES, ids=[c[0] for c in CASES])
def test_targets_by_hand_with_ties_terminal_rows_and_masks(name, fn, plain, masked):
    np.testing.assert_allclose(fn(None), plain, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fn(LEGAL), masked, rtol=0, atol=1e-6)
    g = jax.grad(lambda t: dqn_target(R, TERM, GAMMA, t).sum())(TARGET[0])
    np.testing.assert_array_equal(g, 0.0)  # targets are constants for the gradient


def test_a_state_without_legal_actions_is_worth_zero():
    none = jnp.zeros((3, 3), bool)
    np.testing.assert_array_equal(maxmin_target(R, TERM, GAMMA, TARGET, none), R)


def test_maxmin_with_one_member_is_dqn_and_lower_with_more():
    one = maxmin_target(R, TERM, GAMMA, TARGET[:1])
    np.testing.assert_array_equal(one, dqn_target(R, TERM, GAMMA, TARGET[0]))
    assert np.all(maxmin_target(R, TERM, GAMMA, TARGET) <= one)


@pytest.mark.parametrize("fields, message", [
    (dict(estimator="dqn_x"), "DQNConfig.estimator='dqn_x' is invalid"),
    (dict(estimator="double_q", ensemble_size=3), "DQNConfig.ensemble_size=3 is invalid"),
    (dict(estimator="maxmin", ensemble_size=0), "DQNConfig.ensemble_size=0 is invalid"),
    (dict(estimator="dqn", update_all_members=True), "DQNConfig.update_all_members=True"),
])
def test_bad_estimator_combinations_are_one_clear_value_error(fields, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        DQNConfig(**fields)


# ---- members ------------------------------------------------------------------------------------

def _probe_batch():
    return Transition(obs=jnp.array([[0.0], [1.0], [-1.0], [0.5]]), action=jnp.array([0, 1, 1, 0]),
                      reward=jnp.array([1.0, -1.0, 0.0, 2.0]),
                      terminated=jnp.array([True, False, True, False]),
                      next_obs=jnp.array([[0.0], [2.0], [-1.0], [1.5]]))


def _changed(a, b, member):
    assert_same_structure(a, b)
    return any(not np.array_equal(x[member], y[member])
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("estimator, extra, updated", [
    ("double_q", {}, 1), ("maxmin", dict(ensemble_size=3), 1),
    ("maxmin", dict(ensemble_size=3, update_all_members=True), 3),
    ("clipped_double", {}, 2),
])
def test_members_are_independent_and_only_the_chosen_ones_learn(estimator, extra, updated):
    cfg = DQNConfig(env_id="Probe4", hidden_sizes=(8,), buffer_size=256, learning_starts=128,
                    learning_rate=1e-2, batch_size=4, estimator=estimator, **extra)
    params = init_q_params(cfg, jax.random.key(0))
    m = cfg.num_members
    assert jax.tree.leaves(params)[0].shape[0] == m
    kernels = np.asarray(params["params"]["Dense_0"]["kernel"])
    assert all(not np.allclose(kernels[i], kernels[j]) for i in range(m) for j in range(i))
    opt = make_optimizer(cfg)
    state = init_train_state(cfg, params, opt)
    td_update = make_td_update(cfg, make_q_fn(cfg), opt)
    seen = set()
    for k in range(12):
        new, info = td_update(state, _probe_batch(), 0.9, jax.random.key(k))
        changed = [i for i in range(m) if _changed(new.params, state.params, i)]
        opt_changed = [i for i in range(m) if _changed(new.opt_state, state.opt_state, i)]
        assert len(changed) == updated and opt_changed == changed
        assert np.isfinite(float(info.loss))
        seen.update(changed)
    assert seen == set(range(m))  # every member gets chosen


def test_averaged_sync_pushes_the_newest_snapshot_and_drops_the_oldest():
    cfg = DQNConfig(env_id="Probe4", hidden_sizes=(4,), buffer_size=256, learning_starts=128,
                    estimator="averaged", ensemble_size=3)
    params = init_q_params(cfg, jax.random.key(0))
    state = init_train_state(cfg, params, make_optimizer(cfg))
    for _ in range(2):
        state = state._replace(params=jax.tree.map(lambda x: x + 1.0, state.params))
        state = sync_target(state, jnp.bool_(True), 1.0, snapshots=True)
    bias = np.asarray(state.target_params["params"]["Dense_1"]["bias"])
    np.testing.assert_array_equal(bias[:, 0], [2.0, 1.0, 0.0])  # newest first
    kept = sync_target(state, jnp.bool_(False), 1.0, snapshots=True)
    jax.tree.map(np.testing.assert_array_equal, kept.target_params, state.target_params)


# ---- legal actions and tie-breaking --------------------------------------------------------------

def test_epsilon_greedy_never_takes_an_illegal_action_and_breaks_ties_uniformly():
    q = jnp.array([[9.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 5.0]])
    legal = jnp.array([[False, True, True, True], [True, True, True, False]])
    keys = jax.random.split(jax.random.key(0), 4000)
    for eps in (0.0, 0.5, 1.0):
        acts = np.asarray(jax.vmap(lambda k, eps=eps: epsilon_greedy(k, q, eps, legal, True))(
            keys))
        assert legal[0, acts[:, 0]].all() and legal[1, acts[:, 1]].all()
    greedy = np.asarray(jax.vmap(lambda k: epsilon_greedy(k, q, 0.0, legal, True))(keys))
    # row 0: the tied legal maxima 1 and 2; row 1: 0, 1, 2 tied; each about equally often
    assert set(greedy[:, 0]) == {1, 2} and abs(np.mean(greedy[:, 0] == 1) - 0.5) < 0.04
    assert set(greedy[:, 1]) == {0, 1, 2}
    np.testing.assert_allclose(np.bincount(greedy[:, 1]) / 4000, 1 / 3, atol=0.04)
    random = np.asarray(jax.vmap(lambda k: epsilon_greedy(k, q, 1.0, legal))(keys))
    np.testing.assert_allclose(np.bincount(random[:, 0], minlength=4)[1:] / 4000, 1 / 3,
                               atol=0.04)
    lowest = epsilon_greedy(jax.random.key(1), q, 0.0, legal)  # no tie-break: lowest index
    np.testing.assert_array_equal(lowest, [1, 0])


# Every estimator, and maxmin updating all its members: (estimator, extra fields).
BOOK_RUNS = [("dqn", {}), ("double_dqn", {}), ("double_q", {}), ("clipped_double", {}),
             ("maxmin", dict(ensemble_size=3)),
             ("maxmin", dict(ensemble_size=3, update_all_members=True)),
             ("averaged", dict(ensemble_size=3))]
BOOK_LR = 1e-2


@pytest.fixture(scope="module")
def book_runs():
    """``{(estimator, update_all_members): (config, state, metrics)}``: two runs of each of
    ``BOOK_RUNS`` trained briefly on the book layout with ``anneal_lr``, every transition kept."""
    out = {}
    for estimator, extra in BOOK_RUNS:
        cfg = DQNConfig(env_id="MaxBiasMDP-book", total_timesteps=400, buffer_size=400,
                        learning_starts=32, batch_size=8, train_frequency=1, hidden_sizes=(8,),
                        target_update_freq=20, learning_rate=BOOK_LR, anneal_lr=True, gamma=1.0,
                        exploration_fraction=0.5, end_epsilon=0.2, estimator=estimator,
                        log_interval=400, **extra)
        trainer = make_trainer(cfg)
        out[estimator, cfg.update_all_members] = (cfg, *stacked_over_keys(
            lambda k, trainer=trainer: trainer.run(trainer.init(k), None, 0, 1),
            jax.random.split(jax.random.key(5), 2)))
    return out


@pytest.mark.parametrize("estimator", ["dqn", "double_dqn", "double_q", "clipped_double",
                                       "maxmin", "averaged"])
def test_training_never_takes_an_illegal_action(book_runs, estimator):
    _, state, metrics = book_runs[estimator, False]
    data = jax.tree.map(np.asarray, state.buffer.data)
    in_a = data.obs[..., 0] == 1.0
    assert in_a.sum() > 200 and (data.obs[..., 1] == 1.0).sum() > 20
    assert set(np.unique(data.action[in_a])) == {0, 1}  # both of A's actions, nothing else
    assert len(np.unique(data.action[~in_a])) > 2  # B's ten actions are used
    assert np.isfinite(metrics.td_loss).all()


# ---- the tabular mode ----------------------------------------------------------------------------

def _tabular_config(estimator):
    return DQNConfig(env_id="MaxBiasMDP-book", hidden_sizes=(), optimizer="sgd",
                     learning_rate=0.1, gamma=1.0, buffer_size=1, batch_size=1, learning_starts=1,
                     train_frequency=1, target_update_freq=1, start_epsilon=0.3, end_epsilon=0.3,
                     exploration_fraction=1.0, total_timesteps=300, log_interval=1,
                     random_tie_break=True, estimator=estimator)


def _close(actual, desired, step):
    """Equal up to the rounding of ``Q + alpha * (y - Q)``: XLA:CPU fuses SGD's ``p - lr * g``
    into one multiply-add, which rounds once, where the book's update rounds the product
    ``step`` and then the sum (they differ by at most an ulp of each)."""
    tol = np.spacing(np.abs(desired)) + np.spacing(np.float32(abs(step)))
    return np.all(np.abs(actual - desired) <= tol)


@pytest.mark.parametrize("estimator", ["dqn", "double_q"])
def test_tabular_mode_is_tabular_q_learning_step_for_step(estimator):
    """One-hot MaxBiasMDP, linear Q, SGD, online updates: every step is the book's update of a
    float32 table (Double Q-learning: of exactly one of the two tables, the other unchanged)."""
    cfg = _tabular_config(estimator)
    trainer = make_trainer(cfg)
    run = jax.jit(trainer.run, static_argnums=3)
    state = trainer.init(jax.random.key(11))
    alpha = np.float32(0.1)
    legal = np.array([[True, True] + [False] * 8, [True] * 10])  # A, B
    tables = lambda s: np.asarray(s.train.params["params"]["Dense_0"]["kernel"])  # noqa: E731
    # [states, actions] (members first for double_q); zero at the start, as the book's
    np.testing.assert_array_equal(tables(state), 0.0)
    chosen = []
    for row in range(cfg.num_log_rows):
        before = tables(state)
        state, _ = run(state, None, row, 1)
        t = jax.tree.map(lambda x: np.asarray(x)[0], state.buffer.data)
        s, a = int(np.argmax(t.obs)), int(t.action)
        assert legal[s, a]
        nxt = None if t.terminated else int(np.argmax(t.next_obs))

        def updated(table, value_of_next, t=t, nxt=nxt, s=s, a=a):
            y = np.float32(t.reward) + (np.float32(0) if nxt is None else value_of_next)
            new = table.copy()
            new[s, a] = table[s, a] + alpha * (y - table[s, a])
            return new, alpha * (y - table[s, a])

        after = tables(state)
        if estimator == "dqn":
            v = None if nxt is None else np.max(before[nxt][legal[nxt]])
            assert _close(after, *updated(before, v)), (row, before, after)
        else:
            q1, q2 = before

            def picks(qa, qb, nxt=nxt):
                """The values ``Q_B(s', a*)`` of the actions ``a*`` that may be drawn: the tied
                maximal ones of ``Q_A`` (``random_tie_break`` breaks the target's ties too)."""
                if nxt is None:
                    return [None]
                q = np.where(legal[nxt], qa[nxt], -np.inf)
                return [qb[nxt, b] for b in np.flatnonzero(q == q.max())]

            def learned(table, qa, qb):
                return any(_close(table, *updated(qa, v)) for v in picks(qa, qb))

            first = np.array_equal(after[1], q2) and learned(after[0], q1, q2)
            second = np.array_equal(after[0], q1) and learned(after[1], q2, q1)
            assert first or second, (row, before, after)
            chosen.append(0 if not second else 1 if not first else -1)
    if estimator == "double_q":
        assert chosen.count(0) > 30 and chosen.count(1) > 30  # both tables learn, at random


def test_a_sweep_over_estimators_makes_one_compiled_group_per_shape():
    from jaxdqn.sweep import expand_grid, shape_groups

    base = DQNConfig(env_id="MaxBiasMDP-book", total_timesteps=400, buffer_size=200,
                     learning_starts=32, batch_size=8, hidden_sizes=(8,))
    combos = expand_grid(base, {"estimator": ["maxmin", "averaged"], "ensemble_size": [2, 3],
                                "learning_rate": [1e-3, 1e-2]})
    groups = shape_groups(combos)
    assert len(groups) == 4 and all(len(g.combinations) == 2 for g in groups)
    assert {(g.config.estimator, g.config.ensemble_size) for g in groups} == {
        ("maxmin", 2), ("maxmin", 3), ("averaged", 2), ("averaged", 3)}
    with pytest.raises(ValueError, match="ensemble_size=4 is invalid"):
        expand_grid(base, {"estimator": ["dqn"], "ensemble_size": [4]})


@pytest.mark.parametrize("estimator, extra", BOOK_RUNS, ids=[
    f"{e}{'_all' if x.get('update_all_members') else ''}" for e, x in BOOK_RUNS])
def test_anneal_lr_reaches_zero_in_every_member(book_runs, estimator, extra):
    """After a run with ``anneal_lr`` (the book runs above), every member's schedule count is the
    run's gradient steps ``N``: its last update used ``lr / N`` and a fresh step would use 0.
    Adam's own count stays per member: the members' counts add up to the steps each took."""
    cfg, state, _ = book_runs[estimator, bool(extra.get("update_all_members"))]
    n = cfg.num_updates
    (counts,) = schedule_counts(state.train.opt_state)
    counts = np.asarray(counts).reshape(2, -1)  # [run, member]
    assert counts.shape == (2, cfg.num_members)
    np.testing.assert_array_equal(counts, n)
    rate = optax.linear_schedule(BOOK_LR, 0.0, transition_steps=n)
    assert float(rate(counts[0, 0] - 1)) == pytest.approx(BOOK_LR / n, rel=1e-5)  # the last's
    assert float(rate(counts[0, 0])) == 0.0  # a fresh step's
    steps_per_member = {"random": n / cfg.num_members, "all": n, "only": n}[cfg.trained_members]
    for adam_counts in np.asarray(state.train.opt_state[0].count).reshape(2, -1):
        assert adam_counts.sum() == (n if cfg.trained_members == "random"
                                     else n * cfg.num_members)
        assert (adam_counts > 0.5 * steps_per_member).all()


def test_random_tie_break_applies_to_the_targets_argmax():
    """A hand-made tie: the online values tie on actions 0 and 1 (action 2 is lower; with the mask
    action 1 is illegal), the target values them 0, 10 and 20. Without a key the argmax takes
    action 0 (v = 0) every time; with ``tie_key`` half of the draws take action 1 (v = 10), and
    an illegal or non-maximal action never."""
    online = jnp.tile(jnp.array([3.0, 3.0, 1.0]), (4000, 1))
    target = jnp.tile(jnp.array([0.0, 10.0, 20.0]), (4000, 1))
    r, term = jnp.zeros(4000), jnp.zeros(4000, bool)
    key = jax.random.key(0)
    fixed = double_dqn_target(r, term, 1.0, target, online)
    assert set(np.unique(np.asarray(fixed))) == {0.0}
    for name, y in (
        ("double_dqn", double_dqn_target(r, term, 1.0, target, online, tie_key=key)),
        ("double_q", double_q_target(r, term, 1.0, jnp.stack([target, target]),
                                     jnp.stack([online, online]), tie_key=key)),
        ("clipped_double", clipped_double_target(r, term, 1.0, jnp.stack([target, target]),
                                                 online, tie_key=key)),
    ):
        y = np.asarray(y)
        assert set(np.unique(y)) == {0.0, 10.0}, name
        assert abs((y == 10.0).mean() - 0.5) < 0.03, name
    legal = jnp.tile(jnp.array([True, False, True]), (4000, 1))
    masked = double_dqn_target(r, term, 1.0, target, online, legal, tie_key=key)
    assert set(np.unique(np.asarray(masked))) == {0.0}  # the tie left is action 0 alone


def test_random_tie_break_in_a_step_draws_a_key_and_is_the_old_program_without_it():
    """With ``random_tie_break`` a Double DQN step needs a key (for its target's ties); without
    the option it needs none."""
    cfg = _tabular_config("double_dqn")
    params = init_q_params(cfg, jax.random.key(0))
    opt = make_optimizer(cfg)
    state = init_train_state(cfg, params, opt)
    (kernel,) = jax.tree.leaves(params)  # a table: one-hot observations x actions
    one_hot = jnp.eye(kernel.shape[0])
    batch = Transition(obs=one_hot[:1], action=jnp.array([0]), reward=jnp.array([0.0]),
                       terminated=jnp.array([False]), next_obs=one_hot[1:2])
    td_update = make_td_update(cfg, make_q_fn(cfg), opt)
    with pytest.raises(ValueError, match="double_dqn' with random_tie_break draws random"):
        td_update(state, batch, 1.0)
    new, _ = td_update(state, batch, 1.0, jax.random.key(1))
    assert np.isfinite(np.asarray(jax.tree.leaves(new.params)[0])).all()
    plain = cfg.replace(random_tie_break=False)
    make_td_update(plain, make_q_fn(plain), opt)(state, batch, 1.0)  # no key needed
