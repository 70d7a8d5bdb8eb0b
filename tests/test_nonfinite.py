"""Non-finite detection: the ``nonfinite`` metric column flags the first row whose TD loss or
params overflowed, and ``jaxdqn train`` reports it in one line without crashing."""

import json

import jax
import numpy as np
import pytest

from jaxdqn import DQNConfig, run_folder
from jaxdqn.cli import main
from jaxdqn.cli.reports import first_nonfinite_rows, nonfinite_line
from jaxdqn.train import NONFINITE_LOSS, NONFINITE_PARAMS, RUNNER_STATE_AXES, make_trainer

# TriadMDP off-policy with a large step: the greedy weight grows ~5% per update, so the squared TD
# error overflows float32 (|delta| > 1.8e19) rows before the weights themselves do (> 3.4e38).
DIVERGING = dict(env_id="TriadMDP", hidden_sizes=(), optimizer="sgd", learning_rate=1.0,
                 total_timesteps=4000, buffer_size=1000, learning_starts=100, batch_size=32,
                 train_frequency=1, target_update_freq=1, start_epsilon=1.0, end_epsilon=1.0,
                 log_interval=100)


@pytest.fixture(scope="module")
def rows_one_by_one():
    """The diverging config run one metric row per call: each row's metrics and whether the
    params were all finite after it, per seed."""
    config = DQNConfig(**DIVERGING)
    trainer = make_trainer(config)
    init = jax.jit(jax.vmap(trainer.init, out_axes=RUNNER_STATE_AXES))
    run = jax.jit(jax.vmap(trainer.run, in_axes=(RUNNER_STATE_AXES, None, None, None),
                           out_axes=(RUNNER_STATE_AXES, 0)), static_argnums=3)
    state = init(jax.random.split(jax.random.key(0), 2))
    flags, losses, finite = [], [], []
    for row in range(config.num_log_rows):
        state, metrics = run(state, None, row, 1)
        flags.append(np.asarray(metrics.nonfinite)[:, 0])
        losses.append(np.asarray(metrics.td_loss)[:, 0])
        finite.append(np.all([np.isfinite(np.asarray(x)).reshape(2, -1).all(axis=1)
                              for x in jax.tree.leaves(state.train.params)], axis=0))
    return np.stack(flags, 1), np.stack(losses, 1), np.stack(finite, 1)


def test_the_column_flags_the_first_row_of_each_kind(rows_one_by_one):
    flags, losses, finite = rows_one_by_one
    assert flags.dtype == np.int32
    for seed in range(2):
        loss_rows = np.flatnonzero(~np.isfinite(losses[seed]))
        param_rows = np.flatnonzero(~finite[seed])
        assert loss_rows.size and param_rows.size, "the run did not diverge"
        assert loss_rows[0] < param_rows[0]  # delta**2 overflows long before W does
        expected = (np.where(np.arange(40) >= loss_rows[0], NONFINITE_LOSS, 0)
                    | np.where(~finite[seed], NONFINITE_PARAMS, 0))
        np.testing.assert_array_equal(flags[seed], expected)
        first = first_nonfinite_rows(type("M", (), {"nonfinite": flags})())[seed]
        assert first == (loss_rows[0], NONFINITE_LOSS)


def test_a_finite_run_flags_nothing():
    config = DQNConfig(env_id="TriadMDP", hidden_sizes=(), optimizer="sgd", learning_rate=0.05,
                       total_timesteps=2000, buffer_size=500, learning_starts=100, batch_size=32,
                       train_frequency=1, target_update_freq=1, start_epsilon=0.0,
                       end_epsilon=0.0, log_interval=500)
    out = jax.jit(make_trainer(config).train)(jax.random.key(0))
    np.testing.assert_array_equal(out.metrics.nonfinite, np.zeros(4, np.int32))


def test_the_one_line_report():
    assert (nonfinite_line(3, 12, NONFINITE_PARAMS, 48000)
            == "run 3 diverged: non-finite weights at row 12 (env step 48000)")
    assert (nonfinite_line(0, 5, NONFINITE_LOSS | NONFINITE_PARAMS, 600)
            == "run 0 diverged: non-finite weights and TD loss at row 5 (env step 600)")
    old = type("M", (), {"nonfinite": np.full((2, 3), np.nan, np.float32)})()  # stored before
    assert first_nonfinite_rows(old) == [None, None]


def test_train_reports_the_first_nonfinite_row_and_finishes(tmp_path, capsys, rows_one_by_one):
    out = tmp_path / "run"
    sets = [arg for k, v in DIVERGING.items() if k != "env_id"
            for arg in ("--set", f"{k}={v}")]  # hidden_sizes=(): a linear Q from the command line
    code = main(["train", "--env", "TriadMDP", "--seeds", "2", "--episodes", "2",
                 "--no-progress", "--out", str(out), *sets])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    metrics = np.load(out / run_folder.METRICS_NPZ)
    summary = json.loads((out / run_folder.SUMMARY).read_text())
    for seed in range(2):
        row = int(np.flatnonzero(metrics["nonfinite"][seed])[0])
        assert summary["first_nonfinite"][seed] == {
            "row": row, "env_steps": (row + 1) * 100, "bits": NONFINITE_LOSS}
        assert (f"run {seed} diverged: non-finite TD loss at row {row} "
                f"(env step {(row + 1) * 100})") in captured.err
    flags, _, _ = rows_one_by_one  # the same seeds one row per call: the same first rows
    assert [s["row"] for s in summary["first_nonfinite"]] == [
        int(np.flatnonzero(f)[0]) for f in flags]
