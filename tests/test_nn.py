"""The MLP's hand-written derivatives, checked on random networks: its VJP against finite differences
(input, every parameter, time), its JVP and VJP against each other by the dot-product test, and its
refusals of bad sizes, activations and inputs."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from neuralode import checks
from neuralode.nn import ACTIVATIONS, MLP, Linear, ScaledField, ravel_params, unravel_params

PROPERTY = settings(deadline=None, max_examples=60)


@st.composite
def mlp_cases(draw, activations=("tanh", "softplus", "sigmoid", "relu", "identity")):
    """A random MLP (1-6 layers, widths 1-8), an input of batch shape (), (1,) or (b,), and a seed."""
    sizes = draw(st.lists(st.integers(1, 8), min_size=2, max_size=7))
    activation = draw(st.sampled_from(activations))
    batch = draw(st.sampled_from([(), (1,), (3,), (5,)]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    f = MLP(sizes, activation, rng=rng)
    y = rng.uniform(-2.0, 2.0, size=batch + (sizes[0],))
    if activation == "relu":
        assume(min_preactivation(f, y) > 1e-3)   # finite differences must not straddle a kink
    return f, y, rng


def min_preactivation(f, y):
    """The smallest |z| over the hidden layers' pre-activations (where relu has its kink)."""
    h, smallest = np.atleast_2d(y), np.inf
    sigma = ACTIVATIONS[f.activation][0]
    for layer in f.layers[:-1]:
        z = layer.forward(h)
        smallest, h = min(smallest, np.abs(z).min()), sigma(z)
    return smallest


def assert_close(exact, approx, what):
    """Hand-written against central differences, whose own error is about 1e-9 here."""
    assert np.shape(exact) == np.shape(approx), what
    assert np.allclose(exact, approx, rtol=1e-5, atol=1e-7), f"{what}: {exact} vs {approx}"


@PROPERTY
@given(mlp_cases())
def test_vjp_against_finite_differences(case):
    f, y, rng = case
    t = 0.3
    v = rng.standard_normal(np.shape(f(t, y)))
    y_bar, params_bar, t_bar = f.vjp(t, y, v)
    assert_close(y_bar, checks.fd_vjp(lambda z: f(t, z), y, v), "input")
    fd_params = checks.fd_param_gradients(lambda: float(np.sum(v * f(t, y))), f.params)
    assert len(params_bar) == len(f.params) == 2 * (len(f.sizes) - 1)
    for i, (exact, approx) in enumerate(zip(params_bar, fd_params)):
        assert_close(exact, approx, f"parameter {i}")
    assert t_bar == 0.0
    assert checks.fd_gradient(lambda s: float(np.sum(v * f(s[0], y))), np.array([t]))[0] == 0.0


@PROPERTY
@given(mlp_cases())
def test_jvp_against_finite_differences(case):
    f, y, rng = case
    u = rng.standard_normal(y.shape)
    assert_close(f.jvp(0.0, y, u), checks.fd_jvp(lambda z: f(0.0, z), y, u), "jvp")


@PROPERTY
@given(mlp_cases())
def test_dot_product_test_ties_the_vjp_to_the_jvp(case):
    f, y, rng = case
    out_shape = np.shape(f(0.0, y))
    lhs, rhs = checks.dot_product_test(lambda u: f.jvp(0.0, y, u), lambda v: f.vjp(0.0, y, v)[0],
                                       y.shape, out_shape, rng)
    assert np.isclose(lhs, rhs, rtol=1e-11, atol=1e-12), (lhs, rhs)


@PROPERTY
@given(mlp_cases())
def test_backward_and_value_and_vjp_agree_with_vjp(case):
    f, y, rng = case
    v = rng.standard_normal(np.shape(f(0.0, y)))
    y_bar, params_bar, _ = f.vjp(0.0, y, v)
    x_bar, grads = f.backward(y, v)
    assert np.array_equal(x_bar, y_bar) and all(np.array_equal(a, b) for a, b in zip(grads, params_bar))
    if hasattr(f, "value_and_vjp"):
        out, (y_bar2, params_bar2, t_bar2) = f.value_and_vjp(0.0, y, v)
        assert np.allclose(out, f(0.0, y), rtol=1e-15, atol=1e-15) and t_bar2 == 0.0
        assert np.allclose(y_bar2, y_bar, rtol=1e-15, atol=1e-15)
        assert all(np.allclose(a, b, rtol=1e-15, atol=1e-15) for a, b in zip(params_bar2, params_bar))


@PROPERTY
@given(mlp_cases())
def test_output_shapes(case):
    f, y, _ = case
    out = f(0.0, y)
    assert out.shape == y.shape[:-1] + (f.sizes[-1],)
    assert f.jvp(0.0, y, np.ones_like(y)).shape == out.shape
    assert f.vjp(0.0, y, np.ones_like(out))[0].shape == y.shape


def test_a_batch_is_rows_evaluated_one_by_one():
    f = MLP([3, 7, 5, 2], "softplus", rng=np.random.default_rng(4))
    y = np.random.default_rng(5).standard_normal((4, 3))
    v = np.random.default_rng(6).standard_normal((4, 2))
    assert np.allclose(f(0.0, y), np.stack([f(0.0, row) for row in y]), rtol=1e-14)
    grads = [f.vjp(0.0, row, w)[1] for row, w in zip(y, v)]
    for i, g in enumerate(f.vjp(0.0, y, v)[1]):
        assert np.allclose(g, sum(per_row[i] for per_row in grads), rtol=1e-13, atol=1e-15)


def test_the_dot_product_test_catches_a_wrong_vjp():
    """A transposed weight in the VJP is caught when the layer is not square."""
    f = MLP([3, 5, 2], "tanh", rng=np.random.default_rng(1))
    y, rng = np.random.default_rng(2).standard_normal(3), np.random.default_rng(3)

    def wrong_vjp(v):
        layer1, layer2 = f.layers
        h = np.tanh(layer1.forward(y))
        g = (v @ layer2.W) * (1 - h**2)
        return g @ layer1.W[::-1]          # rows in the wrong order

    lhs, rhs = checks.dot_product_test(lambda u: f.jvp(0.0, y, u), wrong_vjp, (3,), (2,), rng)
    assert not np.isclose(lhs, rhs, rtol=1e-6)


def test_params_are_the_arrays_themselves():
    f = MLP([2, 4, 2])
    before = f(0.0, np.ones(2))
    f.params[-1][...] += 1.0
    assert np.allclose(f(0.0, np.ones(2)), before + 1.0)
    assert [p.shape for p in f.params] == [(4, 2), (4,), (2, 4), (2,)]


def test_initialisation_bounds_and_seeding():
    a, b = MLP([16, 8, 1], rng=np.random.default_rng(7)), MLP([16, 8, 1], rng=np.random.default_rng(7))
    assert all(np.array_equal(p, q) for p, q in zip(a.params, b.params))
    assert np.abs(a.layers[0].W).max() <= 1 / np.sqrt(16) and np.abs(a.layers[1].W).max() <= 1 / np.sqrt(8)
    assert all(np.array_equal(p, q) for p, q in zip(MLP([3, 2]).params, MLP([3, 2]).params))


def test_linear_layer():
    layer = Linear(3, 2, np.random.default_rng(0))
    x, v = np.random.default_rng(1).standard_normal((4, 3)), np.random.default_rng(2).standard_normal((4, 2))
    assert np.allclose(layer.forward(x), x @ layer.W.T + layer.b)
    x_bar, (W_bar, b_bar) = layer.vjp(x, v)
    assert np.allclose(x_bar, checks.fd_vjp(layer.forward, x, v), rtol=1e-6)
    assert np.allclose(W_bar, v.T @ x) and np.allclose(b_bar, v.sum(axis=0))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivatives(name):
    sigma, dsigma = ACTIVATIONS[name]
    x = np.array([-2.5, -0.7, 0.3, 1.9])
    fd = (sigma(x + 1e-6) - sigma(x - 1e-6)) / 2e-6
    assert np.allclose(dsigma(x, sigma(x)), fd, rtol=1e-6, atol=1e-8)


def test_ravel_and_unravel_params():
    f = MLP([2, 3, 1])
    flat = ravel_params(f.params)
    assert flat.shape == (13,)
    back = unravel_params(flat, f.params)
    assert all(np.array_equal(p, q) for p, q in zip(back, f.params))
    assert ravel_params([]).shape == (0,)


@pytest.mark.parametrize("sizes", [[2], [], [2, 0], [0, 2], [2, -1, 2], [2, 1.5]])
def test_bad_sizes(sizes):
    with pytest.raises(ValueError, match="sizes"):
        MLP(sizes)


def test_bad_activation():
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        MLP([2, 2], activation="gelu")


@pytest.mark.parametrize("shape", [(3,), (4, 3), (2, 4, 2), (1, 1, 2)])
def test_bad_input_shape(shape):
    f = MLP([2, 4, 2])
    with pytest.raises(ValueError, match=r"expected input of shape \(2,\) or \(batch, 2\)"):
        f(0.0, np.zeros(shape))
    with pytest.raises(ValueError, match=r"expected input of shape"):
        f.vjp(0.0, np.zeros(shape), np.zeros(shape[:-1] + (2,)))


@st.composite
def scaled_cases(draw):
    """A random MLP with output scales (one number, or one per output, spanning up to 1e4)."""
    f, y, rng = draw(mlp_cases(activations=("tanh", "softplus")))
    per_output = draw(st.booleans())
    scale = 10.0 ** rng.uniform(-2, 4, size=f.sizes[-1]) if per_output else float(10.0 ** rng.uniform(-2, 4))
    return ScaledField(f, scale), y, rng


@PROPERTY
@given(scaled_cases())
def test_scaled_field_derivatives(case):
    """ScaledField's VJP and JVP against finite differences, and the dot-product test between them."""
    f, y, rng = case
    t = 0.3
    v = rng.standard_normal(np.shape(f(t, y)))
    y_bar, params_bar, t_bar = f.vjp(t, y, v)
    scale = np.max(np.abs(f.scale))
    assert np.allclose(y_bar, checks.fd_vjp(lambda z: f(t, z), y, v), rtol=1e-5, atol=1e-7 * scale)
    fd_params = checks.fd_param_gradients(lambda: float(np.sum(v * f(t, y))), f.params)
    for exact, approx in zip(params_bar, fd_params):
        assert np.allclose(exact, approx, rtol=1e-5, atol=1e-7 * scale)
    u = rng.standard_normal(y.shape)
    assert np.allclose(f.jvp(t, y, u), checks.fd_jvp(lambda z: f(t, z), y, u), rtol=1e-5, atol=1e-7 * scale)
    lhs, rhs = checks.dot_product_test(lambda w: f.jvp(t, y, w), lambda w: f.vjp(t, y, w)[0], y.shape,
                                       np.shape(f(t, y)), rng)
    assert np.isclose(lhs, rhs, rtol=1e-11, atol=1e-12 * scale), (lhs, rhs)
    value, out = f.value_and_vjp(t, y, v)
    assert np.allclose(value, f(t, y), rtol=1e-14, atol=0) and np.allclose(out[0], y_bar, rtol=1e-14, atol=0)
    assert t_bar == 0.0 and len(params_bar) == len(f.params)


def test_scaled_field_without_a_jvp_offers_none():
    class NoJvp:
        params = []

        def __call__(self, t, y):
            return -y

        def vjp(self, t, y, v):
            return -v, [], 0.0

    assert ScaledField(NoJvp(), 3.0).jvp is None, "without the field's JVP, implicit methods difference f"
