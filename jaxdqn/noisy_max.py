"""The seed's noisy-max exercise, exactly: how far above the truth the max of noisy estimates sits.

If ``k`` actions all have true value ``mu`` and each estimate carries independent ``N(0, sigma^2)``
noise, ``E[max] = mu + sigma * e_k`` with ``e_k = E[max of k standard normals] = integral of
k x phi(x) Phi(x)^(k-1) dx``. Closed forms exist for ``k <= 5`` (``e_2 = 1/sqrt(pi)``, ``e_3 =
3/(2 sqrt(pi))``, ...); ``expected_max_standard_normal`` integrates numerically (composite
Gauss-Legendre, ~1e-14 absolute) for any ``k`` and agrees with them.

Compounding: a target ``r + gamma * max_a' Q(s', a')`` built on estimates that already carry a bias
``b`` adds ``sigma * e_k`` on top; at the fixed point ``b = gamma * (b + sigma * e_k)``, i.e.
``b = gamma * sigma * e_k / (1 - gamma)``: the per-step bias times the horizon
(``compounded_bias``, checked by ``simulate_compounding``).
"""

from __future__ import annotations

import math

import numpy as np

_SQRT_PI = math.sqrt(math.pi)
_ASIN_THIRD = math.asin(1.0 / 3.0)

CLOSED_FORMS = {
    1: 0.0,
    2: 1.0 / _SQRT_PI,
    3: 3.0 / (2.0 * _SQRT_PI),
    4: 3.0 / _SQRT_PI * (0.5 + _ASIN_THIRD / math.pi),
    5: 5.0 / (2.0 * _SQRT_PI) * (0.5 + 3.0 * _ASIN_THIRD / math.pi),
}
"""``e_k`` in closed form (David and Nagaraja, *Order Statistics*, for the normal distribution)."""


def _check_k(k) -> int:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k={k!r} is invalid: must be an int >= 1")
    return int(k)


def _check_sigma(sigma) -> float:
    if not (isinstance(sigma, (int, float, np.floating)) and math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma={sigma!r} is invalid: must be a finite number >= 0")
    return float(sigma)


def _gauss_legendre(low: float, high: float, panels: int, nodes: int):
    x, w = np.polynomial.legendre.leggauss(nodes)
    edges = np.linspace(low, high, panels + 1)
    half = np.diff(edges)[:, None] / 2.0
    mid = (edges[:-1] + edges[1:])[:, None] / 2.0
    return (mid + half * x).ravel(), (half * w).ravel()


_NODES, _WEIGHTS = _gauss_legendre(-14.0, 14.0, panels=112, nodes=24)
_LOG_CDF = np.log(0.5 * np.array([math.erfc(-v / math.sqrt(2.0)) for v in _NODES]))
_PDF = np.exp(-0.5 * _NODES**2) / math.sqrt(2.0 * math.pi)


def expected_max_standard_normal(k: int) -> float:
    """``e_k = E[max(Z_1, ..., Z_k)]`` for iid standard normals, by numerical integration of
    ``k x phi(x) Phi(x)^(k-1)`` over ``[-14, 14]`` (the rest of the line adds < 1e-40)."""
    k = _check_k(k)
    density = k * _PDF * np.exp((k - 1) * _LOG_CDF)
    return float(np.sum(_WEIGHTS * _NODES * density))


def expected_max(k: int, mu: float = 0.0, sigma: float = 1.0) -> float:
    """``E[max of k iid N(mu, sigma^2)] = mu + sigma * e_k`` (closed form where one exists)."""
    k, sigma = _check_k(k), _check_sigma(sigma)
    e_k = CLOSED_FORMS.get(k)
    return mu + sigma * (expected_max_standard_normal(k) if e_k is None else e_k)


def simulate_expected_max(k: int, mu: float, sigma: float, num_samples: int,
                          rng: np.random.Generator) -> tuple[float, float]:
    """Monte Carlo ``(mean, standard error)`` of the max of ``k`` iid ``N(mu, sigma^2)`` draws."""
    k, sigma = _check_k(k), _check_sigma(sigma)
    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples={num_samples!r} is invalid: must be an int >= 2")
    rows = max(1, 4_000_000 // k)  # draw in blocks of ~4M normals to bound memory
    maxima = np.concatenate([
        rng.normal(mu, sigma, size=(min(rows, num_samples - start), k)).max(axis=1)
        for start in range(0, num_samples, rows)
    ])
    return float(maxima.mean()), float(maxima.std(ddof=1) / math.sqrt(num_samples))


def compounded_bias(k: int, sigma: float, gamma: float) -> float:
    """Fixed point ``gamma * sigma * e_k / (1 - gamma)`` of the bias of noisy max-bootstrapping."""
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma={gamma!r} is invalid: must be in [0, 1)")
    return gamma * expected_max(k, 0.0, sigma) / (1.0 - gamma)


def simulate_compounding(k: int, sigma: float, gamma: float, iterations: int, num_runs: int,
                         rng: np.random.Generator) -> np.ndarray:
    """Mean over ``num_runs`` of the estimate after each of ``iterations`` noisy Bellman backups.

    One state, ``k`` actions, reward 0, so every true value is 0. Each backup sets every action's
    estimate to ``gamma * max_a' (Q(a') + sigma * Z_a')``, the max over freshly noisy copies of the
    current estimates (which are equal, so the max is ``Q + sigma * max Z``). Returns
    ``f64[iterations]``; it approaches ``compounded_bias(k, sigma, gamma)``.
    """
    k, sigma = _check_k(k), _check_sigma(sigma)
    q = np.zeros(num_runs)
    trace = np.empty(iterations)
    for n in range(iterations):
        q = gamma * (q + sigma * rng.standard_normal((num_runs, k)).max(axis=1))
        trace[n] = q.mean()
    return trace


def noisy_max_table(ks=(1, 2, 3, 4, 5, 10, 100), sigmas=(0.1, 1.0), mu: float = 0.0,
                    num_samples: int = 100_000, seed: int = 0) -> list[dict]:
    """Exact ``E[max]`` against Monte Carlo for each ``(k, sigma)``: rows of plain floats."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in ks:
        for sigma in sigmas:
            mean, se = simulate_expected_max(k, mu, sigma, num_samples, rng)
            exact = expected_max(k, mu, sigma)
            rows.append({"k": int(k), "mu": mu, "sigma": sigma, "exact": exact,
                         "closed_form": k in CLOSED_FORMS, "simulated": mean,
                         "standard_error": se, "z": (mean - exact) / se if se > 0 else 0.0})
    return rows


def compounding_table(ks=(2, 10), sigmas=(0.1,), gammas=(0.9, 0.99), num_runs: int = 2000,
                      seed: int = 0) -> list[dict]:
    """``compounded_bias`` against ``simulate_compounding`` run for ``10 / (1 - gamma)`` backups
    (the bias then sits within ``gamma^iterations`` ~ 5e-5 of its fixed point, relatively)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in ks:
        for sigma in sigmas:
            for gamma in gammas:
                iterations = round(10 / (1 - gamma))
                trace = simulate_compounding(k, sigma, gamma, iterations, num_runs, rng)
                rows.append({"k": int(k), "sigma": sigma, "gamma": gamma,
                             "per_step_bias": expected_max(k, 0.0, sigma),
                             "fixed_point": compounded_bias(k, sigma, gamma),
                             "simulated": float(trace[-1]), "iterations": iterations})
    return rows
