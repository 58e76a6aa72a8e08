"""Events: odeint_event against closed forms, the root finder, directions, and the event gradients of
odeint_event_vjp against closed forms and finite differences in every gradient mode."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import neuralode as ne
from neuralode.checks import CountingDynamics, dot_product_test, fd_gradient, relative_error
from neuralode.events import ImplicitEventTime, _fd_partials, integrate_event, locate_root
from neuralode.nn import MLP, ravel_params

PROPERTY = settings(deadline=None, max_examples=25)
MODES = ["backprop", "adjoint", "checkpoint", "interpolated"]


class Ball:
    """A ball in free fall: ``z = (height, velocity)``, ``dz/dt = (v, -g)``; the parameter is ``g``."""

    def __init__(self, g=9.81):
        self.params = [np.array([g])]

    def __call__(self, t, z):
        return np.array([z[1], -self.params[0][0]])

    def vjp(self, t, z, v):
        return np.array([0.0, v[0]]), [np.array([-v[1]])], 0.0


def height(t, z):
    return z[0]


def landing(x0, v0, g):
    """The closed form: the later root of ``x0 + v0 t - g t^2 / 2``, and its derivatives."""
    s = math.sqrt(v0**2 + 2 * g * x0)
    t = (v0 + s) / g
    return t, {"x0": 1 / s, "v0": (1 + v0 / s) / g, "g": (x0 / s - t) / g}, s


class WavyFloor:
    """The event function ``g(t, z) = z[0] - c0 - c1 sin(t)`` under the protocol, parameters ``[c]``."""

    def __init__(self, c0=0.0, c1=0.3):
        self.params = [np.array([c0, c1])]

    def __call__(self, t, z):
        c = self.params[0]
        return z[0] - c[0] - c[1] * math.sin(t)

    def vjp(self, t, z, v):
        y_bar = np.zeros_like(z)
        y_bar[0] = v
        return y_bar, [-v * np.array([1.0, math.sin(t)])], -v * self.params[0][1] * math.cos(t)


# --------------------------------------------------------------------------------------------------
# Finding the event
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method,step_size", [("dopri5", None), ("bosh3", None), ("rk4", 0.1), ("midpoint", 0.07),
                                              ("heun", 0.2), ("dopri5", 0.3)])
@pytest.mark.parametrize("x0,v0", [(10.0, 5.0), (2.0, -3.0), (0.5, 20.0)])
def test_ball_lands_at_the_closed_form_time(method, step_size, x0, v0):
    # every method of order >= 2 is exact for a parabola, and so are the dense output and Hermite
    t_exact, _, s = landing(x0, v0, 9.81)
    t, z = ne.odeint_event(Ball(), np.array([x0, v0]), 0.0, event_fn=height, method=method, step_size=step_size)
    assert abs(t - t_exact) <= 8 * np.spacing(t_exact), (t, t_exact)
    assert abs(z[0]) <= 1e-13 and abs(z[1] + s) <= 1e-12 * s
    assert z[0] <= 0.0                     # on the far side of the crossing, or exactly on it


def test_ball_thrown_from_the_ground_lands_when_it_comes_back():
    # g(t0, y0) = 0 is where the search starts, not an event
    t, z = ne.odeint_event(Ball(), np.array([0.0, 4.0]), 1.5, event_fn=height)
    assert abs(t - (1.5 + 2 * 4.0 / 9.81)) <= 1e-14 and abs(z[1] + 4.0) <= 1e-13


def rotation(a=0.1, w=1.3):
    """``dz/dt = A z`` with ``A = [[-a, w], [-w, -a]]`` as an identity MLP: a damped rotation."""
    f = MLP([2, 2], activation="identity")
    f.params[0][...] = [[-a, w], [-w, -a]]
    f.params[1][...] = 0.0
    return f


def test_damped_rotation_crosses_at_the_closed_form_time():
    # z(t) = exp(-a t) (cos wt, -sin wt) from (1, 0): z_0 first vanishes at t = pi / (2 w)
    a, w = 0.1, 1.3
    t, z = ne.odeint_event(rotation(a, w), np.array([1.0, 0.0]), 0.0, event_fn=height, rtol=1e-12, atol=1e-14)
    t_exact = math.pi / (2 * w)
    assert abs(t - t_exact) < 1e-11
    np.testing.assert_allclose(z, [0.0, -math.exp(-a * t_exact)], atol=1e-11, rtol=0)


def oscillator(t, z):
    return np.array([z[1], -z[0]])


@pytest.mark.parametrize("direction,level,expected", [
    (1, 0.5, math.pi / 6), (-1, 0.5, 5 * math.pi / 6), (0, 0.5, math.pi / 6),
    (1, -0.5, 2 * math.pi - math.pi / 6), (-1, -0.5, math.pi + math.pi / 6), (0, -0.5, math.pi + math.pi / 6),
    (0, 0.0, math.pi), (-1, 0.0, math.pi), (1, 0.0, 2 * math.pi),      # sin t starts at 0: not an event
])
def test_direction_selects_rising_or_falling_crossings(direction, level, expected):
    t, z = ne.odeint_event(oscillator, np.array([0.0, 1.0]), 0.0, event_fn=lambda t, z: z[0] - level,
                           direction=direction, rtol=1e-12, atol=1e-14)
    assert abs(t - expected) < 1e-10, (t, expected)
    assert abs(z[0] - level) < 1e-10


def test_a_restart_from_the_event_does_not_find_it_again():
    t1, z1 = ne.odeint_event(oscillator, np.array([0.0, 1.0]), 0.0, event_fn=height, rtol=1e-10)
    t2, _ = ne.odeint_event(oscillator, z1, t1, event_fn=height, rtol=1e-10)
    assert abs(t1 - math.pi) < 1e-8 and abs(t2 - 2 * math.pi) < 1e-8


def test_the_root_is_located_to_neighbouring_floats_on_the_dense_output():
    sol = integrate_event(oscillator, np.array([0.3, 1.0]), 0.0, event_fn=lambda t, z: z[0] - 0.9)
    g = lambda t: sol.interpolate(t)[0] - 0.9                   # noqa: E731
    before = np.nextafter(sol.t_event, -np.inf)
    assert g(sol.t_event) >= 0.0 > g(before)
    np.testing.assert_array_equal(sol.interpolate(sol.t_event), sol.y_event)


def test_counts_are_the_calls_made():
    f, calls = CountingDynamics(Ball()), []

    def g(t, z):
        calls.append(t)
        return z[0]

    sol = integrate_event(f, np.array([10.0, 5.0]), 0.0, event_fn=g)
    assert sol.nfe == f.nfe and sol.n_event == len(calls)
    assert sol.n_steps == len(sol.step_times) - 1 and sol.step_times[-2] < sol.t_event <= sol.step_times[-1]
    assert sol.g0 == 10.0


@pytest.mark.parametrize("method,step_size", [("rk4", 0.1), ("euler", 0.05), ("dopri5", 0.3), ("bosh3", 0.2)])
def test_fixed_step_counts_are_the_calls_made(method, step_size):
    f = CountingDynamics(Ball())
    sol = integrate_event(f, np.array([10.0, 5.0]), 0.0, event_fn=height, method=method, step_size=step_size)
    assert sol.nfe == f.nfe and sol.n_steps == len(sol.step_times) - 1
    np.testing.assert_allclose(np.diff(sol.step_times), step_size, rtol=1e-12)


def test_a_step_size_below_the_spacing_of_t_is_refused():
    with pytest.raises(ne.StepSizeUnderflowError, match="step_size = 1e-10 is below"):
        ne.odeint_event(Ball(), np.array([10.0, 5.0]), 1e8, event_fn=height, method="rk4", step_size=1e-10)


@pytest.mark.parametrize("method,order", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_fixed_step_event_times_converge_at_the_methods_order(method, order):
    t_exact = math.pi / 6                                   # sin t = 1/2
    errors = [abs(ne.odeint_event(oscillator, np.array([0.0, 1.0]), 0.0, event_fn=lambda t, z: z[0] - 0.5,
                                  method=method, step_size=h)[0] - t_exact) for h in (0.04, 0.02)]
    assert 0.7 * order < math.log2(errors[0] / errors[1]) < 1.5 * order, errors


@st.composite
def brackets(draw):
    """A polynomial with a sign change on [a, b]: roots at r (odd multiplicity) and elsewhere."""
    a = draw(st.floats(-1e3, 1e3))
    width = draw(st.floats(1e-9, 1e3))
    r = a + width * draw(st.floats(0.0, 1.0))
    multiplicity = draw(st.sampled_from([1, 1, 1, 3, 5]))
    scale = draw(st.floats(1e-8, 1e8)) * draw(st.sampled_from([-1.0, 1.0]))
    bend = draw(st.floats(-10.0, 10.0)) / width
    return a, a + width, lambda t: scale * (t - r) ** multiplicity * (1.0 + (bend * (t - r)) ** 2)


@given(brackets())
@PROPERTY
def test_locate_root_ends_at_a_sign_change_between_neighbouring_floats(case):
    a, b, G = case
    ga, gb = G(a), G(b)
    assume(ga != 0 and (gb == 0 or (ga > 0) != (gb > 0)))
    calls = []
    t, g = locate_root(lambda s: calls.append(s) or G(s), a, ga, b, gb)
    assert a < t <= b and g == G(t) and (g == 0 or (g > 0) == (gb > 0))
    if g != 0:
        before = np.nextafter(t, -np.inf)
        assert before == a or (G(before) > 0) == (ga > 0) or G(before) == 0
    assert len(calls) <= 5 * 2100          # a halving at least every fifth call; 2100 empty any bracket


def test_locate_root_is_quick_on_smooth_functions():
    for G, a, b in [(math.sin, 2.0, 4.0), (lambda t: t * t - 2.0, 1.0, 2.0), (lambda t: math.exp(t) - 1e-3, -20, 5)]:
        calls = []
        locate_root(lambda s: calls.append(s) or G(s), a, G(a), b, G(b))
        assert len(calls) <= 30, (len(calls), a, b)


# --------------------------------------------------------------------------------------------------
# The gradient of when
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gradient", MODES)
@pytest.mark.parametrize("x0,v0", [(10.0, 5.0), (2.0, -3.0)])
def test_landing_time_gradient_matches_the_closed_form(gradient, x0, v0):
    g = 9.81
    t_exact, d, s = landing(x0, v0, g)
    (t, z), pullback = ne.odeint_event_vjp(Ball(g), np.array([x0, v0]), 0.0, event_fn=height, gradient=gradient)
    y0_bar, (g_bar,), t0_bar = pullback(1.0, np.zeros(2))
    np.testing.assert_allclose(y0_bar, [d["x0"], d["v0"]], rtol=1e-12, atol=0)
    np.testing.assert_allclose(g_bar, [d["g"]], rtol=1e-12, atol=0)
    assert abs(t0_bar - 1.0) < 1e-12
    # the landing speed -v* = s = sqrt(v0^2 + 2 g x0): d s / d x0 = g / s, d s / d v0 = v0 / s, d s/ d g = x0 / s
    y0_bar, (g_bar,), t0_bar = pullback(0.0, np.array([0.0, -1.0]))
    np.testing.assert_allclose(np.r_[y0_bar, g_bar], [g / s, v0 / s, x0 / s], rtol=1e-12, atol=0)
    assert abs(t0_bar) < 1e-12
    assert pullback.derivatives == "finite differences" and pullback.grazing < 1e-6


@pytest.mark.parametrize("gradient", MODES)
def test_damped_rotation_gradients_match_the_closed_form(gradient):
    # t* = pi / (2 w) whatever a and the radius: dt*/dw = -pi / (2 w^2), dt*/da = 0, dt*/dz0 = (0, 1/w)
    a, w = 0.1, 1.3
    f = rotation(a, w)
    (t, z), pullback = ne.odeint_event_vjp(f, np.array([1.0, 0.0]), 0.0, event_fn=height, gradient=gradient,
                                           rtol=1e-11, atol=1e-13)
    y0_bar, (W_bar, b_bar), _ = pullback(1.0, np.zeros(2))
    assert np.allclose(y0_bar, [0.0, 1 / w], atol=1e-8, rtol=0)
    assert abs((W_bar[0, 1] - W_bar[1, 0]) + math.pi / (2 * w**2)) < 1e-8
    assert abs(W_bar[0, 0] + W_bar[1, 1]) < 1e-8


def fd_event(f, y0, t0, loss, event_fn=height, **options):
    """Central differences of ``loss(t_event, y_event)`` in y0, every parameter of f and of event_fn, and t0."""
    def at(y=y0, s=t0):
        return loss(*ne.odeint_event(f, y, s, event_fn=event_fn, **options))

    y0_fd = fd_gradient(lambda y: at(y=y), y0)
    t0_fd = fd_gradient(lambda s: at(s=s[0]), np.array([t0]))[0]
    params = list(f.params) + list(getattr(event_fn, "params", []))
    flat = ravel_params(params)

    def at_params(theta):
        saved = [p.copy() for p in params]
        start = 0
        for p in params:
            p[...] = theta[start:start + p.size].reshape(p.shape)
            start += p.size
        try:
            return at()
        finally:
            for p, q in zip(params, saved):
                p[...] = q

    return y0_fd, fd_gradient(at_params, flat), t0_fd


@pytest.mark.parametrize("gradient", MODES)
def test_mlp_field_and_parametrised_event_match_finite_differences(gradient):
    rng = np.random.default_rng(1)
    f = MLP([2, 6, 2], rng=rng)
    floor = WavyFloor(c0=0.0, c1=0.2)
    y0, t0 = np.array([0.3, 0.4]), 0.2
    w = rng.standard_normal(2)
    loss = lambda t, y: 1.7 * t + float(w @ y)           # noqa: E731
    solver = dict(rtol=1e-11, atol=1e-12, t_max=20.0)
    (t, y), pullback = ne.odeint_event_vjp(f, y0, t0, event_fn=floor, gradient=gradient, **solver)
    y0_bar, params_bar, t0_bar, floor_bar = pullback(1.7, w)
    y0_fd, params_fd, t0_fd = fd_event(f, y0, t0, loss, event_fn=floor, **solver)
    assert pullback.derivatives == "vjp" and t > t0 + 0.1
    assert relative_error(y0_bar, y0_fd) < 1e-6
    assert relative_error(ravel_params(params_bar + floor_bar), params_fd) < 1e-6
    assert abs(t0_bar - t0_fd) < 1e-6 * max(1.0, abs(t0_fd))


@pytest.mark.parametrize("method,step_size,tol", [("rk4", 0.01, 1e-6), ("bosh3", None, 1e-5), ("dopri5", 0.02, 1e-6)])
def test_other_methods_give_the_gradient_to_their_accuracy(method, step_size, tol):
    rng = np.random.default_rng(2)
    f, y0 = MLP([2, 5, 2], rng=rng), np.array([0.2, -0.1])
    event = lambda t, y: y[0] + 0.5 * y[1] - 0.6                # noqa: E731
    loss = lambda t, y: t + float(y.sum())                      # noqa: E731
    (_, _), pullback = ne.odeint_event_vjp(f, y0, 0.0, event_fn=event, method=method, step_size=step_size,
                                           t_max=30.0, rtol=1e-9, atol=1e-10)
    y0_bar, params_bar, _ = pullback(1.0, np.ones(2))
    y0_fd, params_fd, _ = fd_event(f, y0, 0.0, loss, event_fn=event, method="dopri5", rtol=1e-12, atol=1e-13, t_max=30.0)
    assert relative_error(y0_bar, y0_fd) < tol and relative_error(ravel_params(params_bar), params_fd) < tol


def bounces(field, e, z0, n, gradient="backprop"):
    """Times of n bounces of a ball (restitution e) and the pullback of sum(weights * times)."""
    z, t, tape, times = z0, 0.0, [], []
    for _ in range(n):
        (t, z_minus), pullback = ne.odeint_event_vjp(field, z, t, event_fn=height, direction=-1, gradient=gradient)
        tape.append((pullback, z_minus))
        times.append(t)
        z = np.array([z_minus[0], -e * z_minus[1]])

    def backward(weights):
        t_bar, z_bar, g_bar, e_bar = 0.0, np.zeros(2), 0.0, 0.0
        for k in reversed(range(n)):
            pullback, z_minus = tape[k]
            t_bar += weights[k]
            e_bar += -z_minus[1] * z_bar[1]
            z_minus_bar = np.array([z_bar[0], -e * z_bar[1]])
            z_bar, (g_k,), t_bar = pullback(t_bar, z_minus_bar)
            g_bar += g_k[0]
        return z_bar, g_bar, e_bar

    return np.array(times), backward


@pytest.mark.parametrize("gradient", ["backprop", "adjoint"])
def test_gradients_through_a_chain_of_bounces_match_the_closed_form(gradient):
    x0, v0, g, e, n = 3.0, 2.0, 9.81, 0.8, 5
    times, backward = bounces(Ball(g), e, np.array([x0, v0]), n, gradient)
    # t_k = t_1 + (2 s / g) (e + e^2 + ... + e^(k-1)) with s the first landing speed
    t1, d, s = landing(x0, v0, g)
    series = np.array([sum(e**j for j in range(1, k)) for k in range(1, n + 1)])
    np.testing.assert_allclose(times, t1 + 2 * s / g * series, rtol=1e-13, atol=0)
    weights = np.random.default_rng(0).standard_normal(n)
    z0_bar, g_bar, e_bar = backward(weights)
    d_series = np.array([sum(j * e ** (j - 1) for j in range(1, k)) for k in range(1, n + 1)])
    ds = {"x0": g / s, "v0": v0 / s, "g": x0 / s}
    expect = {name: weights @ (d[name] + 2 * series * (ds[name] / g - (s / g**2 if name == "g" else 0.0)))
              for name in ("x0", "v0", "g")}
    np.testing.assert_allclose([*z0_bar, g_bar], [expect["x0"], expect["v0"], expect["g"]], rtol=1e-10)
    assert abs(e_bar - weights @ (2 * s / g * d_series)) < 1e-10 * abs(e_bar)


# --------------------------------------------------------------------------------------------------
# Property tests of the hand-written derivatives
# --------------------------------------------------------------------------------------------------


@st.composite
def layers(draw):
    n = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shapes = draw(st.lists(st.sampled_from([(1,), (3,), (2, 2)]), max_size=3))
    g_z, f_star = rng.standard_normal(n), rng.standard_normal(n)
    g_t = draw(st.floats(-2.0, 2.0))
    if abs(g_z @ f_star + g_t) < 0.1:
        g_t += 1.0
    return ImplicitEventTime(g_z, g_t, [rng.standard_normal(s) for s in shapes], f_star), n, shapes, rng


@given(layers())
@PROPERTY
def test_implicit_event_time_passes_the_dot_product_test(case):
    layer, n, shapes, rng = case
    sizes = [n] + [int(np.prod(s)) for s in shapes]

    def split(x):
        parts = np.split(x, np.cumsum(sizes)[:-1])
        return parts[0], [p.reshape(s) for p, s in zip(parts[1:], shapes)]

    def jvp(u):
        dt, dz = layer.jvp(*split(u))
        return np.r_[dt, dz]

    def vjp(v):
        z_bar, phi_bar = layer.vjp(v[0], v[1:])
        return np.concatenate([z_bar] + [p.ravel() for p in phi_bar])

    lhs, rhs = dot_product_test(jvp, vjp, (sum(sizes),), (n + 1,), rng)
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))


@given(layers())
@PROPERTY
def test_implicit_event_time_matches_the_root_of_the_linearised_event(case):
    # g(t, z(t), phi) linear in everything: g = g_z . (z + dz + f* (t - t*)) + g_t (t - t*) + g_phi . dphi
    layer, n, shapes, rng = case
    dz, dphi, eps = rng.standard_normal(n), [rng.standard_normal(s) for s in shapes], 1e-3
    shift = eps * (layer.g_z @ dz + sum(np.sum(a * b) for a, b in zip(layer.g_phi, dphi)))
    dt = -shift / layer.g_dot                                   # the moved root, solved exactly
    jvp_dt, jvp_dz = layer.jvp(eps * dz, [eps * d for d in dphi])
    assert abs(jvp_dt - dt) <= 1e-12 * max(1.0, abs(dt))
    np.testing.assert_allclose(jvp_dz, eps * dz + layer.f_star * dt, rtol=1e-12, atol=1e-15)


@st.composite
def smooth_event_functions(draw):
    n = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p, Q, q = rng.standard_normal(n), rng.standard_normal((n, n)), draw(st.floats(-2.0, 2.0))
    y, t = rng.uniform(-3.0, 3.0, n), draw(st.floats(-5.0, 5.0))
    g = lambda s, z: float(p @ z + 0.1 * z @ Q @ z + math.sin(q * s) + s * z[0])   # noqa: E731
    exact = (p + 0.1 * (Q + Q.T) @ y + s_unit(n) * t, q * math.cos(q * t) + y[0])
    return g, t, y, exact


def s_unit(n):
    e = np.zeros(n)
    e[0] = 1.0
    return e


@given(smooth_event_functions())
@PROPERTY
def test_finite_differences_of_a_plain_event_function_are_accurate(case):
    g, t, y, (g_y, g_t) = case
    fd_y, fd_t = _fd_partials(g, t, y)
    scale = max(1.0, np.abs(g_y).max(), abs(g_t))
    assert np.abs(fd_y - g_y).max() < 1e-8 * scale and abs(fd_t - g_t) < 1e-8 * scale


@st.composite
def drifting_systems(draw):
    """dz/dt = b + A z with a small A, an event plane p . z = c crossed head-on near t = 1."""
    n = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p = rng.standard_normal(n)
    p /= np.linalg.norm(p)
    b = p * draw(st.floats(1.0, 3.0)) + 0.3 * rng.standard_normal(n)
    f = MLP([n, n], activation="identity", rng=rng)
    f.params[0][...] = 0.2 * rng.standard_normal((n, n))
    f.params[1][...] = b
    z0 = 0.5 * rng.standard_normal(n)
    c = float(p @ z0) + draw(st.floats(0.3, 1.5)) * float(p @ b)
    return f, z0, draw(st.floats(-1.0, 1.0)), (lambda t, z: float(p @ z) - c), rng


@given(drifting_systems(), st.sampled_from(["backprop", "adjoint"]))
@settings(deadline=None, max_examples=12)
def test_event_gradients_of_random_systems_match_finite_differences(case, gradient):
    f, z0, t0, event, rng = case
    w, k = rng.standard_normal(z0.size), float(rng.standard_normal())
    solver = dict(rtol=1e-11, atol=1e-12, t_max=t0 + 20.0)
    try:
        (_, _), pullback = ne.odeint_event_vjp(f, z0, t0, event_fn=event, gradient=gradient, **solver)
    except ne.EventNotFoundError:        # A turned the drift away from the plane: no event to differentiate
        assume(False)
    y0_bar, params_bar, t0_bar = pullback(k, w)
    y0_fd, params_fd, t0_fd = fd_event(f, z0, t0, lambda t, y: k * t + float(w @ y), event_fn=event, **solver)
    assert relative_error(y0_bar, y0_fd) < 1e-6
    assert relative_error(ravel_params(params_bar), params_fd) < 1e-6
    assert abs(t0_bar - t0_fd) < 1e-6 * max(1.0, abs(t0_fd))


# --------------------------------------------------------------------------------------------------
# Grazing events, and events that never come
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth,grazing", [(1e-2, False), (1e-4, False), (1e-12, True)])
def test_a_shallow_crossing_of_the_apex_is_refused_only_when_the_tolerance_could_remove_it(depth, grazing):
    # thrown from 0 at v0: apex v0^2 / (2 g) at v0 / g; the level H = apex (1 - depth) is crossed on the
    # way up at speed sqrt(2 g apex depth); t_max = the apex time makes the last step end above H
    v0, g = 10.0, 9.81
    apex = v0**2 / (2 * g)
    level = apex * (1 - depth)
    (t, z), pullback = ne.odeint_event_vjp(Ball(g), np.array([0.0, v0]), 0.0, event_fn=lambda t, z: z[0] - level,
                                           t_max=v0 / g)
    speed = math.sqrt(2 * g * apex * depth)
    assert abs(z[1] - speed) < 1e-6 * v0
    if grazing:
        with pytest.raises(ne.GrazingEventError, match="grazing"):
            pullback(1.0, np.zeros(2))
        assert pullback.grazing >= 1.0
    else:
        y0_bar, _, _ = pullback(1.0, np.zeros(2))
        # t* = (v0 - speed) / g: dt*/dx0 = -1/speed (raising the start lowers the level to climb)
        assert abs(y0_bar[0] + 1 / speed) < 1e-6 / speed
        # the ratio is the event function's uncertainty atol + rtol |H| over the depth of the crossing
        assert abs(pullback.grazing / ((1e-9 + 1e-7 * level) / (apex * depth)) - 1) < 1e-3


def test_a_crossing_with_zero_slope_is_refused():
    # z = (t - 1)^3 crosses 0 at t = 1 where its slope vanishes: dt*/dz0 is infinite
    class Cubic:
        params = []

        def __call__(self, t, z):
            return np.array([3 * (t - 1) ** 2])

        def vjp(self, t, z, v):
            return np.zeros(1), [], float(6 * (t - 1) * v[0])

    (t, z), pullback = ne.odeint_event_vjp(Cubic(), np.array([-1.0]), 0.0, event_fn=height, rtol=1e-10)
    assert abs(t - 1.0) < 1e-4
    with pytest.raises(ne.GrazingEventError, match="grazing"):
        pullback(1.0, np.zeros(1))


def test_an_event_that_depends_on_time_only_has_a_fixed_time():
    # g(t, z) = t - 2: the state cannot move the event; its derivative is the solve's own at t = 2
    (t, z), pullback = ne.odeint_event_vjp(Ball(), np.array([30.0, 0.0]), 0.0, event_fn=lambda t, z: t - 2.0)
    y0_bar, (g_bar,), t0_bar = pullback(1.0, np.array([1.0, 0.0]))      # L = t* + x(t*)
    assert t == 2.0 and pullback.grazing == 0.0
    np.testing.assert_allclose(y0_bar, [1.0, 2.0], rtol=1e-12)    # x(2) = x0 + 2 v0 - 2 g
    assert abs(g_bar[0] + 2.0) < 1e-12 and abs(t0_bar - 2 * 9.81) < 1e-12     # d x(2) / d t0 = g (2 - t0)


def test_an_event_function_that_never_crosses_is_a_clear_error():
    with pytest.raises(ne.EventNotFoundError, match=r"did not cross zero before t_max = 5"):
        ne.odeint_event(Ball(), np.array([1.0, 0.0]), 0.0, event_fn=lambda t, z: z[0] + 1e3, t_max=5.0)
    with pytest.raises(ne.EventNotFoundError, match=r"rising \(direction=\+1\) within max_num_steps"):
        ne.odeint_event(oscillator, np.array([0.0, 1.0]), 0.0, event_fn=lambda t, z: z[0] - 2.0, direction=1,
                        max_num_steps=200)
    with pytest.raises(ne.EventNotFoundError, match="It was 0 at t0"):
        ne.odeint_event(oscillator, np.array([1.0, 0.0]), 0.0, event_fn=lambda t, z: 0.0, t_max=3.0)
    assert issubclass(ne.EventNotFoundError, RuntimeError)


def test_a_crossing_inside_one_step_and_back_is_not_seen():
    # the documented limit: dopri5 is exact for the ball and steps past a tiny hump of g in one step
    level = 10.0 + 5.0**2 / (2 * 9.81) - 1e-6
    with pytest.raises(ne.EventNotFoundError):
        ne.odeint_event(Ball(), np.array([10.0, 5.0]), 0.0, event_fn=lambda t, z: z[0] - level, t_max=3.0)
