"""TensorBoard and W&B logging: the scalars written are the metric rows, NaNs left out, read back
from the event files; W&B offline unless configured; a missing package is one clear message."""

import sys
import types

import numpy as np
import pytest

from jaxdqn import run_folder
from jaxdqn.loggers import (
    THROUGHPUT_TAG,
    MissingPackage,
    make_loggers,
    mean_over_seeds,
    read_scalars,
)
from jaxdqn.train import TrainMetrics

NAN = float("nan")


def _metrics(rows=3, runs=2):
    """``[runs, rows]`` metrics whose values encode (field, run, row); NaN holes."""
    fields = {}
    for i, name in enumerate(TrainMetrics._fields):
        fields[name] = np.asarray([[100 * i + 10 * r + k for k in range(rows)]
                                   for r in range(runs)], np.float32)
    fields["env_steps"] = np.tile(np.arange(1, rows + 1) * 400, (runs, 1)).astype(np.int32)
    fields["eval_return"][:, :-1] = NAN  # only the last row evaluated
    fields["td_loss"][1, 0] = NAN  # no update yet in run 1's first row
    return TrainMetrics(**fields)


def test_tensorboard_files_hold_every_finite_scalar_of_every_run(tmp_path):
    m = _metrics()
    loggers = make_loggers(tmp_path, ["seed_0", "seed_1"], tensorboard=True)
    loggers.log_segment(m, env_steps_per_second=1234.5)
    loggers.close()
    for run in (0, 1):
        got = read_scalars(tmp_path / run_folder.TENSORBOARD_DIR / f"seed_{run}")
        assert got["train/episode_return"] == [
            (400 * (k + 1), float(m.episode_return[run, k])) for k in range(3)]
        assert got["eval/return"] == [(1200, float(m.eval_return[run, 2]))]
        assert got["eval/truncated_fraction"][0] == (400, float(m.eval_truncated[run, 0]))
        assert got[THROUGHPUT_TAG] == [(1200, 1234.5)]
        assert {"train/episode_length", "train/q_taken", "train/q_max", "train/epsilon"} <= set(got)
        assert len(got["train/td_loss"]) == (2 if run == 1 else 3)


def test_wandb_is_offline_unless_configured_and_logs_per_run_keys(tmp_path, monkeypatch):
    calls = []

    class FakeRun:
        def define_metric(self, *a, **k):
            calls.append(("define_metric", a, k))

        def log(self, data):
            calls.append(("log", data))

        def finish(self):
            calls.append(("finish",))

    def init(**kwargs):
        calls.append(("init", kwargs))
        return FakeRun()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    loggers = make_loggers(tmp_path, ["seed_0", "seed_1"], wandb=True, name="run",
                           config={"gamma": 0.99})
    loggers.log_segment(_metrics(rows=1))
    loggers.close()
    init_kwargs = calls[0][1]
    assert init_kwargs["mode"] == "offline" and init_kwargs["config"] == {"gamma": 0.99}
    assert init_kwargs["dir"] == str(tmp_path / run_folder.WANDB_DIR)
    logs = [c[1] for c in calls if c[0] == "log"]
    assert logs[1]["env_steps"] == 400
    assert logs[1]["seed_1/train/episode_return"] == float(_metrics(rows=1).episode_return[1, 0])
    assert calls[-1] == ("finish",)
    calls.clear()
    monkeypatch.setenv("WANDB_MODE", "online")
    make_loggers(tmp_path, ["a"], wandb=True)
    assert "mode" not in calls[0][1]  # the user's own W&B settings apply


def test_a_missing_package_is_one_message_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(MissingPackage, match=r"^--wandb needs the wandb package: pip install "
                                             r'"jaxdqn\[wandb\]"$'):
        make_loggers(tmp_path, ["a"], tensorboard=True, wandb=True)
    assert not (tmp_path / run_folder.TENSORBOARD_DIR).exists()  # nothing written before the check


def test_a_sweep_logs_each_grid_point_as_the_mean_over_its_seeds():
    m = _metrics(rows=2, runs=2)
    swept = TrainMetrics(*(np.stack([x, x + 1]) for x in m))  # [combinations, seeds, rows]
    swept = swept._replace(env_steps=np.stack([m.env_steps, m.env_steps]))
    mean = mean_over_seeds(swept)
    assert mean.episode_return.shape == (2, 2)
    np.testing.assert_allclose(mean.episode_return[1], m.episode_return.mean(axis=0) + 1)
    np.testing.assert_allclose(mean.td_loss[0], [m.td_loss[0, 0], m.td_loss[:, 1].mean()])
    np.testing.assert_array_equal(mean.env_steps[0], m.env_steps[0])
