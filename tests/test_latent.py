"""The latent ODE's hand-written derivatives: the RNN cell, backpropagation through time, the
likelihood and the KL term against finite differences and the dot-product test, the whole negative ELBO
against finite differences with a fixed rng and a fixed-step solver, masked values without effect,
and refusals of bad arguments."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralode import checks
from neuralode.latent import (Encoder, LatentODE, RNNBaseline, RNNCell, encoder_inputs, gaussian_kl,
                              gaussian_log_likelihood, irregular_spirals, linear_spirals)

PROPERTY = settings(deadline=None, max_examples=25)
seeds = st.integers(0, 2**32 - 1)


@PROPERTY
@given(seeds, st.integers(1, 4), st.integers(1, 5), st.integers(1, 3))
def test_rnn_cell_vjp_fd_and_dot_product(seed, n, H, D):
    rng = np.random.default_rng(seed)
    cell = RNNCell(H, D, rng)
    h, x = rng.standard_normal((n, H)), rng.standard_normal((n, D))
    new = cell.forward(h, x)
    v = rng.standard_normal(new.shape)
    h_bar, x_bar, grads = cell.vjp(h, x, new, v)
    assert checks.relative_error(h_bar, checks.fd_vjp(lambda z: cell.forward(z, x), h, v)) < 1e-6
    assert checks.relative_error(x_bar, checks.fd_vjp(lambda z: cell.forward(h, z), x, v)) < 1e-6
    fd = checks.fd_param_gradients(lambda: float(np.sum(v * cell.forward(h, x))), cell.params)
    assert all(checks.relative_error(g, f) < 1e-6 for g, f in zip(grads, fd))
    uh, ux = rng.standard_normal(h.shape), rng.standard_normal(x.shape)
    lhs = float(np.sum(v * cell.jvp(h, x, uh, ux)))
    assert np.isclose(lhs, np.sum(h_bar * uh) + np.sum(x_bar * ux), rtol=1e-10, atol=1e-12)


def series(rng, n=3, T=5, D=2):
    times = np.cumsum(rng.uniform(0.1, 0.6, T))
    values = rng.standard_normal((n, T, D))
    mask = (rng.uniform(size=(n, T, D)) < 0.6).astype(float)
    return times, values, mask


@PROPERTY
@given(seeds, st.booleans())
def test_bptt_fd_and_dot_product(seed, ode):
    rng = np.random.default_rng(seed)
    times, values, mask = series(rng)
    enc = Encoder(2, 4, rng, ode=ode, solver={"method": "rk4", "step_size": 0.2, "gradient": "backprop"})
    x, observed = encoder_inputs(times, values, mask)
    w = rng.standard_normal((3, 4))
    _, tape = enc.forward(times, x, observed)
    x_bar, grads = enc.backward(x, observed, tape, w)
    fd = checks.fd_param_gradients(lambda: float(np.sum(w * enc.forward(times, x, observed)[0])), enc.params)
    assert all(checks.relative_error(g, f) < 1e-5 for g, f in zip(grads, fd))
    fdx = checks.fd_vjp(lambda z: enc.forward(times, z, observed)[0], x, w)
    assert checks.relative_error(x_bar, fdx) < 1e-5
    u = rng.standard_normal(x.shape)
    lhs = float(np.sum(w * enc.jvp(times, x, observed, u)))
    assert np.isclose(lhs, np.sum(x_bar * u), rtol=1e-10, atol=1e-12)


@PROPERTY
@given(seeds, st.floats(0.1, 3.0))
def test_likelihood_and_kl_gradients(seed, std):
    rng = np.random.default_rng(seed)
    x, mean = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    mask = (rng.uniform(size=(3, 4)) < 0.5).astype(float)
    _, mean_bar = gaussian_log_likelihood(x, mean, mask, std)
    fd = checks.fd_gradient(lambda q: gaussian_log_likelihood(x, q, mask, std)[0], mean)
    assert checks.relative_error(mean_bar, fd) < 1e-6 or np.abs(mean_bar - fd).max() < 1e-8
    u = rng.standard_normal(mean.shape)
    jvp = checks.fd_jvp(lambda q: gaussian_log_likelihood(x, q, mask, std)[0], mean, u)
    assert np.isclose(jvp, np.sum(mean_bar * u), rtol=1e-6, atol=1e-7)
    mu, logvar = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    _, (mu_bar, logvar_bar) = gaussian_kl(mu, logvar)
    assert checks.relative_error(mu_bar, checks.fd_gradient(lambda q: gaussian_kl(q, logvar)[0], mu)) < 1e-6
    assert checks.relative_error(logvar_bar, checks.fd_gradient(lambda q: gaussian_kl(mu, q)[0], logvar)) < 1e-6


def test_kl_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mu, logvar = np.array([0.5, -1.0]), np.array([-0.5, 0.3])
    z = mu + np.exp(0.5 * logvar) * rng.standard_normal((200_000, 2))
    log_q = -0.5 * (((z - mu) ** 2) / np.exp(logvar) + logvar + np.log(2 * np.pi))
    log_p = -0.5 * (z**2 + np.log(2 * np.pi))
    assert abs(np.mean(np.sum(log_q - log_p, axis=1)) - gaussian_kl(mu, logvar)[0]) < 0.01


MODELS = [(LatentODE, {"method": "rk4", "step_size": 0.25, "gradient": "backprop"}),
          (LatentODE, {"method": "rk4", "step_size": 0.25, "gradient": "backprop", "encoder": "odernn"}),
          (RNNBaseline, {}),
          (RNNBaseline, {"encoder": "odernn", "step_size": 0.25, "gradient": "backprop"})]


def model_and_series(cls, options, seed):
    """A small model of class ``cls`` and the series it is tested on, both drawn from one generator."""
    rng = np.random.default_rng(seed)
    times, values, mask = series(rng)
    return cls(2, 3, hidden=5, rng=rng, **options), times, values, mask


@pytest.mark.parametrize("cls, options", MODELS)
def test_loss_and_grad_matches_fd(cls, options):
    model, times, values, mask = model_and_series(cls, options, 3)
    loss, grads = model.loss_and_grad(times, values, mask, np.random.default_rng(7))
    assert loss == model.loss_and_grad(times, values, mask, np.random.default_rng(7))[0]
    fd = checks.fd_param_gradients(lambda: model.loss_and_grad(times, values, mask, np.random.default_rng(7))[0],
                                   model.params)
    assert all(checks.relative_error(g, f) < 1e-6 for g, f in zip(grads, fd))


def test_adjoint_gradient_close_to_discrete_gradient():
    rng = np.random.default_rng(4)
    times, values, mask = series(rng)
    base = LatentODE(2, 3, hidden=5, rng=np.random.default_rng(1), method="rk4", step_size=0.05, gradient="backprop")
    adj = LatentODE(2, 3, hidden=5, rng=np.random.default_rng(1), method="rk4", step_size=0.05, gradient="adjoint")
    _, g1 = base.loss_and_grad(times, values, mask, np.random.default_rng(0))
    _, g2 = adj.loss_and_grad(times, values, mask, np.random.default_rng(0))
    assert max(checks.relative_error(a, b) for a, b in zip(g1, g2)) < 1e-4


@pytest.mark.parametrize("cls, options", MODELS)
def test_masked_values_have_no_effect(cls, options):
    model, times, values, mask = model_and_series(cls, options, 5)
    loss, grads = model.loss_and_grad(times, values, mask, np.random.default_rng(1))
    changed = np.where(mask > 0, values, np.nan)
    loss2, grads2 = model.loss_and_grad(times, changed, mask, np.random.default_rng(1))
    assert loss == loss2 and all(np.array_equal(a, b) for a, b in zip(grads, grads2))


def test_bad_arguments_are_named():
    model = LatentODE(2, 3, hidden=4, method="rk4")
    times, values = np.linspace(0, 1, 4), np.zeros((2, 4, 2))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="times"):
        model.loss_and_grad(times[::-1], values, np.ones_like(values), rng)
    with pytest.raises(ValueError, match="values"):
        model.loss_and_grad(times, np.zeros((2, 3, 2)), np.ones((2, 3, 2)), rng)
    with pytest.raises(ValueError, match="mask"):
        model.loss_and_grad(times, values, np.full_like(values, 0.5), rng)
    with pytest.raises(ValueError, match="rng"):
        model.loss_and_grad(times, values, np.ones_like(values), 0)
    with pytest.raises(ValueError, match="latent_dim"):
        LatentODE(2, 0)
    with pytest.raises(ValueError, match="encoder"):
        RNNBaseline(2, 2, encoder="gru")
    with pytest.raises(ValueError, match="n_obs"):
        irregular_spirals(4, 100, n_times=10, rng=rng)


def test_spirals_shapes_and_mask():
    times, values, mask, truth, clockwise = irregular_spirals(6, 5, n_times=20, observe_until=3.0,
                                                            rng=np.random.default_rng(0))
    assert values.shape == mask.shape == truth.shape == (6, 20, 2)
    assert np.all(mask.sum(axis=(1, 2)) == 10) and np.all(mask[:, times > 3.0] == 0)
    assert clockwise.sum() == 3


@pytest.mark.parametrize("cls, options", MODELS)
def test_reconstruct_at_later_times_continues_the_same_solve(cls, options):
    model, times, values, mask = model_and_series(cls, options, 2)
    full = model.reconstruct(times, values, mask)
    later = np.concatenate([times, times[-1] + [0.5, 1.0]])
    assert np.array_equal(model.reconstruct(times, values, mask, pred_times=later)[:, :len(times)], full)
    if cls is LatentODE:   # skipping times[1] changes only the solver's steps, not the solution it approximates
        skipped = model.reconstruct(times, values, mask, pred_times=times[2:])
        assert np.allclose(skipped, full[:, 2:], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="pred_times"):
        model.reconstruct(times, values, mask, pred_times=times - 1.0)
    with pytest.raises(ValueError, match="pred_times"):
        model.reconstruct(times, values, mask, pred_times=times[::-1])


def test_linear_spirals_solve_their_linear_ode():
    times = np.linspace(0.0, 4.0, 4001)
    _, values, mask, truth, clockwise = linear_spirals(4, [1, 2, 3, 4], times, observe_until=2.0, omega=1.5,
                                                       decay=0.2, noise=0.0, rng=np.random.default_rng(3))
    assert np.array_equal(values, truth) and mask.sum(axis=(1, 2)).tolist() == [2, 4, 6, 8]
    assert np.all(mask[:, times > 2.0] == 0) and clockwise.tolist() == [True, False, True, False]
    dz = np.gradient(truth, times, axis=1)
    for i, s in enumerate(np.where(clockwise, -1.0, 1.0)):
        A = np.array([[-0.2, -1.5 * s], [1.5 * s, -0.2]])
        assert np.abs(dz[i, 1:-1] - truth[i, 1:-1] @ A.T).max() < 1e-5


def test_linear_spirals_refuse_bad_arguments():
    rng, times = np.random.default_rng(0), np.linspace(0.0, 1.0, 5)
    with pytest.raises(ValueError, match="n_obs"):
        linear_spirals(2, 6, times, rng=rng)
    with pytest.raises(ValueError, match="n_obs"):
        linear_spirals(2, [1, 0], times, rng=rng)
    with pytest.raises(ValueError, match="times"):
        linear_spirals(2, 2, times[::-1], rng=rng)
    with pytest.raises(ValueError, match="decay"):
        linear_spirals(2, 2, times, decay=-1.0, rng=rng)
    with pytest.raises(ValueError, match="radius"):
        linear_spirals(2, 2, times, radius=(2.0, 1.0), rng=rng)
    with pytest.raises(ValueError, match="rng"):
        linear_spirals(2, 2, times, rng=0)
