"""Property tests of the training chapters' models: every hand-written VJP against finite differences,
and every VJP against its JVP by the dot-product test."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralode import models, nn
from neuralode.checks import dot_product_test, fd_gradient, fd_vjp

ACTIVATIONS = st.sampled_from(["tanh", "softplus", "sigmoid"])
SEEDS = st.integers(0, 2**32 - 1)
PROPERTY = settings(deadline=None, max_examples=25)


def assert_close(exact, approx, what):
    """Hand-written against finite differences, which carry an error of about 1e-9 here."""
    assert np.allclose(exact, approx, rtol=1e-5, atol=1e-7), f"{what}: {exact} vs {approx}"


def assert_field_vjp(f, t, y, rng):
    """``f.vjp(t, y, v)`` against central differences in ``y``, ``t`` and every parameter array."""
    v = rng.standard_normal(np.shape(f(t, y)))
    y_bar, params_bar, t_bar = f.vjp(t, y, v)
    assert np.shape(y_bar) == np.shape(y) and isinstance(t_bar, float)
    assert_close(y_bar, fd_vjp(lambda z: f(t, z), y, v), "y")
    assert_close(t_bar, fd_gradient(lambda s: float(np.sum(v * f(s[0], y))), np.array([t]))[0], "t")
    assert len(params_bar) == len(f.params)
    for i, (p, p_bar) in enumerate(zip(f.params, params_bar)):
        assert p_bar.shape == p.shape
        assert_close(p_bar, fd_param(lambda: float(np.sum(v * f(t, y))), p), f"param {i}")


def fd_param(loss, p):
    """The gradient of ``loss()`` in the entries of the array ``p``, which is restored afterwards."""
    saved = p.copy()

    def at(q):
        p[...] = q
        return loss()

    try:
        return fd_gradient(at, saved)
    finally:
        p[...] = saved


def assert_dot_product(f, t, y, rng):
    """``<v, J u> == <J^T v, u>`` for the Jacobian in ``y``."""
    lhs, rhs = dot_product_test(lambda u: f.jvp(t, y, u), lambda v: f.vjp(t, y, v)[0],
                                np.shape(y), np.shape(f(t, y)), rng)
    assert np.isclose(lhs, rhs, rtol=1e-10, atol=1e-12)


@st.composite
def field_cases(draw):
    """A state dimension, hidden widths, an activation, a batch shape, a time and a seed."""
    dim = draw(st.integers(1, 3))
    hidden = draw(st.lists(st.integers(1, 6), min_size=0, max_size=2))
    batch = draw(st.sampled_from([(), (1,), (4,)]))
    t = draw(st.floats(-2.0, 2.0))
    return dim, hidden, draw(ACTIVATIONS), batch, t, draw(SEEDS)


@pytest.mark.parametrize("model", [nn.TimeMLP, nn.CubeInputMLP])
@PROPERTY
@given(case=field_cases())
def test_field_vjp_and_jvp(model, case):
    dim, hidden, activation, batch, t, seed = case
    rng = np.random.default_rng(seed)
    f = model([dim, *hidden, dim], activation, rng)
    y = rng.standard_normal(batch + (dim,))
    assert_field_vjp(f, t, y, rng)
    assert_dot_product(f, t, y, rng)


def test_time_mlp_depends_on_time():
    rng = np.random.default_rng(1)
    f = nn.TimeMLP([2, 8, 2], rng=rng)
    y, v = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    assert not np.allclose(f(0.0, y), f(1.0, y))
    assert abs(f.vjp(0.3, y, v)[2]) > 1e-3
    assert f.params[0].shape == (8, 3)


def test_cube_input_mlp_sees_the_cube():
    f = nn.CubeInputMLP([2, 5, 2])
    y = np.array([[0.7, -1.3]])
    assert np.array_equal(f(0.0, y), f.net.forward(y**3))


@PROPERTY
@given(st.integers(1, 3), st.integers(0, 3), st.integers(1, 5), SEEDS)
def test_augment_and_strip_are_transposes(dim, extra, n, seed):
    rng = np.random.default_rng(seed)
    x, z = rng.standard_normal((n, dim)), rng.standard_normal((n, dim + extra))
    assert models.augment(x, extra).shape == (n, dim + extra)
    assert np.array_equal(models.strip(models.augment(x, extra), dim), x)
    assert np.all(models.augment(x, extra)[:, dim:] == 0.0)
    assert np.isclose(np.sum(models.strip(z, dim) * x), np.sum(z * models.augment(x, extra)))


@PROPERTY
@given(field_cases(), st.integers(1, 2))
def test_augmented_field_vjp_and_jvp(case, extra):
    dim, hidden, activation, _, t, seed = case
    rng = np.random.default_rng(seed)
    f = nn.MLP([dim + extra, *hidden, dim + extra], activation, rng)
    z = models.augment(rng.standard_normal((3, dim)), extra)
    assert_field_vjp(f, t, z, rng)
    assert_dot_product(f, t, z, rng)


def test_augment_rejects_a_negative_count():
    with pytest.raises(ValueError, match="extra"):
        models.augment(np.ones((2, 2)), -1)


@st.composite
def resnet_cases(draw):
    return (draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(ACTIVATIONS),
            draw(st.integers(1, 4)), draw(SEEDS))


@PROPERTY
@given(resnet_cases())
def test_resnet_backward_and_jvp(case):
    dim, hidden, n_blocks, activation, n, seed = case
    rng = np.random.default_rng(seed)
    net = models.ResNet(dim, hidden, n_blocks, activation, rng)
    x, v = rng.standard_normal((n, dim)), rng.standard_normal((n, dim))
    x_bar, params_bar = net.backward(x, v)
    assert_close(x_bar, fd_vjp(net.forward, x, v), "x")
    assert len(params_bar) == len(net.params) == 4 * n_blocks
    for i, (p, p_bar) in enumerate(zip(net.params, params_bar)):
        assert_close(p_bar, fd_param(lambda: float(np.sum(v * net.forward(x))), p), f"param {i}")
    lhs, rhs = dot_product_test(lambda u: net.jvp(x, u), lambda w: net.backward(x, w)[0], x.shape, x.shape, rng)
    assert np.isclose(lhs, rhs, rtol=1e-10, atol=1e-12)


def test_resnet_blocks_are_residual_and_independent():
    net = models.ResNet(2, 4, 3, rng=np.random.default_rng(0))
    x = np.array([[0.5, -0.2]])
    hs = net.states(x)
    for block, h, h_next in zip(net.blocks, hs, hs[1:]):
        assert np.allclose(h_next, h + block.forward(h))
    assert not np.allclose(net.blocks[0].params[0], net.blocks[1].params[0])


def classifier_gradient_errors(model, x, labels_bar, rng):
    """The pullback of ``forward_vjp`` against finite differences, in ``x`` and a sample of parameters."""
    logits, pullback = model.forward_vjp(x)
    assert np.allclose(logits, model.forward(x), rtol=1e-12, atol=1e-12)
    x_bar, params_bar = pullback(labels_bar)
    assert_close(x_bar, fd_vjp(model.forward, x, labels_bar), "x")
    assert len(params_bar) == len(model.params)
    for i in (0, len(model.params) - 3, len(model.params) - 1):
        p = model.params[i]
        assert_close(params_bar[i], fd_param(lambda: float(np.sum(labels_bar * model.forward(x))), p), f"param {i}")


@pytest.mark.parametrize("extra", [0, 1])
def test_odenet_pullback(extra):
    rng = np.random.default_rng(3)
    field = nn.TimeMLP([2 + extra, 6, 2 + extra], rng=rng)
    model = models.ODENet(field, 2, 3, extra=extra, rng=rng, rtol=1e-10, atol=1e-12)
    x = rng.standard_normal((4, 2))
    classifier_gradient_errors(model, x, rng.standard_normal((4, 3)), rng)
    assert nn.count_params(model) == sum(p.size for p in field.params) + 3 * (2 + extra) + 3


def test_odenet_flow_starts_at_the_augmented_input():
    rng = np.random.default_rng(4)
    model = models.ODENet(nn.MLP([3, 4, 3], rng=rng), 2, 2, extra=1, rng=rng)
    x = rng.standard_normal((5, 2))
    zs = model.flow(x, np.linspace(0.0, 1.0, 3))
    assert zs.shape == (3, 5, 3) and np.array_equal(zs[0], models.augment(x, 1))


def test_odenet_checks_the_field_width():
    with pytest.raises(ValueError, match="dim \\+ extra"):
        models.ODENet(nn.MLP([2, 4, 2]), 2, 2, extra=1)


def test_resnet_classifier_pullback():
    rng = np.random.default_rng(5)
    model = models.ResNetClassifier(2, 5, 2, 3, rng=rng)
    classifier_gradient_errors(model, rng.standard_normal((4, 2)), rng.standard_normal((4, 3)), rng)


def test_init_normal():
    f = nn.init_normal(nn.CubeInputMLP([2, 200, 2]), 0.1, np.random.default_rng(0))
    weights, biases = f.params[0::2], f.params[1::2]
    assert all(np.all(b == 0.0) for b in biases)
    assert 0.09 < np.std(weights[0]) < 0.11 and weights[1].shape == (2, 200)
    g = nn.init_normal(nn.CubeInputMLP([2, 200, 2]), 0.1, np.random.default_rng(0))
    assert all(np.array_equal(p, q) for p, q in zip(f.params, g.params))
