"""The noisy-max exercise: closed forms, numerical integration, Monte Carlo, compounding."""

import math

import numpy as np
import pytest

from jaxdqn.noisy_max import (
    CLOSED_FORMS,
    compounded_bias,
    compounding_table,
    expected_max,
    expected_max_standard_normal,
    noisy_max_table,
    simulate_compounding,
    simulate_expected_max,
)


def test_closed_forms_match_numerical_integration():
    assert CLOSED_FORMS[2] == pytest.approx(1 / math.sqrt(math.pi), abs=1e-15)
    assert CLOSED_FORMS[3] == pytest.approx(3 / (2 * math.sqrt(math.pi)), abs=1e-15)
    for k, value in CLOSED_FORMS.items():
        assert expected_max_standard_normal(k) == pytest.approx(value, abs=1e-13), k


def test_numerical_integration_matches_scipy_quad():
    scipy_integrate = pytest.importorskip("scipy.integrate")
    scipy_stats = pytest.importorskip("scipy.stats")
    for k in (6, 10, 100, 1000):
        ref, _ = scipy_integrate.quad(
            lambda x, k=k: k * x * scipy_stats.norm.pdf(x) * scipy_stats.norm.cdf(x) ** (k - 1),
            -40, 40, epsabs=1e-13, epsrel=1e-13, limit=400, points=[0.0, 2.0, 3.0])
        assert expected_max_standard_normal(k) == pytest.approx(ref, abs=1e-10), k
    # Tabulated order-statistic means (Harter 1961): e_10 = 1.53875, e_100 = 2.50759.
    assert expected_max_standard_normal(10) == pytest.approx(1.53875, abs=1e-5)
    assert expected_max_standard_normal(100) == pytest.approx(2.50759, abs=1e-5)


def test_location_scale_and_monotone_in_k():
    assert expected_max(7, mu=2.0, sigma=0.5) == pytest.approx(
        2.0 + 0.5 * expected_max_standard_normal(7), abs=1e-14)
    assert expected_max(10, mu=-1.0, sigma=0.0) == -1.0
    values = [expected_max(k) for k in range(1, 30)]
    assert values[0] == 0.0 and np.all(np.diff(values) > 0)


def test_monte_carlo_agrees_within_standard_errors():
    rng = np.random.default_rng(123)
    for k, mu, sigma in [(2, 0.0, 1.0), (3, 1.0, 0.5), (10, -0.1, 1.0), (100, 0.0, 0.1)]:
        mean, se = simulate_expected_max(k, mu, sigma, 40_000, rng)
        assert abs(mean - expected_max(k, mu, sigma)) < 4 * se, (k, mu, sigma)
        assert se < 0.01 * sigma * 2
    rows = noisy_max_table(ks=(1, 2, 5, 10), sigmas=(0.1, 1.0), num_samples=20_000, seed=5)
    assert len(rows) == 8 and all(abs(r["z"]) < 4 for r in rows)


def test_compounding_reaches_the_fixed_point():
    k, sigma, gamma = 2, 0.1, 0.9
    fixed = compounded_bias(k, sigma, gamma)
    assert fixed == pytest.approx(gamma * sigma / math.sqrt(math.pi) / (1 - gamma), rel=1e-14)
    trace = simulate_compounding(k, sigma, gamma, 200, 4000, np.random.default_rng(0))
    # E[trace_n] = fixed * (1 - gamma^n); the stationary sd of one run is ~0.17, so the mean of
    # 4000 runs has a standard error of ~0.003.
    n = np.array([5, 20, 200])
    np.testing.assert_allclose(trace[n - 1], fixed * (1 - gamma**n), atol=0.015)
    rows = compounding_table(ks=(10,), sigmas=(0.1,), gammas=(0.9,), num_runs=2000)
    assert rows[0]["simulated"] == pytest.approx(rows[0]["fixed_point"], rel=0.03)


def test_invalid_arguments_name_the_field():
    with pytest.raises(ValueError, match="k=0"):
        expected_max(0)
    with pytest.raises(ValueError, match="sigma=-1"):
        expected_max(2, sigma=-1.0)
    with pytest.raises(ValueError, match="gamma=1"):
        compounded_bias(2, 0.1, 1.0)
    with pytest.raises(ValueError, match="num_samples"):
        simulate_expected_max(2, 0.0, 1.0, 1, np.random.default_rng(0))
