"""Benchmark of ``odeint_vjp``: agreement, cost (NFE and time) and memory of backprop and the adjoint.

Run with ``python bench/gradients.py``.  Everything is measured side by side in this one run and
printed as medians and ratios.  The script exits with status 1 if a target is missed:

* both modes agree with a finite-difference gradient of a tight solve to a relative error < 1e-5;
* the adjoint's peak memory grows by at most 1.5x from 20 to 2000 fixed steps, backprop's grows;
* the adjoint's forward + backward on a 2-50-2 MLP, batch 3, 11 output times, takes a few
  milliseconds (target: median below 10 ms).
"""

import sys
import time

import numpy as np

import neuralode as ne
from neuralode.checks import fd_gradient, fd_param_gradients, relative_error
from neuralode.nn import MLP, ravel_params

RTOL, ATOL = 1e-7, 1e-9


def problem():
    rng = np.random.default_rng(0)
    f = MLP([2, 50, 2], rng=rng)
    y0 = rng.standard_normal((3, 2))
    t = np.linspace(0.0, 1.0, 11)
    weights = rng.standard_normal((len(t), 3, 2))
    return f, y0, t, weights


def reference_gradient(f, y0, t, weights):
    """Finite differences of ``L = sum(weights * ys)`` through a tight dopri5 solve."""

    def loss(y=y0, times=t):
        return float(np.sum(weights * ne.odeint(f, y, times, rtol=1e-12, atol=1e-12)))

    return fd_gradient(lambda z: loss(y=z), y0), fd_param_gradients(loss, f.params), fd_gradient(lambda s: loss(times=s), t)


def median_time(fn, repeats=15):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def agreement(f, y0, t, weights):
    print("1. Agreement with finite differences of a tight solve (relative errors)")
    gy, gp, gt = reference_gradient(f, y0, t, weights)
    print(f"   {'mode':<9} {'y0':>9} {'theta':>9} {'t':>9}")
    worst = 0.0
    for mode in ("backprop", "adjoint"):
        _, pullback = ne.odeint_vjp(f, y0, t, gradient=mode, rtol=RTOL, atol=ATOL)
        y0_bar, params_bar, t_bar = pullback(weights)
        errors = (relative_error(y0_bar, gy), relative_error(ravel_params(params_bar), ravel_params(gp)),
                  relative_error(t_bar, gt))
        worst = max(worst, *errors)
        print(f"   {mode:<9} {errors[0]:9.1e} {errors[1]:9.1e} {errors[2]:9.1e}")
    print("   adjoint error against tolerance (theta):")
    for rtol in (1e-3, 1e-5, 1e-7, 1e-9):
        _, pullback = ne.odeint_vjp(f, y0, t, rtol=rtol, atol=rtol * 1e-2)
        error = relative_error(ravel_params(pullback(weights)[1]), ravel_params(gp))
        print(f"   rtol {rtol:.0e}: {error:.1e}  (NFE-F {pullback.nfe_forward}, NFE-B {pullback.nfe_backward})")
    return worst


def cost(f, y0, t, weights):
    print("2. Cost on a 2-50-2 MLP, batch 3, 11 output times (median of 15 runs)")
    forward = median_time(lambda: ne.odeint(f, y0, t, rtol=RTOL, atol=ATOL))
    print(f"   forward solve alone          {forward * 1e3:7.2f} ms")
    results = {}
    for mode in ("backprop", "adjoint"):
        def run():
            ys, pullback = ne.odeint_vjp(f, y0, t, gradient=mode, rtol=RTOL, atol=ATOL)
            pullback(weights)
            return pullback

        pullback = run()
        results[mode] = median_time(run)
        print(f"   {mode:<9} forward + backward {results[mode] * 1e3:7.2f} ms  ({results[mode] / forward:4.1f}x the "
              f"forward)  NFE-F {pullback.nfe_forward:4d}  NFE-B {pullback.nfe_backward:4d}")
    return results["adjoint"]


def peak_memory(gradient, steps):
    f = MLP([2, 50, 2], rng=np.random.default_rng(0))
    return ne.checks.pullback_peak_memory(f, np.ones((32, 2)), [0.0, 1.0], gradient=gradient, method="rk4",
                                          step_size=1.0 / steps)


def memory():
    print("3. Peak memory (tracemalloc) of solve + pullback, rk4 fixed steps, batch 32")
    print(f"   {'steps':>6} {'backprop KiB':>13} {'adjoint KiB':>12}")
    peaks = {mode: [] for mode in ("backprop", "adjoint")}
    for steps in (20, 200, 2000):
        for mode in peaks:
            peaks[mode].append(peak_memory(mode, steps))
        print(f"   {steps:6d} {peaks['backprop'][-1] / 1024:13.1f} {peaks['adjoint'][-1] / 1024:12.1f}")
    growth = {mode: values[-1] / values[0] for mode, values in peaks.items()}
    print(f"   growth 20 -> 2000 steps: backprop {growth['backprop']:.1f}x, adjoint {growth['adjoint']:.2f}x")
    return growth


def main():
    f, y0, t, weights = problem()
    worst = agreement(f, y0, t, weights)
    adjoint_time = cost(f, y0, t, weights)
    growth = memory()
    failures = []
    if worst >= 1e-5:
        failures.append(f"gradient relative error {worst:.1e} is not below 1e-5")
    if growth["adjoint"] > 1.5:
        failures.append(f"adjoint memory grew {growth['adjoint']:.2f}x (limit 1.5x)")
    if growth["backprop"] < 10:
        failures.append(f"backprop memory grew only {growth['backprop']:.1f}x")
    if adjoint_time > 10e-3:
        failures.append(f"adjoint forward + backward took {adjoint_time * 1e3:.1f} ms (target < 10 ms)")
    print("summary:", "all targets met" if not failures else "; ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
