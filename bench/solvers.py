"""Benchmark: the engine's dopri5 against scipy's ``solve_ivp(method="RK45")``, side by side.

Run with ``.venv/bin/python bench/solvers.py``.  For each problem it prints the number of function
evaluations (NFE), the largest error against an exact solution (or against DOP853 at rtol 1e-13), and
the median wall time of several interleaved repetitions, for both solvers and as ratios.

It exits with status 1, saying why, if

* an NFE ratio (ours / scipy's) exceeds 1.05,
* our error is more than 10 % above scipy's (beyond the reference's own accuracy, 1e-12), or
* on the spiral with 1000 output times at rtol 1e-6, atol 1e-8 we take more than half scipy's time.

This is a script, not a test: wall times depend on the machine and on what else runs on it.
"""

import sys
import time

import numpy as np
import scipy
from scipy.integrate import solve_ivp

import neuralode as ne

MAX_NFE_RATIO = 1.05
MAX_ERROR_RATIO = 1.10
REFERENCE_ACCURACY = 1e-12
MAX_SPIRAL_TIME_RATIO = 0.5
SPIRAL_GATE = ("spiral, 1000 outputs", 1e-6, 1e-8)

A_SPIRAL = np.array([[-0.1, 2.0], [-2.0, -0.1]])
LAMBDA = np.array([-2.0, 0.5])
OMEGA = 3.0


def spiral(t, y):
    """The book's nonlinear spiral ``dy/dt = (y**3) @ A`` (rows of a batch are independent)."""
    return (y**3) @ A_SPIRAL


def oscillator(t, y):
    """A linear oscillator ``x'' = -omega^2 x`` as a first-order system ``(x, v)``."""
    return np.array([y[1], -OMEGA**2 * y[0]])


def oscillator_exact(t):
    return np.stack([np.cos(OMEGA * t), -OMEGA * np.sin(OMEGA * t)], axis=1)


def exponential(t, y):
    """Decay and growth side by side: ``y' = lambda * y`` with ``lambda = (-2, 0.5)``."""
    return LAMBDA * y


def exponential_exact(t):
    return np.exp(np.outer(t, LAMBDA))


van_der_pol = ne.problems.van_der_pol(1.0)
"""The Van der Pol oscillator ``x'' = mu (1 - x^2) x' - x`` with ``mu = 1``."""


def flat(func, shape):
    """``func`` on the flat state scipy integrates (``func`` itself when the state is already flat)."""
    if len(shape) == 1:
        return func
    return lambda t, y: np.ravel(func(t, y.reshape(shape)))


def reference(func, y0, t):
    """A high-accuracy solution by DOP853 at rtol 1e-13, shaped like ``odeint``'s result."""
    sol = solve_ivp(flat(func, y0.shape), (t[0], t[-1]), y0.ravel(), method="DOP853", t_eval=t,
                    rtol=1e-13, atol=1e-13)
    return sol.y.T.reshape((len(t),) + y0.shape)


def problems():
    """``(name, func, y0, t, exact or None, [(rtol, atol), ...])`` for every benchmarked problem."""
    rng = np.random.default_rng(0)
    batch = np.column_stack([rng.uniform(0.5, 2.0, 32), rng.uniform(-0.5, 0.5, 32)])
    return [
        ("spiral, 1000 outputs", spiral, np.array([2.0, 0.0]), np.linspace(0.0, 25.0, 1000), None,
         [(1e-4, 1e-6), (1e-6, 1e-8), (1e-8, 1e-10)]),
        ("linear oscillator", oscillator, np.array([1.0, 0.0]), np.linspace(0.0, 10.0, 201),
         oscillator_exact, [(1e-6, 1e-8), (1e-9, 1e-11)]),
        ("exp. decay/growth", exponential, np.array([1.0, 1.0]), np.linspace(0.0, 5.0, 51),
         exponential_exact, [(1e-6, 1e-8), (1e-9, 1e-11)]),
        ("Van der Pol, mu = 1", van_der_pol, np.array([2.0, 0.0]), np.linspace(0.0, 20.0, 401), None,
         [(1e-6, 1e-8), (1e-9, 1e-11)]),
        ("spiral, batch of 32", spiral, batch, np.linspace(0.0, 10.0, 101), None, [(1e-6, 1e-8)]),
    ]


def median_times(ours, theirs, repeats):
    """Median wall times of ``ours()`` and ``theirs()``, run alternately after one warm-up each."""
    ours(), theirs()
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ours()
        middle = time.perf_counter()
        theirs()
        t_ours.append(middle - start)
        t_theirs.append(time.perf_counter() - middle)
    return float(np.median(t_ours)), float(np.median(t_theirs))


def compare(func, y0, t, truth, rtol, atol, repeats):
    """One row of the table: NFE, max error and median time of both solvers."""
    fun = flat(func, y0.shape)
    span = (t[0], t[-1])

    def ours():
        return ne.integrate(func, y0, t, method="dopri5", rtol=rtol, atol=atol)

    def theirs():
        return solve_ivp(fun, span, y0.ravel(), method="RK45", t_eval=t, rtol=rtol, atol=atol)

    mine, scipys = ours(), theirs()
    their_ys = scipys.y.T.reshape(mine.ys.shape)
    time_ours, time_theirs = median_times(ours, theirs, repeats)
    return {"nfe": (mine.nfe, scipys.nfev), "error": (np.abs(mine.ys - truth).max(), np.abs(their_ys - truth).max()),
            "time": (time_ours, time_theirs)}


HEADER = (f"{'problem':22s} {'rtol':>7s} {'atol':>7s} | {'NFE ours':>8s} {'scipy':>6s} {'ratio':>6s} | "
          f"{'error ours':>10s} {'scipy':>9s} | {'ms ours':>8s} {'scipy':>7s} {'ratio':>6s}")


def row(name, rtol, atol, r):
    (n1, n2), (e1, e2), (s1, s2) = r["nfe"], r["error"], r["time"]
    return (f"{name:22s} {rtol:7.0e} {atol:7.0e} | {n1:8d} {n2:6d} {n1 / n2:6.3f} | "
            f"{e1:10.2e} {e2:9.2e} | {1e3 * s1:8.2f} {1e3 * s2:7.2f} {s1 / s2:6.3f}")


def failures(name, rtol, atol, r):
    """Why this row fails the benchmark's requirements (an empty list if it does not)."""
    why = []
    (n1, n2), (e1, e2), (s1, s2) = r["nfe"], r["error"], r["time"]
    if n1 / n2 > MAX_NFE_RATIO:
        why.append(f"{name} at rtol {rtol:.0e}: NFE ratio {n1 / n2:.3f} > {MAX_NFE_RATIO}")
    if e1 > MAX_ERROR_RATIO * e2 + REFERENCE_ACCURACY:
        why.append(f"{name} at rtol {rtol:.0e}: error {e1:.2e} is more than 10 % above scipy's {e2:.2e}")
    if (name, rtol, atol) == SPIRAL_GATE and s1 / s2 > MAX_SPIRAL_TIME_RATIO:
        why.append(f"{name} at rtol {rtol:.0e}: time ratio {s1 / s2:.3f} > {MAX_SPIRAL_TIME_RATIO}")
    return why


def main():
    start = time.perf_counter()
    print(f"dopri5 (neuralode) vs solve_ivp(RK45) (scipy {scipy.__version__}, numpy {np.__version__}); "
          "times are medians of interleaved runs")
    print(HEADER)
    print("-" * len(HEADER))
    results, why = {}, []
    for name, func, y0, t, exact, tolerances in problems():
        truth = exact(t).reshape((len(t),) + y0.shape) if exact else reference(func, y0, t)
        for rtol, atol in tolerances:
            repeats = 31 if (name, rtol, atol) == SPIRAL_GATE else 9
            r = compare(func, y0, t, truth, rtol, atol, repeats)
            results[name, rtol, atol] = r
            print(row(name, rtol, atol, r), flush=True)
            why += failures(name, rtol, atol, r)
    worst = max(results, key=lambda key: results[key]["nfe"][0] / results[key]["nfe"][1])
    nfe_ratio = results[worst]["nfe"][0] / results[worst]["nfe"][1]
    spiral_ratio = results[SPIRAL_GATE]["time"][0] / results[SPIRAL_GATE]["time"][1]
    print("-" * len(HEADER))
    print(f"worst NFE ratio {nfe_ratio:.3f} ({worst[0]}, rtol {worst[1]:.0e}); spiral with 1000 outputs at "
          f"rtol 1e-06: time ratio {spiral_ratio:.3f} (limit {MAX_SPIRAL_TIME_RATIO}); "
          f"{time.perf_counter() - start:.1f} s in all")
    for reason in why:
        print("FAIL: " + reason)
    print("FAILED" if why else "PASSED")
    return 1 if why else 0


if __name__ == "__main__":
    sys.exit(main())
