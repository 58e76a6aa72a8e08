"""The gradient modes added to odeint_vjp: checkpointing, the interpolated adjoint, the seminorm and
the carried step size, the kinetic-energy regulariser, and the checks on f.vjp's output."""

import numpy as np
import pytest

import neuralode as ne
from neuralode.checks import check_dynamics_vjp, fd_param_gradients, linear_field_gradient, relative_error
from neuralode.nn import MLP, ravel_params
from neuralode.regularise import KineticEnergy

from test_gradients import ADAPTIVE, FIXED, _assert_close, _dynamics, _fd_all

TIMES = {"two": np.array([0.0, 1.1]), "several": np.array([0.0, 0.3, 0.31, 0.9, 1.1])}


def _problem(name, times, seed=0):
    f, rng = _dynamics(name), np.random.default_rng(seed)
    y0, t = rng.standard_normal((3, 2)), TIMES[times]
    return f, y0, t, rng.standard_normal((len(t), 3, 2))


def _grads(f, y0, t, weights, **options):
    ys, pullback = ne.odeint_vjp(f, y0, t, **options)
    return ys, pullback, pullback(weights)


@pytest.mark.parametrize("name", ["mlp", "time"])
@pytest.mark.parametrize("times", list(TIMES))
@pytest.mark.parametrize("method,step_size", [(m, 0.05) for m in FIXED] + [(m, None) for m in ADAPTIVE] + [("dopri5", 0.1)])
@pytest.mark.parametrize("checkpoints", [None, 1, 3])
def test_checkpointing_gives_backprops_numbers(name, times, method, step_size, checkpoints):
    f, y0, t, weights = _problem(name, times)
    solver = dict(method=method, step_size=step_size, rtol=1e-6, atol=1e-8)
    ys_b, pb_b, (y_b, p_b, t_b) = _grads(f, y0, t, weights, gradient="backprop", **solver)
    ys_c, pb_c, (y_c, p_c, t_c) = _grads(f, y0, t, weights, gradient="checkpoint", checkpoints=checkpoints, **solver)
    assert np.array_equal(ys_b, ys_c)
    np.testing.assert_allclose(y_c, y_b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ravel_params(p_c), ravel_params(p_b), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(t_c, t_b, rtol=1e-12, atol=1e-14)
    assert pb_c.nfe_backward == pb_b.nfe_backward
    # every step but the first of each segment is recomputed; an adaptive solve repeats its rejections
    assert 0 < pb_c.nfe_recomputed <= pb_b.nfe_forward


def test_checkpoints_bound_what_is_stored():
    f, y0, t, weights = _problem("mlp", "two")
    for limit in (1, 2, 5):
        recorder = ne.gradients.CheckpointSchedule(limit)
        for j in range(1000):
            recorder.append((0, j, 1000, 0.0, 1e-3, y0, np.zeros((4, 6))))
            assert len(recorder.saved) <= limit
        lengths = [n for _, n in recorder.segments()]
        assert sum(lengths) == 1000 and max(lengths) <= 2 * 1000 / limit
    default = ne.gradients.CheckpointSchedule()
    for j in range(10_000):
        default.append((0, j, 10_000, 0.0, 1e-4, y0, np.zeros((4, 6))))
        n = j + 1
        assert len(default.saved) <= np.sqrt(n) + 1 and default.stride <= 2 * np.sqrt(n)


@pytest.mark.parametrize("name", ["mlp", "time", "rotation"])
@pytest.mark.parametrize("method", ADAPTIVE)
def test_interpolated_adjoint_matches_a_high_accuracy_gradient(name, method):
    f, y0, t, weights = _problem(name, "several", seed=2)
    _, _, grads = _grads(f, y0, t, weights, gradient="interpolated", method=method, rtol=1e-7, atol=1e-9)
    reference = _fd_all(f, y0, t, weights, method="dopri5", rtol=1e-12, atol=1e-12)
    _assert_close(grads, reference, 1e-5 if method == "dopri5" else 1e-4)


@pytest.mark.parametrize("method", FIXED)
def test_interpolated_adjoint_with_fixed_steps_converges(method):
    f, y0, t, weights = _problem("time", "several", seed=4)
    reference = ravel_params(_fd_all(f, y0, t, weights, rtol=1e-12, atol=1e-12)[1])
    errors = []
    for step in (0.1, 0.05, 0.025):
        _, _, (_, params_bar, _) = _grads(f, y0, t, weights, gradient="interpolated", method=method, step_size=step)
        errors.append(relative_error(ravel_params(params_bar), reference))
    assert errors[0] > errors[1] > errors[2], errors


def _contracting():
    """Chapter 9's contracting system f(z) = A z, k = 25, and the exact gradient of c . z(1)."""
    k, c, z0 = 25.0, np.array([1.0, -2.0]), np.array([1.0, 1.0])
    A = np.array([[-0.5, 1.0], [0.0, -k]])
    f = MLP([2, 2], activation="identity")
    f.params[0][...], f.params[1][...] = A, 0.0
    return f, z0, c, linear_field_gradient(A, z0, c)


def _contracting_error(f, z0, c, exact, **options):
    ys, pullback = ne.odeint_vjp(f, z0, np.array([0.0, 1.0]), **options)
    bar = np.zeros_like(ys)
    bar[-1] = c
    return relative_error(ravel_params(pullback(bar)[1]), exact)


def test_interpolated_and_checkpoint_fix_the_drift_that_breaks_the_adjoint():
    f, z0, c, exact = _contracting()
    adjoint, interpolated, checkpoint = [], [], []
    for rtol in (1e-5, 1e-7, 1e-9):
        tol = dict(rtol=rtol, atol=rtol * 1e-2)
        adjoint.append(_contracting_error(f, z0, c, exact, gradient="adjoint", **tol))
        interpolated.append(_contracting_error(f, z0, c, exact, gradient="interpolated", **tol))
        checkpoint.append(_contracting_error(f, z0, c, exact, gradient="checkpoint", **tol))
    assert min(adjoint) > 1e-4, adjoint                        # the drift dominates at every tolerance
    assert interpolated[0] > interpolated[1] > interpolated[2], interpolated
    assert interpolated[-1] < 1e-8 and max(checkpoint) < 1e-5, (interpolated, checkpoint)


def test_measuring_only_a_lets_the_interpolated_adjoint_stall():
    f, z0, c, exact = _contracting()
    tol = dict(rtol=1e-10, atol=1e-12)
    full = _contracting_error(f, z0, c, exact, gradient="interpolated", **tol)
    semi = _contracting_error(f, z0, c, exact, gradient="interpolated", norm="seminorm", **tol)
    assert full < 1e-10 and semi > 1e3 * full, (full, semi)


def _bench_problem():
    rng = np.random.default_rng(0)
    f = MLP([2, 50, 2], rng=rng)
    y0 = rng.standard_normal((3, 2))
    t = np.linspace(0.0, 1.0, 11)
    return f, y0, t, rng.standard_normal((len(t), 3, 2))


def test_seminorm_and_carried_step_cut_the_backward_evaluations():
    f, y0, t, weights = _bench_problem()
    reference = _fd_all(f, y0, t, weights, rtol=1e-12, atol=1e-12)
    counts = {}
    for norm in ("full", "seminorm"):
        for carry in (False, True):
            _, pullback, grads = _grads(f, y0, t, weights, norm=norm, carry_step=carry)
            _assert_close(grads, reference, 1e-5)
            counts[norm, carry] = pullback.nfe_backward
    old, new = counts["full", False], counts["seminorm", True]
    assert new <= 0.85 * old, counts
    assert counts["seminorm", False] < old and counts["full", True] < old, counts


def test_kinetic_energy_dynamics_follow_the_protocol():
    rng = np.random.default_rng(5)
    reg = KineticEnergy(MLP([2, 6, 2], rng=rng), (4, 2))
    s = rng.standard_normal(9)
    report = check_dynamics_vjp(reg, 0.3, s, rng)
    assert report["y"] < 1e-7 and max(report["params"]) < 1e-7
    # the dot-product test in the state: v . (J u) = (v J) . u, with J u by finite differences of reg
    u, v = rng.standard_normal(9), rng.standard_normal(9)
    ju = (reg(0.3, s + 1e-6 * u) - reg(0.3, s - 1e-6 * u)) / 2e-6
    assert abs(v @ ju - reg.vjp(0.3, s, v)[0] @ u) < 1e-7 * (1 + abs(v @ ju))


def test_kinetic_energy_is_the_integral_of_the_squared_speed():
    A = np.array([[0.0, 1.0], [-1.0, 0.0]])          # rotation: |f| = |z| = 1 all the way round
    f = MLP([2, 2], activation="identity")
    f.params[0][...], f.params[1][...] = A, 0.0
    reg = KineticEnergy(f, (1, 2))
    ys = ne.odeint(reg, reg.pack(np.array([[1.0, 0.0]])), np.array([0.0, 2.5]), rtol=1e-10, atol=1e-12)
    _, energy = reg.unpack(ys[-1])
    assert abs(energy - 2.5) < 1e-8


@pytest.mark.parametrize("gradient", ["adjoint", "backprop", "checkpoint", "interpolated"])
def test_regularised_loss_gradient_matches_finite_differences(gradient):
    rng = np.random.default_rng(6)
    f, z0, t, lam = MLP([2, 8, 2], rng=rng), rng.standard_normal((4, 2)), np.array([0.0, 0.5, 1.0]), 0.3
    reg = KineticEnergy(f, z0.shape)
    weights = rng.standard_normal((len(t), 4, 2))

    def loss():
        zs, energy = reg.unpack(ne.odeint(reg, reg.pack(z0), t, rtol=1e-12, atol=1e-12))
        return float(np.sum(weights * zs) + lam * energy[-1])

    ys, pullback = ne.odeint_vjp(reg, reg.pack(z0), t, gradient=gradient)
    bar = np.concatenate([weights.reshape(len(t), -1), np.zeros((len(t), 1))], axis=1)
    bar[-1, -1] = lam
    params_bar = pullback(bar)[1]
    fd = fd_param_gradients(loss, f.params)
    assert relative_error(ravel_params(params_bar), ravel_params(fd)) < 1e-5


def test_kinetic_energy_bad_input():
    with pytest.raises(ValueError, match="protocol"):
        KineticEnergy(lambda t, y: y, (2,))
    with pytest.raises(ValueError, match="shape"):
        KineticEnergy(MLP([2, 2]), (0, 2))
    reg = KineticEnergy(MLP([2, 2]), (3, 2))
    with pytest.raises(ValueError, match="z0 must have shape"):
        reg.pack(np.ones((2, 2)))
    with pytest.raises(ValueError, match="flat"):
        reg(0.0, np.ones(6))


class _BadVJP:
    """A field whose vjp breaks the protocol in the way ``kind`` names."""

    def __init__(self, kind):
        self.kind, self.W = kind, np.eye(2)

    @property
    def params(self):
        return [self.W]

    def __call__(self, t, y):
        return y @ self.W.T

    def vjp(self, t, y, v):
        good = (v @ self.W, [np.outer(v, y)], 0.0)
        return {"pair": good[:2], "shape": (good[0][:1], good[1], 0.0), "count": (good[0], [], 0.0),
                "param shape": (good[0], [np.ones(3)], 0.0), "time": (good[0], good[1], np.ones(2))}[self.kind]


@pytest.mark.parametrize("kind", ["pair", "shape", "count", "param shape", "time"])
@pytest.mark.parametrize("gradient", ["adjoint", "backprop", "checkpoint", "interpolated"])
def test_a_malformed_vjp_is_named(kind, gradient):
    ys, pullback = ne.odeint_vjp(_BadVJP(kind), np.ones(2), [0.0, 1.0], gradient=gradient)
    with pytest.raises(ValueError, match=r"f\.vjp\(t, y, v\) does not follow the dynamics protocol"):
        pullback(np.ones_like(ys))


@pytest.mark.parametrize("gradient", ["adjoint", "backprop", "checkpoint", "interpolated"])
def test_changing_the_returned_solution_does_not_change_the_gradient(gradient):
    f, y0, t, weights = _problem("mlp", "several")
    ys, pullback = ne.odeint_vjp(f, y0, t, gradient=gradient)
    before = pullback(weights)
    ys[...] = 0.0
    after = pullback(weights)
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[2], after[2])


def test_new_option_errors():
    f = MLP([2, 2])
    for options, match in [(dict(norm="max"), "norm must be one of"),
                           (dict(gradient="checkpoint", checkpoints=0), "checkpoints must be an integer"),
                           (dict(gradient="checkpoint", checkpoints=2.5), "checkpoints must be an integer"),
                           (dict(gradient="adjoint", checkpoints=3), "checkpoints is an option"),
                           (dict(carry_step="yes"), "carry_step must be True or False"),
                           (dict(norm=("z", "b")), "norm as a tuple must name distinct blocks"),
                           (dict(norm=()), "norm as a tuple must name distinct blocks"),
                           (dict(norm=("z", "z")), "norm as a tuple must name distinct blocks"),
                           (dict(gradient="interpolated", norm=("z",)), "norm as a tuple must name"),
                           (dict(reset_state=None), "reset_state must be True or False")]:
        with pytest.raises(ValueError, match=match):
            ne.odeint_vjp(f, np.ones(2), [0.0, 1.0], **options)


def _peak(gradient, steps, **options):
    f = MLP([2, 16, 2], rng=np.random.default_rng(0))
    return ne.checks.pullback_peak_memory(f, np.ones((8, 2)), [0.0, 1.0], gradient=gradient, method="rk4",
                                          step_size=1.0 / steps, **options)


def test_memory_of_each_mode_against_its_claim():
    small, large = 25, 1600                        # 64x the steps: sqrt grows 8x
    growth = {mode: _peak(mode, large) / _peak(mode, small) for mode in ("backprop", "checkpoint", "interpolated", "adjoint")}
    assert growth["backprop"] > 30 and growth["interpolated"] > 30, growth
    assert growth["checkpoint"] < 16, growth          # about sqrt(64) = 8, at most twice that
    assert growth["adjoint"] < 1.5, growth
    assert _peak("checkpoint", large) < _peak("backprop", large) / 4


def test_odenet_kinetic_regulariser_gradient():
    from neuralode.models import ODENet
    from neuralode.train import softmax_cross_entropy
    rng = np.random.default_rng(9)
    x, labels = rng.standard_normal((6, 2)), np.array([0, 1, 0, 1, 1, 0])
    model = ODENet(MLP([3, 5, 3], rng=rng), 2, 2, extra=1, kinetic=0.4, rng=rng, rtol=1e-10, atol=1e-12)

    def objective():
        logits, pullback = model.forward_vjp(x)
        return softmax_cross_entropy(logits, labels)[0] + 0.4 * pullback.energy

    logits, pullback = model.forward_vjp(x)
    params_bar = pullback(softmax_cross_entropy(logits, labels)[1])[1]
    fd = fd_param_gradients(objective, model.params)
    assert relative_error(ravel_params(params_bar), ravel_params(fd)) < 1e-6
    assert np.allclose(model.forward(x), logits, rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="kinetic"):
        ODENet(MLP([2, 2]), 2, 2, kinetic=-1.0)


def test_norm_blocks_name_what_is_measured():
    f, y0, t, weights = _bench_problem()

    def nfe_b(**options):
        _, pullback = ne.odeint_vjp(f, y0, t, **options)
        pullback(weights)
        return pullback.nfe_backward

    assert nfe_b(norm=("z", "a")) == nfe_b(norm="seminorm") == nfe_b()
    assert nfe_b(norm=("a_t", "a_theta", "a", "z")) == nfe_b(norm="full")
    assert nfe_b(gradient="interpolated", norm=("a",)) == nfe_b(gradient="interpolated", norm="seminorm")
    assert nfe_b(gradient="interpolated") == nfe_b(gradient="interpolated", norm="full")
    assert nfe_b(norm=("z", "a_theta")) != nfe_b(norm=("z", "a"))      # an index array, not a prefix
