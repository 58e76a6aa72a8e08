"""Benchmark of ``neuralode.cnf``: the exact trace against Hutchinson's estimator as the dimension ``d`` grows.

Run with ``python bench/cnf.py`` (about 20 s).  Everything is measured side by side in this one run and
printed as medians and ratios, on a :class:`~neuralode.cnf.TimeField` with ``H = 64`` hidden units and a
batch of 128 points.  Three ways to get ``tr(df/dz)``:

* ``closed form``: this one-hidden-layer field's exact divergence ``sigma'(h) . diag(W1 W2)``, which costs
  ``O(H)`` per point: cheaper than one pass of the network.  Deeper networks have no such formula.
* ``d JVPs``: the generic exact trace, ``sum_i e_i^T (df/dz) e_i`` by ``d`` Jacobian-vector products
  (:func:`~neuralode.cnf.divergence_by_jvps`), ``O(d)`` passes of ``O(d H)`` each: the ``O(d^2)`` cost of
  FFJORD's argument (Grathwohl et al. 2019, Section 3).
* ``Hutchinson``: one probe per point, ``eps^T (df/dz) eps`` in one pass, ``O(d H)``.

The script exits with status 1 if a target is missed:

* all three agree (closed form = d JVPs to 1e-10; Hutchinson's mean over 2000 probes within 5 standard errors);
* the d-JVP trace costs at least 10x Hutchinson's at d = 128, and its cost ratio grows with d;
* one ``log_prob`` solve with Hutchinson's trace stays within 3x of the closed form at every d.
"""

import sys
import time

import numpy as np

from neuralode.cnf import CNF, TimeField, divergence_by_jvps, hutchinson_probes

DIMS, HIDDEN, BATCH = (2, 8, 32, 128), 64, 128


def median_time(fn, repeats=15):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


class JVPTraceField(TimeField):
    """The same field, whose ``divergence`` is the generic exact trace by ``d`` JVPs (forward solves only)."""

    def divergence(self, t, z):
        return divergence_by_jvps(self, t, z)


def agreement(d):
    rng = np.random.default_rng(d)
    f = TimeField(d, HIDDEN, rng=rng)
    z, t = rng.standard_normal((BATCH, d)), 0.5
    closed, by_jvps = f.divergence(t, z), divergence_by_jvps(f, t, z)
    zs = np.repeat(z[:1], 2000, axis=0)
    est = f.trace_estimate(t, zs, hutchinson_probes(zs.shape, rng))
    stderr = est.std(ddof=1) / np.sqrt(len(est))
    return float(np.max(np.abs(closed - by_jvps))), abs(est.mean() - closed[0]) / stderr, est.std(ddof=1)


def trace_costs(d):
    """Median seconds of one trace evaluation on the batch, three ways."""
    rng = np.random.default_rng(d)
    f = TimeField(d, HIDDEN, rng=rng)
    z, t = rng.standard_normal((BATCH, d)), 0.5
    eps = hutchinson_probes(z.shape, rng)
    return {"closed form": median_time(lambda: f.divergence(t, z)),
            "d JVPs": median_time(lambda: divergence_by_jvps(f, t, z), repeats=7 if d > 32 else 15),
            "Hutchinson": median_time(lambda: f.trace_estimate(t, z, eps))}


def solve_costs(d):
    """Median seconds of one ``log_prob`` (rk4, 10 fixed steps, so every variant does 40 evaluations)."""
    rng = np.random.default_rng(d)
    fields = {"closed form": TimeField(d, HIDDEN, rng=np.random.default_rng(0), scale=0.3),
              "d JVPs": JVPTraceField(d, HIDDEN, rng=np.random.default_rng(0), scale=0.3)}
    x = rng.standard_normal((BATCH, d))
    options = {"method": "rk4", "step_size": 0.1}
    costs = {name: median_time(lambda f=f: CNF(f, **options).log_prob(x), repeats=3 if name == "d JVPs" else 7)
             for name, f in fields.items()}
    hutch = CNF(fields["closed form"], trace="hutchinson", **options)
    costs["Hutchinson"] = median_time(lambda: hutch.log_prob(x, rng=np.random.default_rng(1)), repeats=7)
    return costs


def main():
    failures = []
    print(f"1. Agreement (H = {HIDDEN}, batch {BATCH})")
    print(f"   {'d':>4} {'|closed - JVPs|':>16} {'Hutchinson bias / s.e.':>23} {'probe std':>10}")
    for d in DIMS:
        gap, z_score, std = agreement(d)
        print(f"   {d:4d} {gap:16.1e} {z_score:23.2f} {std:10.3f}")
        if gap > 1e-10 or z_score > 5:
            failures.append(f"trace disagreement at d = {d}")
    print("2. One trace evaluation on the batch (median, microseconds) and ratios")
    print(f"   {'d':>4} {'closed':>9} {'d JVPs':>9} {'Hutch':>9} {'JVPs/Hutch':>11} {'Hutch/closed':>13}")
    ratios = []
    for d in DIMS:
        c = trace_costs(d)
        ratios.append(c["d JVPs"] / c["Hutchinson"])
        print(f"   {d:4d} {c['closed form'] * 1e6:9.1f} {c['d JVPs'] * 1e6:9.1f} {c['Hutchinson'] * 1e6:9.1f} "
              f"{ratios[-1]:11.1f} {c['Hutchinson'] / c['closed form']:13.2f}")
    if ratios[-1] < 10:
        failures.append(f"d JVPs cost only {ratios[-1]:.1f}x Hutchinson at d = {DIMS[-1]} (target >= 10x)")
    if not ratios[-1] > ratios[0]:
        failures.append("the d-JVP / Hutchinson cost ratio did not grow with d")
    print("3. One log_prob solve (rk4, 10 steps, 40 evaluations; median, milliseconds) and ratios")
    print(f"   {'d':>4} {'closed':>9} {'d JVPs':>9} {'Hutch':>9} {'JVPs/Hutch':>11} {'Hutch/closed':>13}")
    for d in DIMS:
        c = solve_costs(d)
        ratio = c["Hutchinson"] / c["closed form"]
        print(f"   {d:4d} {c['closed form'] * 1e3:9.2f} {c['d JVPs'] * 1e3:9.2f} {c['Hutchinson'] * 1e3:9.2f} "
              f"{c['d JVPs'] / c['Hutchinson']:11.1f} {ratio:13.2f}")
        if ratio > 3:
            failures.append(f"Hutchinson's solve cost {ratio:.1f}x the closed form at d = {d} (target <= 3x)")
    print("summary:", "all targets met" if not failures else "; ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
