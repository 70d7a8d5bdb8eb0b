"""scripts/max_bias.py: the estimator list and the rliable aggregate."""

import importlib.util
import os

import numpy as np
import pytest

_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "scripts", "max_bias.py")
_spec = importlib.util.spec_from_file_location("max_bias_study", _PATH)
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)


def test_estimator_list_parses_names_and_member_counts():
    methods = study.parse_estimators("dqn,double_dqn,double_q,clipped_double,maxmin:4,averaged:4")
    assert [m for m, _ in methods] == ["DQN", "Double DQN", "Double Q", "Clipped double Q",
                                       "Maxmin N=4", "Averaged N=4"]
    assert methods[4][1] == {"estimator": "maxmin", "ensemble_size": 4}
    assert study.baseline_of(methods) == "DQN"
    assert study.baseline_of(study.parse_estimators("maxmin,averaged:3")) == "Maxmin N=2"


def test_methods_take_config_changes_after_the_estimator():
    methods = study.parse_estimators("dqn,dqn+gamma=0.9,double_dqn+loss=huber+huber_delta=2")
    assert [m for m, _ in methods] == ["DQN", "DQN gamma=0.9",
                                       "Double DQN loss=huber huber_delta=2"]
    assert methods[1][1] == {"estimator": "dqn", "gamma": 0.9}
    assert methods[2][1] == {"estimator": "double_dqn", "loss": "huber", "huber_delta": 2.0}


def test_a_method_can_be_given_a_label():
    methods = study.parse_estimators("dqn,C51=dqn+distributional=c51+v_min=0+v_max=100,M=maxmin:3")
    assert [m for m, _ in methods] == ["DQN", "C51", "M"]
    assert methods[1][1] == {"estimator": "dqn", "distributional": "c51", "v_min": 0.0,
                             "v_max": 100.0}
    assert methods[2][1] == {"estimator": "maxmin", "ensemble_size": 3}


@pytest.mark.parametrize("text, message", [
    ("dqn+gama=0.9", "unknown DQNConfig field 'gama'"), ("dqn+gamma", "expected FIELD=VALUE"),
    ("dqn+gamma=2", "gamma=2.0 is invalid"), ("dqn+gamma=x", "expected a number"),
    ("dqn,foo", "'foo' is invalid"), ("maxmin:x", "N must be an int"),
    ("double_q:3", "ensemble_size=3 is invalid"), ("dqn,dqn", "repeats"),
    ("=dqn", "LABEL= needs a label"), ("A=dqn,A=double_dqn", "repeats"),
])
def test_bad_estimator_lists_are_one_value_error(text, message):
    with pytest.raises((ValueError, study.CliError), match=message):
        study.parse_estimators(text)


def test_iqm_is_the_mean_of_the_middle_half_with_an_interval_around_it():
    pytest.importorskip("rliable")  # the study extra
    out = study.iqm_ci({"a": np.arange(1.0, 9.0), "b": np.full(8, 3.0)}, resamples=500)
    assert out["a"]["iqm"] == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    low, high = out["a"]["ci95"]
    assert low < 4.5 < high
    assert out["b"] == {"iqm": 3.0, "ci95": [3.0, 3.0]}


def test_the_iqm_interval_is_the_same_for_the_same_seed_whatever_numpy_held():
    pytest.importorskip("rliable")  # rliable 1.2 resamples from numpy's global generator
    scores = {"a": np.arange(1.0, 17.0) ** 2}
    np.random.seed(1)
    before = np.random.get_state()[1].copy()
    first = study.iqm_ci(scores, resamples=200, seed=3)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # left as it was
    np.random.seed(2)
    assert study.iqm_ci(scores, resamples=200, seed=3) == first
    assert study.iqm_ci(scores, resamples=200, seed=4) != first
