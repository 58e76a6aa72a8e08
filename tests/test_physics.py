"""Known models and the hybrid combinators: Lotka-Volterra's hand-written VJP and JVP, and the VJP and
JVP that Hybrid, PerCapita and Fixed compose from their parts, each checked on random shapes and values
against finite differences and by the dot-product test; and a gradient through a solve of a hybrid."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import neuralode as ne
from neuralode import checks
from neuralode.nn import MLP, TimeMLP
from neuralode.physics import Fixed, Hybrid, LotkaVolterra, PerCapita

PROPERTY = settings(deadline=None, max_examples=50)
BATCHES = [(), (1,), (4,)]


def assert_close(exact, approx, what, rtol=1e-5, atol=1e-7):
    """Hand-written against central differences, whose own error is about 1e-9 here."""
    assert np.shape(exact) == np.shape(approx), what
    assert np.allclose(exact, approx, rtol=rtol, atol=atol), f"{what}: {exact} vs {approx}"


def check_vjp_jvp(f, y, rng, t=0.3):
    """VJP (state, time, every parameter) and JVP against finite differences; the dot-product test."""
    v = rng.standard_normal(np.shape(f(t, y)))
    y_bar, params_bar, t_bar = f.vjp(t, y, v)
    assert_close(y_bar, checks.fd_vjp(lambda z: f(t, z), y, v), "state cotangent")
    fd_t = checks.fd_gradient(lambda s: float(np.sum(v * f(s[0], y))), np.array([t]))[0]
    assert np.isclose(t_bar, fd_t, rtol=1e-5, atol=1e-7), (t_bar, fd_t)
    fd_params = checks.fd_param_gradients(lambda: float(np.sum(v * f(t, y))), f.params)
    assert len(params_bar) == len(f.params)
    for i, (exact, approx) in enumerate(zip(params_bar, fd_params)):
        assert_close(exact, approx, f"parameter {i}")
    u = rng.standard_normal(np.shape(y))
    assert_close(f.jvp(t, y, u), checks.fd_jvp(lambda z: f(t, z), y, u), "jvp")
    lhs, rhs = checks.dot_product_test(lambda w: f.jvp(t, y, w), lambda w: f.vjp(t, y, w)[0],
                                       np.shape(y), np.shape(v), rng)
    assert np.isclose(lhs, rhs, rtol=1e-11, atol=1e-12), (lhs, rhs)


# --------------------------------------------------------------------------------------------------
# Lotka-Volterra


@st.composite
def lotka_volterra_cases(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    batch = draw(st.sampled_from(BATCHES))
    f = LotkaVolterra(*rng.uniform(-2.0, 2.0, size=4))
    return f, rng.uniform(-3.0, 3.0, size=batch + (2,)), rng


@PROPERTY
@given(lotka_volterra_cases())
def test_lotka_volterra_derivatives(case):
    check_vjp_jvp(*case)


@PROPERTY
@given(st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_lotka_volterra_with_one_row_of_rates_per_state(n, seed):
    """theta of shape (n, 4): row i of the batch follows rates theta[i], and gets its own cotangent."""
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.1, 2.0, size=(4, n))
    f, y = LotkaVolterra(*rates), rng.uniform(0.1, 3.0, size=(n, 2))
    assert f.theta.shape == (n, 4)
    rows = [LotkaVolterra(*rates[:, i]) for i in range(n)]
    assert np.allclose(f(0.0, y), np.stack([g(0.0, y[i]) for i, g in enumerate(rows)]), rtol=1e-14, atol=0)
    v = rng.standard_normal((n, 2))
    theta_bar = f.vjp(0.0, y, v)[1][0]
    assert np.allclose(theta_bar, np.stack([g.vjp(0.0, y[i], v[i])[1][0] for i, g in enumerate(rows)]),
                       rtol=1e-13, atol=1e-14)
    check_vjp_jvp(f, y, rng)


def test_lotka_volterra_by_hand():
    f = LotkaVolterra(1.0, 0.5, 1.5, 0.75)
    assert np.allclose(f(0.0, np.array([2.0, 4.0])), [2.0 - 4.0, 6.0 - 6.0], atol=0)
    z_bar, [theta_bar], t_bar = f.vjp(0.0, np.array([2.0, 4.0]), np.array([1.0, 10.0]))
    # J = [[1 - 0.5*4, -0.5*2], [0.75*4, 0.75*2 - 1.5]] = [[-1, -1], [3, 0]]
    assert np.allclose(z_bar, [1 * -1 + 10 * 3, 1 * -1 + 10 * 0], atol=0)
    assert np.allclose(theta_bar, [2.0, -8.0, -40.0, 80.0], atol=0) and t_bar == 0.0
    assert f.equilibrium == (2.0, 2.0)


def test_the_invariant_is_conserved_along_a_solve():
    f = LotkaVolterra(1.3, 0.9, 1.8, 0.8)
    ys = ne.odeint(f, np.array([0.5, 3.0]), np.linspace(0.0, 20.0, 81), rtol=1e-11, atol=1e-12)
    values = f.invariant(ys)
    assert np.ptp(values) < 1e-8
    assert np.ptp(f.invariant(ne.odeint(f, np.array([0.5, 3.0]), np.linspace(0.0, 20.0, 81), method="euler",
                                        step_size=0.05))) > 1e-2, "Euler drifts off the orbit: the test can fail"


def test_batched_equilibria():
    f = LotkaVolterra([1.0, 2.0], 0.5, [1.5, 3.0], 0.75)
    x, y = f.equilibrium
    assert np.allclose(x, [2.0, 4.0]) and np.allclose(y, [2.0, 4.0])


# --------------------------------------------------------------------------------------------------
# Hybrid, PerCapita, Fixed


def make_part(kind, dim, rng):
    if kind == "mlp":
        return MLP([dim, int(rng.integers(1, 7)), dim], str(rng.choice(["tanh", "softplus"])), rng=rng)
    if kind == "time_mlp":
        return TimeMLP([dim, int(rng.integers(1, 7)), dim], rng=rng)
    if kind == "lotka_volterra":
        return LotkaVolterra(*rng.uniform(-2.0, 2.0, size=4))
    if kind == "fixed":
        return Fixed(MLP([dim, 3, dim], rng=rng))
    if kind == "per_capita":
        return PerCapita(MLP([dim, int(rng.integers(1, 7)), dim], rng=rng))
    if kind == "per_capita_time":
        return PerCapita(TimeMLP([dim, 3, dim], rng=rng))
    raise ValueError(kind)


KINDS = ["mlp", "time_mlp", "lotka_volterra", "fixed", "per_capita", "per_capita_time"]


@st.composite
def hybrid_cases(draw):
    known, learned = draw(st.sampled_from(KINDS)), draw(st.sampled_from(KINDS))
    dim = 2 if "lotka_volterra" in (known, learned) else draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    f = Hybrid(make_part(known, dim, rng), make_part(learned, dim, rng))
    return f, rng.uniform(-2.0, 2.0, size=draw(st.sampled_from(BATCHES)) + (dim,)), rng


@PROPERTY
@given(hybrid_cases())
def test_hybrid_derivatives(case):
    check_vjp_jvp(*case)


@PROPERTY
@given(hybrid_cases())
def test_hybrid_is_the_sum_of_its_parts(case):
    f, y, rng = case
    v = rng.standard_normal(y.shape)
    assert np.allclose(f(0.2, y), f.known(0.2, y) + f.learned(0.2, y), rtol=1e-15, atol=0)
    assert all(p is q for p, q in zip(f.params, f.known.params + f.learned.params))
    (yk, pk, tk), (yl, pl, tl) = f.known.vjp(0.2, y, v), f.learned.vjp(0.2, y, v)
    y_bar, params_bar, t_bar = f.vjp(0.2, y, v)
    assert np.allclose(y_bar, yk + yl, rtol=1e-15, atol=0) and np.isclose(t_bar, tk + tl, rtol=1e-15, atol=0)
    assert all(np.array_equal(a, b) for a, b in zip(params_bar, list(pk) + list(pl)))
    value, (y_bar2, params_bar2, t_bar2) = f.value_and_vjp(0.2, y, v)
    assert np.allclose(value, f(0.2, y), rtol=1e-15, atol=0) and np.allclose(y_bar2, y_bar, rtol=1e-15, atol=0)
    assert all(np.allclose(a, b, rtol=1e-15, atol=0) for a, b in zip(params_bar2, params_bar))


@PROPERTY
@given(st.sampled_from(["mlp", "time_mlp"]), st.integers(1, 4), st.sampled_from(BATCHES), st.integers(0, 2**32 - 1))
def test_per_capita_derivatives(kind, dim, batch, seed):
    rng = np.random.default_rng(seed)
    f = PerCapita(make_part(kind, dim, rng))
    y = rng.uniform(-2.0, 2.0, size=batch + (dim,))
    assert np.allclose(f(0.3, y), y * f.rates(0.3, y), rtol=1e-15, atol=0)
    check_vjp_jvp(f, y, rng)


def test_fixed_holds_the_parameters():
    net = MLP([2, 5, 2], rng=np.random.default_rng(0))
    f, y, v = Fixed(net), np.array([[0.3, -1.0]]), np.array([[1.0, 2.0]])
    assert f.params == [] and f.dim == 2
    assert np.array_equal(f(0.0, y), net(0.0, y))
    y_bar, params_bar, t_bar = f.vjp(0.0, y, v)
    assert np.array_equal(y_bar, net.vjp(0.0, y, v)[0]) and params_bar == [] and t_bar == 0.0
    assert np.array_equal(f.jvp(0.0, y, v), net.jvp(0.0, y, v))
    check_vjp_jvp(f, y, np.random.default_rng(1))


def test_a_wrong_part_is_caught_by_the_checks():
    """A known part whose VJP has a sign error: finite differences and the dot-product test both see it."""

    class WrongSign(LotkaVolterra):
        def vjp(self, t, y, v):
            z_bar, theta_bar, t_bar = super().vjp(t, y, v)
            return -z_bar, theta_bar, t_bar

    f = Hybrid(WrongSign(1.0, 0.5, 1.5, 0.75), PerCapita(MLP([2, 4, 2], rng=np.random.default_rng(2))))
    rng = np.random.default_rng(3)
    with pytest.raises(AssertionError):
        check_vjp_jvp(f, rng.uniform(0.5, 2.0, size=(3, 2)), rng)


def test_gradient_through_a_solve_of_a_hybrid():
    """odeint_vjp of Hybrid(Fixed(LV), PerCapita(MLP)): backprop through rk4 is the exact gradient of the
    computed loss, so it matches central differences of that loss; the adjoint matches it to its tolerance."""
    net = MLP([2, 6, 2], rng=np.random.default_rng(4))
    f = Hybrid(Fixed(LotkaVolterra(1.0, 0.0, 1.5, 0.0)), PerCapita(net))
    t, y0 = np.array([0.0, 0.4, 1.1, 2.0]), np.array([1.0, 0.8])
    target = np.random.default_rng(5).uniform(0.5, 2.0, size=(4, 2))
    rk4 = dict(method="rk4", step_size=0.1)

    def loss():
        return float(np.sum((ne.odeint(f, y0, t, **rk4) - target) ** 2))

    ys, pullback = ne.odeint_vjp(f, y0, t, gradient="backprop", **rk4)
    y0_bar, params_bar, _ = pullback(2.0 * (ys - target))
    for exact, approx in zip(params_bar, checks.fd_param_gradients(loss, f.params)):
        assert_close(exact, approx, "parameter")
    ys, pullback = ne.odeint_vjp(f, y0, t, gradient="adjoint", rtol=1e-10, atol=1e-12)
    adjoint_bar = pullback(2.0 * (ys - target))[1]
    assert checks.relative_error(ne.params.ravel_params(adjoint_bar), ne.params.ravel_params(params_bar)) < 1e-4


def test_the_invariant_with_one_row_of_rates_per_state():
    f = LotkaVolterra([1.0, 1.3], [0.5, 0.9], [1.5, 1.8], [0.75, 0.8])
    z = np.array([[1.0, 2.0], [0.5, 3.0]])
    rows = [LotkaVolterra(*f.theta[i]).invariant(z[i]) for i in range(2)]
    assert np.allclose(f.invariant(z), rows, rtol=1e-15, atol=0)


class _WithoutJvp:
    """An MLP that offers f and its VJP but no JVP."""

    def __init__(self, sizes, rng):
        self.net = MLP(sizes, rng=rng)
        self.params = self.net.params

    def __call__(self, t, y):
        return self.net(t, y)

    def vjp(self, t, y, v):
        return self.net.vjp(t, y, v)


@pytest.mark.parametrize("make", [
    lambda net: Hybrid(Fixed(LotkaVolterra(1.0, 0.5, 1.5, 0.75)), net),
    lambda net: PerCapita(net),
    lambda net: Fixed(net),
])
def test_a_wrapper_offers_a_jvp_only_when_its_parts_do(make):
    """Without a part's JVP the wrapper offers none, and an implicit method differences it instead."""
    rng = np.random.default_rng(3)
    with_jvp, without = make(MLP([2, 8, 2], rng=rng)), make(_WithoutJvp([2, 8, 2], np.random.default_rng(3)))
    assert callable(getattr(with_jvp, "jvp", None)) and getattr(without, "jvp", None) is None
    y0, t = np.array([1.0, 0.5]), np.linspace(0.0, 1.0, 5)
    by_jvp = ne.odeint(with_jvp, y0, t, method="kvaerno3", rtol=1e-8, atol=1e-10)
    by_differences = ne.odeint(without, y0, t, method="kvaerno3", rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(by_differences, by_jvp, rtol=1e-6, atol=1e-8)
