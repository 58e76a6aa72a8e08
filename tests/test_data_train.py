"""The toy data sets, the losses' gradients, and the training loop ``fit``."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

import neuralode as ne
from neuralode import data, train
from neuralode.checks import fd_gradient

PROPERTY = settings(deadline=None, max_examples=30)


# ---- data -------------------------------------------------------------------------------------------


def test_spiral_field_is_the_cubic_linear_map():
    assert np.allclose(data.spiral_dynamics(0.0, np.array([2.0, 0.0])), [-0.8, 16.0])
    y = np.array([[0.5, -1.0], [1.5, 0.2]])
    assert np.allclose(data.spiral_dynamics(3.0, y), (y**3) @ np.array([[-0.1, 2.0], [-2.0, -0.1]]))


def test_spiral_matches_an_independent_solver():
    t, ys = data.spiral()
    assert t.shape == (1000,) and ys.shape == (1000, 2)
    assert t[0] == 0.0 and t[-1] == 25.0 and np.array_equal(ys[0], [2.0, 0.0])
    ref = solve_ivp(lambda s, y: data.spiral_dynamics(s, y), (0.0, 25.0), [2.0, 0.0], method="DOP853",
                    t_eval=t, rtol=1e-12, atol=1e-13)
    assert np.max(np.abs(ys - ref.y.T)) < 1e-7


def test_spiral_noise_is_seeded():
    _, clean = data.spiral(50, 5.0)
    _, a = data.spiral(50, 5.0, noise=0.01, rng=np.random.default_rng(7))
    _, b = data.spiral(50, 5.0, noise=0.01, rng=np.random.default_rng(7))
    assert np.array_equal(a, b) and not np.array_equal(a, clean)
    assert 0.005 < np.std(a - clean) < 0.02
    with pytest.raises(ValueError, match="rng"):
        data.spiral(50, 5.0, noise=0.01)


@PROPERTY
@given(st.integers(2, 40), st.data())
def test_trajectory_windows(n, draw):
    window = draw.draw(st.integers(2, n))
    batch_size = draw.draw(st.integers(1, n - window + 1))
    seed = draw.draw(st.integers(0, 2**32 - 1))
    t = 0.1 * np.arange(n) + 3.0
    ys = np.random.default_rng(0).standard_normal((n, 2))
    w = data.trajectory_windows(t, ys, batch_size, window, np.random.default_rng(seed))
    assert w.y0.shape == (batch_size, 2) and w.t.shape == (window,) and w.ys.shape == (window, batch_size, 2)
    assert np.allclose(w.t, 0.1 * np.arange(window))
    assert len(set(w.starts.tolist())) == batch_size
    assert w.starts.min() >= 0 and w.starts.max() + window <= n
    for j, s in enumerate(w.starts):
        assert np.array_equal(w.ys[:, j], ys[s:s + window])
    assert np.array_equal(w.ys[0], w.y0)
    again = data.trajectory_windows(t, ys, batch_size, window, np.random.default_rng(seed))
    assert np.array_equal(again.starts, w.starts)


def test_trajectory_windows_rejects_bad_arguments():
    t, ys, rng = np.linspace(0.0, 1.0, 10), np.zeros((10, 2)), np.random.default_rng(0)
    with pytest.raises(ValueError, match="batch_size"):
        data.trajectory_windows(t, ys, 10, 2, rng)
    with pytest.raises(ValueError, match="window"):
        data.trajectory_windows(t, ys, 2, 11, rng)
    with pytest.raises(ValueError, match="equally spaced"):
        data.trajectory_windows(t**2, ys, 2, 3, rng)


@pytest.mark.parametrize("make", [data.two_moons, data.concentric_circles])
@pytest.mark.parametrize("n", [2, 101, 400])
def test_classification_sets_are_balanced_and_seeded(make, n):
    x, labels = make(n, 0.1, np.random.default_rng(3))
    assert x.shape == (n, 2) and labels.shape == (n,)
    assert set(labels.tolist()) <= {0, 1} and abs(np.sum(labels == 0) - np.sum(labels == 1)) <= 1
    x2, labels2 = make(n, 0.1, np.random.default_rng(3))
    assert np.array_equal(x, x2) and np.array_equal(labels, labels2)
    assert not np.array_equal(x, make(n, 0.1, np.random.default_rng(4))[0])


def test_two_moons_without_noise_lie_on_their_arcs():
    x, labels = data.two_moons(200, 0.0, np.random.default_rng(0))
    upper, lower = x[labels == 0], x[labels == 1] - [1.0, 0.5]
    assert np.allclose(np.linalg.norm(upper, axis=1), 1.0) and np.all(upper[:, 1] >= 0)
    assert np.allclose(np.linalg.norm(lower, axis=1), 1.0) and np.all(lower[:, 1] <= 0)


def test_concentric_circles_without_noise_respect_the_radii():
    x, labels = data.concentric_circles(500, 0.0, np.random.default_rng(0), radii=(0.5, 1.0, 1.5))
    r = np.linalg.norm(x, axis=1)
    assert np.all(r[labels == 0] <= 0.5)
    assert np.all((r[labels == 1] >= 1.0) & (r[labels == 1] <= 1.5))
    with pytest.raises(ValueError, match="radii"):
        data.concentric_circles(10, radii=(1.0, 0.5, 1.5))


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_concentric_spheres_in_any_dimension(dim):
    x, labels = data.concentric_spheres(301, dim, 0.0, np.random.default_rng(1), radii=(0.3, 0.6, 0.9))
    r = np.linalg.norm(x, axis=1)
    assert x.shape == (301, dim) and abs(np.sum(labels == 0) - np.sum(labels == 1)) <= 1
    assert np.all(r[labels == 0] <= 0.3) and np.all((r[labels == 1] >= 0.6) & (r[labels == 1] <= 0.9))
    assert np.median(r[labels == 0]) > 0.3 * 0.5 ** (1 / dim) * 0.8
    if dim == 1:
        assert 0 < np.sum(x[labels == 1] > 0) < np.sum(labels == 1)


def test_one_hot():
    assert np.array_equal(data.one_hot([1, 0, 2], 3), np.eye(3)[[1, 0, 2]])
    with pytest.raises(ValueError, match="labels"):
        data.one_hot([3], 3)


# ---- losses -----------------------------------------------------------------------------------------


shapes = st.sampled_from([(1,), (5,), (3, 2), (4, 2, 2)])


@PROPERTY
@given(shapes, st.integers(0, 2**32 - 1))
def test_regression_losses_gradients(shape, seed):
    rng = np.random.default_rng(seed)
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    for loss in (train.mse, train.mae):
        value, grad = loss(pred, target)
        assert grad.shape == pred.shape
        assert np.isclose(value, loss(pred, target)[0])
        assert np.allclose(grad, fd_gradient(lambda p: loss(p, target)[0], pred), rtol=1e-5, atol=1e-8)
    assert np.isclose(train.mse(pred, target)[0], np.mean((pred - target) ** 2))
    assert np.isclose(train.mae(pred, target)[0], np.mean(np.abs(pred - target)))


@PROPERTY
@given(st.integers(1, 6), st.integers(2, 4), st.floats(-50.0, 50.0), st.integers(0, 2**32 - 1))
def test_softmax_cross_entropy(n, k, shift, seed):
    rng = np.random.default_rng(seed)
    logits, labels = 3.0 * rng.standard_normal((n, k)), rng.integers(0, k, n)
    value, grad = train.softmax_cross_entropy(logits, labels)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.isclose(value, -np.mean(np.log(p[np.arange(n), labels])))
    assert np.allclose(grad, fd_gradient(lambda z: train.softmax_cross_entropy(z, labels)[0], logits),
                       rtol=1e-5, atol=1e-8)
    assert np.isclose(train.softmax_cross_entropy(logits + shift, labels)[0], value)
    assert np.allclose(grad.sum(axis=1), 0.0)


def test_accuracy():
    logits = np.array([[2.0, 1.0], [0.0, 1.0], [3.0, -1.0], [0.0, 5.0]])
    assert train.accuracy(logits, np.array([0, 1, 1, 0])) == 0.5


# ---- fit --------------------------------------------------------------------------------------------


def scripted(losses, param):
    """A step that returns the scripted losses in turn and writes the iteration number into ``param``."""
    it = iter(range(1, len(losses) + 1))

    def step():
        i = next(it)
        param[...] = i
        return losses[i - 1], {"nfe_forward": 10 + i, "nfe_backward": 20 + i, "accuracy": 0.5}

    return step


def test_fit_stops_early_and_restores_the_best_parameters():
    val = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 2.0, 1.0]
    param = np.zeros(3)
    step = scripted([1.0] * 20, param)
    out = io.StringIO()
    history = train.fit(step, 20, report_every=2, val_fn=lambda: val[int(param[0]) // 2 - 1], patience=3,
                        params=[param], stream=out)
    assert history.val_iters == [2, 4, 6, 8, 10, 12]
    assert history.best_iter == 6 and history.best_val_loss == 3.0
    assert history.stopped_iter == 12 and history.n_iters == 12
    assert np.all(param == 6.0)
    assert out.getvalue().splitlines()[-1] == "early stop at iter 12: best val 3.000000 at iter 6"


def test_fit_min_delta_and_no_patience():
    param = np.zeros(1)
    val = iter([1.0, 0.95, 0.9, 0.85, 0.8])
    history = train.fit(scripted([1.0] * 5, param), 5, report_every=None, val_fn=lambda: next(val), val_every=1,
                        patience=2, min_delta=0.1, params=[param], stream=io.StringIO())
    assert history.stopped_iter == 3 and history.best_iter == 1 and param[0] == 1.0
    param = np.zeros(1)
    val = iter([1.0, 2.0, 3.0])
    history = train.fit(scripted([1.0] * 3, param), 3, report_every=None, val_fn=lambda: next(val), val_every=1,
                        params=[param], stream=io.StringIO())
    assert history.stopped_iter is None and history.best_iter == 1 and param[0] == 1.0
    history = train.fit(scripted([1.0] * 3, param), 3, report_every=None, val_fn=lambda: 1.0, stream=io.StringIO())
    assert history.best_iter == 1 and param[0] == 3.0


def test_fit_needs_a_validation_to_stop_early():
    with pytest.raises(ValueError, match="val_fn"):
        train.fit(lambda: 1.0, 3, patience=2)


def test_fit_history_and_progress_lines():
    out = io.StringIO()
    history = train.fit(scripted([0.5, 0.25, 0.125, 0.0625, 0.03125], np.zeros(1)), 5, report_every=2, stream=out)
    assert history.loss == [0.5, 0.25, 0.125, 0.0625, 0.03125]
    assert history.nfe_forward == [11, 12, 13, 14, 15] and history.nfe_backward == [21, 22, 23, 24, 25]
    assert history.metrics == {"accuracy": [0.5] * 5} and history.stopped_iter is None
    assert out.getvalue() == ("iter    2 | loss 0.250000 | nfe 12 | nfe_back 22\n"
                              "iter    4 | loss 0.062500 | nfe 14 | nfe_back 24\n")


def test_fit_accepts_a_bare_loss_and_validation_in_the_line():
    out = io.StringIO()
    history = train.fit(lambda: 2.0, 3, report_every=3, val_fn=lambda: 1.5, stream=out)
    assert history.loss == [2.0] * 3 and history.nfe_forward == []
    assert out.getvalue() == "iter    3 | loss 2.000000 | val 1.500000\n"
    assert train.format_line(100, 0.0123449, {"nfe_forward": 56}) == "iter  100 | loss 0.012345 | nfe 56"


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_at_a_terminal_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    plain, terminal = io.StringIO(), FakeTerminal()
    train.fit(lambda: 1.0, 4, report_every=2, stream=plain)
    assert "\r" not in plain.getvalue()
    train.fit(lambda: 1.0, 4, report_every=2, stream=terminal)
    assert "\r[" in terminal.getvalue() and "iter    4 | loss 1.000000" in terminal.getvalue()
    monkeypatch.setenv("CI", "true")
    in_ci = FakeTerminal()
    train.fit(lambda: 1.0, 4, report_every=2, stream=in_ci)
    assert in_ci.getvalue() == "iter    2 | loss 1.000000\niter    4 | loss 1.000000\n"
    forced = io.StringIO()
    train.fit(lambda: 1.0, 2, report_every=None, progress=True, stream=forced)
    assert "\r[" in forced.getvalue()


# ---- end to end -------------------------------------------------------------------------------------


def full_trajectory_loss(f, t, ys):
    return train.mse(ne.odeint(f, ys[0], t, rtol=1e-5, atol=1e-6), ys)[0]


def test_training_on_spiral_windows_with_the_adjoint_reduces_the_loss():
    t, ys = data.spiral(200, 5.0)
    rng = np.random.default_rng(0)
    f = ne.nn.CubeInputMLP([2, 16, 2], rng=rng)
    batch = data.trajectory_windows(t, ys, 3, 20, rng)
    opt = ne.optim.Adam(f.params, lr=2e-2)
    before = train.mse(ne.odeint(f, batch.y0, batch.t, rtol=1e-5, atol=1e-6), batch.ys)[0]
    history = train.fit(lambda: train.trajectory_step(f, opt, batch, rtol=1e-5, atol=1e-6), 30,
                        report_every=None, stream=io.StringIO())
    after = train.mse(ne.odeint(f, batch.y0, batch.t, rtol=1e-5, atol=1e-6), batch.ys)[0]
    assert history.loss[0] == pytest.approx(before)
    assert after < before / 10
    assert len(history.nfe_forward) == 30 and min(history.nfe_backward) > 0


def test_odenet_classifier_learns_two_moons():
    x, labels = data.two_moons(64, 0.1, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    model = ne.models.ODENet(ne.nn.MLP([2, 16, 2], rng=rng), 2, 2, rng=rng, rtol=1e-4, atol=1e-5)
    opt = ne.optim.Adam(model.params, lr=5e-2)
    history = train.fit(lambda: train.classifier_step(model, opt, x, labels), 40, report_every=None,
                        stream=io.StringIO())
    assert history.loss[-1] < 0.5 * history.loss[0]
    assert train.accuracy(model.forward(x), labels) > 0.85
    assert history.nfe_forward[0] > 0
