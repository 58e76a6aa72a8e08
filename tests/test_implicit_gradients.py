"""Derivatives through implicit steps: the implicit function theorem's VJP and JVP of one ESDIRK step
against finite differences and each other (the dot-product test), and odeint_vjp with the implicit
methods in every gradient mode."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import neuralode as ne
from neuralode import implicit, solver
from neuralode.checks import fd_gradient, fd_param_gradients, linear_field_gradient, relative_error
from neuralode.nn import MLP, ravel_params

from test_gradients import TimeField, _assert_close, _fd_all

PROPERTY = settings(deadline=None, max_examples=25)
IMPLICIT = sorted(ne.IMPLICIT_TABLEAUX)
NEWTON_TIGHT = dict(rtol=1e-11, atol=1e-13)     # stages solved to rounding, for finite differences


@st.composite
def steps(draw):
    """A random MLP field, batch, start state, step size and implicit method."""
    dim, width, batch = draw(st.integers(1, 3)), draw(st.integers(2, 10)), draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    f = MLP([dim, width, dim], activation=draw(st.sampled_from(["tanh", "softplus"])), rng=rng)
    y0 = rng.standard_normal((batch, dim))
    h = draw(st.floats(0.02, 0.3))
    return f, y0, h, draw(st.sampled_from(IMPLICIT)), rng


def _one_step(f, y0, h, method):
    """The converged stages ``K`` and the Linearisation of one step of size ``h`` from ``(0, y0)``."""
    problem = solver.prepare(f, y0, np.array([0.0, h]), method, NEWTON_TIGHT["rtol"], NEWTON_TIGHT["atol"], h, 10)
    step, tab = solver.stepper(problem), problem.tableau
    YK = np.zeros((tab.stages + 1, y0.size))
    YK[0], YK[1] = problem.y0, problem.f0
    y_new = step(problem.fun, 0.0, h, tab, YK)[0]
    return tab, YK[1:].copy(), step.used, y_new


@PROPERTY
@given(steps())
def test_step_vjp_against_finite_differences(case):
    f, y0, h, method, rng = case
    ys, pullback = ne.odeint_vjp(f, y0, [0.0, h], gradient="backprop", method=method, step_size=h, **NEWTON_TIGHT)
    w = rng.standard_normal(ys.shape)
    y0_bar, params_bar, t_bar = pullback(w)

    def loss(z=y0, times=(0.0, h)):
        return float(np.sum(w * ne.odeint(f, z, list(times), method=method, step_size=h, **NEWTON_TIGHT)))

    assert relative_error(y0_bar, fd_gradient(lambda z: loss(z=z), y0)) < 1e-6
    assert relative_error(ravel_params(params_bar), ravel_params(fd_param_gradients(loss, f.params))) < 1e-6


@PROPERTY
@given(steps())
def test_step_jvp_against_finite_differences(case):
    f, y0, h, method, rng = case
    tab, K, lin, _ = _one_step(f, y0, h, method)
    u = rng.standard_normal(y0.size)
    jvp = implicit.implicit_step_jvp(f.jvp, tab, y0.shape, 0.0, h, y0.ravel(), K, u, lin)

    def one_step(z):
        return ne.odeint(f, z.reshape(y0.shape), [0.0, h], method=method, step_size=h, **NEWTON_TIGHT)[-1].ravel()

    assert relative_error(jvp, ne.checks.fd_jvp(one_step, y0.ravel(), u)) < 1e-6


@PROPERTY
@given(steps())
def test_step_dot_product(case):
    """<v, J u> from the JVP equals <v J, u> from the VJP: the two solves are transposes of one another."""
    f, y0, h, method, rng = case
    tab, K, lin, _ = _one_step(f, y0, h, method)
    n_theta = sum(p.size for p in f.params)

    def vjp(v):
        return implicit.implicit_step_vjp(f.vjp, tab, y0.shape, 0.0, h, y0.ravel(), K, v, np.zeros_like(K),
                                          np.zeros(n_theta), lin)[0]

    lhs, rhs = ne.checks.dot_product_test(
        lambda u: implicit.implicit_step_jvp(f.jvp, tab, y0.shape, 0.0, h, y0.ravel(), K, u, lin), vjp,
        (y0.size,), (y0.size,), rng)
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))


@PROPERTY
@given(steps(), st.floats(2.0, 50.0))
def test_transposed_stage_solve_falls_back_when_the_factors_are_far_off(case, hg):
    """With factors of I - hg J~ for a J~ unrelated to the stage's Jacobian the refinement cannot
    converge; the solve then forms the stage's Jacobian and is exact all the same."""
    f, y0, h, method, rng = case
    n, Y = y0.size, y0 + 0.1 * rng.standard_normal(y0.shape)
    wrong = implicit.Linearisation.factor(0.0, 5.0 * rng.standard_normal((n, n)), hg)
    k_bar = rng.standard_normal(n)
    (Y_bar, _, _), used = implicit.stage_cotangent(f.vjp, 0.0, Y, k_bar, wrong)
    J = implicit.dynamics_jacobian(f, y0.shape)(0.0, Y.ravel())
    w = np.linalg.solve((np.eye(n) - hg * J).T, k_bar)
    assert np.allclose(np.ravel(Y_bar), w @ J, rtol=1e-9, atol=1e-9 * np.abs(w @ J).max())
    x = implicit.stage_tangent(f.jvp, 0.0, Y, k_bar, wrong)
    assert np.allclose(x, np.linalg.solve(np.eye(n) - hg * J, k_bar), rtol=1e-9, atol=1e-9 * np.abs(x).max())


def test_one_transposed_solve_per_stage_when_the_jacobian_is_exact():
    """On a linear field the step's factors are exact: each implicit stage costs one VJP."""
    A = np.array([[-1.0, 0.5], [0.0, -300.0]])
    f = MLP([2, 2], activation="identity")
    f.layers[0].W[...], f.layers[0].b[...] = A, 0.0
    stages_with_a_cotangent = {"implicit_euler": 1, "kvaerno3": 4, "kvaerno5": 7}   # backward Euler's k_1 has none
    for method in IMPLICIT:
        _, pullback = ne.odeint_vjp(f, np.ones(2), [0.0, 1.0], gradient="backprop", method=method, step_size=0.25)
        pullback(np.ones((2, 2)))
        assert pullback.nfe_backward == 4 * stages_with_a_cotangent[method], method


@pytest.mark.parametrize("method,step_size", [("implicit_euler", 0.05), ("kvaerno3", 0.1), ("kvaerno5", 0.2),
                                              ("kvaerno3", None), ("kvaerno5", None)])
@pytest.mark.parametrize("checkpoints", [None, 1, 3])
def test_checkpointing_repeats_implicit_steps_exactly(method, step_size, checkpoints):
    """The Jacobian an implicit step inherits is part of each checkpoint, so the recomputed steps are
    the same numbers and the gradient is backprop's to rounding."""
    rng = np.random.default_rng(0)
    f, y0, t = TimeField(rng), rng.standard_normal((3, 2)), np.array([0.0, 0.3, 0.31, 0.9, 1.1])
    weights = rng.standard_normal((len(t), 3, 2))
    options = dict(method=method, step_size=step_size, rtol=1e-6, atol=1e-8)
    ys_b, pb_b = ne.odeint_vjp(f, y0, t, gradient="backprop", **options)
    ys_c, pb_c = ne.odeint_vjp(f, y0, t, gradient="checkpoint", checkpoints=checkpoints, **options)
    assert np.array_equal(ys_b, ys_c)
    (y_b, p_b, t_b), (y_c, p_c, t_c) = pb_b(weights), pb_c(weights)
    np.testing.assert_allclose(y_c, y_b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ravel_params(p_c), ravel_params(p_b), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(t_c, t_b, rtol=1e-12, atol=1e-14)
    assert 0 < pb_c.nfe_recomputed <= pb_b.nfe_forward


@pytest.mark.parametrize("method", ["implicit_euler", "kvaerno3"])
def test_backprop_is_the_exact_gradient_of_the_fixed_step_solver(method):
    rng = np.random.default_rng(1)
    f, y0, t = TimeField(rng), rng.standard_normal((3, 2)), np.array([0.0, 0.43, 0.57, 1.26])
    weights = rng.standard_normal((len(t), 3, 2))
    options = dict(method=method, step_size=0.1, **NEWTON_TIGHT)
    _, pullback = ne.odeint_vjp(f, y0, t, gradient="backprop", **options)
    _assert_close(pullback(weights), _fd_all(f, y0, t, weights, **options), 1e-6)


@PROPERTY
@given(st.integers(0, 2**32 - 1), st.sampled_from(["kvaerno3", "kvaerno5"]),
       st.sampled_from(["adjoint", "backprop", "checkpoint", "interpolated", "interpolated with checkpoints"]))
def test_every_mode_matches_a_high_accuracy_gradient(seed, method, gradient):
    rng = np.random.default_rng(seed)
    f, y0, t = MLP([2, 6, 2], rng=rng), rng.standard_normal((2, 2)), np.array([0.0, 0.5, 1.2])
    weights = rng.standard_normal((len(t), 2, 2))
    options = {"checkpoints": 2} if gradient.endswith("checkpoints") else {}
    # Tight tolerances: on such smooth fields kvaerno5 takes a handful of long steps, and the outputs
    # between step ends come from its cubic Hermite dense output, of order 3 only.
    _, pullback = ne.odeint_vjp(f, y0, t, gradient=gradient.split()[0], method=method, rtol=1e-10, atol=1e-12,
                                **options)
    reference = _fd_all(f, y0, t, weights, method="dopri5", rtol=1e-12, atol=1e-12)
    _assert_close(pullback(weights), reference, 1e-4)


@pytest.mark.parametrize("gradient, options", [("adjoint", {}), ("backprop", {}), ("checkpoint", {}),
                                               ("interpolated", {}), ("interpolated", {"checkpoints": 3})])
def test_every_mode_on_a_stiff_linear_system(gradient, options):
    """dz/dt = A z with eigenvalues -1, -1e3, -1e5: the exact gradient of c . z(1) against W = A."""
    A = np.diag([-1.0, -1e3, -1e5])
    f = MLP([3, 3], activation="identity")
    f.layers[0].W[...], f.layers[0].b[...] = A, 0.0
    z0, c = np.ones(3), np.array([1.0, 2.0, -1.0])
    ys_bar = np.zeros((2, 3))
    ys_bar[-1] = c
    _, pullback = ne.odeint_vjp(f, z0, [0.0, 1.0], gradient=gradient, method="kvaerno3", rtol=1e-6, atol=1e-9,
                                **options)
    _, params_bar, _ = pullback(ys_bar)
    assert relative_error(ravel_params(params_bar), linear_field_gradient(A, z0, c)) < 1e-3
    assert pullback.nfe_forward < 20_000        # an explicit method would need about 1e5 / 3.3 steps of 6 stages


@pytest.mark.parametrize("gradient, coupled", [("adjoint", 4), ("interpolated", 2)])
def test_the_backward_solve_differences_only_what_feeds_back(gradient, coupled, monkeypatch):
    """The augmented state holds every parameter's cotangent (162 numbers here), but the Jacobian
    Newton uses covers only z and a (the adjoint) or a (the interpolated adjoint): nothing depends on
    a_theta and a_t, so their columns are never differenced."""
    columns = []

    def spy(fun, t, y, m=None):
        columns.append(m)
        return original(fun, t, y, m)

    original = implicit.difference_jacobian
    monkeypatch.setattr(implicit, "difference_jacobian", spy)
    rng = np.random.default_rng(3)
    f = ne.checks.CountingDynamics(MLP([2, 32, 2], rng=rng))
    ys, pullback = ne.odeint_vjp(f, rng.standard_normal(2), [0.0, 1.0], gradient=gradient, method="kvaerno3",
                                 rtol=1e-6, atol=1e-8)
    f.reset()
    pullback(np.ones_like(ys))
    assert sum(p.size for p in f.params) == 162 and columns and set(columns) == {coupled}
    assert pullback.nfe_backward == f.nfe_vjp
