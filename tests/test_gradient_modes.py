"""The gradient modes added to odeint_vjp: checkpointing, the interpolated adjoint (with and without
checkpoints), the seminorm, the mixed norm and the carried step size, the kinetic-energy regulariser,
the checks on f.vjp's output, the one rule for options and the pullback's refusal of changed parameters."""

import numpy as np
import pytest

import neuralode as ne
from hypothesis import given, settings, strategies as st

from neuralode.checks import check_dynamics_vjp, fd_param_gradients, linear_field_gradient, relative_error
from neuralode.nn import MLP, ravel_params
from neuralode.regularise import KineticEnergy
from neuralode.stepsize import block_rms_max, rms_norm

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
    adjoint, interpolated, checkpoint, resolved = [], [], [], []
    for rtol in (1e-5, 1e-7, 1e-9):
        tol = dict(rtol=rtol, atol=rtol * 1e-2)
        adjoint.append(_contracting_error(f, z0, c, exact, gradient="adjoint", **tol))
        interpolated.append(_contracting_error(f, z0, c, exact, gradient="interpolated", **tol))
        checkpoint.append(_contracting_error(f, z0, c, exact, gradient="checkpoint", **tol))
        resolved.append(_contracting_error(f, z0, c, exact, gradient="interpolated", checkpoints="sqrt", **tol))
    assert min(adjoint) > 1e-4, adjoint                        # the drift dominates at every tolerance
    assert interpolated[0] > interpolated[1] > interpolated[2], interpolated
    assert interpolated[-1] < 1e-8 and max(checkpoint) < 1e-5, (interpolated, checkpoint)
    # z(t) re-solved forward from checkpoints: the interpolated adjoint's accuracy, not the adjoint's drift
    assert resolved[0] > resolved[1] > resolved[2] and resolved[-1] < 1e-8, resolved
    assert all(r < 3 * i for r, i in zip(resolved, interpolated)), (resolved, interpolated)


def test_backward_tolerances_do_not_cure_the_drift_but_a_forward_atol_does():
    """The drift comes from z(1) as the forward solve left it: tighter backward tolerances (adjoint_rtol,
    adjoint_atol) leave the error where it was; a forward atol far below z_2(1) = e^-25 removes it."""
    f, z0, c, exact = _contracting()
    default = _contracting_error(f, z0, c, exact, gradient="adjoint")
    for backward in (dict(adjoint_rtol=1e-10), dict(adjoint_rtol=1e-13), dict(adjoint_rtol=1e-13, adjoint_atol=1e-15)):
        error = _contracting_error(f, z0, c, exact, gradient="adjoint", **backward)
        assert default > 0.05 and abs(error / default - 1) < 0.01, (backward, error, default)
    forward = [_contracting_error(f, z0, c, exact, gradient="adjoint", atol=atol, adjoint_atol=1e-9)
               for atol in (1e-11, 1e-13)]
    assert forward[0] < 0.02 * default and forward[1] < 0.05 * forward[0], (forward, default)


@pytest.mark.parametrize("gradient, checkpoints", [("adjoint", None), ("interpolated", None), ("interpolated", 2)])
def test_backward_tolerances_reach_the_backward_solve_only(gradient, checkpoints):
    f, y0, t, weights = _problem("mlp", "several")
    options = dict(gradient=gradient, rtol=1e-4, atol=1e-6)
    if checkpoints is not None:
        options["checkpoints"] = checkpoints
    ys, pb, (y_bar, p_bar, _) = _grads(f, y0, t, weights, **options)
    ys_t, pb_t, (y_t, p_t, _) = _grads(f, y0, t, weights, adjoint_rtol=1e-10, adjoint_atol=1e-12, **options)
    assert np.array_equal(ys, ys_t) and pb.nfe_forward == pb_t.nfe_forward
    assert pb_t.nfe_backward > 2 * pb.nfe_backward
    if gradient == "interpolated":   # z(t) comes from the forward solve: the result is its exact gradient's
        _, _, (y_ref, p_ref, _) = _grads(f, y0, t, weights, gradient="interpolated", rtol=1e-4, atol=1e-6,
                                         adjoint_rtol=1e-12, adjoint_atol=1e-14)
        tight, loose = (relative_error(ravel_params(p), ravel_params(p_ref)) for p in (p_t, p_bar))
        assert tight < 0.1 * loose, (tight, loose)


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
    modes = {"backprop": {}, "checkpoint": {}, "interpolated": {}, "adjoint": {},
             "interpolated, checkpoints": dict(checkpoints="sqrt")}
    peaks = {name: [_peak(name.split(",")[0], steps, **options) for steps in (small, large)]
             for name, options in modes.items()}
    growth = {name: b / a for name, (a, b) in peaks.items()}
    assert growth["backprop"] > 30 and growth["interpolated"] > 30, growth
    assert growth["checkpoint"] < 16 and growth["interpolated, checkpoints"] < 16, growth   # about sqrt(64) = 8
    assert growth["adjoint"] < 1.5, growth
    assert peaks["checkpoint"][1] < peaks["backprop"][1] / 4
    assert peaks["interpolated, checkpoints"][1] < peaks["interpolated"][1] / 4


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


# ---------------------------------------------------------------------------------------------------
# The interpolated adjoint with checkpoints: z(t) re-solved forward one segment at a time
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "time"])
@pytest.mark.parametrize("times", list(TIMES))
@pytest.mark.parametrize("method,step_size", [(m, 0.05) for m in FIXED] + [(m, None) for m in ADAPTIVE])
@pytest.mark.parametrize("checkpoints", [1, 3, "sqrt"])
def test_checkpointed_interpolated_agrees_with_the_interpolated_adjoint(name, times, method, step_size, checkpoints):
    f, y0, t, weights = _problem(name, times)
    solver = dict(method=method, step_size=step_size, rtol=1e-7, atol=1e-9, gradient="interpolated")
    ys_i, pb_i, (y_i, p_i, t_i) = _grads(f, y0, t, weights, **solver)
    ys_c, pb_c, (y_c, p_c, t_c) = _grads(f, y0, t, weights, checkpoints=checkpoints, **solver)
    assert np.array_equal(ys_i, ys_c)
    # the same dense output; the backward solve also stops at each checkpoint, which moves its steps
    tol = 1e-12 if step_size is not None else 1e-6
    assert relative_error(y_c, y_i) < tol and relative_error(t_c, t_i) < tol
    assert relative_error(ravel_params(p_c), ravel_params(p_i)) < tol
    assert 0 < pb_c.nfe_recomputed <= pb_i.nfe_forward + len(pb_c.checkpoint_steps)
    if checkpoints != "sqrt":
        assert len(pb_c.checkpoint_steps) <= checkpoints


@pytest.mark.parametrize("name", ["mlp", "rotation"])
def test_checkpointed_interpolated_matches_a_high_accuracy_gradient(name):
    f, y0, t, weights = _problem(name, "several", seed=2)
    _, _, grads = _grads(f, y0, t, weights, gradient="interpolated", checkpoints=2, rtol=1e-7, atol=1e-9)
    _assert_close(grads, _fd_all(f, y0, t, weights, method="dopri5", rtol=1e-12, atol=1e-12), 1e-5)


def test_checkpointed_interpolated_backward_in_time():
    f, y0, _, weights = _problem("time", "several")
    t = np.array([1.1, 0.9, 0.31, 0.3, 0.0])
    plain = _grads(f, y0, t, weights, gradient="interpolated")[2]
    resolved = _grads(f, y0, t, weights, gradient="interpolated", checkpoints="sqrt")[2]
    assert relative_error(ravel_params(resolved[1]), ravel_params(plain[1])) < 1e-6
    assert relative_error(resolved[2], plain[2]) < 1e-6


# ---------------------------------------------------------------------------------------------------
# norm="mixed": torchdiffeq's largest per-block RMS norm
# ---------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=6).filter(any), st.integers(0, 2**31 - 1))
def test_block_rms_max_is_the_largest_rms_of_the_blocks(sizes, seed):
    x = np.random.default_rng(seed).standard_normal(sum(sizes)) * 10.0 ** np.random.default_rng(seed).integers(-3, 4)
    ends = np.cumsum(sizes)
    by_hand = max(rms_norm(x[e - n:e]) for n, e in zip(sizes, ends) if n > 0)
    assert np.isclose(block_rms_max(sizes)(x), by_hand, rtol=1e-14, atol=0)
    assert block_rms_max(sizes)(x) >= rms_norm(x) * (1 - 1e-14)     # never below the full RMS


def test_mixed_norm_is_nan_when_any_entry_is():
    assert np.isnan(block_rms_max([2, 1])(np.array([1.0, np.nan, 0.0])))


@pytest.mark.parametrize("gradient, blocks", [("adjoint", ["z", "a", "theta", "a_t"]), ("interpolated", ["a", "theta", "a_t"])])
def test_mixed_norm_measures_one_block_per_parameter_array(monkeypatch, gradient, blocks):
    """torchdiffeq's default adjoint norm: max(|a_t|, rms(z), rms(a), rms of each parameter tensor)."""
    f, y0, t, weights = _problem("mlp", "several")
    seen = []
    original = ne.gradients.block_rms_max
    monkeypatch.setattr(ne.gradients, "block_rms_max", lambda sizes: seen.append(list(sizes)) or original(sizes))
    _, _, grads = _grads(f, y0, t, weights, gradient=gradient, norm="mixed")
    n = y0.size
    expected = {"z": [n], "a": [n], "theta": [p.size for p in f.params], "a_t": [1]}
    assert seen == [[size for block in blocks for size in expected[block]]]
    _assert_close(grads, _fd_all(f, y0, t, weights, rtol=1e-12, atol=1e-12), 1e-5)


def test_the_norm_hook_sets_the_first_step_and_the_error_ratio():
    """Problem.norm replaces the RMS norm in the initial step selection and in every error ratio."""
    from neuralode.solver import integrate_adaptive, prepare
    from neuralode.stepsize import step_factor

    problem = prepare(lambda t, y: -y, np.ones(2), [0.0, 1.0], "dopri5", 1e-6, 1e-9, None, 10_000)
    problem.norm = lambda x: 0.0            # every scaled quantity measures 0: the smallest first step
    assert integrate_adaptive(problem).step_times[1] == pytest.approx(1e-6, rel=1e-12)
    problem = prepare(lambda t, y: -y, np.ones(2), [0.0, 1.0], "dopri5", 1e-6, 1e-9, None, 10_000)
    problem.norm, problem.h0 = (lambda x: 0.5), 1e-3     # every error ratio 0.5: every step grows alike
    steps = np.diff(integrate_adaptive(problem).step_times)[:-1]
    assert np.allclose(steps[1:] / steps[:-1], step_factor(0.5, 4), rtol=1e-9, atol=0)


def test_mixed_norm_is_used_by_the_step_control_and_the_first_step():
    f, y0, t, weights = _bench_problem()
    counts = {}
    for norm in ("full", "mixed", "seminorm"):
        _, pullback = ne.odeint_vjp(f, y0, t, norm=norm, carry_step=False)
        pullback(weights)
        counts[norm] = pullback.nfe_backward
    # the largest per-block RMS is at least the full RMS: never fewer backward evaluations than "full"
    assert counts["mixed"] >= counts["full"] > counts["seminorm"], counts


# ---------------------------------------------------------------------------------------------------
# One rule for the options; a pullback that cannot go stale
# ---------------------------------------------------------------------------------------------------

UNUSED = [("backprop", "norm", "full"), ("backprop", "norm", "mixed"), ("backprop", "carry_step", False),
          ("backprop", "reset_state", False), ("backprop", "checkpoints", 3), ("checkpoint", "norm", "seminorm"),
          ("checkpoint", "carry_step", False), ("checkpoint", "reset_state", False), ("adjoint", "checkpoints", 2),
          ("adjoint", "checkpoints", "sqrt"), ("interpolated", "reset_state", False),
          ("backprop", "adjoint_rtol", 1e-9), ("checkpoint", "adjoint_atol", 1e-12)]


@pytest.mark.parametrize("gradient, name, value", UNUSED)
def test_an_option_the_mode_does_not_use_is_refused(gradient, name, value):
    with pytest.raises(ValueError, match=rf"{name}=.* is not an option of gradient='{gradient}'"):
        ne.odeint_vjp(MLP([2, 2]), np.ones(2), [0.0, 1.0], gradient=gradient, **{name: value})


@pytest.mark.parametrize("gradient", ["adjoint", "backprop", "checkpoint", "interpolated"])
def test_an_option_left_at_its_default_is_accepted_by_every_mode(gradient):
    f, y0, t, weights = _problem("mlp", "two")
    plain = _grads(f, y0, t, weights, gradient=gradient)[2]
    explicit = _grads(f, y0, t, weights, gradient=gradient, reset_state=True, carry_step=True, norm=None)[2]
    assert np.array_equal(ravel_params(plain[1]), ravel_params(explicit[1]))


def test_unknown_options_are_named():
    with pytest.raises(TypeError, match="unknown option"):
        ne.gradients.check_options("adjoint", normm="full")


@pytest.mark.parametrize("gradient", ["adjoint", "backprop", "checkpoint", "interpolated"])
@pytest.mark.parametrize("checkpoints", [None, 2])
def test_a_pullback_refuses_parameters_changed_since_the_solve(gradient, checkpoints):
    if checkpoints is not None and gradient not in ("checkpoint", "interpolated"):
        return
    f, y0, t, weights = _problem("mlp", "several")
    ys, pullback = ne.odeint_vjp(f, y0, t, gradient=gradient, checkpoints=checkpoints)
    before = pullback(weights)
    saved = f.params[2].copy()
    f.params[2] -= 0.1                                  # an optimiser's step between solve and pullback
    with pytest.raises(ValueError, match=r"f\.params changed after the forward solve \(f\.params\[2\] changed\)"):
        pullback(weights)
    f.params[2][...] = saved                            # put back: the pullback differentiates again
    after = pullback(weights)
    assert np.array_equal(ravel_params(before[1]), ravel_params(after[1]))


def test_a_pullback_refuses_a_replaced_parameter_list():
    class Growing(MLP):
        extra = []

        @property
        def params(self):
            return super().params + self.extra

    f = Growing([2, 4, 2])
    ys, pullback = ne.odeint_vjp(f, np.ones(2), [0.0, 1.0])
    f.extra = [np.zeros(1)]
    with pytest.raises(ValueError, match="their number went from 4 to 5"):
        pullback(np.ones_like(ys))


@pytest.mark.parametrize("gradient", ["adjoint", "interpolated"])
def test_atol_zero_is_refused_by_the_adaptive_adjoint_modes(gradient):
    with pytest.raises(ValueError, match=f"atol must be positive for gradient='{gradient}'"):
        ne.odeint_vjp(MLP([2, 2]), np.ones(2), [0.0, 1.0], gradient=gradient, atol=0.0)
    with pytest.raises(ValueError, match="atol must be positive"):
        ne.odeint_vjp(MLP([2, 2]), np.ones(2), [0.0, 1.0], gradient=gradient, atol=[1e-9, 0.0])
    # fixed steps measure no error: atol = 0 is harmless there
    ne.odeint_vjp(MLP([2, 2]), np.ones(2), [0.0, 1.0], gradient=gradient, atol=0.0, method="rk4", step_size=0.1)


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint"])
def test_atol_zero_with_a_zero_adjoint_is_right_for_backprop(gradient):
    f, y0, t, weights = _problem("mlp", "several")
    weights[-1] = 0.0                                   # the adjoint is zero on the last interval
    _, _, grads = _grads(f, y0, t, weights, gradient=gradient, atol=0.0, rtol=1e-9)
    _assert_close(grads, _fd_all(f, y0, t, weights, rtol=1e-12, atol=1e-12), 1e-6)


@pytest.mark.parametrize("gradient", ["adjoint", "backprop", "checkpoint", "interpolated"])
@pytest.mark.parametrize("checkpoints", [None, "sqrt"])
def test_one_output_time(gradient, checkpoints):
    if checkpoints is not None and gradient not in ("checkpoint", "interpolated"):
        return
    f, y0, _, _ = _problem("mlp", "two")
    ys, pullback = ne.odeint_vjp(f, y0, [0.5], gradient=gradient, checkpoints=checkpoints)
    bar = np.random.default_rng(0).standard_normal(ys.shape)
    y0_bar, params_bar, t_bar = pullback(bar)
    assert np.array_equal(ys[0], y0) and np.array_equal(y0_bar, bar[0])
    assert not np.any(ravel_params(params_bar)) and t_bar.shape == (1,) and t_bar[0] == 0.0
