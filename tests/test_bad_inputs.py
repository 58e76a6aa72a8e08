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


class Fall:
    """A ball in free fall under the dynamics protocol (parameter: gravity)."""

    params = [np.array([9.81])]

    def __call__(self, t, z):
        return np.array([z[1], -self.params[0][0]])

    def vjp(self, t, z, v):
        return np.array([0.0, v[0]]), [np.array([-v[1]])], 0.0


class EventWithVJP:
    """An event function ``g = z[0] - c`` whose vjp returns what ``kind`` says."""

    def __init__(self, kind="good"):
        self.params, self.kind = [np.array([0.5])], kind

    def __call__(self, t, z):
        return z[0] - self.params[0][0]

    def vjp(self, t, z, v):
        good = (np.array([v, 0.0]), [np.array([-v])], 0.0)
        return {"good": good, "pair": good[:2], "shape": (np.array([v]), good[1], 0.0),
                "params": (good[0], [], 0.0), "param_shape": (good[0], [np.array([[-v]])], 0.0),
                "t": (good[0], good[1], np.zeros(2)), "nan": (np.array([np.nan, 0.0]), good[1], 0.0)}[self.kind]


class ParamsWithoutVJP:
    params = [np.array([0.5])]

    def __call__(self, t, z):
        return z[0]


FALL_Z0 = np.array([1.0, 2.0])

EVENT_CASES = [
    (dict(event_fn=None), ValueError, "event_fn must be callable"),
    (dict(event_fn=lambda t, z: z), ValueError, r"event_fn\(t, y\) returned float64 of shape \(2,\)"),
    (dict(event_fn=lambda t, z: z[:1]), ValueError, "it must return one real number"),
    (dict(event_fn=lambda t, z: z[0] > 0), ValueError, "returned a boolean"),
    (dict(event_fn=lambda t, z: "x"), ValueError, "event_fn"),
    (dict(event_fn=lambda t, z: None), ValueError, "event_fn"),
    (dict(event_fn=lambda t, z: np.nan), ne.NonFiniteError, r"event_fn\(t, y\) returned nan"),
    (dict(event_fn=lambda t, z: z[0] if t < 0.5 else np.inf), ne.NonFiniteError, "returned inf"),
    (dict(event_fn=lambda t, z: z[0] if t < 0.5 else z), ValueError, r"returned float64 of shape \(2,\) at t ="),
    (dict(direction=2), ValueError, "direction must be -1"),
    (dict(direction=True), ValueError, "direction must be -1"),
    (dict(direction="up"), ValueError, "direction must be -1"),
    (dict(t0=np.nan), ValueError, "t0 must be finite"),
    (dict(t0="0"), TypeError, "t0 must be a real number"),
    (dict(t0=1e301), ValueError, "too large for a search without t_max"),
    (dict(t_max=0.0), ValueError, "t_max must be later than t0"),
    (dict(t_max=-1.0), ValueError, "t_max must be later than t0"),
    (dict(t_max=np.inf), ValueError, "t_max must be finite"),
    (dict(method="rk4"), ValueError, "'rk4' takes fixed steps: give step_size"),
    (dict(method="rk9"), ValueError, "unknown method"),
    (dict(rtol=-1.0), ValueError, "rtol must be finite and positive"),
    (dict(y0=[np.nan, 1.0]), ValueError, "y0 must contain only finite"),
    (dict(func=lambda t, z: z[:1]), ValueError, r"func\(t, y\) returned"),
    (dict(func=lambda t, z: z * 1e300, event_fn=lambda t, z: z[0] - 1e305), ne.IntegrationError,
     "integration failed at t ="),
    (dict(event_fn=lambda t, z: z[0] + 100.0, t_max=3.0), ne.EventNotFoundError, "did not cross zero before t_max = 3"),
    (dict(event_fn=lambda t, z: 1.0 + z[0] ** 2, max_num_steps=50), ne.EventNotFoundError,
     "did not cross zero within max_num_steps"),
    (dict(event_fn=lambda t, z: 1.0 + z[0] ** 2, method="euler", step_size=1e-3, max_num_steps=50),
     ne.EventNotFoundError, "did not cross zero within max_num_steps"),
]


@pytest.mark.parametrize("changes, error, phrase", EVENT_CASES)
def test_odeint_event_refuses(changes, error, phrase):
    args = {"func": Fall(), "y0": FALL_Z0, "t0": 0.0, "event_fn": lambda t, z: z[0], **changes}
    with pytest.raises(error, match=phrase):
        ne.odeint_event(args.pop("func"), args.pop("y0"), args.pop("t0"), **args)


EVENT_VJP_CASES = [
    (dict(func=lambda t, z: -z), ValueError, "f must follow the dynamics protocol"),
    (dict(event_fn=ParamsWithoutVJP()), ValueError, "event_fn has params but no method vjp"),
    (dict(event_fn=EventWithVJP("pair")), ValueError, r"event_fn.vjp\(t, y, v\) does not follow the protocol: it must"),
    (dict(event_fn=EventWithVJP("shape")), ValueError, r"its first element has shape \(1,\)"),
    (dict(event_fn=EventWithVJP("params")), ValueError, "its second element must be a list of 1 arrays"),
    (dict(event_fn=EventWithVJP("param_shape")), ValueError, "its parameter cotangents have shapes"),
    (dict(event_fn=EventWithVJP("t")), ValueError, r"its third element \(v \* dg/dt\) has shape \(2,\)"),
    (dict(event_fn=EventWithVJP("nan")), ValueError, "it returned a non-finite value"),
    (dict(gradient="exact"), ValueError, "gradient must be one of"),
    (dict(gradient=None), ValueError, "gradient must be one of"),
    (dict(checkpoints_per_step=3), TypeError, r"unknown option\(s\) checkpoints_per_step"),
    (dict(norm="max", gradient="adjoint"), ValueError, "norm must be one of"),
    (dict(norm="full"), ValueError, r"norm='full' is not an option of gradient='backprop'"),
    (dict(gradient="adjoint", atol=0.0), ValueError, "atol must be positive for gradient='adjoint'"),
    (dict(direction=-2), ValueError, "direction must be -1"),
]


@pytest.mark.parametrize("changes, error, phrase", EVENT_VJP_CASES)
def test_odeint_event_vjp_refuses(changes, error, phrase):
    args = {"func": Fall(), "y0": FALL_Z0, "t0": 0.0, "event_fn": EventWithVJP(), **changes}
    with pytest.raises(error, match=phrase):
        ne.odeint_event_vjp(args.pop("func"), args.pop("y0"), args.pop("t0"), **args)


@pytest.mark.parametrize("t_bar, y_bar, error, phrase", [
    (np.nan, np.zeros(2), ValueError, "t_bar must be finite"),
    ("1", np.zeros(2), TypeError, "t_bar must be a real number"),
    (np.ones(1), np.zeros(2), TypeError, "t_bar must be a real number"),
    (1.0, np.zeros(3), ValueError, r"y_bar must have the shape of y_event, \(2,\)"),
    (1.0, np.zeros((1, 2)), ValueError, r"y_bar must have the shape of y_event"),
    (1.0, np.array([np.inf, 0.0]), ValueError, "y_bar must contain only finite"),
    (1.0, np.array([1j, 0.0]), ValueError, "y_bar must hold real numbers"),
])
def test_event_pullback_refuses(t_bar, y_bar, error, phrase):
    _, pullback = ne.odeint_event_vjp(Fall(), FALL_Z0, 0.0, event_fn=lambda t, z: z[0])
    with pytest.raises(error, match=phrase):
        pullback(t_bar, y_bar)


def test_event_pullback_refuses_a_grazing_event():
    apex_time = 2.0 / 9.81
    level = 1.0 + 2.0**2 / (2 * 9.81) * (1 - 1e-13)
    _, pullback = ne.odeint_event_vjp(Fall(), FALL_Z0, 0.0, event_fn=lambda t, z: z[0] - level, t_max=apex_time)
    with pytest.raises(ne.GrazingEventError, match="is grazing: event_fn crosses zero at the rate"):
        pullback(1.0, np.zeros(2))


# ---------------------------------------------------------------------------------------------------
# The newer surface: gradient modes and options, cnf, latent, regularise, checks, the newer samplers
# ---------------------------------------------------------------------------------------------------

from neuralode import checks, cnf, latent, regularise  # noqa: E402

MODES = ["adjoint", "backprop", "checkpoint", "interpolated"]


def vjp_problem():
    rng = np.random.default_rng(0)
    f = nn.MLP([2, 8, 2], rng=rng)
    return f, rng.standard_normal((3, 2)), np.array([0.0, 0.4, 1.0]), rng.standard_normal((3, 3, 2))


@pytest.mark.parametrize("gradient", MODES)
def test_stale_pullback_is_refused(gradient):
    """Class 1: parameters updated in place between the solve and its pullback."""
    f, y0, t, weights = vjp_problem()
    _, pullback = ne.odeint_vjp(f, y0, t, gradient=gradient)
    for p in f.params:
        p -= 0.3 * np.sign(p)
    with pytest.raises(ValueError, match=r"f\.params changed after the forward solve .*Call the pullback before"):
        pullback(weights)


OPTION_CASES = [
    (dict(gradient="backprop", norm="full"), ValueError, "norm='full' is not an option of gradient='backprop'"),
    (dict(gradient="backprop", carry_step=False), ValueError, "carry_step=False is not an option of gradient='backprop'"),
    (dict(gradient="checkpoint", norm="seminorm"), ValueError, "norm='seminorm' is not an option of gradient='checkpoint'"),
    (dict(gradient="checkpoint", reset_state=False), ValueError, "reset_state=False is not an option"),
    (dict(gradient="interpolated", reset_state=False), ValueError, "reset_state=False is not an option"),
    (dict(gradient="adjoint", checkpoints=3), ValueError, "checkpoints=3 is not an option of gradient='adjoint'"),
    (dict(gradient="interpolated", checkpoints=0), ValueError, "checkpoints must be an integer >= 1, 'sqrt' or None"),
    (dict(gradient="checkpoint", checkpoints="all"), ValueError, "checkpoints must be an integer"),
    (dict(norm="max"), ValueError, "norm must be one of"),
    (dict(gradient="adjoint", atol=0.0), ValueError, "atol must be positive for gradient='adjoint'"),
    (dict(gradient="interpolated", atol=np.array([1e-9, 0.0])), ValueError, "atol must be positive"),
    (dict(gradient="adjont"), ValueError, "gradient must be one of"),
    (dict(gradient="backprop", adjoint_rtol=1e-9), ValueError, "adjoint_rtol=1e-09 is not an option of gradient='backprop'"),
    (dict(gradient="adjoint", adjoint_rtol=0.0), ValueError, "adjoint_rtol must be greater than 0.0"),
    (dict(gradient="interpolated", adjoint_atol=-1e-9), ValueError, "adjoint_atol must be greater than 0.0"),
    (dict(gradient="adjoint", adjoint_atol=float("nan")), ValueError, "adjoint_atol must be finite"),
    (dict(gradient="adjoint", adjoint_rtol="tight"), TypeError, "adjoint_rtol must be a real number"),
]


@pytest.mark.parametrize("options, error, phrase", OPTION_CASES)
def test_odeint_vjp_options_follow_one_rule(options, error, phrase):
    """Classes 2 and 3: an option a mode does not use, and atol = 0 where the backward state starts at 0."""
    f, y0, t, _ = vjp_problem()
    with pytest.raises(error, match=phrase):
        ne.odeint_vjp(f, y0, t, **options)


@pytest.mark.parametrize("options", [dict(norm="full"), dict(carry_step=False), dict(reset_state=False),
                                     dict(gradient="checkpoint", checkpoints=2), dict(gradient="interpolated",
                                                                                      checkpoints="sqrt")])
def test_odenet_with_gradient_options_still_runs_forward(options):
    """Class 2: forward(), flow() and the accuracy of an ODENet built with odeint_vjp-only options."""
    x, labels = np.random.default_rng(1).standard_normal((5, 2)), np.array([0, 1, 2, 1, 0])
    net = models.ODENet(nn.MLP([2, 8, 2]), 2, 3, **options)
    logits = net.forward(x)
    assert logits.shape == (5, 3) and net.flow(x, [0.0, 0.5, 1.0]).shape == (3, 5, 2)
    assert 0.0 <= train.accuracy(logits, labels) <= 1.0
    assert np.allclose(net.forward_vjp(x)[0], logits, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("options, error, phrase", [
    (dict(gradient="backprop", norm="full"), ValueError, "norm='full' is not an option of gradient='backprop'"),
    (dict(bogus=1), TypeError, "unknown option"),
    (dict(method="rk5"), ValueError, "unknown method"),
    (dict(rtol=-1.0), ValueError, "rtol must be finite and positive"),
])
def test_odenet_checks_its_solver_options_when_built(options, error, phrase):
    with pytest.raises(error, match=phrase):
        models.ODENet(nn.MLP([2, 8, 2]), 2, 3, **options)


class Transposing:
    """MLP dynamics with one of f(t, z), f.vjp or f.value_and_vjp returning the wrong thing."""

    def __init__(self, broken):
        self.net, self.broken = nn.MLP([2, 8, 2]), broken
        self.params = self.net.params

    def __call__(self, t, z):
        out = self.net(t, z)
        return out.T if self.broken == "call" else out

    def vjp(self, t, z, v):
        z_bar, params_bar, t_bar = self.net.vjp(t, z, v)
        if self.broken == "vjp":
            return z_bar.T, params_bar, t_bar
        return z_bar, params_bar[:-1] if self.broken == "vjp drops" else params_bar, t_bar


class TransposedValue(Transposing):
    def value_and_vjp(self, t, y, v):
        value, out = self.net.value_and_vjp(t, y, v)
        return value.T, out


Z0 = np.random.default_rng(2).standard_normal((3, 2))


def kinetic_gradient(field):
    reg = regularise.KineticEnergy(field, (3, 2))
    ys, pullback = ne.odeint_vjp(reg, reg.pack(Z0), [0.0, 1.0])
    return pullback(np.ones_like(ys))


WRAPPER_CASES = [
    (lambda: kinetic_gradient(Transposing("call")), ValueError, r"f\(t, z\) returned shape \(2, 3\)"),
    (lambda: kinetic_gradient(Transposing("vjp")), ValueError, r"f\.vjp\(t, z, v\) does not follow .* shape \(2, 3\)"),
    (lambda: kinetic_gradient(Transposing("vjp drops")), ValueError, r"f\.vjp\(t, z, v\) does not follow .*4 arrays"),
    (lambda: ne.odeint_vjp(TransposedValue("none"), Z0, [0.0, 1.0])[1](np.ones((2, 3, 2))), ValueError,
     r"f\.value_and_vjp\(t, y, v\)\[0\] returned shape \(2, 3\)"),
    (lambda: ne.odeint_vjp(checks.CountingDynamics(decay), Y0, T), ValueError, r"it has no method f\.vjp"),
    (lambda: regularise.KineticEnergy(nn.MLP([2, 2]), (2.5, 2)), ValueError, "shape must be a tuple of positive"),
    (lambda: regularise.KineticEnergy(nn.MLP([2, 2]), (3, 2)).unpack(np.full(7, np.nan)), ValueError, "s must contain only finite"),
]


@pytest.mark.parametrize("make, error, phrase", WRAPPER_CASES)
def test_wrappers_do_not_hide_the_wrapped_fields_mistakes(make, error, phrase):
    """Class 4: KineticEnergy flattens, value_and_vjp bypasses f.vjp, CountingDynamics wraps anything."""
    with pytest.raises(error, match=phrase):
        make()


def test_counting_dynamics_offers_only_what_it_wraps():
    plain, model = checks.CountingDynamics(decay), checks.CountingDynamics(nn.MLP([2, 2]))
    assert not hasattr(plain, "vjp") and not hasattr(plain, "jvp") and not hasattr(plain, "value_and_vjp")
    assert hasattr(model, "vjp") and hasattr(model, "jvp") and hasattr(model, "value_and_vjp")


class DroppingVJP(nn.MLP):
    def vjp(self, t, y, v):
        y_bar, params_bar, t_bar = super().vjp(t, y, v)
        return y_bar, params_bar[:-1], t_bar


A_LIN, Z_LIN, C_LIN = np.array([[-0.5, 1.0], [0.0, -25.0]]), np.ones(2), np.array([1.0, -2.0])

CHECKER_CASES = [
    (lambda: checks.check_dynamics_vjp(DroppingVJP([2, 4, 2]), 0.0, np.ones(2), np.random.default_rng(0)),
     ValueError, r"f\.vjp\(t, y, v\) does not follow .* list of 4 arrays"),
    (lambda: checks.relative_error(np.ones(1), np.array([1.0, 2.0, 3.0])), ValueError, "they must have one shape"),
    (lambda: checks.relative_error(np.ones((2, 3)), np.ones((3, 2))), ValueError, "they must have one shape"),
    (lambda: checks.relative_error([np.nan], [1.0]), ValueError, "approx must contain only finite"),
    (lambda: checks.fd_param_gradients(lambda: 0.0, [np.array([3])]), ValueError, r"params\[0\] must be a float NumPy array"),
    (lambda: checks.fd_param_gradients(lambda: np.zeros(2), [np.zeros(2)]), ValueError, "loss must return a real scalar"),
    (lambda: checks.fd_gradient(lambda x: float(x @ x), np.zeros(2), eps=0.0), ValueError, "eps must be greater than 0"),
    (lambda: checks.fd_jvp(lambda x: x, np.zeros(3), np.zeros(2)), ValueError, "u must have the shape of x"),
    (lambda: checks.fd_vjp(lambda x: x, np.zeros(3), np.zeros(2)), ValueError, r"v must have the shape of fn\(x\)"),
    (lambda: checks.observed_order([0.1, 0.05], [1e-2, 0.0]), ValueError, "must be positive"),
    (lambda: checks.observed_order([0.1], [1e-2]), ValueError, "at least two different step sizes"),
    (lambda: checks.dot_product_test(lambda u: np.zeros(3), lambda v: np.zeros(2), (2,), (2,), np.random.default_rng(0)),
     ValueError, r"jvp\(u\) returned shape \(3,\)"),
    (lambda: checks.linear_field_gradient(A_LIN, Z_LIN, C_LIN, points=2), TypeError, "points"),
    (lambda: checks.linear_field_gradient(np.ones((2, 3)), Z_LIN, C_LIN), ValueError, "A must be a square matrix"),
    (lambda: checks.linear_field_gradient(A_LIN, np.ones(3), C_LIN), ValueError, r"z0 must have shape \(2,\)"),
    (lambda: checks.peak_memory(3), ValueError, "fn must be a function"),
]


@pytest.mark.parametrize("make, error, phrase", CHECKER_CASES)
def test_checkers_refuse_what_they_cannot_compare(make, error, phrase):
    """Class 5: a checker that can pass a wrong answer is worse than none."""


# --------------------------------------------------------------------------------------------------
# Known physics, hybrids, multiple shooting, sparse regression, L-BFGS

from neuralode import physics, shooting, sparse  # noqa: E402


class NoVJP:
    params = []

    def __call__(self, t, y):
        return -y


class WrongShape:
    """A field that follows the protocol but returns the wrong shape (from its third call on)."""

    def __init__(self, shape_after=(1,), after=0):
        self.params, self.calls, self.shape_after, self.after = [np.zeros(1)], 0, shape_after, after

    def __call__(self, t, y):
        self.calls += 1
        return -y if self.calls <= self.after else np.zeros(self.shape_after)

    def vjp(self, t, y, v):
        return -v, [np.zeros(1)], 0.0


class BadVJP(WrongShape):
    def vjp(self, t, y, v):
        return -v, [np.zeros(2)], 0.0


LV = physics.LotkaVolterra(1.0, 0.5, 1.5, 0.75)
MLP2 = nn.MLP([2, 4, 2])

PHYSICS_CASES = [
    (lambda: physics.LotkaVolterra("a", 0.5, 1.5, 0.75), TypeError, "alpha must be a real number"),
    (lambda: physics.LotkaVolterra(1.0, np.nan, 1.5, 0.75), ValueError, "beta must be finite"),
    (lambda: physics.LotkaVolterra(1.0, 0.5, True, 0.75), TypeError, "gamma must be a real number"),
    (lambda: physics.LotkaVolterra([1.0, 2.0], 0.5, 1.5, [0.7, 0.8, 0.9]), ValueError, "share one non-zero length"),
    (lambda: physics.LotkaVolterra(np.ones((2, 2)), 0.5, 1.5, 0.75), ValueError, "alpha must be a number or a 1-D"),
    (lambda: physics.LotkaVolterra([1.0, np.inf], 0.5, 1.5, 0.75), ValueError, "alpha must be finite"),
    (lambda: physics.LotkaVolterra(["a"], 0.5, 1.5, 0.75), TypeError, "alpha must be a real number or a 1-D"),
    (lambda: LV(0.0, np.ones(3)), ValueError, r"y must have shape \(2,\)"),
    (lambda: LV(0.0, 1.0), ValueError, r"y must have shape \(2,\)"),
    (lambda: LV.vjp(0.0, np.ones(2), np.ones(3)), ValueError, "v must have the shape of y"),
    (lambda: LV.jvp(0.0, np.ones((2, 2)), np.ones(2)), ValueError, "u must have the shape of y"),
    (lambda: LV.invariant(np.array([1.0, 0.0])), ValueError, "needs positive states"),
    (lambda: physics.LotkaVolterra([1.0, 2.0], 0.5, 1.5, 0.75)(0.0, np.ones((3, 2))), ValueError,
     "one row of parameters per state"),
    (lambda: physics.Hybrid(5, MLP2), TypeError, "the known part must be callable"),
    (lambda: physics.Hybrid(LV, NoVJP()), TypeError, r"the learned part \(NoVJP\) has no method vjp"),
    (lambda: physics.Hybrid(LV, type("P", (NoVJP,), {"vjp": lambda s, t, y, v: v, "params": None})()), TypeError,
     "the learned part's params must be a list"),
    (lambda: physics.Hybrid(LV, nn.MLP([3, 4, 3])), ValueError, "the known part acts on 2-dimensional states and "
     "the learned part on 3"),
    (lambda: physics.Hybrid(nn.MLP([2, 4, 3]), MLP2), ValueError, "the known part maps 2-dimensional states to 3"),
    (lambda: physics.Hybrid(LV, WrongShape((3,)))(0.0, np.ones(2)), ValueError,
     r"the learned part's f\(t, y\) returned shape \(3,\); it must return real numbers of shape \(2,\)"),
    (lambda: physics.Hybrid(WrongShape((1, 2)), MLP2)(0.0, np.ones(2)), ValueError,
     r"the known part's f\(t, y\) returned shape \(1, 2\)"),
    (lambda: physics.Hybrid(BadVJP((2,), after=10), MLP2).vjp(0.0, np.ones(2), np.ones(2)), ValueError,
     r"the known part's vjp\(t, y, v\) does not follow the dynamics protocol: its parameter cotangents have shapes"),
    (lambda: physics.Hybrid(LV, WrongShape((2,), after=10)).jvp(0.0, np.ones(2), np.ones(2)), AttributeError,
     "Hybrid.jvp needs the learned part's jvp; WrongShape has none"),
    (lambda: physics.Fixed(None), TypeError, "the fixed part must be callable"),
    (lambda: physics.Fixed(NoVJP()), TypeError, "has no method vjp"),
    (lambda: physics.Fixed(WrongShape()).jvp(0.0, np.ones(2), np.ones(2)), AttributeError,
     "Fixed.jvp needs the wrapped field's jvp"),
    (lambda: physics.PerCapita(nn.MLP([2, 4, 3])), ValueError, "the per-capita rates map 2-dimensional states to 3"),
    (lambda: physics.PerCapita(NoVJP()), TypeError, "has no method vjp"),
    (lambda: physics.PerCapita(WrongShape((3,)))(0.0, np.ones(2)), ValueError,
     r"the per-capita rates part's f\(t, y\) returned shape \(3,\)"),
    (lambda: physics.PerCapita(BadVJP((2,), after=10)).vjp(0.0, np.ones(2), np.ones(2)), ValueError,
     r"the per-capita rates part's vjp\(t, y, v\) does not follow"),
    (lambda: physics.PerCapita(WrongShape((2,), after=10)).jvp(0.0, np.ones(2), np.ones(2)), AttributeError,
     "PerCapita.jvp needs the rates' jvp"),
]


@pytest.mark.parametrize("make, error, phrase", PHYSICS_CASES)
def test_physics_refuses(make, error, phrase):
    with pytest.raises(error, match=phrase):
        make()


X4 = np.random.default_rng(1).standard_normal((4, 2))
SERIES_T = np.linspace(0.0, 2.0, 5)
SERIES_V = np.random.default_rng(3).standard_normal((3, 5, 2))


def small_latent():
    return latent.LatentODE(2, 2, hidden=4, method="rk4", step_size=0.5)


COMPLEX_CASES = [
    (lambda: cnf.CNF(cnf.TimeField(2, 8)).log_prob(X4 + 1j), "x must hold real numbers"),
    (lambda: cnf.standard_normal_log_prob(X4 + 1j), "z must hold real numbers"),
    (lambda: small_latent().loss_and_grad(SERIES_T, SERIES_V + 1j, np.ones_like(SERIES_V), np.random.default_rng(0)),
     "values must hold real numbers"),
    (lambda: small_latent().decode(np.zeros((3, 2)) + 1j, SERIES_T), "z0 must hold real numbers"),
    (lambda: regularise.KineticEnergy(nn.MLP([2, 2]), (4, 2)).pack(X4 + 1j), "z0 must hold real numbers"),
    (lambda: ne.odeint_vjp(nn.MLP([2, 2]), X4, T)[1](np.zeros((2, 4, 2)) + 1j), "ys_bar must hold real numbers"),
    (lambda: data.eight_gaussians_log_prob(X4 + 1j), "x must hold real numbers"),
    (lambda: latent.gaussian_log_likelihood(X4, X4 + 1j, np.ones((4, 2)), 1.0), "mean must hold real numbers"),
    (lambda: latent.gaussian_kl(X4 + 1j, X4), "mu must hold real numbers"),
]


@pytest.mark.parametrize("make, phrase", COMPLEX_CASES)
def test_complex_input_is_refused_not_cast(make, phrase):
    """Class 6: casting would drop the imaginary part with only a ComplexWarning."""
    with pytest.raises(ValueError, match=phrase):
        make()


class BrokenField(cnf.TimeField):
    """A TimeField with one of its trace methods returning something of the wrong shape or length."""

    def __init__(self, broken):
        super().__init__(2, 8)
        self.broken = broken

    def value_and_vjp(self, t, z, v):
        value, out = super().value_and_vjp(t, z, v)
        return (value.T if self.broken == "value" else value), out

    def divergence(self, t, z):
        out = super().divergence(t, z)
        return out[:, None] if self.broken == "divergence" else out

    def divergence_vjp(self, t, z, w):
        z_bar, params_bar, t_bar = super().divergence_vjp(t, z, w)
        if self.broken == "divergence_vjp":
            params_bar = params_bar[:-1]
        return (z_bar.T if self.broken == "divergence_vjp shape" else z_bar), params_bar, t_bar

    def trace_estimate(self, t, z, eps):
        out = super().trace_estimate(t, z, eps)
        return np.append(out, 0.0) if self.broken == "trace_estimate" else out

    def trace_estimate_vjp(self, t, z, eps, w):
        z_bar, params_bar, t_bar = super().trace_estimate_vjp(t, z, eps, w)
        return z_bar, params_bar, (np.array([t_bar, t_bar]) if self.broken == "trace_estimate_vjp" else t_bar)


CNF_FIELD_CASES = [
    ("value", "exact", r"field\.value_and_vjp\(t, z, v\)\[0\] returned shape \(2, 4\)"),
    ("divergence", "exact", r"field\.divergence\(t, z\) returned shape \(4, 1\) at t = .*shape \(4,\)"),
    ("divergence_vjp", "exact", r"field\.divergence_vjp\(t, z, w\) does not follow .* list of 5 arrays"),
    ("divergence_vjp shape", "exact", r"field\.divergence_vjp\(t, z, w\) does not follow .*shape \(2, 4\)"),
    ("trace_estimate", "hutchinson", r"field\.trace_estimate\(t, z, eps\) returned shape \(5,\)"),
    ("trace_estimate_vjp", "hutchinson", r"field\.trace_estimate_vjp\(t, z, eps, w\) does not follow .* scalar"),
]


@pytest.mark.parametrize("broken, trace, phrase", CNF_FIELD_CASES)
def test_cnf_field_methods_are_checked_and_named(broken, trace, phrase):
    """Class 7: a wrong shape from a CNF field's method names that method and the shape it must have."""
    flow = cnf.CNF(BrokenField(broken), trace=trace)
    with pytest.raises(ValueError, match=phrase):
        flow.nll_and_grad(X4, rng=np.random.default_rng(0))


@pytest.mark.parametrize("checkpoints", [None, "sqrt"])
def test_interpolated_adjoint_with_one_output_time(checkpoints):
    """Class 8: t = [t0] has nothing to solve; the gradient is ys_bar[0] for y0 and zero elsewhere."""
    ys, pullback = ne.odeint_vjp(nn.MLP([2, 2]), X4, [0.0], gradient="interpolated", checkpoints=checkpoints)
    y0_bar, params_bar, t_bar = pullback(np.ones_like(ys))
    assert np.array_equal(y0_bar, np.ones_like(X4)) and not np.any(ravel(params_bar)) and np.array_equal(t_bar, [0.0])


def ravel(arrays):
    return np.concatenate([a.ravel() for a in arrays])


T11 = np.linspace(0.0, 5.0, 11)

SAMPLER_CASES = [
    (lambda: data.eight_gaussians(5, rng=0), TypeError, "rng must be a numpy.random.Generator"),
    (lambda: data.eight_gaussians(5, rng=np.random.RandomState(0)), TypeError, "got RandomState"),
    (lambda: data.checkerboard(5, rng=7), TypeError, "rng must be a numpy.random.Generator"),
    (lambda: data.two_moons(10, rng=7), TypeError, "rng must be a numpy.random.Generator"),
    (lambda: latent.irregular_spirals(4, 3, noise=np.nan, rng=RNG), ValueError, "noise must be finite"),
    (lambda: latent.irregular_spirals(4, 3, t_max=0.0, rng=RNG), ValueError, "t_max must be greater than 0"),
    (lambda: latent.irregular_spirals(4, 3, t_max=-1.0, rng=RNG), ValueError, "t_max must be greater than 0"),
    (lambda: latent.irregular_spirals(4, 3, t_max=np.inf, rng=RNG), ValueError, "t_max must be finite"),
    (lambda: latent.irregular_spirals(4, 3, t_max=np.nan, rng=RNG), ValueError, "t_max must be finite"),
    (lambda: latent.irregular_spirals(4, 3, rng=0), ValueError, "rng must be a numpy.random.Generator"),
    (lambda: latent.linear_spirals(4, [3, 3], T11, rng=RNG), ValueError, "n_obs must be one integer or 4 integers"),
    (lambda: latent.linear_spirals(4, 3, T11, radius=(1.0,), rng=RNG), ValueError, "radius must be a pair"),
    (lambda: latent.linear_spirals(4, 3, T11, radius=(1.0, np.inf), rng=RNG), ValueError, r"radius\[1\] must be finite"),
    (lambda: latent.linear_spirals(4, 3, T11, omega=[1.0, 2.0], rng=RNG), ValueError, "omega must be a real number"),
    (lambda: latent.linear_spirals(4, 3, T11 + 0j, rng=RNG), ValueError, "times must hold real numbers"),
    (lambda: latent.RNNBaseline(2, 2, hidden=4).decode(np.full((3, 2), np.nan), SERIES_T), ValueError,
     "z0 must contain only finite"),
    (lambda: small_latent().decode(np.full((3, 2), np.nan), SERIES_T), ValueError, "z0 must contain only finite"),
    (lambda: small_latent().reconstruct(SERIES_T, SERIES_V, np.ones_like(SERIES_V), pred_times=[-1.0, 1.0]),
     ValueError, r"pred_times must start at or after times\[0\]"),
    (lambda: latent.LatentODE(2, 2, gradient="adj"), ValueError, "gradient must be one of"),
    (lambda: latent.LatentODE(2, 2, obs_std="1"), ValueError, "obs_std must be a real number"),
]


@pytest.mark.parametrize("make, error, phrase", SAMPLER_CASES)
def test_newer_samplers_and_latent_models_refuse(make, error, phrase):
    """Class 9: seeds and RandomState where a Generator belongs, NaN and infinite settings, mismatched sizes."""


@pytest.mark.parametrize("gradient", ["adjoint", "backprop"])
def test_a_hybrid_part_that_changes_shape_mid_solve_is_named(gradient):
    f = physics.Hybrid(physics.Fixed(LV), WrongShape((3,), after=5))
    with pytest.raises(ValueError, match=r"the learned part's f\(t, y\) returned shape"):
        ne.odeint_vjp(f, np.ones(2), np.array([0.0, 1.0]), gradient=gradient)


X_LINE = np.stack([np.linspace(0.5, 3.0, 20), 2 * np.linspace(0.5, 3.0, 20)], axis=1)
THETA6 = np.random.default_rng(0).standard_normal((20, 6))

SPARSE_CASES = [
    (lambda: sparse.MonomialLibrary(0, 2), ValueError, "n_vars must be an integer of at least 1"),
    (lambda: sparse.MonomialLibrary(2, -1), ValueError, "degree must be an integer of at least 0"),
    (lambda: sparse.MonomialLibrary(2.5, 1), ValueError, "n_vars must be an integer"),
    (lambda: sparse.MonomialLibrary(2, 2, names=["x"]), ValueError, "names must be 2 non-empty strings"),
    (lambda: sparse.MonomialLibrary(2, 2, names=["x", ""]), ValueError, "names must be 2 non-empty strings"),
    (lambda: sparse.MonomialLibrary(2, 2)(np.ones((5, 3))), ValueError, r"X must have shape \(n, 2\)"),
    (lambda: sparse.MonomialLibrary(2, 2)(np.ones(2)), ValueError, r"X must have shape \(n, 2\)"),
    (lambda: sparse.MonomialLibrary(2, 2)(np.array([[np.nan, 1.0]])), ValueError, "X must contain only finite"),
    (lambda: sparse.MonomialLibrary(2, 2).equations(np.zeros(5)), ValueError, r"Xi must have shape \(6,\)"),
    (lambda: sparse.MonomialLibrary(2, 2).equations(np.zeros((6, 2)), ["a"]), ValueError, "lhs must name 2"),
    (lambda: sparse.stlsq(np.ones(5), np.ones(5), 0.1), ValueError, "Theta must have shape"),
    (lambda: sparse.stlsq(THETA6, np.ones(19), 0.1), ValueError, r"Y must have shape \(20,\)"),
    (lambda: sparse.stlsq(THETA6, np.full(20, np.nan), 0.1), ValueError, "must contain only finite"),
    (lambda: sparse.stlsq(THETA6, np.ones(20), -0.1), ValueError, "threshold must be at least 0"),
    (lambda: sparse.stlsq(THETA6, np.ones(20), 0.1, max_iter=-1), ValueError, "max_iter must be an integer"),
    (lambda: sparse.stlsq(THETA6[:4], np.ones(4), 0.1), ValueError, "linearly dependent on these 4 samples"),
    (lambda: sparse.stlsq(sparse.MonomialLibrary(2, 2)(X_LINE), np.ones(20), 0.1), ValueError,
     r"linearly dependent on these 20 samples \(rank 3\)"),
]


@pytest.mark.parametrize("make, error, phrase", SPARSE_CASES)
def test_sparse_refuses(make, error, phrase):
    with pytest.raises(error, match=phrase):
        make()


@pytest.mark.parametrize("model", [small_latent, lambda: latent.RNNBaseline(2, 2, hidden=4)])
def test_reconstruct_at_the_first_time_alone(model):
    model = model()
    mask = np.ones_like(SERIES_V)
    one = model.reconstruct(SERIES_T, SERIES_V, mask, pred_times=SERIES_T[:1])
    assert one.shape == (3, 1, 2)
    assert np.allclose(one, model.reconstruct(SERIES_T, SERIES_V, mask)[:, :1], rtol=0, atol=1e-12)


def test_peak_memory_leaves_the_callers_tracemalloc_session_running():
    """Class 10."""
    import tracemalloc

    tracemalloc.start()
    try:
        held = np.zeros(500_000)
        peak = checks.peak_memory(lambda: np.zeros(1_000_000))
        assert tracemalloc.is_tracing() and 8_000_000 <= peak < 12_000_000, peak
        del held
    finally:
        tracemalloc.stop()


T8, D8 = np.linspace(0.0, 2.0, 8), np.ones((8, 2))
MS = lambda **kw: shooting.MultipleShooting(LV, T8, D8, **kw)  # noqa: E731

SHOOTING_CASES = [
    (lambda: shooting.segment_bounds(5, 5), ValueError, "n_segments must be at most n_times - 1 = 4"),
    (lambda: shooting.segment_bounds(5, 0), ValueError, "n_segments must be an integer of at least 1"),
    (lambda: shooting.segment_bounds(1, 1), ValueError, "n_times must be an integer of at least 2"),
    (lambda: MS(), ValueError, "give either n_segments or bounds"),
    (lambda: MS(n_segments=2, bounds=[0, 3, 7]), ValueError, "give either n_segments or bounds"),
    (lambda: MS(bounds=[0, 3, 6]), ValueError, r"bounds must increase strictly from 0 to len\(t\) - 1 = 7"),
    (lambda: MS(bounds=[0, 3, 3, 7]), ValueError, "bounds must increase strictly"),
    (lambda: MS(bounds=[0.0, 7.0]), ValueError, "bounds must be a 1-D array of at least two integer"),
    (lambda: MS(n_segments=2, weight=0.0), ValueError, "weight must be greater than 0"),
    (lambda: shooting.MultipleShooting(LV, T8[::-1], D8, n_segments=2), ValueError, "t must be a finite, strictly"),
    (lambda: shooting.MultipleShooting(LV, T8, D8[:5], n_segments=2), ValueError, r"ys must have shape \(8, \*state\)"),
    (lambda: shooting.MultipleShooting(LV, T8, D8 * np.nan, n_segments=2), ValueError, "ys must contain only finite"),
    (lambda: shooting.MultipleShooting(NoVJP(), T8, D8, n_segments=2), ValueError, "f must follow the dynamics"),
    (lambda: MS(n_segments=2).loss_and_grad(np.ones((3, 2))), ValueError, r"starts must have shape \(2, 2\)"),
    (lambda: MS(n_segments=2).loss_and_grad(np.full((2, 2), np.inf)), ValueError, "starts must contain only finite"),
    (lambda: MS(n_segments=2).predict(np.ones(2)), ValueError, r"starts must have shape \(2, 2\)"),
]


@pytest.mark.parametrize("make, error, phrase", SHOOTING_CASES)
def test_shooting_refuses(make, error, phrase):
    with pytest.raises(error, match=phrase):
        make()


def quadratic(x):
    return lambda: (float(np.sum(x**2)), [2 * x])


LBFGS_CASES = [
    (lambda: optim.minimize_lbfgs(quadratic(np.ones(2)), [[1.0, 2.0]]), TypeError, r"params\[0\] must be a float"),
    (lambda: optim.minimize_lbfgs(quadratic(np.ones(2)), [np.ones(2)], max_iter=0), ValueError,
     "max_iter must be an integer of at least 1"),
    (lambda: optim.minimize_lbfgs(None, [np.ones(2)]), TypeError, "loss_and_grads must be a function"),
    (lambda: optim.minimize_lbfgs(quadratic(np.ones(2)), [np.ones(2)], bounds=[(0, 1), (0, 1)]), ValueError,
     r"bounds must be a list of 1 \(low, high\) pairs"),
    (lambda: optim.minimize_lbfgs(quadratic(np.ones(2)), [np.ones(2)], bounds=[(2.0, 1.0)]), ValueError,
     r"bounds\[0\] has low > high"),
    (lambda: optim.minimize_lbfgs(quadratic(np.ones(2)), [np.ones(2)], bounds=[0.0]), ValueError,
     r"bounds\[0\] must be a pair"),
    (lambda: optim.minimize_lbfgs(lambda: (0.0, [np.ones(3)]), [np.ones(2)]), ValueError, "gradient 0 has shape"),
    (lambda: optim.minimize_lbfgs(lambda: (0.0, [np.array([np.nan, 0.0])]), [np.ones(2)]), ValueError,
     "non-finite loss or gradient at the starting point"),
    (lambda: optim.minimize_lbfgs(lambda: (np.nan, [np.ones(2)]), [np.ones(2)]), ValueError,
     "loss_and_grads returned a non-finite loss or gradient at the starting point"),
    (lambda: optim.minimize_lbfgs(lambda: ne.odeint(lambda t, y: y**2, np.ones(1), [0.0, 2.0]), [np.ones(2)]),
     ne.IntegrationError, "integration failed at t"),
]


@pytest.mark.parametrize("make, error, phrase", LBFGS_CASES)
def test_lbfgs_refuses(make, error, phrase):
    with pytest.raises(error, match=phrase):
        make()


def test_a_hybrid_part_returning_complex_numbers_is_refused():
    class Complex(WrongShape):
        def __call__(self, t, y):
            return -y + 0j

    with pytest.raises(ValueError, match=r"the learned part's f\(t, y\) returned dtype complex128"):
        physics.Hybrid(LV, Complex())(0.0, np.ones(2))
