"""Benchmark: the engine's implicit methods against scipy's Radau and BDF on stiff problems, side by side.

Run with ``python bench/stiff.py``.  For each problem every solver runs at the same tolerances, and the
script prints the calls of ``f`` (counted by wrapping ``f``, so the finite-difference columns of every
solver's Jacobians are included; scipy's ``nfev`` leaves them out), accepted steps, Jacobians,
factorisations (scipy's Radau counts its real and its complex factorisation separately), the error
at the final time in units of the tolerance (against Radau at rtol 1e-12) and the median wall time of
interleaved runs; then the same as ratios to Radau.  Explicit dopri5 runs too, with a cap on its steps:
where the cap stops it, it is reported as not finished.  A last table starts Van der Pol on the
repelling branch of its slow manifold, where a step too long for the growing mode is damped instead
of followed (chapter 15).

It exits with status 1, saying why, if

* kvaerno3 or kvaerno5 ends more than 25 tolerances from the reference on any problem;
* kvaerno5 calls f more than 2x as often as Radau, or kvaerno3 more than 4x, on any problem;
* kvaerno3 forms a Jacobian on more than a quarter of its steps on any problem;
* on Van der Pol with mu = 100, kvaerno3 calls f more than a fifth as often as dopri5;
* kvaerno5 takes more than 4x Radau's median time on any problem (both are Python loops over NumPy);
* started on the repelling branch, kvaerno3 or kvaerno5 at rtol 1e-2 ... 1e-6 is more than 0.05 off
  at t = 20.

This is a script, not a test: wall times depend on the machine and on what else runs on it.
"""

import sys
import time

import numpy as np
import scipy
from scipy.integrate import solve_ivp

import neuralode as ne
from neuralode.checks import CountingDynamics
from neuralode.problems import STIFF_LINEAR_RATES as LAMBDA, robertson, stiff_linear as linear, van_der_pol

MAX_ERROR = 25.0
MAX_CALLS_RATIO = {"kvaerno5": 2.0, "kvaerno3": 4.0}
MAX_JACOBIAN_SHARE = 0.25
MAX_CALLS_VS_DOPRI5 = 0.2
MAX_TIME_RATIO = 4.0
MAX_REPELLING_ERROR = 0.05
DOPRI5_CAP = 40_000
OURS = ("kvaerno3", "kvaerno5")
THEIRS = ("Radau", "BDF")


PROBLEMS = [
    # name, f, y0, t1, rtol, atol
    ("Van der Pol mu=100", van_der_pol(100.0), np.array([2.0, 0.0]), 200.0, 1e-6, 1e-6),
    ("Van der Pol mu=1000", van_der_pol(1000.0), np.array([2.0, 0.0]), 2000.0, 1e-6, 1e-6),
    ("Robertson", robertson, np.array([1.0, 0.0, 0.0]), 1e5, 1e-6, 1e-10),
    ("linear -1,-1e3,-1e5", linear, np.ones(3), 10.0, 1e-6, 1e-9),
]


def run(solver, f, y0, t1, rtol, atol):
    """One solve; returns the final state and the costs as a dict (``None`` if it did not finish)."""
    counted = CountingDynamics(f)
    if solver in THEIRS:
        sol = solve_ivp(counted, (0.0, t1), y0, method=solver, rtol=rtol, atol=atol)
        if sol.status != 0:
            return None
        return dict(y=sol.y[:, -1], calls=counted.nfe, steps=len(sol.t) - 1, jac=sol.njev, lu=sol.nlu)
    try:
        sol = ne.integrate(counted, y0, [0.0, t1], method=solver, rtol=rtol, atol=atol,
                           max_num_steps=DOPRI5_CAP if solver == "dopri5" else 10**6)
    except ne.TooManyStepsError:
        return None
    assert sol.nfe == counted.nfe, "the engine's nfe counts every call of f"
    return dict(y=sol.ys[-1], calls=sol.nfe, steps=sol.n_steps, jac=sol.n_jac, lu=sol.n_lu)


def median_times(solvers, args, repeats):
    """Median wall times of each solver, interleaved, after one warm-up run each."""
    for s in solvers:
        run(s, *args)
    times = {s: [] for s in solvers}
    for _ in range(repeats):
        for s in solvers:
            start = time.perf_counter()
            run(s, *args)
            times[s].append(time.perf_counter() - start)
    return {s: float(np.median(v)) for s, v in times.items()}


HEADER = (f"{'problem':20s} {'solver':9s} | {'calls of f':>10s} {'steps':>6s} {'Jacobians':>9s} {'LUs':>6s} | "
          f"{'error/tol':>9s} | {'ms':>8s} | {'calls':>6s} {'steps':>6s} {'time':>6s}  (ratios to Radau)")


def compare(name, f, y0, t1, rtol, atol, repeats):
    reference = solve_ivp(f, (0.0, t1), y0, method="Radau", rtol=1e-12, atol=atol * 1e-4).y[:, -1]
    solvers = OURS + THEIRS
    results = {s: run(s, f, y0, t1, rtol, atol) for s in solvers + ("dopri5",)}
    times = median_times(solvers, (f, y0, t1, rtol, atol), repeats)
    if results["dopri5"] is not None:
        times.update(median_times(("dopri5",), (f, y0, t1, rtol, atol), 1))
    radau = results["Radau"]
    for s in solvers + ("dopri5",):
        r = results[s]
        if r is None:
            print(f"{name:20s} {s:9s} | did not finish within {DOPRI5_CAP} steps")
            continue
        r["error"] = float(np.max(np.abs(r["y"] - reference) / (atol + rtol * np.abs(reference))))
        r["time"] = times[s]
        print(f"{name:20s} {s:9s} | {r['calls']:10d} {r['steps']:6d} {r['jac']:9d} {r['lu']:6d} | "
              f"{r['error']:9.2f} | {1e3 * r['time']:8.1f} | {r['calls'] / radau['calls']:6.2f} "
              f"{r['steps'] / radau['steps']:6.2f} {r['time'] / times['Radau']:6.2f}", flush=True)
    return results


def failures(name, results):
    why = []
    radau = results["Radau"]
    for s in OURS:
        r = results[s]
        if not r["error"] <= MAX_ERROR:
            why.append(f"{name}: {s} ends {r['error']:.1f} tolerances from the reference (limit {MAX_ERROR})")
        if r["calls"] > MAX_CALLS_RATIO[s] * radau["calls"]:
            why.append(f"{name}: {s} calls f {r['calls'] / radau['calls']:.2f}x as often as Radau "
                       f"(limit {MAX_CALLS_RATIO[s]})")
        if r["time"] > MAX_TIME_RATIO * radau["time"] and s == "kvaerno5":
            why.append(f"{name}: {s} takes {r['time'] / radau['time']:.2f}x Radau's time (limit {MAX_TIME_RATIO})")
    if results["kvaerno3"]["jac"] > MAX_JACOBIAN_SHARE * results["kvaerno3"]["steps"]:
        why.append(f"{name}: kvaerno3 formed {results['kvaerno3']['jac']} Jacobians in "
                   f"{results['kvaerno3']['steps']} steps")
    dopri5 = results["dopri5"]
    if name == "Van der Pol mu=100" and (dopri5 is None or results["kvaerno3"]["calls"] > MAX_CALLS_VS_DOPRI5 * dopri5["calls"]):
        why.append(f"{name}: kvaerno3 is not 5x cheaper than dopri5 in calls of f")
    return why


def repelling_branch():
    """Start on the repelling middle branch of Van der Pol's slow manifold (mu = 100, x0 = 0.5)."""
    mu, x0 = 100.0, 0.5
    f, y0 = van_der_pol(mu), np.array([x0, x0 / (mu * (1 - x0**2))])
    reference = solve_ivp(f, (0.0, 20.0), y0, method="Radau", rtol=1e-12, atol=1e-12).y[0, -1]
    print(f"\nStarted on the repelling branch (mu = 100, x(0) = 0.5): x(20) = {reference:.4f} (Radau, rtol 1e-12); "
          "the table gives x(20) - reference")
    tolerances = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
    print(f"{'solver':9s} | " + " ".join(f"{'rtol ' + format(r, '.0e'):>11s}" for r in tolerances))
    why = []
    for s in OURS + THEIRS:
        errors = []
        for rtol in tolerances:
            if s in THEIRS:
                x = solve_ivp(f, (0.0, 20.0), y0, method=s, rtol=rtol, atol=rtol).y[0, -1]
            else:
                x = ne.odeint(f, y0, [0.0, 20.0], method=s, rtol=rtol, atol=rtol)[-1, 0]
            errors.append(x - reference)
        print(f"{s:9s} | " + " ".join(f"{e:11.4f}" for e in errors))
        if s in OURS and max(abs(e) for e in errors) > MAX_REPELLING_ERROR:
            why.append(f"repelling branch: {s} is {max(abs(e) for e in errors):.3f} off at t = 20")
    return why


def main():
    start = time.perf_counter()
    print(f"kvaerno3 and kvaerno5 (neuralode) vs solve_ivp's Radau and BDF (scipy {scipy.__version__}), and dopri5 "
          f"(capped at {DOPRI5_CAP} steps); times are medians of interleaved runs")
    print(HEADER)
    print("-" * len(HEADER))
    why = []
    for name, f, y0, t1, rtol, atol in PROBLEMS:
        results = compare(name, f, y0, t1, rtol, atol, repeats=3)
        why += failures(name, results)
        print("-" * len(HEADER))
    why += repelling_branch()
    print(f"\n{time.perf_counter() - start:.1f} s in all")
    for reason in why:
        print("FAIL: " + reason)
    print("FAILED" if why else "PASSED")
    return 1 if why else 0


if __name__ == "__main__":
    sys.exit(main())
