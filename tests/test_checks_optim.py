"""The numerical checks the chapters rely on (finite differences, the dot-product test, observed
orders, NFE counting), and the optimisers."""

import numpy as np
import pytest

from neuralode import checks
from neuralode.nn import MLP
from neuralode.optim import SGD, Adam

# --------------------------------------------------------------------------------------------------
# Finite differences


def test_fd_gradient_of_a_known_function():
    x = np.random.default_rng(0).uniform(-2.0, 2.0, size=(3, 4))
    saved = x.copy()
    g = checks.fd_gradient(lambda z: float(np.sum(np.sin(z) * z**2)), x)
    exact = np.cos(x) * x**2 + 2.0 * x * np.sin(x)
    assert g.shape == x.shape
    assert np.allclose(g, exact, rtol=1e-8, atol=1e-9)
    assert np.array_equal(x, saved), "x is restored"


def test_fd_gradient_error_shrinks_like_eps_squared():
    x = np.array([0.7])
    exact = np.exp(0.7)
    errors = [abs(checks.fd_gradient(lambda z: float(np.exp(z[0])), x, eps)[0] - exact) for eps in (1e-2, 5e-3, 2.5e-3)]
    assert abs(checks.observed_order([1e-2, 5e-3, 2.5e-3], errors) - 2.0) < 0.05


def test_fd_jvp_and_vjp_of_a_linear_map():
    rng = np.random.default_rng(1)
    A, x, u, v = rng.standard_normal((3, 5)), rng.standard_normal(5), rng.standard_normal(5), rng.standard_normal(3)
    assert np.allclose(checks.fd_jvp(lambda z: A @ z, x, u), A @ u, rtol=1e-8)
    assert np.allclose(checks.fd_vjp(lambda z: A @ z, x, v), v @ A, rtol=1e-8)


def test_fd_param_gradients_restores_the_parameters():
    w, b = np.array([1.0, -2.0]), np.array([0.5])
    grads = checks.fd_param_gradients(lambda: float(np.sum(w**2) * b[0]), [w, b])
    assert np.allclose(grads[0], 2 * w * 0.5) and np.allclose(grads[1], [5.0])
    assert np.array_equal(w, [1.0, -2.0]) and np.array_equal(b, [0.5])

    def failing():
        raise RuntimeError("loss failed")

    with pytest.raises(RuntimeError):
        checks.fd_param_gradients(failing, [w])
    assert np.array_equal(w, [1.0, -2.0])


def test_relative_error():
    assert checks.relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert checks.relative_error([3.0, 4.0], [3.0, 4.0]) == 0.0
    assert checks.relative_error([0.0, 0.0], [3.0, 4.0]) == pytest.approx(1.0)
    assert checks.relative_error([3.0, 4.005], [3.0, 4.0]) == pytest.approx(0.005 / np.hypot(3.0, 4.005))


# --------------------------------------------------------------------------------------------------
# The dot-product test


def test_dot_product_test_passes_a_true_transpose():
    A = np.random.default_rng(2).standard_normal((4, 6))
    lhs, rhs = checks.dot_product_test(lambda u: A @ u, lambda v: A.T @ v, (6,), (4,), np.random.default_rng(3))
    assert np.isclose(lhs, rhs, rtol=1e-13)


@pytest.mark.parametrize("wrong", [
    lambda A, v: A[:, ::-1].T @ v,        # columns in the wrong order
    lambda A, v: -(A.T @ v),              # wrong sign
    lambda A, v: 0.5 * (A.T @ v),         # a missing half
])
def test_dot_product_test_catches_a_wrong_vjp(wrong):
    A = np.random.default_rng(4).standard_normal((4, 6))
    lhs, rhs = checks.dot_product_test(lambda u: A @ u, lambda v: wrong(A, v), (6,), (4,), np.random.default_rng(5))
    assert not np.isclose(lhs, rhs, rtol=1e-3)


def test_dot_product_test_catches_a_transposed_square_matrix():
    A = np.random.default_rng(6).standard_normal((5, 5))
    lhs, rhs = checks.dot_product_test(lambda u: A @ u, lambda v: A @ v, (5,), (5,), np.random.default_rng(7))
    assert not np.isclose(lhs, rhs, rtol=1e-3)


# --------------------------------------------------------------------------------------------------
# Observed order


@pytest.mark.parametrize("p", [1.0, 2.0, 3.5, 5.0])
def test_observed_order_of_synthetic_errors(p):
    h = np.array([0.1, 0.05, 0.025, 0.0125])
    assert checks.observed_order(h, 7.0 * h**p) == pytest.approx(p, abs=1e-10)
    noisy = 7.0 * h**p * (1.0 + 0.01 * np.array([1.0, -1.0, 1.0, -1.0]))
    assert checks.observed_order(h, noisy) == pytest.approx(p, abs=0.05)


# --------------------------------------------------------------------------------------------------
# Checking a model's VJP, and counting evaluations


def test_check_dynamics_vjp_on_a_correct_model():
    f = MLP([3, 6, 3], rng=np.random.default_rng(8))
    y = np.random.default_rng(9).standard_normal((2, 3))
    report = checks.check_dynamics_vjp(f, 0.2, y, np.random.default_rng(10))
    assert report["y"] < 1e-6 and report["t"] == 0.0
    assert len(report["params"]) == 4 and max(report["params"]) < 1e-6


class WrongVJP:
    """``f(t, y) = t * theta * y`` whose VJP forgets the factor t in ``v . df/dy``."""

    def __init__(self):
        self.params = [np.array([1.5])]

    def __call__(self, t, y):
        return t * self.params[0][0] * y

    def vjp(self, t, y, v):
        return self.params[0][0] * v, [np.array([t * np.sum(v * y)])], float(self.params[0][0] * np.sum(v * y))


def test_check_dynamics_vjp_finds_a_wrong_vjp():
    report = checks.check_dynamics_vjp(WrongVJP(), 2.0, np.array([1.0, -1.0]), np.random.default_rng(11))
    assert report["y"] > 0.1
    assert report["params"][0] < 1e-6 and report["t"] < 1e-6


def test_counting_dynamics():
    f = MLP([2, 3, 2])
    counted = checks.CountingDynamics(f)
    y = np.ones(2)
    for _ in range(3):
        counted(0.0, y)
    counted.vjp(0.0, y, y)
    assert (counted.nfe, counted.nfe_vjp) == (3, 1)
    assert counted.params is f.params or all(p is q for p, q in zip(counted.params, f.params))
    assert np.array_equal(counted.jvp(0.0, y, y), f.jvp(0.0, y, y))
    counted.reset()
    assert (counted.nfe, counted.nfe_vjp) == (0, 0)
    assert checks.CountingDynamics(lambda t, y: -y).params == []


# --------------------------------------------------------------------------------------------------
# Optimisers


def quadratic():
    """``L(theta) = 1/2 theta.Q theta - b.theta`` with its gradient and its minimiser."""
    Q = np.array([[3.0, 0.5], [0.5, 1.0]])
    b = np.array([1.0, -2.0])
    return (lambda th: 0.5 * th @ Q @ th - b @ th), (lambda th: Q @ th - b), np.linalg.solve(Q, b)


@pytest.mark.parametrize("make, steps", [(lambda p: SGD(p, lr=0.1), 300), (lambda p: Adam(p, lr=0.05), 1500)])
def test_optimisers_minimise_a_quadratic(make, steps):
    loss, grad, best = quadratic()
    theta = np.array([4.0, 4.0])
    opt = make([theta])
    start = loss(theta)
    for _ in range(steps):
        opt.step([grad(theta)])
    assert loss(theta) < start
    assert np.allclose(theta, best, atol=1e-3), "updated in place, and converged"


def test_sgd_step():
    p, q = np.array([1.0, 2.0]), np.array([[0.5]])
    SGD([p, q], lr=0.1).step([np.array([10.0, -10.0]), np.array([[1.0]])])
    assert np.allclose(p, [0.0, 3.0]) and np.allclose(q, [[0.4]])


def test_adam_first_step_is_lr_per_coordinate():
    p = np.array([1.0, 1.0, 1.0])
    Adam([p], lr=0.01).step([np.array([1e-3, -5.0, 100.0])])
    assert np.allclose(p, [0.99, 1.01, 0.99], atol=1e-6)


@pytest.mark.parametrize("make", [SGD, Adam])
def test_optimisers_reject_bad_gradients(make):
    p = np.array([1.0, 2.0])
    opt = make([p])
    with pytest.raises(ValueError, match="expected 1 gradient arrays, got 2"):
        opt.step([np.ones(2), np.ones(2)])
    with pytest.raises(ValueError, match=r"gradient 0 has shape \(3,\), its parameter \(2,\)"):
        opt.step([np.ones(3)])
    with pytest.raises(ValueError, match="gradient 0 contains NaN or infinity"):
        opt.step([np.array([1.0, np.nan])])
    with pytest.raises(ValueError, match="gradient 0 contains NaN or infinity"):
        opt.step([np.array([np.inf, 1.0])])
    assert np.array_equal(p, [1.0, 2.0]), "a rejected step changes nothing"


@pytest.mark.parametrize("error, limit, phrase", [(float("nan"), 1e-6, "error"), (-1.0, 1e-6, "error"),
                                                  (1e-9, 0.0, "limit"), (1e-9, 0.1, "limit")])
def test_below_refuses_bad_arguments(error, limit, phrase):
    with pytest.raises(ValueError, match=phrase):
        checks.below(error, limit)


def test_linear_field_gradient_against_finite_differences_of_the_solution():
    """The Van Loan reference against central differences of L = c . z(t1), with z(t1) taken in closed
    form from one exponential of the augmented system [[W, b], [0, 0]] acting on (z0, 1)."""
    import scipy.linalg

    A, z0, c, t1 = np.array([[-0.5, 1.0], [0.0, -25.0]]), np.array([1.0, 1.0]), np.array([1.0, -2.0]), 1.3
    d = len(z0)

    def loss(flat):
        W, b = flat[:d * d].reshape(d, d), flat[d * d:]
        augmented = np.zeros((d + 1, d + 1))
        augmented[:d, :d], augmented[:d, d] = W, b
        return float(c @ (scipy.linalg.expm(augmented * t1) @ np.append(z0, 1.0))[:d])

    exact = checks.linear_field_gradient(A, z0, c, t1=t1)
    fd = checks.fd_gradient(loss, np.concatenate([A.ravel(), np.zeros(d)]))
    assert checks.relative_error(exact, fd) < 1e-8
