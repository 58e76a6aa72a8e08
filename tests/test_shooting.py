"""Multiple shooting and the L-BFGS driver: the segmented loss and its gradient against central
differences on random segmentations, its limits (one segment is single shooting; exact starts leave no
gaps), a fit that escapes the local minimum single shooting falls into, and minimize_lbfgs itself."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import neuralode as ne
from neuralode import checks
from neuralode.optim import minimize_lbfgs
from neuralode.physics import LotkaVolterra
from neuralode.shooting import MultipleShooting, segment_bounds

TRUE = np.array([1.0, 0.5, 1.5, 0.75])


def series(n, t_end, seed, noise=0.1):
    rng = np.random.default_rng(seed)
    t = np.concatenate([[0.0], np.sort(rng.uniform(0.0, t_end, n - 1))])
    z = ne.odeint(LotkaVolterra(*TRUE), np.ones(2), t, rtol=1e-10, atol=1e-12)
    return t, z + noise * rng.standard_normal(z.shape)


@given(st.integers(2, 40), st.data())
def test_segment_bounds(n_times, data):
    k = data.draw(st.integers(1, n_times - 1))
    b = segment_bounds(n_times, k)
    assert b[0] == 0 and b[-1] == n_times - 1 and len(b) == k + 1 and np.all(np.diff(b) >= 1)


@settings(deadline=None, max_examples=15)
@given(st.integers(5, 9), st.integers(1, 4), st.floats(0.1, 10.0), st.integers(0, 2**32 - 1))
def test_gradient_against_finite_differences(n, k, weight, seed):
    """rk4 with a fixed step makes the loss a fixed computation, and backprop its exact gradient."""
    rng = np.random.default_rng(seed)
    t, d = series(n, 4.0, seed)
    f = LotkaVolterra(*rng.uniform(0.5, 1.5, size=4))
    ms = MultipleShooting(f, t, d, n_segments=min(k, n - 1), weight=weight, gradient="backprop",
                          method="rk4", step_size=0.1)
    starts = ms.starts_from_data() + 0.1 * rng.standard_normal((ms.n_segments, 2))
    loss, starts_bar, [theta_bar] = ms.loss_and_grad(starts)
    assert np.allclose(starts_bar, checks.fd_gradient(lambda s: ms.loss_and_grad(s)[0], starts),
                       rtol=1e-6, atol=1e-8)
    fd_theta = checks.fd_param_gradients(lambda: ms.loss_and_grad(starts)[0], f.params)[0]
    assert np.allclose(theta_bar, fd_theta, rtol=1e-6, atol=1e-8)


def test_the_loss_written_out():
    """Two segments by hand: the data misfit of each point once, and the weighted gap at the joint."""
    t, d = series(7, 3.0, 0)
    f = LotkaVolterra(0.9, 0.6, 1.4, 0.8)
    ms = MultipleShooting(f, t, d, bounds=[0, 3, 6], weight=2.5, rtol=1e-10, atol=1e-12)
    starts = np.array([[1.1, 0.9], [1.5, 1.2]])
    first, second = ne.odeint(f, starts[0], t[:4], rtol=1e-10, atol=1e-12), ne.odeint(f, starts[1], t[3:],
                                                                                     rtol=1e-10, atol=1e-12)
    data = (np.sum((first[:3] - d[:3]) ** 2) + np.sum((second - d[3:]) ** 2)) / d.size
    gap = 2.5 * np.sum((first[-1] - starts[1]) ** 2) / 2
    assert np.isclose(ms.loss_and_grad(starts)[0], data + gap, rtol=1e-12, atol=0)
    assert np.allclose(ms.gaps(starts), [first[-1] - starts[1]], rtol=1e-12, atol=1e-14)


def test_one_segment_is_single_shooting_and_exact_starts_leave_no_gap():
    t, d = series(10, 6.0, 1)
    f = LotkaVolterra(*TRUE)
    single = MultipleShooting(f, t, d, n_segments=1, rtol=1e-10, atol=1e-12)
    zs = ne.odeint(f, d[0], t, rtol=1e-10, atol=1e-12)
    assert np.isclose(single.loss_and_grad(d[:1])[0], np.mean((zs - d) ** 2), rtol=1e-12, atol=0)
    clean = ne.odeint(f, np.ones(2), t, rtol=1e-10, atol=1e-12)
    exact = MultipleShooting(f, t, clean, n_segments=3, rtol=1e-10, atol=1e-12)
    assert exact.loss_and_grad(clean[exact.bounds[:-1]])[0] < 1e-16
    assert np.max(np.abs(exact.gaps(clean[exact.bounds[:-1]]))) < 1e-8


def fit(loss_and_grads, arrays, max_iter=200):
    bounds = [(np.log(0.05), np.log(20.0))] + [(0.0, 10.0)] * (len(arrays) - 1)
    return minimize_lbfgs(loss_and_grads, arrays, max_iter=max_iter, bounds=bounds)


def test_multiple_shooting_escapes_the_minimum_single_shooting_falls_into():
    """Three cycles of data, all rates started at 0.6 of the truth (a clock 40% slow): single shooting
    stops at a loss far above the noise, multiple shooting finds the true rates."""
    t, d = series(36, 18.0, 3)
    solver = dict(gradient="backprop", rtol=1e-6, atol=1e-8)

    log_theta, z0 = np.log(0.6 * TRUE), d[0].copy()

    def single():
        theta = np.exp(log_theta)
        zs, pullback = ne.odeint_vjp(LotkaVolterra(*theta), z0, t, **solver)
        z0_bar, [theta_bar], _ = pullback(2.0 * (zs - d) / d.size)
        return float(np.mean((zs - d) ** 2)), [theta_bar * theta, z0_bar]

    assert fit(single, [log_theta, z0], max_iter=40).loss > 0.2

    f = LotkaVolterra(*(0.6 * TRUE))
    ms = MultipleShooting(f, t, d, n_segments=3, **solver)
    log_theta, starts = np.log(f.theta), ms.starts_from_data()

    def multiple():
        f.theta[...] = np.exp(log_theta)
        loss, starts_bar, [theta_bar] = ms.loss_and_grad(starts)
        return loss, [theta_bar * f.theta, starts_bar]

    result = fit(multiple, [log_theta, starts])
    assert result.loss < 0.015 and np.all(np.abs(np.exp(log_theta) / TRUE - 1) < 0.05)
    assert np.max(np.abs(ms.gaps(starts))) < 0.1


# --------------------------------------------------------------------------------------------------
# minimize_lbfgs


def test_lbfgs_minimises_a_quadratic_in_place_and_reports():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 5))
    A = A @ A.T + np.eye(5)
    b, x, stream = rng.standard_normal(5), np.zeros(5), io.StringIO()
    result = minimize_lbfgs(lambda: (float(0.5 * x @ A @ x - b @ x), [A @ x - b]), [x], max_iter=100,
                            report_every=2, stream=stream)
    assert np.allclose(x, np.linalg.solve(A, b), rtol=1e-5, atol=1e-6)
    assert result.n_iter == len(result.losses) and result.n_evals >= result.n_iter
    assert stream.getvalue().startswith("iter    2 | loss ")
    assert all(a >= b for a, b in zip(result.losses, result.losses[1:])), "the loss never rises"


def test_lbfgs_respects_bounds_per_array():
    x, y = np.array([3.0, 3.0]), np.array([-3.0])
    minimize_lbfgs(lambda: (float(np.sum(x**2) + np.sum((y - 5.0) ** 2)), [2 * x, 2 * (y - 5.0)]), [x, y],
                   bounds=[(1.0, None), (None, 2.0)])
    assert np.allclose(x, 1.0, atol=1e-6) and np.allclose(y, 2.0, atol=1e-6)


def test_lbfgs_steps_back_from_a_failed_solve():
    """A loss whose solve blows up for large x: the line search shortens its step instead of stopping."""
    x, failures = np.array([0.1]), []

    def loss_and_grads():
        try:
            ne.odeint(lambda t, y: y**2, np.array([1.0]), np.array([0.0, float(x[0])]))  # blows up at t = 1
        except ne.IntegrationError:
            failures.append(float(x[0]))
            raise
        return float((x[0] - 0.9) ** 2), [2.0 * (x - 0.9)]

    result = minimize_lbfgs(loss_and_grads, [x], max_iter=50)
    assert failures, "a trial point beyond t = 1 was tried"
    assert abs(x[0] - 0.9) < 1e-4 and result.loss < 1e-8


def test_lbfgs_steps_back_from_an_overflowing_trial_point_without_warning():
    """A gradient that turns NaN beyond x = 1 (as backprop through a blown-up trajectory does)."""
    x, overflowed = np.array([0.1]), []

    def loss_and_grads():
        grad = 2.0 * (x - 0.9) + 0.0 * np.sqrt(1.0 - x)      # sqrt of a negative number: nan beyond x = 1
        overflowed.append(not np.all(np.isfinite(grad)))
        return float((x[0] - 0.9) ** 2), [grad]

    with np.errstate(invalid="raise", over="raise"):       # nothing may escape as a warning or an error
        result = minimize_lbfgs(loss_and_grads, [x], max_iter=50)
    assert any(overflowed) and abs(x[0] - 0.9) < 1e-4 and result.loss < 1e-8
