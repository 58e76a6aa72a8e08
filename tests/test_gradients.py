"""odeint_vjp: both gradient modes against finite differences, for several dynamics and every method."""

import numpy as np
import pytest

import neuralode as ne
from neuralode.checks import check_dynamics_vjp, fd_gradient, fd_param_gradients, relative_error
from neuralode.nn import MLP

FIXED = ["euler", "midpoint", "heun", "rk4"]
ADAPTIVE = ["bosh3", "dopri5"]


class TimeField:
    """A time-dependent test field ``f(t, y) = tanh(y W^T + b) * (1 + 0.5 sin(w t))``."""

    def __init__(self, rng, dim=2):
        self.W = rng.standard_normal((dim, dim))
        self.b = rng.standard_normal(dim)
        self.w = np.array([1.3])

    @property
    def params(self):
        return [self.W, self.b, self.w]

    def __call__(self, t, y):
        return np.tanh(y @ self.W.T + self.b) * (1 + 0.5 * np.sin(self.w[0] * t))

    def vjp(self, t, y, v):
        s = np.tanh(y @ self.W.T + self.b)
        u = v * (1 + 0.5 * np.sin(self.w[0] * t)) * (1 - s * s)
        u2, y2 = u.reshape(-1, len(self.b)), y.reshape(-1, len(self.b))
        vs = float(np.sum(v * s))
        t_bar = vs * 0.5 * np.cos(self.w[0] * t) * self.w[0]
        w_bar = np.array([vs * 0.5 * np.cos(self.w[0] * t) * t])
        return u @ self.W, [u2.T @ y2, u2.sum(axis=0), w_bar], t_bar


class Rotation:
    """A linear field without parameters, ``dy/dt = y A^T``."""

    params = []
    A = np.array([[-0.1, 1.0], [-1.0, -0.1]])

    def __call__(self, t, y):
        return y @ self.A.T

    def vjp(self, t, y, v):
        return v @ self.A, [], 0.0


def _dynamics(name):
    rng = np.random.default_rng(3)
    if name == "mlp":
        return MLP([2, 8, 2], rng=rng)
    if name == "time":
        return TimeField(rng)
    return Rotation()


def _loss_weights(shape, rng):
    return rng.standard_normal(shape)


def _fd_all(f, y0, t, weights, **solver):
    """Finite differences of ``L = sum(weights * odeint(...))`` in y0, every parameter and every time."""

    def loss(y=y0, times=t):
        return float(np.sum(weights * ne.odeint(f, y, times, **solver)))

    gy = fd_gradient(lambda z: loss(y=z), y0)
    gt = fd_gradient(lambda s: loss(times=s), t)
    return gy, fd_param_gradients(loss, f.params), gt


def _assert_close(grads, reference, tol):
    (y0_bar, params_bar, t_bar), (gy, gp, gt) = grads, reference
    assert relative_error(y0_bar, gy) < tol, ("y0", relative_error(y0_bar, gy))
    for i, (a, b) in enumerate(zip(params_bar, gp)):
        assert relative_error(a, b) < tol, (f"param {i}", relative_error(a, b))
    assert relative_error(t_bar, gt) < tol, ("t", relative_error(t_bar, gt), t_bar, gt)


def test_test_field_vjp_is_right():
    rng = np.random.default_rng(0)
    report = check_dynamics_vjp(TimeField(rng), 0.7, rng.standard_normal((3, 2)), rng)
    assert report["y"] < 1e-7 and report["t"] < 1e-7 and max(report["params"]) < 1e-7


@pytest.mark.parametrize("name", ["mlp", "time", "rotation"])
@pytest.mark.parametrize("method", FIXED + ["dopri5"])
def test_backprop_is_the_exact_gradient_of_the_fixed_step_solver(name, method):
    f, rng = _dynamics(name), np.random.default_rng(1)
    y0, t = rng.standard_normal((3, 2)), np.array([0.0, 0.43, 0.57, 1.26])
    weights = _loss_weights((len(t), 3, 2), rng)
    solver = dict(method=method, step_size=0.1)
    ys, pullback = ne.odeint_vjp(f, y0, t, gradient="backprop", **solver)
    assert np.array_equal(ys, ne.odeint(f, y0, t, **solver))
    _assert_close(pullback(weights), _fd_all(f, y0, t, weights, **solver), 1e-7)


@pytest.mark.parametrize("name", ["mlp", "time", "rotation"])
@pytest.mark.parametrize("gradient", ["adjoint", "backprop"])
@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_gradients_match_a_high_accuracy_gradient(name, gradient, method):
    f, rng = _dynamics(name), np.random.default_rng(2)
    y0, t = rng.standard_normal((3, 2)), np.linspace(0.0, 1.5, 5)
    weights = _loss_weights((len(t), 3, 2), rng)
    _, pullback = ne.odeint_vjp(f, y0, t, gradient=gradient, method=method, rtol=1e-7, atol=1e-9)
    reference = _fd_all(f, y0, t, weights, method="dopri5", rtol=1e-12, atol=1e-12)
    _assert_close(pullback(weights), reference, 1e-5 if method == "dopri5" else 1e-4)


@pytest.mark.parametrize("name", ["mlp", "time"])
@pytest.mark.parametrize("method", FIXED)
def test_adjoint_with_fixed_steps_converges_to_the_true_gradient(name, method):
    f, rng = _dynamics(name), np.random.default_rng(4)
    y0, t = rng.standard_normal((2, 2)), np.array([0.0, 0.55, 1.05])
    weights = _loss_weights((len(t), 2, 2), rng)
    reference = _fd_all(f, y0, t, weights, method="dopri5", rtol=1e-12, atol=1e-12)
    errors = []
    for h in (0.2, 0.1):
        _, pullback = ne.odeint_vjp(f, y0, t, gradient="adjoint", method=method, step_size=h)
        errors.append(relative_error(pullback(weights)[0], reference[0]))
    order = ne.TABLEAUX[method].order
    assert errors[1] < errors[0] * 2.0 ** -(order - 0.8), errors


def test_unbatched_state_and_single_output_time():
    f = MLP([2, 8, 2], rng=np.random.default_rng(5))
    y0 = np.array([0.3, -0.2])
    ys, pullback = ne.odeint_vjp(f, y0, [0.0])
    y0_bar, params_bar, t_bar = pullback(np.array([[1.0, 2.0]]))
    assert np.array_equal(y0_bar, [1.0, 2.0]) and t_bar.tolist() == [0.0]
    assert all(not np.any(p) for p in params_bar)
    ys, pullback = ne.odeint_vjp(f, y0, [0.0, 1.0])
    assert ys.shape == (2, 2) and pullback(np.ones((2, 2)))[0].shape == (2,)


def test_decreasing_time():
    f, rng = _dynamics("time"), np.random.default_rng(6)
    y0, t = rng.standard_normal(2), np.array([1.0, 0.6, 0.0])
    weights = rng.standard_normal((3, 2))
    reference = _fd_all(f, y0, t, weights, rtol=1e-12, atol=1e-12)
    for gradient in ("adjoint", "backprop"):
        _, pullback = ne.odeint_vjp(f, y0, t, gradient=gradient)
        _assert_close(pullback(weights), reference, 1e-5)


def test_adjoint_error_shrinks_with_the_tolerance():
    f, rng = _dynamics("mlp"), np.random.default_rng(7)
    y0, t = rng.standard_normal((3, 2)), np.linspace(0.0, 2.0, 3)
    weights = rng.standard_normal((3, 3, 2))
    reference = _fd_all(f, y0, t, weights, rtol=1e-12, atol=1e-12)[1]
    errors = []
    for rtol in (1e-4, 1e-6, 1e-8):
        _, pullback = ne.odeint_vjp(f, y0, t, rtol=rtol, atol=rtol * 1e-2)
        errors.append(relative_error(ne.nn.ravel_params(pullback(weights)[1]), ne.nn.ravel_params(reference)))
    assert errors[0] > errors[1] > errors[2]


def test_pullback_can_be_called_twice_and_is_linear():
    f, rng = _dynamics("mlp"), np.random.default_rng(8)
    y0, t = rng.standard_normal((3, 2)), np.linspace(0.0, 1.0, 4)
    for gradient in ("adjoint", "backprop"):
        ys, pullback = ne.odeint_vjp(f, y0, t, gradient=gradient)
        u, v = rng.standard_normal(ys.shape), rng.standard_normal(ys.shape)
        gu, gv, guv = pullback(u)[0], pullback(v)[0], pullback(2 * u + v)[0]
        assert np.allclose(guv, 2 * gu + gv, rtol=1e-10, atol=1e-12)
        assert np.array_equal(pullback(u)[0], gu)


def test_reset_state_controls_the_backward_reconstruction():
    f, y0, t = Rotation(), np.array([1.0, 0.0]), np.linspace(0.0, 20.0, 3)
    ys, pullback = ne.odeint_vjp(f, y0, t, rtol=1e-4, atol=1e-6)
    pullback(np.ones_like(ys))
    assert pullback.z0_backward is not None and np.allclose(pullback.z0_backward, y0, atol=1e-2)
    assert pullback.nfe_forward > 0 and pullback.nfe_backward > 0 and pullback.steps_backward > 0


def _peak_memory(gradient, steps):
    f = MLP([2, 16, 2], rng=np.random.default_rng(0))
    return ne.checks.pullback_peak_memory(f, np.ones((8, 2)), [0.0, 1.0], gradient=gradient, method="rk4",
                                          step_size=1.0 / steps)


def test_adjoint_memory_does_not_grow_with_steps_but_backprop_does():
    adjoint = [_peak_memory("adjoint", n) for n in (20, 2000)]
    backprop = [_peak_memory("backprop", n) for n in (20, 2000)]
    assert adjoint[1] < 1.5 * adjoint[0], adjoint
    assert backprop[1] > 20 * backprop[0], backprop


def test_errors():
    f = MLP([2, 4, 2])
    with pytest.raises(ValueError, match="gradient"):
        ne.odeint_vjp(f, np.ones(2), [0.0, 1.0], gradient="autodiff")
    with pytest.raises(ValueError, match="vjp"):
        ne.odeint_vjp(lambda t, y: -y, np.ones(2), [0.0, 1.0])
    ys, pullback = ne.odeint_vjp(f, np.ones(2), [0.0, 1.0])
    with pytest.raises(ValueError, match="ys_bar must have the shape"):
        pullback(np.ones(2))
    with pytest.raises(ValueError, match="finite"):
        pullback(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="t must be"):
        ne.odeint_vjp(f, np.ones(2), [1.0, 1.0])

    class NoParams:
        def __call__(self, t, y):
            return -y

        def vjp(self, t, y, v):
            return -v, [], 0.0

    with pytest.raises(ValueError, match="params"):
        ne.odeint_vjp(NoParams(), np.ones(2), [0.0, 1.0])


@pytest.mark.parametrize("model", [MLP([2, 8, 2]), ne.nn.TimeMLP([2, 8, 2]), ne.nn.CubeInputMLP([2, 8, 2]),
                                   ne.checks.CountingDynamics(MLP([2, 8, 2])), ne.checks.CountingDynamics(Rotation())])
def test_value_and_vjp_is_f_and_its_vjp(model):
    rng = np.random.default_rng(9)
    y, v = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    value, (y_bar, params_bar, t_bar) = model.value_and_vjp(0.3, y, v)
    y_bar2, params_bar2, t_bar2 = model.vjp(0.3, y, v)
    assert np.array_equal(value, model(0.3, y)) and np.array_equal(y_bar, y_bar2) and t_bar == t_bar2
    assert all(np.array_equal(a, b) for a, b in zip(params_bar, params_bar2))
