"""The ODE solvers: orders of convergence, accuracy, cost against scipy, dense output, integration
backward in time, batches and shapes, the tapes kept for backprop, the step-size policy, and every
error a user can meet."""

import contextlib
import math
import signal
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

import neuralode as ne
from neuralode import checks, problems, solver, stepsize
from neuralode.errors import IntegrationError, NonFiniteError, StepSizeUnderflowError, TooManyStepsError
from neuralode.solver import dense_eval, integrate_adaptive, integrate_fixed, prepare, rk_step
from neuralode.tableaux import TABLEAUX

OMEGA = 3.0
A_SPIRAL = np.array([[-0.1, 2.0], [-2.0, -0.1]])


def oscillator(t, y):
    return np.array([y[1], -OMEGA**2 * y[0]])


def oscillator_exact(t):
    t = np.asarray(t, float)
    return np.stack([np.cos(OMEGA * t), -OMEGA * np.sin(OMEGA * t)], axis=-1)


def spiral(t, y):
    return (y**3) @ A_SPIRAL


def forced(t, y):
    """Non-autonomous and nonlinear (and bounded both ways in time), so a wrong stage time shows."""
    return np.sin(3.0 * t) * y - 0.5 * np.tanh(y) + np.cos(t)


van_der_pol = problems.van_der_pol(1.0)


@contextlib.contextmanager
def finishes_within(seconds):
    """Fail instead of hanging: SIGALRM interrupts the block after ``seconds`` of wall time."""
    def interrupt(signum, frame):
        raise TimeoutError(f"did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.perf_counter()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.perf_counter() - start < seconds


# --------------------------------------------------------------------------------------------------
# One step: the generic routine against the textbook formula


def naive_step(f, t, y, h, tab):
    """``k_i = f(t + c_i h, y + h sum_j a_ij k_j)``, ``y_new = y + h sum_i b_i k_i``, written out."""
    K = []
    for i in range(tab.stages):
        K.append(f(t + tab.c[i] * h, y + h * sum(tab.a[i, j] * K[j] for j in range(i))))
    return y + h * sum(b * k for b, k in zip(tab.b, K)), np.array(K)


@pytest.mark.parametrize("name", sorted(TABLEAUX))
@pytest.mark.parametrize("h", [0.1, -0.05])
def test_rk_step_is_the_textbook_formula(name, h):
    tab, t, y = TABLEAUX[name], 0.3, np.array([0.7, -1.2, 2.0])
    YK = np.zeros((tab.stages + 1, y.size))
    YK[0], YK[1] = y, forced(t, y)
    y_new, W = rk_step(forced, t, h, tab, YK)
    expected, K = naive_step(forced, t, y, h, tab)
    assert np.allclose(y_new, expected, rtol=1e-14, atol=1e-14)
    assert np.allclose(YK[1:], K, rtol=1e-14, atol=1e-14), "rows 1..s of YK hold the stages"
    assert np.array_equal(YK[0], y)
    if tab.adaptive:
        assert np.allclose(W[tab.stages + 1].dot(YK), h * tab.b_err @ K, rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------------------------------
# Orders and accuracy


@pytest.mark.parametrize("name, order, steps", [
    ("euler", 1, [64, 128, 256, 512]),
    ("midpoint", 2, [32, 64, 128, 256]),
    ("heun", 2, [32, 64, 128, 256]),
    ("bosh3", 3, [16, 32, 64, 128]),
    ("rk4", 4, [8, 16, 32, 64]),
    ("dopri5", 5, [4, 8, 16, 32]),
])
def test_observed_order_of_fixed_steps(name, order, steps):
    """The global error of fixed steps of size h shrinks like h^p on ``x'' = -x`` (exact solution)."""
    t = np.linspace(0.0, 2.0, 5)
    hs = 2.0 / np.array(steps)
    exact = np.stack([np.cos(t), -np.sin(t)], axis=1)
    errors = [np.abs(ne.odeint(lambda s, y: np.array([y[1], -y[0]]), np.array([1.0, 0.0]), t, method=name,
                               step_size=h) - exact).max() for h in hs]
    assert abs(checks.observed_order(hs, errors) - order) <= 0.15, errors


def test_fixed_steps_without_step_size_take_one_step_per_interval():
    t = np.linspace(0.0, 1.0, 11)
    sol = ne.integrate(forced, np.array([0.5]), t, method="rk4")
    assert sol.n_steps == 10 and sol.nfe == 40
    assert np.allclose(sol.step_times, t)
    halves = ne.integrate(forced, np.array([0.5]), t, method="rk4", step_size=0.05)
    assert halves.n_steps == 20 and 0 < np.abs(halves.ys - sol.ys).max() < 1e-4


def test_step_size_cuts_each_interval_into_equal_steps():
    t = np.array([0.0, 0.25, 1.0])
    sol = ne.integrate(forced, np.array([0.5]), t, method="euler", step_size=0.1)
    assert sol.n_steps == 3 + 8
    assert np.allclose(np.diff(sol.step_times)[:3], 0.25 / 3) and np.allclose(np.diff(sol.step_times)[3:], 0.75 / 8)


def test_dopri5_error_follows_the_tolerance():
    t = np.linspace(0.0, 10.0, 101)
    errors = []
    for rtol in [1e-3, 1e-5, 1e-7, 1e-9, 1e-11]:
        ys = ne.odeint(oscillator, np.array([1.0, 0.0]), t, rtol=rtol, atol=rtol * 1e-2)
        errors.append(np.abs(ys - oscillator_exact(t)).max())
        assert errors[-1] < 100 * rtol, f"error {errors[-1]:.2e} at rtol {rtol:.0e}"
    assert all(e2 < 0.1 * e1 for e1, e2 in zip(errors, errors[1:])), errors


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_adaptive_methods_reach_the_exact_solution(method):
    t = np.linspace(0.0, 3.0, 31)
    ys = ne.odeint(lambda s, y: np.cos(s) * y, np.array([1.0]), t, method=method, rtol=1e-8, atol=1e-10)
    assert np.abs(ys[:, 0] - np.exp(np.sin(t))).max() < 1e-6


# --------------------------------------------------------------------------------------------------
# Cost: the same steps and the same number of evaluations as scipy's RK45


SCIPY_CASES = [
    ("spiral", spiral, np.array([2.0, 0.0]), (0.0, 25.0), 1e-6, 1e-8),
    ("oscillator", oscillator, np.array([1.0, 0.0]), (0.0, 10.0), 1e-9, 1e-11),
    ("van der pol", van_der_pol, np.array([2.0, 0.0]), (0.0, 20.0), 1e-5, 1e-7),
    ("decay backward", lambda t, y: -0.7 * y, np.array([1.0, 3.0]), (4.0, -1.0), 1e-6, 1e-8),
    ("forced, per-entry atol", forced, np.array([0.5, -0.2]), (0.0, 5.0), 1e-6, np.array([1e-8, 1e-4])),
]


@pytest.mark.parametrize("name, f, y0, span, rtol, atol", SCIPY_CASES, ids=[c[0] for c in SCIPY_CASES])
def test_same_steps_and_evaluations_as_scipy(name, f, y0, span, rtol, atol):
    ours = ne.integrate(f, y0, np.array(span), rtol=rtol, atol=atol)
    theirs = solve_ivp(f, span, y0, method="RK45", rtol=rtol, atol=atol)
    assert abs(ours.nfe / theirs.nfev - 1.0) <= 0.05
    assert ours.nfe == theirs.nfev, "(today they are equal)"
    assert len(ours.step_times) == len(theirs.t)
    # The error estimate is a small difference of large stage sums, so rounding that differs in the
    # last bit between the two codes moves the step sizes by up to ~1e-5 at tight tolerances.
    assert np.allclose(ours.step_times, theirs.t, rtol=1e-4, atol=1e-9)
    assert np.allclose(ours.ys[-1], theirs.y[:, -1], rtol=1e-7, atol=1e-9)


def test_first_step_is_scipys_initial_step():
    common = pytest.importorskip("scipy.integrate._ivp.common")
    for f, y0 in [(spiral, np.array([2.0, 0.0])), (van_der_pol, np.array([2.0, 0.0])), (forced, np.array([0.5]))]:
        f0 = f(0.0, y0)
        ours = stepsize.select_initial_step(f, 0.0, y0, f0, 1.0, 4, 1e-6, 1e-8, 10.0)
        theirs = common.select_initial_step(f, 0.0, y0, 10.0, np.inf, f0, 1.0, 4, 1e-6, 1e-8)
        assert math.isclose(ours, theirs, rel_tol=1e-12)


def test_nfe_identity_and_an_independent_count():
    """dopri5: f(t0, y0), one evaluation to choose the first step, then 6 per attempted step."""
    for f, y0, t1 in [(spiral, np.array([2.0, 0.0]), 25.0), (van_der_pol, np.array([2.0, 0.0]), 20.0)]:
        counted = checks.CountingDynamics(f)
        sol = ne.integrate(counted, y0, np.linspace(0.0, t1, 50), rtol=1e-6, atol=1e-8)
        assert sol.n_rejected > 0, "the identity should be checked with rejected steps too"
        assert sol.nfe == 2 + 6 * (sol.n_steps + sol.n_rejected)
        assert counted.nfe == sol.nfe


@pytest.mark.parametrize("name", sorted(TABLEAUX))
def test_nfe_is_what_the_dynamics_counted(name):
    counted = checks.CountingDynamics(forced)
    adaptive = TABLEAUX[name].adaptive
    sol = ne.integrate(counted, np.array([0.5, 1.0]), np.linspace(0.0, 2.0, 5), method=name,
                       step_size=None if adaptive else 0.1)
    assert counted.nfe == sol.nfe
    if adaptive:
        assert sol.nfe == 2 + (TABLEAUX[name].stages - 1) * (sol.n_steps + sol.n_rejected)
    else:
        assert sol.nfe == TABLEAUX[name].stages * sol.n_steps


def test_an_adaptive_method_without_first_same_as_last(monkeypatch):
    """Heun-Euler 2(1) with linear interpolation: k_1 = f(t_n, y_n) is evaluated at every step."""
    heun_euler = ne.ButcherTableau(name="heun_euler", order=2, error_order=1, c=[0.0, 1.0],
                                   a=[[0.0, 0.0], [1.0, 0.0]], b=[0.5, 0.5], b_err=[-0.5, 0.5],
                                   dense=[[0.5, 0.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0]])
    assert heun_euler.adaptive and not heun_euler.fsal
    monkeypatch.setitem(TABLEAUX, "heun_euler", heun_euler)
    counted = checks.CountingDynamics(lambda t, y: np.cos(t) * y)
    t = np.linspace(0.0, 3.0, 4)
    sol = ne.integrate(counted, np.array([1.0]), t, method="heun_euler", rtol=1e-6, atol=1e-8)
    assert counted.nfe == sol.nfe == 2 + (sol.n_steps + sol.n_rejected) + (sol.n_steps - 1)
    assert np.abs(sol.ys[:, 0] - np.exp(np.sin(t))).max() < 1e-4


def test_solution_records_its_steps():
    t = np.linspace(0.0, 25.0, 7)
    sol = ne.integrate(spiral, np.array([2.0, 0.0]), t, rtol=1e-6, atol=1e-8)
    assert sol.step_times[0] == t[0] and sol.step_times[-1] == t[-1]
    assert len(sol.step_times) == sol.n_steps + 1 and np.all(np.diff(sol.step_times) > 0)
    assert len(sol.rejected_times) == sol.n_rejected > 0
    assert all(tn in sol.step_times and h > 0 for tn, h in sol.rejected_times)
    assert np.array_equal(sol.t, t) and sol.ys.shape == (7, 2)


def test_a_solve_can_leave_its_steps_unrecorded():
    problem = prepare(spiral, np.array([2.0, 0.0]), np.array([0.0, 25.0]), "dopri5", 1e-6, 1e-8, None, 10**5)
    problem.record_steps = False
    quiet = integrate_adaptive(problem)
    loud = ne.integrate(spiral, np.array([2.0, 0.0]), np.array([0.0, 25.0]), rtol=1e-6, atol=1e-8)
    assert quiet.step_times == [] and quiet.rejected_times == []
    assert (quiet.n_steps, quiet.n_rejected, quiet.nfe) == (loud.n_steps, loud.n_rejected, loud.nfe)
    assert np.array_equal(quiet.ys, loud.ys)


# --------------------------------------------------------------------------------------------------
# Dense output


def test_outputs_do_not_change_the_steps():
    y0 = np.array([2.0, 0.0])
    two = ne.integrate(spiral, y0, np.array([0.0, 25.0]), rtol=1e-6, atol=1e-8)
    many = ne.integrate(spiral, y0, np.linspace(0.0, 25.0, 1000), rtol=1e-6, atol=1e-8)
    t_uneven = np.concatenate([[0.0], np.sort(np.random.default_rng(1).uniform(0.0, 25.0, 77)), [25.0]])
    uneven = ne.integrate(spiral, y0, t_uneven, rtol=1e-6, atol=1e-8)
    for sol in (many, uneven):
        assert sol.nfe == two.nfe and sol.step_times == two.step_times
        assert np.array_equal(sol.ys[-1], two.ys[-1])


@pytest.mark.parametrize("batch", [1, 7, 2**30])
def test_dense_output_does_not_depend_on_its_batching(monkeypatch, batch):
    """Outputs evaluated a step at a time, in small chunks, or all at the end are the same numbers."""
    y0, t = np.random.default_rng(3).uniform(0.5, 2.0, size=(3, 2)), np.linspace(0.0, 10.0, 333)
    reference = ne.odeint(spiral, y0, t, rtol=1e-6, atol=1e-8)
    monkeypatch.setattr(solver, "_BATCH", batch)
    assert np.allclose(ne.odeint(spiral, y0, t, rtol=1e-6, atol=1e-8), reference, rtol=1e-14, atol=1e-15)


def test_dense_output_is_as_accurate_as_the_steps():
    y0, rtol, atol = np.array([1.0, 0.0]), 1e-6, 1e-8
    steps = np.array(ne.integrate(oscillator, y0, np.array([0.0, 10.0]), rtol=rtol, atol=atol).step_times)
    at_steps = ne.odeint(oscillator, y0, steps, rtol=rtol, atol=atol)
    t_many = np.linspace(0.0, 10.0, 2001)
    between = ne.odeint(oscillator, y0, t_many, rtol=rtol, atol=atol)
    error_steps = np.abs(at_steps - oscillator_exact(steps)).max()
    error_between = np.abs(between - oscillator_exact(t_many)).max()
    assert error_between < 2.0 * error_steps
    linear = np.stack([np.interp(t_many, steps, at_steps[:, j]) for j in range(2)], axis=1)
    assert np.abs(linear - oscillator_exact(t_many)).max() > 100 * error_between, "the test can tell"


def test_dense_eval_at_the_ends_and_its_order():
    tab, h, y = TABLEAUX["dopri5"], 0.2, np.array([1.0, 0.0])
    YK = np.zeros((tab.stages + 1, 2))
    YK[0], YK[1] = y, oscillator(0.0, y)
    y_new = rk_step(oscillator, 0.0, h, tab, YK)[0]
    ends = dense_eval(y, h, YK[1:], tab.dense, np.array([0.0, 1.0]))
    assert np.array_equal(ends[0], y) and np.allclose(ends[1], y_new, rtol=1e-14, atol=1e-15)
    errors = []
    for h in [0.2, 0.1, 0.05, 0.025]:
        YK[0], YK[1] = y, oscillator(0.0, y)
        rk_step(oscillator, 0.0, h, tab, YK)
        middle = dense_eval(y, h, YK[1:], tab.dense, np.array([0.37]))[0]
        errors.append(np.abs(middle - oscillator_exact(0.37 * h)).max())
    assert abs(checks.observed_order([0.2, 0.1, 0.05, 0.025], errors) - 5.0) < 0.3, errors


def test_bosh3_dense_output():
    t = np.linspace(0.0, 10.0, 501)
    ys = ne.odeint(oscillator, np.array([1.0, 0.0]), t, method="bosh3", rtol=1e-7, atol=1e-9)
    assert np.abs(ys - oscillator_exact(t)).max() < 1e-4


# --------------------------------------------------------------------------------------------------
# Backward in time


def test_backward_integration_recovers_the_initial_state():
    y0, t = np.array([2.0, 0.0]), np.linspace(0.0, 10.0, 11)
    forward = ne.odeint(spiral, y0, t, rtol=1e-10, atol=1e-12)
    backward = ne.odeint(spiral, forward[-1], t[::-1], rtol=1e-10, atol=1e-12)
    assert np.allclose(backward[::-1], forward, rtol=0, atol=1e-7)
    assert np.abs(backward[-1] - y0).max() < 1e-7


def test_decreasing_time_is_the_reversed_problem():
    """``y' = f(t, y)`` on decreasing ``t`` is ``z' = -f(-s, z)`` on increasing ``s = -t``."""
    t = np.linspace(3.0, -1.0, 17)
    y0 = np.array([0.4, -0.3])
    down = ne.integrate(forced, y0, t, rtol=1e-7, atol=1e-9)
    up = ne.integrate(lambda s, z: -forced(-s, z), y0, -t, rtol=1e-7, atol=1e-9)
    assert down.nfe == up.nfe and down.n_rejected == up.n_rejected
    assert np.allclose(down.step_times, -np.array(up.step_times), rtol=1e-12, atol=1e-12)
    assert np.allclose(down.ys, up.ys, rtol=1e-12, atol=1e-12)
    assert np.all(np.diff(down.step_times) < 0)


@pytest.mark.parametrize("method", ["euler", "rk4", "dopri5"])
def test_fixed_steps_backward(method):
    t = np.linspace(2.0, 0.0, 5)
    ys = ne.odeint(oscillator, oscillator_exact(2.0), t, method=method, step_size=0.001)
    assert np.abs(ys - oscillator_exact(t)).max() < (0.05 if method == "euler" else 1e-9)


# --------------------------------------------------------------------------------------------------
# Batches and shapes


def flat(f, shape):
    return lambda t, y: np.ravel(f(t, y.reshape(shape)))


def test_a_batch_is_the_stacked_system():
    """A leading batch axis is one system: one step sequence, the same as solving it stacked flat."""
    y0 = np.random.default_rng(0).uniform(0.5, 2.0, size=(6, 2))
    t = np.linspace(0.0, 10.0, 21)
    batch = ne.integrate(spiral, y0, t, rtol=1e-6, atol=1e-8)
    stacked = ne.integrate(flat(spiral, y0.shape), y0.ravel(), t, rtol=1e-6, atol=1e-8)
    assert batch.ys.shape == (21, 6, 2)
    assert batch.step_times == stacked.step_times and batch.nfe == stacked.nfe
    assert np.array_equal(batch.ys.reshape(21, -1), stacked.ys)
    alone = ne.integrate(spiral, y0[0], t, rtol=1e-6, atol=1e-8)
    assert alone.step_times != batch.step_times, "rows solved alone take their own steps"


def test_batch_rows_sharing_one_step_sequence_match_solving_each_alone():
    row = np.array([1.5, -0.2])
    t = np.linspace(0.0, 10.0, 21)
    same = ne.integrate(spiral, np.tile(row, (5, 1)), t, rtol=1e-6, atol=1e-8)
    alone = ne.integrate(spiral, row, t, rtol=1e-6, atol=1e-8)
    assert len(same.step_times) == len(alone.step_times)
    assert np.allclose(same.step_times, alone.step_times, rtol=1e-9, atol=0)  # the RMS sums round apart
    for i in range(5):
        assert np.allclose(same.ys[:, i], alone.ys, rtol=1e-9, atol=1e-12)
    y0 = np.random.default_rng(2).uniform(0.5, 2.0, size=(4, 2))
    fixed = ne.odeint(spiral, y0, t, method="rk4", step_size=0.01)
    for i in range(4):
        assert np.allclose(fixed[:, i], ne.odeint(spiral, y0[i], t, method="rk4", step_size=0.01),
                           rtol=1e-10, atol=1e-12)  # sums of 1000 steps, rounded per row


def test_every_row_of_a_batch_is_accurate():
    rates = np.array([-2.0, -0.5, 0.0, 0.3])
    y0 = np.stack([np.ones(4), np.arange(1.0, 5.0)], axis=1)
    t = np.linspace(0.0, 3.0, 13)
    ys = ne.odeint(lambda s, y: rates[:, None] * y, y0, t, rtol=1e-8, atol=1e-10)
    exact = y0[None] * np.exp(np.outer(t, rates))[:, :, None]
    assert np.abs(ys - exact).max() / np.abs(exact).max() < 1e-7


SHAPES = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)


@settings(deadline=None, max_examples=60)
@given(shape=SHAPES, n_times=st.integers(1, 5), backward=st.booleans(), method=st.sampled_from(sorted(TABLEAUX)),
       seed=st.integers(0, 2**31 - 1))
def test_result_shape_and_initial_value(shape, n_times, backward, method, seed):
    rng = np.random.default_rng(seed)
    y0 = rng.standard_normal(shape)
    t = np.cumsum(rng.uniform(0.1, 0.5, n_times)) * (-1.0 if backward else 1.0)
    ys = ne.odeint(lambda s, y: np.sin(s) - 0.5 * y, y0, t, method=method, rtol=1e-5, atol=1e-7)
    assert ys.shape == (n_times,) + shape and ys.dtype == np.float64
    assert np.array_equal(ys[0], y0)
    assert np.all(np.isfinite(ys))


def test_a_single_output_time():
    counted = checks.CountingDynamics(forced)
    sol = ne.integrate(counted, np.array([[1.0, 2.0]]), np.array([0.5]))
    assert sol.ys.shape == (1, 1, 2) and np.array_equal(sol.ys[0], [[1.0, 2.0]])
    assert sol.nfe == counted.nfe == 1 and sol.n_steps == 0
    assert ne.odeint(forced, 3, [1.0], method="euler").shape == (1,)


def test_inputs_are_not_modified_and_results_do_not_alias_them():
    y0, t = np.array([1.0, 2.0]), np.linspace(0.0, 1.0, 3)
    ys = ne.odeint(forced, y0, t)
    ys[0] = 99.0
    assert np.array_equal(y0, [1.0, 2.0]) and np.array_equal(t, [0.0, 0.5, 1.0])
    assert np.array_equal(ne.odeint(forced, [1, 2], [0, 1])[0], [1.0, 2.0])


# --------------------------------------------------------------------------------------------------
# The tapes that backprop reads


def test_adaptive_tape():
    t = np.linspace(0.0, 6.0, 40)
    problem = prepare(forced, np.array([0.5, -0.3]), t, "dopri5", 1e-6, 1e-8, None, 10**5)
    tape = []
    sol = integrate_adaptive(problem, tape)
    tab = problem.tableau
    steps = [entry for entry in tape if entry[0] == "step"]
    outs = [entry for entry in tape if entry[0] == "out"]
    assert len(steps) == sol.n_steps and [i for _, i, _ in outs] == list(range(1, len(t)))
    assert tape[-1][0] == "step" and tape[0][0] in ("out", "step")
    pending, n_step = [], 0
    for entry in tape:
        if entry[0] == "out":
            pending.append(entry[1:])
            continue
        _, tn, h, y, K, lin = entry
        assert lin is None, "explicit steps carry no Linearisation"
        assert K.shape == (tab.stages, 2) and tn == sol.step_times[n_step]
        assert math.isclose(tn + h, sol.step_times[n_step + 1], rel_tol=1e-15, abs_tol=1e-15)
        assert np.allclose(K[0], forced(tn, y), rtol=1e-13, atol=1e-14), "K[0] is f at the step's start"
        for i, theta in pending:
            assert 0.0 < theta <= 1.0 and math.isclose(tn + theta * h, t[i], rel_tol=1e-13, abs_tol=1e-13)
            expected = dense_eval(y, h, K, tab.dense, np.array([theta]))[0]
            assert np.allclose(sol.ys[i], expected, rtol=1e-13, atol=1e-14)
        pending, n_step = [], n_step + 1
    for (_, tn, h, y, K, _), (_, _, _, y_next, _, _) in zip(steps, steps[1:]):
        assert np.allclose(y_next, y + h * tab.b @ K, rtol=1e-14, atol=1e-15), "stages were overwritten"
    arrays = [K for *_, K, _ in steps] + [y for _, _, _, y, _, _ in steps]
    assert not any(np.shares_memory(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1:])


@pytest.mark.parametrize("name", ["euler", "rk4", "dopri5"])
def test_fixed_tape(name):
    t = np.array([0.0, 0.3, 1.0])
    problem = prepare(forced, np.array([0.5]), t, name, 1e-6, 1e-8, 0.1, 10**5)
    tape = []
    sol = integrate_fixed(problem, tape)
    tab = problem.tableau
    assert [(k, n, N) for k, n, N, *_ in tape] == [(0, 0, 3), (0, 1, 3), (0, 2, 3)] + [(1, n, 7) for n in range(7)]
    for (k, n, N, tn, h, y, K, lin), nxt in zip(tape, tape[1:] + [None]):
        assert lin is None
        assert math.isclose(h, (t[k + 1] - t[k]) / N) and math.isclose(tn, t[k] + n * h)
        assert K.shape == (tab.stages, 1) and np.allclose(K[0], forced(tn, y), rtol=1e-13)
        y_new = y + h * tab.b @ K
        assert np.allclose(y_new, nxt[5] if nxt else sol.ys[-1], rtol=1e-14)
    Ks = [entry[-2] for entry in tape]
    assert not any(np.shares_memory(a, b) for i, a in enumerate(Ks) for b in Ks[i + 1:])


# --------------------------------------------------------------------------------------------------
# The step-size policy


def test_error_ratio_is_the_rms_of_the_scaled_error():
    rng = np.random.default_rng(3)
    err, y_old, y_new = rng.standard_normal((3, 7))
    rtol, atol = 1e-3, np.linspace(1e-6, 1e-4, 7)
    scale = atol + rtol * np.maximum(np.abs(y_old), np.abs(y_new))
    expected = np.sqrt(np.mean((err / scale) ** 2))
    assert math.isclose(stepsize.error_ratio(err, y_old, y_new, rtol, atol), expected, rel_tol=1e-14)
    assert np.allclose(stepsize.error_scale(y_old, rtol, atol), atol + rtol * np.abs(y_old), rtol=1e-15)
    assert math.isclose(stepsize.rms_norm(np.array([3.0, 4.0])), math.sqrt(12.5))


def test_step_factor():
    q = 4
    assert stepsize.step_factor(1.0, q) == pytest.approx(0.9)
    assert stepsize.step_factor(0.0, q) == 10.0 and stepsize.step_factor(1e-30, q) == 10.0
    assert stepsize.step_factor(1e30, q) == 0.2
    for ratio in [0.01, 0.3, 0.9, 2.0, 50.0]:
        assert stepsize.step_factor(ratio, q) == pytest.approx(max(0.2, min(10.0, 0.9 * ratio ** -0.2)))
    ratios = np.logspace(-8, 8, 50)
    factors = [stepsize.step_factor(r, q) for r in ratios]
    assert all(f1 >= f2 for f1, f2 in zip(factors, factors[1:]))
    assert all(stepsize.step_factor(r, q, rejected_before=True) <= 1.0 for r in ratios if r <= 1.0)
    assert stepsize.step_factor(0.5, q, rejected_before=True) == 1.0
    assert stepsize.step_factor(2.0, q, rejected_before=True) == stepsize.step_factor(2.0, q)


def test_select_initial_step_respects_the_interval_and_the_scales():
    f0 = forced(0.0, np.array([0.5]))
    short = stepsize.select_initial_step(forced, 0.0, np.array([0.5]), f0, 1.0, 4, 1e-6, 1e-8, 1e-4)
    assert short <= 1e-4
    loose = stepsize.select_initial_step(forced, 0.0, np.array([0.5]), f0, 1.0, 4, 1e-2, 1e-4, 10.0)
    tight = stepsize.select_initial_step(forced, 0.0, np.array([0.5]), f0, 1.0, 4, 1e-10, 1e-12, 10.0)
    assert tight < loose
    still = stepsize.select_initial_step(lambda t, y: 0 * y, 0.0, np.zeros(2), np.zeros(2), 1.0, 4, 1e-6, 1e-8, 10.0)
    assert still == 1e-6


# --------------------------------------------------------------------------------------------------
# Bad arguments: ValueError naming the argument


def solve(**changes):
    arguments = dict(func=forced, y0=np.array([0.5, 1.0]), t=np.array([0.0, 1.0]))
    arguments.update(changes)
    return ne.odeint(arguments.pop("func"), arguments.pop("y0"), arguments.pop("t"), **arguments)


@pytest.mark.parametrize("changes, message", [
    (dict(func="not a function"), r"func must be callable"),
    (dict(func=None), r"func must be callable"),
    (dict(y0=np.array([])), r"y0 must not be empty"),
    (dict(y0=np.zeros((2, 0))), r"y0 must not be empty"),
    (dict(y0=np.array([1.0, np.nan])), r"y0 must contain only finite"),
    (dict(y0=np.array([1.0, np.inf])), r"y0 must contain only finite"),
    (dict(y0=np.array([1.0 + 1j, 1.0])), r"y0 must hold real numbers"),
    (dict(y0=np.array([1.0, None], dtype=object)), r"y0 must hold real numbers"),
    (dict(y0=np.array([1.0, 2.0], dtype=object)), r"y0 must hold real numbers"),
    (dict(y0=[[1.0], [1.0, 2.0]]), r"y0 must be an array of real numbers"),
    (dict(y0="1.0"), r"y0 must hold real numbers"),
    (dict(t=np.array([[0.0, 1.0]])), r"t must be a non-empty 1-D"),
    (dict(t=np.array(1.0)), r"t must be a non-empty 1-D"),
    (dict(t=np.array([])), r"t must be a non-empty 1-D"),
    (dict(t=np.array([0.0, 2.0, 1.0])), r"t must be strictly increasing or strictly decreasing"),
    (dict(t=np.array([0.0, 1.0, 1.0])), r"t must be strictly increasing or strictly decreasing"),
    (dict(t=np.array([0.0, 0.0])), r"t must be strictly increasing or strictly decreasing"),
    (dict(t=np.array([0.0, np.nan])), r"t must contain only finite"),
    (dict(t=np.array([0.0, np.inf])), r"t must contain only finite"),
    (dict(t=np.array([0.0, 1j])), r"t must hold real numbers"),
    (dict(method="rk45"), r"unknown method 'rk45'"),
    (dict(method=None), r"unknown method None"),
    (dict(rtol=0.0), r"rtol must be finite and positive"),
    (dict(rtol=-1e-6), r"rtol must be finite and positive"),
    (dict(rtol=np.nan), r"rtol must be finite and positive"),
    (dict(rtol=np.array([1e-6, 0.0])), r"rtol must be finite and positive"),
    (dict(rtol="tight"), r"rtol must hold real numbers"),
    (dict(rtol=np.ones(3) * 1e-6), r"rtol of shape \(3,\) does not broadcast"),
    (dict(atol=-1e-9), r"atol must be finite and non-negative"),
    (dict(atol=np.nan), r"atol must be finite and non-negative"),
    (dict(atol=np.inf), r"atol must be finite and non-negative"),
    (dict(step_size=0.0), r"step_size must be None or a positive finite number"),
    (dict(step_size=-0.1), r"step_size must be None or a positive finite number"),
    (dict(step_size=np.nan), r"step_size must be None or a positive finite number"),
    (dict(step_size=np.inf), r"step_size must be None or a positive finite number"),
    (dict(step_size="0.1"), r"step_size must be None or a positive finite number"),
    (dict(step_size=True), r"step_size must be None or a positive finite number"),
    (dict(max_num_steps=0), r"max_num_steps must be a positive integer"),
    (dict(max_num_steps=-5), r"max_num_steps must be a positive integer"),
    (dict(max_num_steps=100.0), r"max_num_steps must be a positive integer"),
    (dict(max_num_steps=True), r"max_num_steps must be a positive integer"),
    (dict(max_num_steps=None), r"max_num_steps must be a positive integer"),
    (dict(func=lambda t, y: y[:1]), r"func\(t, y\) returned float64 of shape \(1,\)"),
    (dict(func=lambda t, y: y[None]), r"func\(t, y\) returned .* shape \(1, 2\)"),
    (dict(func=lambda t, y: None), r"func\(t, y\) returned object"),
    (dict(func=lambda t, y: 1j * y), r"func\(t, y\) returned complex128"),
])
def test_bad_arguments_raise_value_errors_naming_them(changes, message):
    with pytest.raises(ValueError, match=message):
        solve(**changes)


def test_zero_atol_is_allowed_and_integer_inputs_are_converted():
    ys = ne.odeint(lambda t, y: -y, [1, 2], [0, 1], atol=0.0)
    assert ys.dtype == np.float64 and np.allclose(ys[-1], np.exp(-1.0) * np.array([1, 2]), rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# Failed integrations: an IntegrationError that says where and why, promptly


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow and NaN are the point here
@pytest.mark.parametrize("rtol", [1e-3, 1e-7, 1e-12])
def test_blow_up_is_reported_near_the_singularity(rtol):
    """``y' = y^2, y(0) = 1`` has the solution ``1 / (1 - t)``, which blows up at ``t = 1``."""
    with finishes_within(5.0), pytest.raises(IntegrationError) as info:
        ne.odeint(lambda t, y: y**2, np.array([1.0]), np.array([0.0, 2.0]), rtol=rtol, atol=rtol * 1e-2)
    err = info.value
    assert isinstance(err, (NonFiniteError, StepSizeUnderflowError)) and isinstance(err, RuntimeError)
    assert abs(err.t - 1.0) < 1e-3
    assert "t = 1" in str(err) or "t = 0.999" in str(err)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow and NaN are the point here
def test_nan_from_the_dynamics_is_reported_where_it_appears():
    def nan_after_half(t, y):
        return -y if t < 0.5 else np.full_like(y, np.nan)

    with finishes_within(5.0), pytest.raises(NonFiniteError, match=r"t = 0\.5") as info:
        ne.odeint(nan_after_half, np.array([1.0, 2.0]), np.array([0.0, 1.0]))
    assert abs(info.value.t - 0.5) < 1e-3 and "NaN" in str(info.value)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow and NaN are the point here
def test_nan_backward_in_time():
    with finishes_within(5.0), pytest.raises(NonFiniteError) as info:
        ne.odeint(lambda t, y: -y if t > 0.5 else y * np.nan, np.array([1.0]), np.array([1.0, 0.0]))
    assert abs(info.value.t - 0.5) < 1e-3


def test_too_many_steps():
    with finishes_within(5.0), pytest.raises(TooManyStepsError, match=r"max_num_steps = 10") as info:
        ne.odeint(oscillator, np.array([1.0, 0.0]), np.array([0.0, 100.0]), max_num_steps=10)
    assert 0.0 < info.value.t < 100.0
    with pytest.raises(TooManyStepsError, match=r"max_num_steps = 5"):
        ne.odeint(oscillator, np.array([1.0, 0.0]), np.linspace(0.0, 1.0, 11), method="rk4", max_num_steps=5)
    ne.odeint(oscillator, np.array([1.0, 0.0]), np.linspace(0.0, 1.0, 11), method="rk4", max_num_steps=10)


def test_stiff_problem_stops_instead_of_crawling():
    with finishes_within(5.0), pytest.raises(TooManyStepsError):
        ne.odeint(lambda t, y: -1e6 * (y - np.cos(t)), np.array([1.0]), np.array([0.0, 10.0]), max_num_steps=2000)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow and NaN are the point here
def test_an_overflowing_state_is_not_accepted():
    """Finite stages whose sum overflows: the error estimate is fine, the new state is not."""
    with finishes_within(5.0), pytest.raises(NonFiniteError) as info:
        ne.odeint(lambda t, y: np.full_like(y, 1e308), np.array([1e308]), np.array([0.0, 1.0]))
    assert 0.7 < info.value.t < 0.8      # where 1e308 + 1e308 t passes the largest float, 1.8e308


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow and NaN are the point here
def test_fixed_step_blow_up():
    with pytest.raises(NonFiniteError, match=r"infinite or NaN") as info:
        ne.odeint(lambda t, y: -1000.0 * y, np.array([1.0]), np.linspace(0.0, 200.0, 201), method="euler")
    assert 50.0 < info.value.t < 200.0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow and NaN are the point here
def test_non_finite_derivative_at_the_start():
    with pytest.raises(NonFiniteError, match=r"t = 0\b.*initial state") as info:
        ne.odeint(lambda t, y: y / 0.0, np.array([1.0]), np.array([0.0, 1.0]))
    assert info.value.t == 0.0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow and NaN are the point here
def test_underflow_on_a_singular_derivative():
    """``y' = -1 / (2 sqrt(y))`` reaches ``y = 0`` with an infinite slope at ``t = 4/3``."""
    with finishes_within(5.0), pytest.raises(IntegrationError) as info:
        ne.odeint(lambda t, y: -0.5 / np.sqrt(np.maximum(y, 0.0)), np.array([1.0]), np.array([0.0, 2.0]))
    assert abs(info.value.t - 4.0 / 3.0) < 1e-3


def test_a_butcher_tableau_object_is_a_method():
    ralston = ne.ButcherTableau(name="ralston", order=2, c=[0.0, 2 / 3], a=[[0, 0], [2 / 3, 0]], b=[0.25, 0.75])
    steps = np.array([0.1, 0.05, 0.025])
    errors = [abs(ne.odeint(lambda t, y: np.cos(t) * y, np.array([1.0]), np.array([0.0, 1.0]), method=ralston,
                            step_size=h)[-1, 0] - np.exp(np.sin(1.0))) for h in steps]
    assert abs(ne.checks.observed_order(steps, errors) - 2.0) < 0.15
    with pytest.raises(ValueError, match="ButcherTableau"):
        ne.odeint(lambda t, y: y, np.ones(1), [0.0, 1.0], method=ne.TABLEAUX)
