"""Implicit methods: ESDIRK tableaux as data, Newton on the stages, what the solve reports, and the
problems that defeat implicit methods (a growing mode damped, stages not really solved), against
scipy's Radau at tight tolerance as the referee."""

import functools
import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import neuralode as ne
from neuralode.checks import CountingDynamics
from neuralode.problems import STIFF_LINEAR_RATES as LAMBDA, robertson, stiff_linear as linear, van_der_pol
from neuralode import implicit
from neuralode.tableaux import IMPLICIT_TABLEAUX, KVAERNO3, KVAERNO5, ButcherTableau, order_condition_residuals

IMPLICIT = sorted(IMPLICIT_TABLEAUX)
ADAPTIVE = ["kvaerno3", "kvaerno5"]
TIGHT = 1e-14


def stability(tab, z, b=None):
    """``R(z) = 1 + z b (I - z A)^-1 1``: one step of the method on ``y' = lambda y`` with ``z = h lambda``."""
    b = tab.b if b is None else b
    return 1 + z * b @ np.linalg.solve(np.eye(tab.stages) - z * tab.a, np.ones(tab.stages))


# --------------------------------------------------------------------------------------------------
# The tableaux


@pytest.mark.parametrize("name", IMPLICIT)
def test_esdirk_structure(name):
    tab = IMPLICIT_TABLEAUX[name]
    assert tab.implicit and tab.name == name and tab.fsal, "stiffly accurate: the last stage is the new state"
    assert np.all(np.triu(tab.a, 1) == 0) and tab.a[0, 0] == 0 and tab.c[0] == 0
    assert np.all(np.diag(tab.a)[1:] == tab.gamma) and tab.gamma > 0
    assert np.allclose(tab.a.sum(axis=1), tab.c, atol=TIGHT, rtol=0) and abs(tab.b.sum() - 1) <= TIGHT
    assert not any(t.implicit for t in ne.TABLEAUX.values()) and set(IMPLICIT_TABLEAUX).isdisjoint(ne.TABLEAUX)


@pytest.mark.parametrize("name", IMPLICIT)
def test_order_conditions(name):
    """Every condition up to the order holds; one of the next order fails clearly (orders 1, 3, 5)."""
    tab = IMPLICIT_TABLEAUX[name]
    residuals = order_condition_residuals(tab, max_order=5)
    assert len(residuals) == 17
    assert all(abs(r) <= 1e-14 for _, p, r in residuals if p <= tab.order), residuals
    if tab.order < 5:
        assert max(abs(r) for _, p, r in residuals if p == tab.order + 1) > 1e-3


@pytest.mark.parametrize("name", ADAPTIVE)
def test_embedded_solutions_are_of_the_error_order(name):
    tab = IMPLICIT_TABLEAUX[name]
    embedded = ButcherTableau(name="embedded", order=1, c=tab.c, a=tab.a, b=tab.b - tab.b_err)
    residuals = order_condition_residuals(embedded, max_order=5)
    assert all(abs(r) <= 1e-14 for _, p, r in residuals if p <= tab.error_order)
    assert max(abs(r) for _, p, r in residuals if p == tab.error_order + 1) > 1e-4
    assert np.allclose(tab.b - tab.b_err, tab.a[-2], atol=TIGHT, rtol=0), "the embedded solution is a stage"


def test_kvaerno3_gamma_is_the_l_stable_root():
    """Kværnø's gamma = 0.4358665215 is the root of gamma^3 - 3 gamma^2 + 3/2 gamma - 1/6 (to its 10 digits)."""
    g = KVAERNO3.gamma
    assert abs(g**3 - 3 * g**2 + 1.5 * g - 1 / 6) < 1e-10
    r4, r6 = stability(KVAERNO3, -1e4), stability(KVAERNO3, -1e6)
    assert abs(r6) < 1e-5 and abs(r6 * 1e6 / (r4 * 1e4) - 1) < 0.01, "R(z) ~ C / z: zero at infinity"


@pytest.mark.parametrize("name", IMPLICIT)
def test_a_and_l_stability(name):
    """|R(z)| <= 1 on the imaginary axis and in the left half-plane, and R(z) -> 0 as z -> -infinity."""
    tab = IMPLICIT_TABLEAUX[name]
    for y in np.concatenate([-np.logspace(-2, 6, 60), np.logspace(-2, 6, 60)]):
        assert abs(stability(tab, 1j * y)) <= 1 + 1e-12
    rng = np.random.default_rng(0)
    for z in -rng.exponential(10.0, 300) + 1j * rng.normal(0.0, 30.0, 300):
        assert abs(stability(tab, z)) <= 1 + 1e-12
    r4, r6 = stability(tab, -1e4), stability(tab, -1e6)
    assert abs(r6) < 1e-4 and abs(r6) < abs(r4) / 50, "R(z) -> 0 like 1 / z"


def test_explicit_methods_are_not_a_stable():
    assert abs(stability(ne.TABLEAUX["dopri5"], -10.0)) > 1


@pytest.mark.parametrize("name", IMPLICIT)
def test_predictor_is_exact_for_polynomials(name):
    """The first guess of each implicit stage reproduces t^q / q for the degrees its nodes allow."""
    tab = IMPLICIT_TABLEAUX[name]
    alpha = tab.predictor
    assert np.all(np.triu(alpha) == 0)
    for i in range(1, tab.stages):
        if any(tab.c[j] == tab.c[i] for j in range(i)):
            continue
        assert abs(alpha[i].sum() - tab.c[i]) < 1e-14                   # constant slope: y + c_i h k
        if i >= 2:
            assert abs(alpha[i] @ tab.c - tab.c[i] ** 2 / 2) < 1e-14     # linear slope


@pytest.mark.parametrize("diagonal, message", [
    ([1.0, 0.5], "ESDIRK diagonal"),
    ([0.0, -0.5], "ESDIRK diagonal"),
    ([0.0, 0.5, 0.4], "ESDIRK diagonal"),
])
def test_malformed_implicit_tableaux_are_refused(diagonal, message):
    s = len(diagonal)
    a = np.tril(np.full((s, s), 0.1), -1) + np.diag(diagonal)
    with pytest.raises(ValueError, match=message):
        ButcherTableau(name="bad", order=1, c=a.sum(axis=1), a=a, b=np.full(s, 1 / s))


def test_order_condition_residuals_refuses_other_orders():
    with pytest.raises(ValueError, match="max_order must be 4 or 5"):
        order_condition_residuals(KVAERNO3, max_order=6)


# --------------------------------------------------------------------------------------------------
# Solving


def test_implicit_euler_is_backward_euler_exactly():
    """On y' = lambda y each step divides by 1 - h lambda: stable for lambda = -1e5 and h = 0.1."""
    h, n = 0.1, 10
    ys = ne.odeint(linear, np.ones(3), [0.0, n * h], method="implicit_euler", step_size=h, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ys[-1], (1 - h * LAMBDA) ** -n, rtol=1e-10, atol=0)


@pytest.mark.parametrize("name, order", [("implicit_euler", 1), ("kvaerno3", 3), ("kvaerno5", 5)])
def test_observed_order_on_a_smooth_problem(name, order):
    def f(t, y):
        return np.array([y[1], -np.sin(y[0])])

    y0, T = np.array([1.0, 0.0]), 2.0
    exact = solve_ivp(f, (0, T), y0, method="DOP853", rtol=1e-13, atol=1e-14).y[:, -1]
    hs = np.array([0.2, 0.1, 0.05])
    errors = [np.abs(ne.odeint(f, y0, [0, T], method=name, step_size=h, rtol=1e-12, atol=1e-14)[-1] - exact).max()
              for h in hs]
    assert abs(ne.checks.observed_order(hs, errors) - order) < 0.3


def test_order_reduction_to_the_stage_order_when_stiff():
    """Prothero–Robinson with lambda = -1e6: kvaerno3 converges with order 2 (its stage order), not 3."""
    def f(t, y):
        return -1e6 * (y - np.sin(t)) + np.cos(t)

    hs = np.array([0.2, 0.1, 0.05])
    errors = [abs(ne.odeint(f, np.zeros(1), [0, 2.0], method="kvaerno3", step_size=h, rtol=1e-12, atol=1e-14)[-1, 0]
                  - np.sin(2.0)) for h in hs]
    assert abs(ne.checks.observed_order(hs, errors) - 2) < 0.2


CASES = {
    "van der pol 100": (van_der_pol(100.0), np.array([2.0, 0.0]), 200.0, 1e-6, 1e-6),
    "van der pol 1000": (van_der_pol(1000.0), np.array([2.0, 0.0]), 2000.0, 1e-6, 1e-6),
    "robertson": (robertson, np.array([1.0, 0.0, 0.0]), 1e5, 1e-6, 1e-10),
    "linear": (linear, np.ones(3), 10.0, 1e-6, 1e-9),
}


@functools.lru_cache
def radau_reference(case):
    """scipy's Radau at rtol 1e-10 (and atol 1e-4 times the case's): the referee."""
    f, y0, T, rtol, atol = CASES[case]
    return solve_ivp(f, (0.0, T), y0, method="Radau", rtol=1e-10, atol=atol * 1e-4).y[:, -1]


@pytest.mark.parametrize("case", sorted(CASES))
def test_kvaerno3_agrees_with_radau_at_tight_tolerance(case):
    f, y0, T, rtol, atol = CASES[case]
    sol = ne.integrate(f, y0, [0.0, T], method="kvaerno3", rtol=rtol, atol=atol)
    reference = radau_reference(case)
    error = np.abs(sol.ys[-1] - reference) / (atol + rtol * np.abs(reference))
    assert error.max() < 50, (case, error)        # global error: tens of local tolerances at most
    assert sol.n_jac < sol.n_steps and sol.n_lu <= sol.n_steps + sol.n_rejected


@pytest.mark.parametrize("name, mode", [(name, mode) for name in IMPLICIT for mode in ("fixed", "adaptive")
                                         if mode == "fixed" or IMPLICIT_TABLEAUX[name].adaptive])
def test_nfe_counts_every_call_difference_columns_included(name, mode):
    f = CountingDynamics(van_der_pol(10.0))
    sol = ne.integrate(f, np.array([2.0, 0.0]), [0.0, 3.0], method=name, rtol=1e-5, atol=1e-7,
                       step_size=0.01 if mode == "fixed" else None)
    assert sol.nfe == f.nfe and sol.n_jac >= 1 and sol.n_lu >= sol.n_jac


def test_a_linear_problem_needs_one_jacobian():
    f = CountingDynamics(linear)
    sol = ne.integrate(f, np.ones(3), [0.0, 10.0], method="kvaerno3", rtol=1e-6, atol=1e-9)
    assert sol.n_jac == 1 and sol.nfe == f.nfe


def test_jacobian_from_jvp_costs_no_calls_of_f():
    f = ne.nn.MLP([2, 16, 2], rng=np.random.default_rng(0))
    counted = CountingDynamics(f)
    sol = ne.integrate(counted, np.array([0.3, -0.2]), [0.0, 2.0], method="kvaerno3", rtol=1e-6, atol=1e-9)
    plain = ne.integrate(lambda t, y: f(t, y), np.array([0.3, -0.2]), [0.0, 2.0], method="kvaerno3",
                         rtol=1e-6, atol=1e-9)
    assert sol.nfe == counted.nfe and sol.nfe < plain.nfe
    np.testing.assert_allclose(sol.ys, plain.ys, rtol=1e-5, atol=1e-7)


def test_dynamics_jacobian_agrees_with_differences():
    f = ne.nn.MLP([3, 8, 3], rng=np.random.default_rng(1))
    y = np.random.default_rng(2).standard_normal((2, 3))
    J = implicit.dynamics_jacobian(f, y.shape)(0.0, y.ravel())
    J_fd, calls = implicit.difference_jacobian(lambda t, z: np.ravel(f(t, z.reshape(2, 3))), 0.0, y.ravel())
    assert calls == 7 and np.allclose(J, J_fd, atol=1e-6, rtol=0)
    assert np.all(J[:3, 3:] == 0), "the rows of a batch do not interact"

    class Dense:
        def __call__(self, t, y):
            return f(t, y)

        def jacobian(self, t, y):
            return J

    assert np.array_equal(implicit.dynamics_jacobian(Dense(), y.shape)(0.0, y.ravel()), J)


def test_output_times_do_not_change_the_steps():
    f = van_der_pol(50.0)
    few = ne.integrate(f, np.array([2.0, 0.0]), [0.0, 30.0], method="kvaerno3", rtol=1e-6, atol=1e-8)
    many = ne.integrate(f, np.array([2.0, 0.0]), np.linspace(0.0, 30.0, 301), method="kvaerno3", rtol=1e-6, atol=1e-8)
    assert few.nfe == many.nfe and np.array_equal(few.ys[-1], many.ys[-1])
    reference = solve_ivp(f, (0, 30), [2.0, 0.0], method="Radau", rtol=1e-12, atol=1e-12,
                          t_eval=np.linspace(0.0, 30.0, 301)).y.T
    assert np.abs(many.ys - reference).max() < 1e-3, "the dense output is accurate between steps"


def test_backward_in_time_and_batches():
    f = van_der_pol(5.0)

    def batch(t, y):
        return np.stack([f(t, row) for row in y])

    y0 = np.array([[2.0, 0.0], [1.0, 1.0]])
    forward = ne.odeint(batch, y0, [0.0, 1.0], method="kvaerno3", rtol=1e-9, atol=1e-11)
    back = ne.odeint(batch, forward[-1], [1.0, 0.0], method="kvaerno3", rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(back[-1], y0, atol=1e-6)


def test_fixed_step_newton_failure_is_a_clear_error():
    with pytest.raises(ne.ConvergenceError, match=r"t = 0: Newton's iteration .* Use a smaller step_size"):
        ne.odeint(lambda t, y: -y**3, np.array([10.0]), [0.0, 1.0], method="implicit_euler", step_size=1.0)


def test_adaptive_newton_failure_halves_the_step():
    """Where Newton fails the step is halved and the solve goes on; the answer is right."""
    sol = ne.integrate(lambda t, y: -y**3, np.array([10.0]), [0.0, 1.0], method="kvaerno3", rtol=1e-8, atol=1e-10)
    assert abs(sol.ys[-1, 0] - 1 / math.sqrt(2 + 0.01)) < 1e-7


def test_newton_needs_a_measured_contraction():
    """Every stage takes at least two iterations: one increment alone cannot say the stage is solved."""
    f = CountingDynamics(linear)
    sol = ne.integrate(f, np.ones(3), [0.0, 1.0], method="implicit_euler", step_size=0.1)
    assert sol.n_jac == 1
    assert sol.nfe == 1 + (3 + 1) + 2 * 10    # f(t0, y0), one difference Jacobian, two iterations a step


# --------------------------------------------------------------------------------------------------
# What goes wrong: a mode that grows, damped by a step too long for it


def repelling_start(mu=100.0, x0=0.5):
    """A point on the middle, repelling branch of Van der Pol's slow manifold, y = x / (mu (1 - x^2))."""
    return np.array([x0, x0 / (mu * (1 - x0**2))])


def test_the_guard_keeps_kvaerno3_off_the_repelling_branch():
    """Started on the repelling branch, the true solution leaves it within a fraction of a time unit."""
    f, y0, t = van_der_pol(100.0), repelling_start(), np.array([0.0, 1.0, 5.0, 20.0])
    reference = solve_ivp(f, (0, 20), y0, method="Radau", rtol=1e-11, atol=1e-11, t_eval=t).y[0]
    assert reference[1] < -1.8
    for rtol in (1e-2, 1e-3, 1e-4, 1e-6):
        ys = ne.odeint(f, y0, t, method="kvaerno3", rtol=rtol, atol=rtol)
        assert np.abs(ys[1:, 0] - reference[1:]).max() < 0.05, rtol


def test_without_the_guard_the_error_estimate_is_blind(monkeypatch):
    """The failure, reproduced deliberately: with the growth guard off, kvaerno3 follows the repelling
    branch with large steps, rejects none of them, and is wrong by more than 2 at t = 5."""
    monkeypatch.setattr(implicit, "GROWTH_LIMIT", math.inf)
    f, y0 = van_der_pol(100.0), repelling_start()
    sol = ne.integrate(f, y0, [0.0, 5.0], method="kvaerno3", rtol=1e-3, atol=1e-3)
    reference = solve_ivp(f, (0, 5), y0, method="Radau", rtol=1e-11, atol=1e-11).y[0, -1]
    assert sol.ys[-1, 0] > 0.5 and reference < -1.8
    assert sol.n_rejected == 0


def test_the_guard_limits_the_step_by_the_growth_rate():
    f = van_der_pol(100.0)
    y0 = repelling_start()
    sol = ne.integrate(f, y0, [0.0, 0.05], method="kvaerno3", rtol=1e-3, atol=1e-3)
    rate = 100.0 * (1 - 0.5**2)                        # d f_2 / d y_2 on the repelling branch
    first = sol.step_times[1] - sol.step_times[0]
    assert first <= implicit.GROWTH_LIMIT / (KVAERNO3.gamma * rate) * 1.01


def test_an_unstable_equilibrium_is_kept_but_costs_small_steps():
    sol = ne.integrate(van_der_pol(10.0), np.zeros(2), [0.0, 5.0], method="kvaerno3", rtol=1e-6, atol=1e-9)
    assert np.all(sol.ys[-1] == 0.0)
    assert sol.n_steps >= 5.0 * 10.0 * KVAERNO3.gamma / implicit.GROWTH_LIMIT


def test_a_first_iteration_alone_would_have_fooled_the_estimate(monkeypatch):
    """Accepting a stage after one iteration when an earlier one contracted fast (a shortcut some
    codes take) leaves Van der Pol's stages unsolved with a Jacobian kept from the middle of a jump:
    the error estimate passes steps whose true error is hundreds of tolerances. Without the shortcut
    the same solve is right."""
    f, y0 = van_der_pol(100.0), np.array([2.0, 0.0])
    reference = radau_reference("van der pol 100")[0]
    right = ne.odeint(f, y0, [0.0, 200.0], method="kvaerno3", rtol=1e-3, atol=1e-3)[-1, 0]
    assert abs(right - reference) < 0.1

    def shortcut(self, fun, ti, psi, Z, lin, scale, m):
        F = fun(ti, psi + Z)
        self.nfe += 1
        dZ = lin.solve(lin.hg * F[:m] - Z[:m])
        Z[:m] += dZ
        if ne.stepsize.rms_norm(dZ / scale) * 0.01 <= self.tol:      # "it contracted fast before"
            return F, 0.0, 1
        return original(self, fun, ti, psi, Z, lin, scale, m)

    original = implicit.ImplicitStepper._newton
    monkeypatch.setattr(implicit.ImplicitStepper, "_newton", shortcut)
    wrong = ne.odeint(f, y0, [0.0, 200.0], method="kvaerno3", rtol=1e-3, atol=1e-3)[-1, 0]
    assert abs(wrong - reference) > 1.0


@pytest.mark.parametrize("method, step_size, tol", [("kvaerno3", None, 1e-8), ("kvaerno5", None, 1e-8),
                                                    ("implicit_euler", 0.01, 1e-2)])
def test_events_run_the_implicit_steppers(method, step_size, tol):
    """odeint_event steps with the implicit methods too, and counts every call of f."""
    f = CountingDynamics(lambda t, y: np.array([y[1], -9.81]))
    sol = ne.integrate_event(f, np.array([10.0, 0.0]), 0.0, event_fn=lambda t, y: y[0], method=method,
                             step_size=step_size, rtol=1e-8, atol=1e-10)
    assert abs(sol.t_event - math.sqrt(20 / 9.81)) < tol
    assert sol.nfe == f.nfe
