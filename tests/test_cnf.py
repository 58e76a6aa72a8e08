"""Continuous normalizing flows: exact densities of a linear field, the time field's hand-written first
and second derivatives (finite differences and the dot-product test), Hutchinson's estimator (unbiased,
variance as theory says, probes fixed within a solve), ``nll_and_grad`` against finite differences of
``log_prob``, the 2-D toy densities, and refusals of bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import expm

from neuralode import checks, data
from neuralode.cnf import (CNF, CNFDynamics, TimeField, divergence_by_jvps, hutchinson_probes,
                           standard_normal_log_prob)

PROPERTY = settings(deadline=None, max_examples=40)
TIGHT = {"rtol": 1e-10, "atol": 1e-12}


class LinearField:
    """``dz/dt = z A^T``, written through the protocol, with ``div = tr A`` and its VJP."""

    def __init__(self, A):
        self.A = np.array(A, dtype=float)
        self.dim = self.A.shape[0]

    @property
    def params(self):
        return [self.A]

    def __call__(self, t, z):
        return z @ self.A.T

    def vjp(self, t, z, v):
        return v @ self.A, [v.T @ z], 0.0

    def jvp(self, t, z, u):
        return u @ self.A.T

    def divergence(self, t, z):
        return np.full(z.shape[0], np.trace(self.A))

    def divergence_vjp(self, t, z, w):
        return np.zeros_like(z), [np.sum(w) * np.eye(self.dim)], 0.0

    def trace_estimate(self, t, z, eps):
        return np.sum((eps @ self.A.T) * eps, axis=1)

    def trace_estimate_vjp(self, t, z, eps, w):
        return np.zeros_like(z), [(w[:, None] * eps).T @ eps], 0.0


def linear_case(seed, d=3):
    rng = np.random.default_rng(seed)
    A = 0.5 * rng.standard_normal((d, d))
    return LinearField(A), rng.standard_normal((6, d)), rng


def linear_log_prob(A, x, t0, t1):
    """``log N(e^{-A (t1 - t0)} x; 0, I) - (t1 - t0) tr A``: the closed form."""
    z0 = x @ expm(-A * (t1 - t0)).T
    return standard_normal_log_prob(z0) - (t1 - t0) * np.trace(A)


# ---------------------------------------------------------------------------------------------------
# The linear field: log_prob in closed form, samples with the pushed-forward covariance
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("t0, t1", [(0.0, 1.0), (0.5, 2.0), (1.0, 0.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linear_field_log_prob_is_exact(seed, t0, t1):
    f, x, _ = linear_case(seed)
    flow = CNF(f, t0=t0, t1=t1, **TIGHT)
    assert np.allclose(flow.log_prob(x), linear_log_prob(f.A, x, t0, t1), rtol=0, atol=1e-8)


def test_linear_field_samples_have_the_pushed_forward_covariance():
    f, _, rng = linear_case(3, d=2)
    n = 40_000
    x = CNF(f, **TIGHT).sample(n, rng)
    M = expm(f.A)
    cov = M @ M.T
    # standard error of a sample covariance entry: sqrt((S_ii S_jj + S_ij^2) / n)
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(np.cov(x.T) - cov) < 5 * se)
    assert np.all(np.abs(x.mean(axis=0)) < 5 * np.sqrt(np.diag(cov) / n))


def test_hutchinson_probe_is_drawn_once_per_solve():
    """For a linear field the estimate is constant along the path: Delta = (t1 - t0) eps^T A eps exactly."""
    f, x, _ = linear_case(4)
    flow = CNF(f, trace="hutchinson", **TIGHT)
    eps = hutchinson_probes(x.shape, np.random.default_rng(11))
    z0 = x @ expm(-f.A).T
    expected = standard_normal_log_prob(z0) - np.sum((eps @ f.A.T) * eps, axis=1)
    assert np.allclose(flow.log_prob(x, rng=np.random.default_rng(11)), expected, rtol=0, atol=1e-8)


# ---------------------------------------------------------------------------------------------------
# The time field's derivatives: property tests
# ---------------------------------------------------------------------------------------------------


@st.composite
def field_cases(draw):
    """A random TimeField (d 1-5, H 1-8, tanh or softplus), a batch of 1-4 rows, a time, a seed."""
    d, H, n = draw(st.integers(1, 5)), draw(st.integers(1, 8)), draw(st.integers(1, 4))
    activation = draw(st.sampled_from(["tanh", "softplus"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    f = TimeField(d, H, activation, rng=rng)
    for p in f.params:
        p[...] = rng.uniform(-1.5, 1.5, p.shape)
    return f, rng.uniform(-2.0, 2.0, (n, d)), float(rng.uniform(-1.0, 1.0)), rng


def assert_close(exact, approx, what):
    assert np.shape(exact) == np.shape(approx), what
    assert np.allclose(exact, approx, rtol=1e-5, atol=1e-7), f"{what}: {exact} vs {approx}"


def check_vjp_by_fd(fn, vjp_out, z, t, params, w, what):
    """``vjp_out = (z_bar, params_bar, t_bar)`` of ``L = sum(w * fn(t, z))`` against central differences."""
    z_bar, params_bar, t_bar = vjp_out
    assert_close(z_bar, checks.fd_vjp(lambda y: fn(t, y), z, w), f"{what}: z")
    fd = checks.fd_param_gradients(lambda: float(np.sum(w * fn(t, z))), params)
    assert len(params_bar) == len(params)
    for i, (exact, approx) in enumerate(zip(params_bar, fd)):
        assert_close(exact, approx, f"{what}: parameter {i}")
    fd_t = checks.fd_gradient(lambda s: float(np.sum(w * fn(s[0], z))), np.array([t]))[0]
    assert np.isclose(t_bar, fd_t, rtol=1e-5, atol=1e-7), (what, t_bar, fd_t)


@PROPERTY
@given(field_cases())
def test_field_vjp_and_jvp(case):
    f, z, t, rng = case
    v = rng.standard_normal(z.shape)
    check_vjp_by_fd(f, f.vjp(t, z, v), z, t, f.params, v, "vjp")
    u = rng.standard_normal(z.shape)
    assert_close(f.jvp(t, z, u), checks.fd_jvp(lambda y: f(t, y), z, u), "jvp")
    lhs, rhs = checks.dot_product_test(lambda u: f.jvp(t, z, u), lambda v: f.vjp(t, z, v)[0], z.shape, z.shape, rng)
    assert np.isclose(lhs, rhs, rtol=1e-11, atol=1e-12)


@PROPERTY
@given(field_cases())
def test_divergence_is_the_trace_of_the_jacobian(case):
    f, z, t, _ = case
    jac_trace = [np.trace(np.array([checks.fd_jvp(lambda y: f(t, y[None])[0], row, e) for e in np.eye(f.dim)]))
                 for row in z]
    assert_close(f.divergence(t, z), np.array(jac_trace), "divergence against fd Jacobian")
    assert np.allclose(f.divergence(t, z), divergence_by_jvps(f, t, z), rtol=1e-12, atol=1e-12)


@PROPERTY
@given(field_cases())
def test_divergence_vjp_second_derivative(case):
    f, z, t, rng = case
    w = rng.standard_normal(z.shape[0])
    check_vjp_by_fd(f.divergence, f.divergence_vjp(t, z, w), z, t, f.params, w, "divergence_vjp")
    u = rng.standard_normal(z.shape)
    assert_close(f.divergence_jvp(t, z, u), checks.fd_jvp(lambda y: f.divergence(t, y), z, u), "divergence_jvp")
    lhs, rhs = checks.dot_product_test(lambda u: f.divergence_jvp(t, z, u), lambda w: f.divergence_vjp(t, z, w)[0],
                                       z.shape, (z.shape[0],), rng)
    assert np.isclose(lhs, rhs, rtol=1e-11, atol=1e-12)


@PROPERTY
@given(field_cases(), st.sampled_from(["rademacher", "gaussian"]))
def test_trace_estimate_and_its_vjp(case, noise):
    f, z, t, rng = case
    eps = hutchinson_probes(z.shape, rng, noise)
    explicit = np.sum(eps * f.jvp(t, z, eps), axis=1)
    assert np.allclose(f.trace_estimate(t, z, eps), explicit, rtol=1e-12, atol=1e-12)
    w = rng.standard_normal(z.shape[0])
    check_vjp_by_fd(lambda s, y: f.trace_estimate(s, y, eps), f.trace_estimate_vjp(t, z, eps, w), z, t, f.params,
                    w, "trace_estimate_vjp")
    lhs, rhs = checks.dot_product_test(lambda u: f.trace_estimate_jvp(t, z, eps, u),
                                       lambda w: f.trace_estimate_vjp(t, z, eps, w)[0], z.shape, (z.shape[0],), rng)
    assert np.isclose(lhs, rhs, rtol=1e-11, atol=1e-12)


@PROPERTY
@given(field_cases(), st.booleans())
def test_augmented_dynamics_vjp(case, hutchinson):
    f, z, t, rng = case
    eps = hutchinson_probes(z.shape, rng) if hutchinson else None
    g = CNFDynamics(f, eps)
    s = np.concatenate([z, rng.standard_normal((z.shape[0], 1))], axis=1)
    v = rng.standard_normal(s.shape)
    check_vjp_by_fd(g, g.vjp(t, s, v), s, t, g.params, v, "augmented vjp")
    value, _ = g.value_and_vjp(t, s, v)
    assert np.array_equal(value, g(t, s))
    assert np.array_equal(value[:, -1], -(f.divergence(t, z) if eps is None else f.trace_estimate(t, z, eps)))


# ---------------------------------------------------------------------------------------------------
# Hutchinson's estimator: unbiased, with the variance theory predicts
# ---------------------------------------------------------------------------------------------------


def probe_statistics(f, t, z, noise, n_probes, seed):
    """Mean and variance of ``eps^T J eps`` over ``n_probes`` probes at the single row ``z``."""
    zs = np.repeat(z[None], n_probes, axis=0)
    est = f.trace_estimate(t, zs, hutchinson_probes(zs.shape, np.random.default_rng(seed), noise))
    return est.mean(), est.var(ddof=1), n_probes


def theoretical_variance(J, noise):
    S = 0.5 * (J + J.T)
    frobenius = np.sum(S**2)
    return 2 * frobenius if noise == "gaussian" else 2 * (frobenius - np.sum(np.diag(S) ** 2))


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_with_the_theoretical_variance(noise):
    rng = np.random.default_rng(5)
    f = TimeField(6, 16, rng=rng)
    z, t = rng.standard_normal(6), 0.3
    J = np.array([f.jvp(t, z[None], e[None])[0] for e in np.eye(6)]).T
    mean, var, n = probe_statistics(f, t, z, noise, 100_000, seed=1)
    exact, theory = f.divergence(t, z[None])[0], theoretical_variance(J, noise)
    assert abs(mean - exact) < 5 * np.sqrt(theory / n)        # five standard errors of the mean
    assert abs(var / theory - 1) < 0.05                        # sample variance within 5% (about 10 s.e.)


def test_rademacher_variance_is_below_gaussian():
    rng = np.random.default_rng(6)
    f = TimeField(6, 16, rng=rng)
    z = rng.standard_normal(6)
    var = {noise: probe_statistics(f, 0.0, z, noise, 50_000, seed=2)[1] for noise in ("rademacher", "gaussian")}
    assert var["rademacher"] < var["gaussian"]


def test_probes_have_unit_second_moment():
    for noise in ("rademacher", "gaussian"):
        eps = hutchinson_probes((200_000, 3), np.random.default_rng(0), noise)
        assert np.allclose(eps.T @ eps / len(eps), np.eye(3), rtol=0, atol=0.02)
    assert set(np.unique(hutchinson_probes((50, 2), np.random.default_rng(0)))) == {-1.0, 1.0}


# ---------------------------------------------------------------------------------------------------
# nll_and_grad: the adjoint through [z, Delta] against finite differences of log_prob
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trace, noise", [("exact", "rademacher"), ("hutchinson", "rademacher"),
                                          ("hutchinson", "gaussian")])
def test_nll_and_grad_matches_finite_differences(trace, noise):
    rng = np.random.default_rng(8)
    f = TimeField(2, 6, rng=rng)
    x = rng.standard_normal((5, 2))
    flow = CNF(f, trace=trace, noise=noise, **TIGHT)
    probe_rng = (lambda: np.random.default_rng(3)) if trace == "hutchinson" else (lambda: None)
    nll, grads = flow.nll_and_grad(x, rng=probe_rng())
    assert flow.nfe_forward > 0 and flow.nfe_backward > 0
    assert np.isclose(nll, -np.mean(flow.log_prob(x, rng=probe_rng())), rtol=0, atol=1e-12)
    fd = checks.fd_param_gradients(lambda: -float(np.mean(flow.log_prob(x, rng=probe_rng()))), f.params)
    for i, (exact, approx) in enumerate(zip(grads, fd)):
        assert np.allclose(exact, approx, rtol=1e-5, atol=1e-7), (i, exact, approx)


def test_nll_and_grad_of_the_linear_field_is_the_closed_form_gradient():
    f, x, _ = linear_case(9, d=2)
    nll, [A_bar] = CNF(f, **TIGHT).nll_and_grad(x)
    fd = checks.fd_gradient(lambda A: -float(np.mean(linear_log_prob(A, x, 0.0, 1.0))), f.A)
    assert np.isclose(nll, -np.mean(linear_log_prob(f.A, x, 0.0, 1.0)), rtol=0, atol=1e-8)
    assert np.allclose(A_bar, fd, rtol=1e-6, atol=1e-8)


def test_a_trained_step_lowers_the_nll():
    rng = np.random.default_rng(0)
    f = TimeField(2, 8, rng=rng, scale=0.1)
    x = data.eight_gaussians(64, rng=rng)
    flow = CNF(f, method="rk4", step_size=0.25)
    nll, grads = flow.nll_and_grad(x)
    for p, g in zip(f.params, grads):
        p -= 0.05 * g
    assert flow.nll_and_grad(x)[0] < nll


# ---------------------------------------------------------------------------------------------------
# Toy densities
# ---------------------------------------------------------------------------------------------------


def test_eight_gaussians_samples_match_their_log_density():
    x = data.eight_gaussians(20_000, std=0.2, rng=np.random.default_rng(0))
    radius = np.linalg.norm(x, axis=1)
    assert abs(radius.mean() - 2.0) < 0.02
    xs = np.linspace(-4, 4, 401)
    grid = np.stack(np.meshgrid(xs, xs), axis=-1).reshape(-1, 2)
    mass = np.exp(data.eight_gaussians_log_prob(grid)).sum() * (xs[1] - xs[0]) ** 2
    assert abs(mass - 1.0) < 1e-6


def test_checkerboard_lies_on_dark_cells():
    x = data.checkerboard(5_000, squares=4, size=1.0, rng=np.random.default_rng(0))
    cell = np.floor(x + 2.0).astype(int)
    assert np.all((cell >= 0) & (cell < 4)) and np.all(cell.sum(axis=1) % 2 == 0)


# ---------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------

FIELD = TimeField(2, 4)
FLOW = CNF(FIELD)
HUTCH = CNF(FIELD, trace="hutchinson")
Z = np.zeros((3, 2))

BAD = [
    (lambda: CNF(lambda t, z: z), "field must follow the dynamics protocol"),
    (lambda: CNF(FIELD, t0=1.0, t1=1.0), "t0 and t1 must differ"),
    (lambda: CNF(FIELD, t1=np.inf), "t1 must be finite"),
    (lambda: CNF(FIELD, t0="0"), "t0 must be a real number"),
    (lambda: CNF(FIELD, trace="approx"), "trace must be one of"),
    (lambda: CNF(FIELD, noise="uniform"), "noise must be one of"),
    (lambda: CNF(FIELD, method="rk45"), "method must be one of"),
    (lambda: CNF(FIELD, rtol=0.0), "rtol must be greater than 0"),
    (lambda: CNF(FIELD, atol=0.0), "atol must be greater than 0"),
    (lambda: CNF(FIELD, step_size=-0.1), "step_size must be greater than 0"),
    (lambda: FLOW.log_prob(np.zeros(2)), r"x must have shape \(n, 2\)"),
    (lambda: FLOW.log_prob(np.zeros((3, 3))), r"x must have shape \(n, 2\)"),
    (lambda: FLOW.log_prob(np.zeros((0, 2))), "x must have shape"),
    (lambda: FLOW.log_prob(np.full((1, 2), np.nan)), "x must contain only finite values"),
    (lambda: FLOW.log_prob(Z, rng=3), "rng must be a numpy.random.Generator"),
    (lambda: HUTCH.log_prob(Z), "rng is required"),
    (lambda: HUTCH.nll_and_grad(Z), "rng is required"),
    (lambda: FLOW.nll_and_grad([["a", "b"]]), "x must be an array of real numbers"),
    (lambda: FLOW.sample(0, np.random.default_rng(0)), "n must be an integer of at least 1"),
    (lambda: FLOW.sample(2.5, np.random.default_rng(0)), "n must be an integer"),
    (lambda: FLOW.sample("3", np.random.default_rng(0)), "n must be an integer"),
    (lambda: FLOW.sample(3, None), "rng must be a numpy.random.Generator"),
    (lambda: TimeField(0), "dim must be an integer of at least 1"),
    (lambda: TimeField(2, hidden=0), "hidden must be an integer of at least 1"),
    (lambda: TimeField(2, activation="relu"), "activation must be one of"),
    (lambda: TimeField(2, rng=0), "rng must be a numpy.random.Generator"),
    (lambda: TimeField(2, scale=-1.0), "scale must be at least 0"),
    (lambda: FIELD(0.0, np.zeros((3, 3))), r"z must have shape \(n, 2\)"),
    (lambda: FIELD.vjp(0.0, Z, np.ones((2, 2))), r"v must be a finite array of shape \(3, 2\)"),
    (lambda: FIELD.jvp(0.0, Z, np.ones(3)), r"u must be a finite array of shape \(3, 2\)"),
    (lambda: FIELD.divergence_jvp(0.0, Z, np.full((3, 2), np.inf)), "u must be a finite array"),
    (lambda: CNFDynamics(FIELD).vjp(0.0, np.zeros((3, 3)), np.ones((3, 2))), r"v must be a finite array of shape \(3, 3\)"),
    (lambda: FIELD.divergence_vjp(0.0, Z, np.ones(2)), r"w must be a finite array of shape \(3,\)"),
    (lambda: FIELD.trace_estimate(0.0, Z, np.ones((3, 1))), "eps must be a finite array of the shape of z"),
    (lambda: FIELD.trace_estimate_vjp(0.0, Z, np.ones((3, 2)), np.ones(4)), "w must be a finite array"),
    (lambda: divergence_by_jvps(lambda t, z: z, 0.0, Z), "field must offer field.jvp"),
    (lambda: divergence_by_jvps(FIELD, np.nan, Z), "t must be finite"),
    (lambda: hutchinson_probes((3,), np.random.default_rng(0)), "shape must be a tuple"),
    (lambda: hutchinson_probes((3, 0), np.random.default_rng(0)), r"shape\[1\] must be an integer of at least 1"),
    (lambda: hutchinson_probes((3, 2), np.random.default_rng(0), "uniform"), "noise must be one of"),
    (lambda: hutchinson_probes((3, 2), None), "rng must be"),
    (lambda: standard_normal_log_prob(np.zeros(3)), "z must have shape"),
    (lambda: CNFDynamics(LinearField(np.eye(2)), None)(0.0, np.zeros((2, 1))), r"s must have shape \(n, d \+ 1\)"),
    (lambda: CNFDynamics(MinimalField()), "field must offer field.divergence"),
    (lambda: CNFDynamics(MinimalField(), np.zeros((1, 2))), "field must offer field.trace_estimate"),
    (lambda: CNF(MinimalField()), "field must offer field.divergence"),
    (lambda: CNF(MinimalField(), trace="hutchinson"), "field must offer field.trace_estimate"),
    (lambda: data.eight_gaussians(0), "n must be an integer of at least 1"),
    (lambda: data.eight_gaussians(5, std=0.0), "std must be greater than 0"),
    (lambda: data.eight_gaussians_log_prob(np.zeros(2)), r"x must have shape \(n, 2\)"),
    (lambda: data.checkerboard(5, squares=0), "squares must be an integer of at least 1"),
    (lambda: data.checkerboard(5, size=np.nan), "size must be finite"),
]


class MinimalField:
    """Only the dynamics protocol: no trace methods."""

    params = []

    def __call__(self, t, z):
        return z

    def vjp(self, t, z, v):
        return v, [], 0.0


@pytest.mark.parametrize("make, phrase", BAD)
def test_bad_input_is_refused_with_a_clear_error(make, phrase):
    with pytest.raises(ValueError, match=phrase):
        make()
