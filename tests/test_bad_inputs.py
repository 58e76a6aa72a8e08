"""Bad input in every public function: a clear ValueError/TypeError (or the engine's own error) at once.

Every case asserts the exception type and a phrase of its message.  An alarm fails a case that hangs,
and warnings are errors, so that no RuntimeWarning leaks from a failing call.
"""

import signal

import numpy as np
import pytest

import neuralode as ne
from neuralode import data, models, nn, optim, train
from neuralode.errors import check_int, check_number

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture(autouse=True)
def alarm():
    def hang(signum, frame):
        raise TimeoutError("the call did not return within 20 s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def decay(t, y):
    return -y


def oscillator(t, y):
    return np.array([y[1], -y[0]])


Y0, T = np.array([1.0, 2.0]), np.array([0.0, 1.0])
LOGITS, LABELS = np.zeros((4, 3)), np.array([0, 1, 2, 1])

ODEINT_CASES = [
    (dict(func=5), ValueError, "func must be callable"),
    (dict(y0=[]), ValueError, "y0 must not be empty"),
    (dict(y0=[np.nan, 1.0]), ValueError, "y0 must contain only finite"),
    (dict(y0="ab"), ValueError, "y0 must hold real numbers"),
    (dict(y0=[[1.0], [1.0, 2.0]]), ValueError, "y0 must be an array"),
    (dict(t=[]), ValueError, "t must be a non-empty 1-D"),
    (dict(t=[[0.0, 1.0]]), ValueError, "t must be a non-empty 1-D"),
    (dict(t=[0.0, np.inf]), ValueError, "t must contain only finite"),
    (dict(t=[0.0, 1.0, 1.0]), ValueError, "strictly increasing"),
    (dict(t=[0.0, 1.0, 0.5]), ValueError, "strictly increasing"),
    (dict(t=[-1e308, 1e308]), ValueError, "wider than floating point"),
    (dict(t=["a", "b"]), ValueError, "t must hold real numbers"),
    (dict(method="rk5"), ValueError, "unknown method"),
    (dict(method=None), ValueError, "unknown method"),
    (dict(rtol=0.0), ValueError, "rtol must be finite and positive"),
    (dict(rtol=-1e-3), ValueError, "rtol must be finite and positive"),
    (dict(rtol=np.nan), ValueError, "rtol must be finite and positive"),
    (dict(atol=-1.0), ValueError, "atol must be finite and non-negative"),
    (dict(atol=np.inf), ValueError, "atol must be finite and non-negative"),
    (dict(atol=[1e-9, 1e-9, 1e-9]), ValueError, "does not broadcast"),
    (dict(y0=[1.0, 0.0], atol=0.0), ValueError, "atol is 0 where y0 is 0"),
    (dict(step_size=0.0), ValueError, "step_size must be None or a positive"),
    (dict(step_size=-0.1), ValueError, "step_size must be None or a positive"),
    (dict(step_size=np.nan), ValueError, "step_size must be None or a positive"),
    (dict(step_size=True), ValueError, "step_size must be None or a positive"),
    (dict(step_size="0.1"), ValueError, "step_size must be None or a positive"),
    (dict(max_num_steps=0), ValueError, "max_num_steps must be a positive integer"),
    (dict(max_num_steps=1.5), ValueError, "max_num_steps must be a positive integer"),
    (dict(max_num_steps=True), ValueError, "max_num_steps must be a positive integer"),
    (dict(method="euler", step_size=1e-20), ne.TooManyStepsError, "more than max_num_steps"),
    (dict(method="euler", step_size=1e-20, t=[0.0, 1.0, 2.0]), ne.TooManyStepsError, "fixed steps needed"),
    (dict(method="rk4", step_size=1e-300), ne.TooManyStepsError, "more than max_num_steps"),
    (dict(method="dopri5", step_size=1e-12), ne.TooManyStepsError, "more than max_num_steps"),
    (dict(method="euler", step_size=1e-3, max_num_steps=10), ne.TooManyStepsError, "max_num_steps = 10"),
    (dict(func=lambda t, y: y[:1]), ValueError, "func"),
    (dict(func=lambda t, y: "x"), ValueError, "func"),
    (dict(func=lambda t, y: None), ValueError, "func"),
    (dict(func=lambda t, y: np.full(2, np.nan)), ne.NonFiniteError, "t = 0"),
    (dict(func=lambda t, y: y * 1e300, t=[0.0, 10.0]), ne.IntegrationError, "integration failed at t ="),
]


@pytest.mark.parametrize("changes, error, phrase", ODEINT_CASES)
def test_odeint_refuses(changes, error, phrase):
    args = {"func": decay, "y0": Y0, "t": T, **changes}
    with pytest.raises(error, match=phrase):
        ne.odeint(args.pop("func"), args.pop("y0"), args.pop("t"), **args)


def later_wrong_shape(shape_after):
    calls = []

    def func(t, y):
        calls.append(t)
        return -y if len(calls) < 3 else np.zeros(shape_after)

    return func


@pytest.mark.parametrize("method", ["euler", "rk4", "dopri5", "bosh3", "implicit_euler", "kvaerno3"])
@pytest.mark.parametrize("y0, wrong", [(np.ones(2), (1,)), (np.ones((3, 2)), (2,)), (np.ones((3, 2)), (3, 1))])
def test_func_shape_is_checked_on_every_call(method, y0, wrong):
    step = 0.1 if method in ("euler", "rk4", "implicit_euler") else None
    with pytest.raises(ValueError, match=r"func\(t, y\) returned shape"):
        ne.odeint(later_wrong_shape(wrong), y0, [0.0, 1.0], method=method, step_size=step)


class WithJvp:
    """Decay whose ``jvp`` (or ``jacobian``) returns what it is given: the implicit methods read them."""

    def __init__(self, jvp=None, jacobian=None):
        if jvp is not None:
            self.jvp = jvp
        if jacobian is not None:
            self.jacobian = jacobian

    def __call__(self, t, y):
        return -y


def nan_beyond(t, y):
    return np.where(y > 0.5, -50.0 * y, np.nan)


IMPLICIT_CASES = [
    (dict(method="kvaerno4"), ValueError, r"unknown method 'kvaerno4'; choose one of .*'kvaerno3'"),
    (dict(func=WithJvp(jvp=lambda t, y, u: u[:1])), ValueError, r"func\.jvp\(t, y, u\) returned shape \(1,\)"),
    (dict(func=WithJvp(jvp=lambda t, y, u: None)), ValueError, r"func\.jvp\(t, y, u\) returned NoneType"),
    (dict(func=WithJvp(jvp=lambda t, y, u: "u")), ValueError, r"func\.jvp\(t, y, u\) returned str"),
    (dict(func=WithJvp(jacobian=lambda t, y: np.eye(3))), ValueError, r"func\.jacobian\(t, y\) returned shape"),
    (dict(func=WithJvp(jvp=lambda t, y, u: u * np.nan)), ne.NonFiniteError, "Jacobian from func.jvp"),
    (dict(func=WithJvp(jacobian=lambda t, y: np.full((2, 2), np.inf))), ne.NonFiniteError, "Jacobian"),
    (dict(func=lambda t, y: np.where(y <= 1.0, -y, np.nan), y0=[1.0, 1.0], step_size=0.1, method="implicit_euler"),
     ne.NonFiniteError, "finite differences of func"),
    (dict(func=lambda t, y: -y**3, y0=[10.0, 10.0], method="implicit_euler", step_size=1.0),
     ne.ConvergenceError, r"t = 0: Newton's iteration .* did not converge .* Use a smaller step_size"),
    (dict(func=nan_beyond, y0=[1.0, 1.0], method="kvaerno3"), ne.ConvergenceError, "cannot shrink further"),
    (dict(func=lambda t, y: -y**3, y0=[10.0, 10.0], method="kvaerno3", max_num_steps=3), ne.TooManyStepsError,
     "max_num_steps = 3"),
]


@pytest.mark.parametrize("changes, error, phrase", IMPLICIT_CASES)
def test_implicit_methods_refuse(changes, error, phrase):
    args = {"func": decay, "y0": Y0, "t": T, "method": "kvaerno3", **changes}
    with pytest.raises(error, match=phrase):
        ne.odeint(args.pop("func"), args.pop("y0"), args.pop("t"), **args)


@pytest.mark.parametrize("a, message", [([[0.0, 0.0], [0.5, -0.5]], "ESDIRK diagonal"),
                                        ([[0.5, 0.0], [0.0, 0.5]], "ESDIRK diagonal"),
                                        ([[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.4]], "ESDIRK diagonal"),
                                        ([[0.0, 0.5], [0.0, 0.5]], "strictly lower triangular")])
def test_implicit_tableaux_refuse(a, message):
    a = np.array(a)
    with pytest.raises(ValueError, match=message):
        ne.ButcherTableau(name="bad", order=1, c=a.sum(axis=1), a=a, b=np.full(len(a), 1 / len(a)))


def test_order_conditions_refuse_an_order_they_do_not_list():
    with pytest.raises(ValueError, match="max_order must be 4 or 5"):
        ne.tableaux.order_condition_residuals(ne.IMPLICIT_TABLEAUX["kvaerno3"], max_order=3)


def test_atol_zero_without_zero_component_still_solves():
    ys = ne.odeint(decay, [1.0, 2.0], [0.0, 1.0], atol=0.0)
    assert np.allclose(ys[-1], np.exp(-1.0) * np.array([1.0, 2.0]), rtol=1e-6, atol=0)


def test_integration_errors_are_runtime_errors_naming_t():
    with pytest.raises(RuntimeError, match=r"t = 0"):
        ne.odeint(decay, Y0, T, method="euler", step_size=1e-20)


LOSS_CASES = [
    (train.mse, (np.zeros((3, 2)), np.zeros(2)), ValueError, "pred has shape"),
    (train.mse, (np.zeros((3, 2)), np.zeros((2, 3))), ValueError, "pred has shape"),
    (train.mse, (np.zeros(0), np.zeros(0)), ValueError, "must not be empty"),
    (train.mae, (np.zeros((3, 1)), np.zeros(3)), ValueError, "pred has shape"),
    (train.softmax_cross_entropy, (LOGITS, LABELS[:, None]), ValueError, "labels must have shape"),
    (train.softmax_cross_entropy, (LOGITS, LABELS[:3]), ValueError, "labels must have shape"),
    (train.softmax_cross_entropy, (LOGITS, LABELS + 0.0), ValueError, "labels must be integers"),
    (train.softmax_cross_entropy, (LOGITS, np.array([0, 1, 3, 1])), ValueError, r"labels must lie in 0\.\.2"),
    (train.softmax_cross_entropy, (LOGITS, np.array([0, -1, 2, 1])), ValueError, r"labels must lie in"),
    (train.softmax_cross_entropy, (np.zeros(4), LABELS), ValueError, "logits must have shape"),
    (train.softmax_cross_entropy, (np.zeros((4, 0)), LABELS), ValueError, "logits must have shape"),
    (train.accuracy, (LOGITS, LABELS[:, None]), ValueError, "labels must have shape"),
    (train.accuracy, (LOGITS, np.array([0, 1, 5, 1])), ValueError, "labels must lie in"),
    (data.one_hot, (np.array([0, 3]), 3), ValueError, "labels must lie in"),
    (data.one_hot, (np.array([0.5]), 3), ValueError, "labels must be integers"),
    (data.one_hot, (np.array([0]), 0), ValueError, "n_classes must be an integer of at least 1"),
    (data.one_hot, (np.array([0]), "3"), TypeError, "n_classes must be an integer"),
]


@pytest.mark.parametrize("fn, args, error, phrase", LOSS_CASES)
def test_losses_refuse(fn, args, error, phrase):
    with pytest.raises(error, match=phrase):
        fn(*args)


MODEL_CASES = [
    (lambda: nn.MLP(5), TypeError, "sizes must be a list"),
    (lambda: nn.MLP("25"), TypeError, "sizes must be a list"),
    (lambda: nn.MLP([2, "3", 2]), TypeError, r"sizes\[1\] must be an integer"),
    (lambda: nn.MLP([2, True, 2]), TypeError, r"sizes\[1\] must be an integer"),
    (lambda: nn.MLP([2, 2.5, 2]), ValueError, r"sizes\[1\] must be an integer"),
    (lambda: nn.MLP([2, 2], activation="gelu"), ValueError, "unknown activation"),
    (lambda: nn.MLP([2, 2], activation=None), ValueError, "unknown activation"),
    (lambda: nn.MLP([2, 2], rng=0), TypeError, "rng must be a numpy.random.Generator"),
    (lambda: nn.TimeMLP(3), TypeError, "sizes must be a list"),
    (lambda: nn.TimeMLP([2, 0, 2]), ValueError, r"sizes\[1\]"),
    (lambda: nn.CubeInputMLP([2]), ValueError, "at least two"),
    (lambda: nn.Linear(0, 2, np.random.default_rng(0)), ValueError, "n_in must be an integer of at least 1"),
    (lambda: nn.Linear(2, -1, np.random.default_rng(0)), ValueError, "n_out"),
    (lambda: nn.MLP([2, 2])(0.0, np.zeros((3, 5))), ValueError, "expected input of shape"),
    (lambda: models.strip(np.zeros((2, 3)), -1), ValueError, "dim must be an integer of at least 1"),
    (lambda: models.strip(np.zeros((2, 3)), 4), ValueError, "more than the 3 features"),
    (lambda: models.strip(np.zeros((2, 3)), 1.5), ValueError, "dim must be an integer"),
    (lambda: models.strip(np.float64(1.0), 1), ValueError, "z must have a last axis"),
    (lambda: models.augment(np.zeros((2, 2)), -1), ValueError, "extra must be an integer of at least 0"),
    (lambda: models.augment(np.zeros((2, 2)), "1"), TypeError, "extra must be an integer"),
    (lambda: models.ResNet(2, 8, 0), ValueError, "n_blocks must be an integer of at least 1"),
    (lambda: models.ResNet(0, 8, 1), ValueError, "dim must be an integer of at least 1"),
    (lambda: models.ResNet(2, -3, 1), ValueError, "hidden must be an integer of at least 1"),
    (lambda: models.ResNetClassifier(2, 8, 2, 0), ValueError, "n_classes must be an integer of at least 1"),
    (lambda: models.ODENet(nn.MLP([2, 8, 2]), 2, 0), ValueError, "n_classes must be an integer of at least 1"),
    (lambda: models.ODENet(nn.MLP([2, 8, 2]), 2, 2, t1=np.nan), ValueError, "t1 must be finite"),
    (lambda: models.ODENet(nn.MLP([2, 8, 2]), 2, 2, t1=0.0), ValueError, "t1 must differ"),
    (lambda: models.ODENet(nn.MLP([3, 8, 3]), 2, 2), ValueError, "dim \\+ extra"),
    (lambda: models.ODENet(nn.MLP([2, 8, 2]), 2, 2, extra=-1), ValueError, "extra must be"),
    (lambda: models.ODENet(None, 2, 2), TypeError, "field must be dynamics"),
    (lambda: nn.ScaledField(nn.MLP([2, 2]), [1.0, np.nan]), ValueError, "scale must be a finite number"),
    (lambda: nn.ScaledField(nn.MLP([2, 2]), np.ones((2, 2))), ValueError, "scale must be a finite number"),
    (lambda: nn.ScaledField(nn.MLP([2, 2]), "big"), ValueError, "scale must be a finite number"),
    (lambda: nn.ScaledField(nn.MLP([2, 2]), [1.0, 2.0, 3.0]), ValueError, "scale has 3 entries; the field has 2"),
    (lambda: nn.ScaledField(lambda t, y: y, 2.0), TypeError, "field must follow the dynamics protocol"),
]


@pytest.mark.parametrize("make, error, phrase", MODEL_CASES)
def test_models_refuse(make, error, phrase):
    with pytest.raises(error, match=phrase):
        make()


def params():
    return [np.zeros(2)]


OPTIM_CASES = [
    (lambda: optim.SGD(params(), lr=-0.1), ValueError, "lr must be greater than 0"),
    (lambda: optim.SGD(params(), lr=np.nan), ValueError, "lr must be finite"),
    (lambda: optim.SGD(params(), lr=0.0), ValueError, "lr must be greater than 0"),
    (lambda: optim.SGD(params(), lr="0.1"), TypeError, "lr must be a real number"),
    (lambda: optim.Adam(params(), lr=np.inf), ValueError, "lr must be finite"),
    (lambda: optim.Adam(params(), betas=(0.9, 1.0)), ValueError, r"betas must lie in \[0, 1\)"),
    (lambda: optim.Adam(params(), betas=(-0.1, 0.9)), ValueError, r"betas\[0\] must be at least 0"),
    (lambda: optim.Adam(params(), betas=0.9), ValueError, "betas must be a pair"),
    (lambda: optim.Adam(params(), eps=0.0), ValueError, "eps must be greater than 0"),
    (lambda: optim.Adam([[0.0, 1.0]]), TypeError, r"params\[0\] must be a float NumPy array"),
    (lambda: optim.SGD([np.zeros(2, dtype=int)]), TypeError, r"params\[0\] must be a float"),
    (lambda: optim.SGD(params()).step(np.zeros(2)), TypeError, "grads must be a list"),
    (lambda: optim.SGD(params()).step([np.zeros(3)]), ValueError, "gradient 0 has shape"),
    (lambda: optim.SGD(params()).step([np.zeros(2), np.zeros(2)]), ValueError, "expected 1 gradient"),
    (lambda: optim.Adam(params()).step([np.array([np.nan, 0.0])]), ValueError, "NaN or infinity"),
]


@pytest.mark.parametrize("make, error, phrase", OPTIM_CASES)
def test_optimisers_refuse(make, error, phrase):
    with pytest.raises(error, match=phrase):
        make()


RNG = np.random.default_rng(0)
T10, YS10 = np.linspace(0.0, 1.0, 10), np.zeros((10, 2))

DATA_CASES = [
    (lambda: data.spiral(10, noise=-0.1), ValueError, "noise must be at least 0"),
    (lambda: data.spiral(10, noise=np.nan), ValueError, "noise must be finite"),
    (lambda: data.spiral(-5), ValueError, "n_points must be an integer of at least 2"),
    (lambda: data.spiral(10.5), ValueError, "n_points must be an integer"),
    (lambda: data.spiral(10, t_max=-1.0), ValueError, "t_max must be greater than 0"),
    (lambda: data.spiral(10, t_max=np.inf), ValueError, "t_max must be finite"),
    (lambda: data.spiral(10, noise=0.1), ValueError, "pass rng"),
    (lambda: data.two_moons(0), ValueError, "n must be an integer of at least 2"),
    (lambda: data.two_moons(10.5), ValueError, "n must be an integer"),
    (lambda: data.two_moons("10"), TypeError, "n must be an integer"),
    (lambda: data.two_moons(10, noise=-1.0), ValueError, "noise must be at least 0"),
    (lambda: data.two_moons(10, noise=np.nan), ValueError, "noise must be finite"),
    (lambda: data.concentric_circles(10, noise=-0.5), ValueError, "noise must be at least 0"),
    (lambda: data.concentric_spheres(10, dim=0), ValueError, "dim must be an integer of at least 1"),
    (lambda: data.concentric_spheres(10, radii=(1.0, 0.5, 2.0)), ValueError, "radii must satisfy"),
    (lambda: data.concentric_spheres(10, radii=(1.0, 2.0)), ValueError, "radii must be three numbers"),
    (lambda: data.concentric_spheres(10, radii=(0.5, 1.0, np.nan)), ValueError, r"radii\[2\] must be finite"),
    (lambda: data.trajectory_windows(T10, YS10, 0, 3, RNG), ValueError, "batch_size must be an integer of at least 1"),
    (lambda: data.trajectory_windows(T10, YS10, 2.5, 3, RNG), ValueError, "batch_size must be an integer"),
    (lambda: data.trajectory_windows(T10, YS10, 20, 3, RNG), ValueError, "batch_size must be between"),
    (lambda: data.trajectory_windows(T10, YS10, 2, 1, RNG), ValueError, "window must be an integer of at least 2"),
    (lambda: data.trajectory_windows(T10, YS10, 2, 11, RNG), ValueError, "window must be between"),
    (lambda: data.trajectory_windows(T10, YS10[:5], 2, 3, RNG), ValueError, "ys has 5 observations"),
    (lambda: data.trajectory_windows(T10 ** 2, YS10, 2, 3, RNG), ValueError, "equally spaced"),
    (lambda: data.trajectory_windows(np.full(10, np.nan), YS10, 2, 3, RNG), ValueError, "t must be a finite"),
]


@pytest.mark.parametrize("make, error, phrase", DATA_CASES)
def test_data_refuses(make, error, phrase):
    with pytest.raises(error, match=phrase):
        make()


@pytest.mark.parametrize("n_iters, error, phrase", [(-1, ValueError, "n_iters must be an integer of at least 0"),
                                                    (2.5, ValueError, "n_iters must be an integer"),
                                                    ("10", TypeError, "n_iters must be an integer")])
def test_fit_refuses_bad_n_iters(n_iters, error, phrase):
    with pytest.raises(error, match=phrase):
        train.fit(lambda: 0.0, n_iters, report_every=None)


def test_fit_refuses_a_step_that_is_not_callable():
    with pytest.raises(TypeError, match="step must be a function"):
        train.fit(3, 10)


@pytest.mark.parametrize("value, error, phrase", [(True, TypeError, "must be an integer"), (1.5, ValueError, "must be an integer"),
                                                  (None, TypeError, "must be an integer"), (0, ValueError, "at least 1")])
def test_check_int(value, error, phrase):
    with pytest.raises(error, match="n " + phrase if phrase.startswith("must") else phrase):
        check_int("n", value)


@pytest.mark.parametrize("value, error", [(np.nan, ValueError), (np.inf, ValueError), ("1", TypeError),
                                          (None, TypeError), (False, TypeError), ([1.0], TypeError)])
def test_check_number(value, error):
    with pytest.raises(error, match="x must be"):
        check_number("x", value)
