"""Throw plausible mistakes at the newer surface of the engine and classify what each one does.

Run with ``.venv/bin/python tools/fuzz_inputs.py`` (``-v`` lists every case, ``--show CLASS`` the cases
of one class).  The surface: ``cnf``, ``latent``, ``odeint_vjp``'s gradient modes and options,
``regularise``, ``checks``, ``models.ODENet``'s solver options and the newer samplers of ``data``.

A case is a call with a plausible mistake in it (a NaN, a seed where a generator belongs, a complex
array, an option the gradient mode does not use, a user field whose method returns the wrong shape,
parameters updated between a solve and its pullback), or a valid call that once went wrong.  Each
runs under an alarm with warnings as errors, and its outcome falls into one class:

* ``clear error``: a ``ValueError``/``TypeError`` (or the engine's own error) from the engine whose
  message names what is wrong (a phrase the case expects: the argument, the method at fault);
* ``unclear message``: an error of the engine's that does not name it;
* ``numpy error``: an error from deep inside NumPy or Python (a broadcast or concatenate message,
  an ``IndexError``, an ``AttributeError``...), which leaves the reader to find the mistake;
* ``leaked warning``: a NumPy warning (``ComplexWarning``, divide by zero...) escaped the call;
* ``silent wrong/NaN``: the call returned although its input was a mistake, or returned a wrong
  number or a NaN for an input it accepted;
* ``hang``: the alarm went off;
* ``ok``: a valid call returned the right answer; ``false refusal``: a valid call raised.

Cases where either a clear refusal or the right answer is acceptable (``atol=0`` in an adjoint mode,
say) count as ``clear error`` or ``ok`` accordingly.  The exit status is 0; this is a measuring tool.
"""

import argparse
import os
import re
import signal
import sys
import tracemalloc
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np

import neuralode as ne
from neuralode import checks, cnf, data, latent, models, regularise
from neuralode.nn import MLP
from neuralode.params import ravel_params

CLASSES = ("clear error", "unclear message", "numpy error", "leaked warning", "silent wrong/NaN", "hang",
           "ok", "false refusal")
ALARM_SECONDS = 20
ENGINE_DIR = os.path.dirname(ne.__file__)
NUMPY_PHRASES = ("could not be broadcast", "could not broadcast", "all the input array dimensions",
                 "setting an array element", "could not convert", "cannot reshape", "not aligned",
                 "matmul", "core dimension", "inhomogeneous", "zero-size array", "invalid literal",
                 "only integer scalar arrays", "object of type", "unsupported operand", "not subscriptable",
                 "has no len", "must be real number, not", "too many indices", "index out of bounds",
                 "must have the same", "object is not iterable", "not supported between instances",
                 "cannot be interpreted as an integer", "takes from", "positional argument", "ufunc",
                 "argument must be a string or a")


class Alarm(Exception):
    """The case did not return within ALARM_SECONDS."""


@dataclass
class Case:
    """One call: ``words`` (regexes, any of which a clear error names) for a mistake that must be
    refused; ``check(result) -> bool`` for a call that must return the right answer; both for a
    call where either is acceptable."""

    name: str
    fn: object
    words: tuple = None
    check: object = None
    outcome: str = None
    detail: str = ""


def bad(name, fn, *words):
    return Case(name, fn, words=tuple(words))


def good(name, fn, check=lambda result: True):
    return Case(name, fn, check=check)


def either(name, fn, check, *words):
    return Case(name, fn, words=tuple(words), check=check)


def arg(name):
    """The regex for an argument's name as a whole word."""
    return rf"(?<![\w.]){re.escape(name)}(?!\w)"


# ---------------------------------------------------------------------------------------------------
# Classifying an outcome
# ---------------------------------------------------------------------------------------------------


def _raised_outside_engine(error):
    """True when the innermost Python frame of the traceback lies in NumPy, SciPy or the standard library."""
    tb, last = error.__traceback__, None
    while tb is not None:
        last, tb = tb.tb_frame.f_code.co_filename, tb.tb_next
    return last is not None and ("site-packages" in last or "/lib/python3" in last) and ENGINE_DIR not in last


def classify_error(case, error):
    if isinstance(error, Alarm):
        return "hang"
    if isinstance(error, Warning):
        return "leaked warning"
    message = str(error)
    if not isinstance(error, (ValueError, TypeError, RuntimeError)) or isinstance(error, np.linalg.LinAlgError):
        return "numpy error"
    if any(phrase in message for phrase in NUMPY_PHRASES) or _raised_outside_engine(error):
        return "numpy error"
    if case.words is None:
        return "false refusal"
    return "clear error" if any(re.search(w, message) for w in case.words) else "unclear message"


def classify_result(case, result):
    if case.check is None:
        return "silent wrong/NaN"
    try:
        right = bool(case.check(result))
    except Exception as error:     # a check that cannot read the result: the result is wrong
        return "silent wrong/NaN" if not isinstance(error, Alarm) else "hang"
    return "ok" if right else "silent wrong/NaN"


def run(case):
    def ring(signum, frame):
        raise Alarm(f"no answer within {ALARM_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(ALARM_SECONDS)
    try:
        with warnings.catch_warnings(), np.errstate(all="warn"):
            warnings.simplefilter("error")
            result = case.fn()
            case.outcome = classify_result(case, result)
    except BaseException as error:      # noqa: B036 (KeyboardInterrupt aside, every error is an outcome)
        if isinstance(error, KeyboardInterrupt):
            raise
        case.outcome = classify_error(case, error)
        case.detail = f"{type(error).__name__}: {str(error)[:160]}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        if tracemalloc.is_tracing():
            tracemalloc.stop()
    return case


# ---------------------------------------------------------------------------------------------------
# Bad values by kind
# ---------------------------------------------------------------------------------------------------

POS_INT = [0, -1, 2.5, "3", True, None, 1j, np.nan]
POS_FLOAT = [0.0, -1.0, np.nan, np.inf, "1", None, 1j, [1.0, 2.0]]
NONNEG_FLOAT = [-1.0, np.nan, np.inf, "1", None, 1j, [1.0, 2.0]]
FINITE = [np.nan, np.inf, "0", None, 1j]
RNG_BAD = [0, np.random.RandomState(0), "seed"]
RNG_REQUIRED_BAD = RNG_BAD + [None]


def rng():
    return np.random.default_rng(0)


def sweep(label, call, base, bad_values, also=None):
    """One case per bad value of each argument: ``call(**{**base, name: value})`` must name ``name``
    (or one of the arguments ``also[name]`` lists, for a value that contradicts another argument)."""
    cases = []
    for name, values in bad_values.items():
        words = [arg(name)] + [arg(other) for other in (also or {}).get(name, [])]
        for value in values:
            kwargs = {**base, name: value}
            cases.append(bad(f"{label}({name}={value!r:.30})", lambda kwargs=kwargs: call(**kwargs), *words))
    return cases


def finite_array(x):
    return np.all(np.isfinite(np.asarray(x, dtype=float)))


# ---------------------------------------------------------------------------------------------------
# data: the newer samplers
# ---------------------------------------------------------------------------------------------------


def data_cases():
    cases = sweep("eight_gaussians", lambda **k: data.eight_gaussians(**k),
                  dict(n=5, std=0.2, radius=2.0, rng=rng()),
                  dict(n=POS_INT, std=POS_FLOAT, radius=NONNEG_FLOAT, rng=RNG_BAD))
    cases += sweep("checkerboard", lambda **k: data.checkerboard(**k), dict(n=5, squares=4, size=1.0, rng=rng()),
                   dict(n=POS_INT, squares=POS_INT, size=POS_FLOAT, rng=RNG_BAD))
    cases += sweep("eight_gaussians_log_prob", lambda **k: data.eight_gaussians_log_prob(**k),
                   dict(x=np.zeros((3, 2)), std=0.2, radius=2.0),
                   dict(x=[np.zeros((3, 3)), np.zeros(3), np.zeros((3, 2)) + 1j, np.full((3, 2), np.nan), "ab"],
                        std=POS_FLOAT[:5], radius=NONNEG_FLOAT[:4]))
    cases += [good("eight_gaussians(rng=None) is reproducible", lambda: data.eight_gaussians(4),
                   lambda x: x.shape == (4, 2) and finite_array(x)),
              good("checkerboard(size=0.5) stays on the board", lambda: data.checkerboard(50, size=0.5, rng=rng()),
                   lambda x: np.all(np.abs(x) <= 1.0))]
    return cases


# ---------------------------------------------------------------------------------------------------
# latent: samplers, densities, models
# ---------------------------------------------------------------------------------------------------

TIMES = np.linspace(0.0, 2.0, 5)


def series(n=3, times=TIMES):
    r = rng()
    values = r.standard_normal((n, len(times), 2))
    mask = (r.uniform(size=values.shape) < 0.7).astype(float)
    mask[:, 0] = 1.0
    return times, values, mask


def latent_model(kind="ode", **options):
    if kind == "ode":
        return latent.LatentODE(2, 2, hidden=4, rng=rng(), method="rk4", step_size=0.5, **options)
    return latent.RNNBaseline(2, 2, hidden=4, rng=rng(), **options)


def latent_sampler_cases():
    cases = sweep("irregular_spirals", lambda **k: latent.irregular_spirals(**k),
                  dict(n_series=4, n_obs=5, n_times=10, t_max=6.0, noise=0.05, rng=rng()),
                  dict(n_series=POS_INT, n_obs=POS_INT + [11], n_times=POS_INT, t_max=POS_FLOAT,
                       observe_until=[np.nan, -1.0, "x", 1j], noise=NONNEG_FLOAT, rng=RNG_REQUIRED_BAD))
    t11 = np.linspace(0.0, 5.0, 11)
    cases += sweep("linear_spirals", lambda **k: latent.linear_spirals(**k),
                   dict(n_series=4, n_obs=3, times=t11, rng=rng()),
                   dict(n_series=POS_INT[:4], n_obs=[0, 2.5, [3, 3], [3] * 5, np.array([3, 3, 3, 3, 3]), 12, "3", None],
                        times=[[0.0], [1.0, 0.0], [0.0, np.nan], t11 + 0j, [[0.0, 1.0]]],
                        omega=[np.nan, -1.0, np.inf, "1", [1.0, 2.0], 1j],
                        decay=[np.nan, -1.0, np.inf, "1", [1.0, 2.0]],
                        radius=[(1.0,), (2.0, 1.0), (1.0, 2.0, 3.0), (np.nan, 1.0), ("a", "b"), 1.0, (0.0, 1.0),
                                (1.0, np.inf)],
                        noise=NONNEG_FLOAT, observe_until=[np.nan, -1.0, "x"], rng=RNG_REQUIRED_BAD))
    return cases


def latent_density_cases():
    z = np.zeros((2, 3))
    cases = sweep("gaussian_log_likelihood", lambda **k: latent.gaussian_log_likelihood(**k),
                  dict(values=z, mean=z, mask=np.ones((2, 3)), std=1.0),
                  dict(values=[np.zeros((3, 2)), z + 1j], mean=[np.zeros((3, 2)), z + 1j, np.zeros(3)],
                       mask=[np.ones((3, 2)), np.full((2, 3), 0.5), np.ones((2, 3)) + 0j], std=POS_FLOAT[:6]))
    cases += sweep("gaussian_kl", lambda **k: latent.gaussian_kl(**k), dict(mu=z, logvar=z),
                   dict(mu=[np.zeros((3, 2)), z + 1j, np.full((2, 3), np.nan)],
                        logvar=[np.zeros((3, 2)), z + 1j, np.full((2, 3), np.nan), np.full((2, 3), np.inf)]))
    return cases


def latent_model_cases():
    times, values, mask = series()

    cases = sweep("LatentODE", lambda **k: latent.LatentODE(**k).loss_and_grad(times, values, mask, rng()),
                  dict(obs_dim=2, latent_dim=2, hidden=4, rng=rng(), method="rk4", step_size=0.5),
                  dict(obs_dim=POS_INT[:5], latent_dim=POS_INT[:5], hidden=POS_INT[:5], rng=RNG_BAD,
                       method=["rk5", None, 3], step_size=[0.0, -1.0, np.nan, "x"], rtol=[-1.0, np.nan, "x", 0.0],
                       atol=[-1.0, np.nan, "x"], gradient=["adj", None, 3], obs_std=POS_FLOAT[:6],
                       encoder=["gru", None]))
    cases += sweep("RNNBaseline", lambda **k: latent.RNNBaseline(**k).loss_and_grad(times, values, mask, rng()),
                   dict(obs_dim=2, latent_dim=2, hidden=4, rng=rng()),
                   dict(hidden=POS_INT[:5], rng=RNG_BAD, obs_std=[0.0, np.nan], encoder=["gru"],
                        method=["rk5"], gradient=["adj"]))
    model = latent_model()
    call = lambda **k: model.loss_and_grad(**k)  # noqa: E731
    base = dict(times=times, values=values, mask=mask, rng=rng())
    cases += sweep("loss_and_grad", call, base,
                   dict(times=[times[::-1], np.append(times[:-1], np.nan), times[None], times + 0j, times[:3]],
                        values=[values + 0j, np.where(mask > 0, np.nan, values), values[:, :, :1], values[0]],
                        mask=[mask * 0.5, mask[:, :3], mask + 0j], rng=RNG_REQUIRED_BAD),
                   also=dict(times=["values"], values=["times"], mask=["values"]))
    cases += decode_cases(times, values, mask)
    return cases


def decode_cases(times, values, mask):
    cases = []
    for kind in ("ode", "rnn"):
        model = latent_model(kind)
        label = "LatentODE" if kind == "ode" else "RNNBaseline"
        cases += sweep(f"{label}.decode", lambda model=model, **k: model.decode(**k),
                       dict(z0=np.zeros((3, 2)), times=times),
                       dict(z0=[np.full((3, 2), np.nan), np.zeros((3, 2)) + 1j, np.zeros(2), np.zeros((3, 3))],
                            times=[times[::-1], times + 0j, [np.nan, 1.0]]))
        cases.append(good(f"{label}.decode at one time", lambda model=model: model.decode(np.zeros((3, 2)), times[:1]),
                          lambda out: np.shape(out) == (3, 1, 2)))
        first = lambda out, model=model: np.allclose(out, model.reconstruct(times, values, mask)[:, :1], atol=1e-12)  # noqa: E731
        cases.append(good(f"{label}.reconstruct(pred_times=[times[0]])",
                          lambda model=model: model.reconstruct(times, values, mask, pred_times=times[:1]), first))
        cases += sweep(f"{label}.reconstruct", lambda model=model, **k: model.reconstruct(times, values, mask, **k),
                       {}, dict(pred_times=[[np.nan], [3.0, 2.0], [-1.0, 1.0], np.array([2.0, 3.0]) + 0j,
                                            [[2.0, 3.0]], []]))
    model = latent_model()
    cases += sweep("LatentODE.latent_trajectory", lambda **k: model.latent_trajectory(**k),
                   dict(z0=np.zeros((3, 2)), times=times),
                   dict(z0=[np.full((3, 2), np.nan), np.zeros((3, 2)) + 1j, np.zeros((3, 3))]))
    return cases


# ---------------------------------------------------------------------------------------------------
# cnf: fields, the flow, and user fields that break the trace protocol
# ---------------------------------------------------------------------------------------------------


def field(**options):
    return cnf.TimeField(2, 8, rng=rng(), **options)


class BrokenField(cnf.TimeField):
    """A TimeField with one method returning something of the wrong shape or length."""

    def __init__(self, broken):
        super().__init__(2, 8, rng=rng())
        self.broken = broken

    def __call__(self, t, z):
        out = super().__call__(t, z)
        return out.T if self.broken == "__call__" else out

    def value_and_vjp(self, t, z, v):
        value, (z_bar, params_bar, t_bar) = super().value_and_vjp(t, z, v)
        if self.broken == "value_and_vjp":
            value = value.T
        if self.broken == "vjp":
            params_bar = params_bar[:-1]
        return value, (z_bar, params_bar, t_bar)

    def divergence(self, t, z):
        out = super().divergence(t, z)
        return {"divergence": out[:, None], "divergence length": np.append(out, 0.0)}.get(self.broken, out)

    def divergence_vjp(self, t, z, w):
        z_bar, params_bar, t_bar = super().divergence_vjp(t, z, w)
        if self.broken == "divergence_vjp":
            params_bar = params_bar[:-1]
        if self.broken == "divergence_vjp shape":
            z_bar = z_bar.T
        if self.broken == "divergence_vjp time":
            t_bar = np.array([t_bar, t_bar])
        return z_bar, params_bar, t_bar

    def trace_estimate(self, t, z, eps):
        out = super().trace_estimate(t, z, eps)
        return out[:, None] if self.broken == "trace_estimate" else out

    def trace_estimate_vjp(self, t, z, eps, w):
        z_bar, params_bar, t_bar = super().trace_estimate_vjp(t, z, eps, w)
        return (z_bar, params_bar[:-1] if self.broken == "trace_estimate_vjp" else params_bar, t_bar)


def cnf_constructor_cases():
    cases = sweep("TimeField", lambda **k: cnf.TimeField(**k), dict(dim=2, hidden=8, rng=rng()),
                  dict(dim=POS_INT, hidden=POS_INT[:5], activation=["relu", None], rng=RNG_BAD, scale=NONNEG_FLOAT))
    x = np.zeros((4, 2))
    cases += sweep("CNF", lambda **k: cnf.CNF(**k).log_prob(x), dict(field=field()),
                   dict(t0=FINITE, t1=FINITE + [0.0], trace=["exac", None], noise=["normal", None],
                        method=["rk5", None, 3], rtol=POS_FLOAT[:6], atol=POS_FLOAT[:6],
                        step_size=[0.0, -1.0, np.nan, "x"]))
    cases.append(bad("CNF(field=lambda)", lambda: cnf.CNF(lambda t, z: z), arg("field")))
    return cases


def cnf_call_cases():
    exact, hutch = cnf.CNF(field(), rtol=1e-5, atol=1e-7), cnf.CNF(field(), trace="hutchinson")
    x = np.random.default_rng(1).standard_normal((4, 2))
    xs = [x + 1j, np.where(x > 0, np.nan, x), x[0], np.zeros((4, 3)), np.zeros((0, 2)), "ab", x[None]]
    cases = sweep("CNF.log_prob", lambda **k: exact.log_prob(**k), dict(x=x), dict(x=xs, rng=RNG_BAD))
    cases += sweep("CNF(hutchinson).log_prob", lambda **k: hutch.log_prob(**k), dict(x=x, rng=rng()),
                   dict(x=xs[:4], rng=RNG_REQUIRED_BAD))
    cases += sweep("CNF.nll_and_grad", lambda **k: exact.nll_and_grad(**k), dict(x=x), dict(x=xs[:4]))
    cases += sweep("CNF.sample", lambda **k: exact.sample(**k), dict(n=3, rng=rng()), dict(n=POS_INT, rng=RNG_REQUIRED_BAD))
    cases += sweep("standard_normal_log_prob", lambda **k: cnf.standard_normal_log_prob(**k), {},
                   dict(z=[x + 1j, np.full((2, 2), np.nan), x[0], "ab"]))
    cases += sweep("hutchinson_probes", lambda **k: cnf.hutchinson_probes(**k), dict(shape=(2, 3), rng=rng()),
                   dict(shape=[(2,), [2, 3], (0, 3), (2.5, 3), None], rng=RNG_REQUIRED_BAD, noise=["normal", None]))
    cases += sweep("divergence_by_jvps", lambda **k: cnf.divergence_by_jvps(**k),
                   dict(field=field(), t=0.0, z=x),
                   dict(field=[lambda t, z: z], t=FINITE, z=[x + 1j, np.full((2, 2), np.nan), x[0]]))
    return cases


def cnf_field_cases():
    x = np.random.default_rng(1).standard_normal((4, 2))
    cases = []
    for broken, trace in [("__call__", "exact"), ("value_and_vjp", "exact"), ("vjp", "exact"),
                          ("divergence", "exact"), ("divergence length", "exact"), ("divergence_vjp", "exact"),
                          ("divergence_vjp shape", "exact"), ("divergence_vjp time", "exact"),
                          ("trace_estimate", "hutchinson"), ("trace_estimate_vjp", "hutchinson")]:
        flow = cnf.CNF(BrokenField(broken), trace=trace)
        words = {"__call__": [r"field\(t, z\)", r"field returned"], "value_and_vjp": ["value_and_vjp"],
                 "vjp": [r"field\.vjp", r"field\.value_and_vjp"]}.get(broken, [re.escape(broken.split()[0])])
        cases.append(bad(f"CNF with a {broken} of the wrong shape: nll_and_grad",
                         lambda flow=flow: flow.nll_and_grad(x, rng=rng()), *words))
    return cases


# ---------------------------------------------------------------------------------------------------
# odeint_vjp: modes, options, stale pullbacks, atol = 0, one output time, the protocol
# ---------------------------------------------------------------------------------------------------

MODES = ("adjoint", "backprop", "checkpoint", "interpolated")
UNUSED = {"backprop": dict(norm="full", carry_step=False, reset_state=False, checkpoints=3),
          "checkpoint": dict(norm="full", carry_step=False, reset_state=False),
          "adjoint": dict(checkpoints=3), "interpolated": dict(reset_state=False)}


def vjp_problem(seed=0):
    r = np.random.default_rng(seed)
    f = MLP([2, 8, 2], rng=r)
    y0, t = r.standard_normal((3, 2)), np.array([0.0, 0.4, 1.0])
    return f, y0, t, r.standard_normal((3, 3, 2))


def gradient_of(mode, f, y0, t, w, **options):
    ys, pullback = ne.odeint_vjp(f, y0, t, gradient=mode, **options)
    return pullback(w)


def stale_pullback(mode):
    """Update f.params in place between the solve and the pullback, as an optimiser would."""
    f, y0, t, w = vjp_problem()
    right = ravel_params(gradient_of(mode, f, y0, t, w)[1])
    _, pullback = ne.odeint_vjp(f, y0, t, gradient=mode)
    for p in f.params:
        p -= 0.3 * np.sign(p)
    return right, pullback(w)


def atol_zero(mode, atol):
    f, y0, t, w = vjp_problem()
    w = w.copy()
    w[-1] = 0.0                                       # the adjoint is zero on the last interval
    w[1, :, 1] = 0.0
    return gradient_of(mode, f, y0, t, w, atol=atol, rtol=1e-8), gradient_of(mode, f, y0, t, w, rtol=1e-8, atol=1e-12)


def close_gradients(pair, tol=1e-4):
    (got, reference) = pair
    return all(checks.relative_error(ravel_params(a) if isinstance(a, list) else a,
                                     ravel_params(b) if isinstance(b, list) else b) < tol
               for a, b in zip(got, reference))


class TransposedValue:
    """MLP dynamics whose value_and_vjp returns the value transposed (same size, wrong shape)."""

    def __init__(self):
        self.net = MLP([2, 8, 2], rng=rng())
        self.params = self.net.params

    def __call__(self, t, y):
        return self.net(t, y)

    def vjp(self, t, y, v):
        return self.net.vjp(t, y, v)

    def value_and_vjp(self, t, y, v):
        value, out = self.net.value_and_vjp(t, y, v)
        return value.T, out


def vjp_option_cases():
    f, y0, t, w = vjp_problem()
    cases = []
    for mode, options in UNUSED.items():
        for name, value in options.items():
            cases.append(bad(f"odeint_vjp(gradient={mode!r}, {name}={value!r}) (unused)",
                             lambda mode=mode, name=name, value=value: gradient_of(mode, f, y0, t, w, **{name: value}),
                             arg(name)))
    call = lambda **k: gradient_of(k.pop("gradient", "adjoint"), f, y0, t, w, **k)  # noqa: E731
    cases += sweep("odeint_vjp", call, {}, dict(gradient=["adj", None, 3], norm=["max", 3, ("z", "q"), (), ("z", "z")],
                                               carry_step=["yes", 1, 2.0], reset_state=["no", 0]))
    cases += sweep("odeint_vjp(checkpoint)", call, dict(gradient="checkpoint"),
                   dict(checkpoints=[0, -1, 2.5, True, "3"]))
    cases += sweep("odeint_vjp(interpolated)", call, dict(gradient="interpolated"), dict(checkpoints=[0, -1, "3"]))
    return cases


def vjp_behaviour_cases():
    f, y0, t, w = vjp_problem()
    cases = []
    for mode in MODES:
        cases.append(either(f"stale pullback, {mode}", lambda mode=mode: stale_pullback(mode),
                            lambda out: checks.relative_error(ravel_params(out[1][1]), out[0]) < 1e-12,
                            r"f\.params", r"params\b"))
        for atol in (0.0, np.array([[1e-9, 0.0]] * 3)):
            cases.append(either(f"atol={'0' if np.ndim(atol) == 0 else 'one zero column'}, {mode}",
                                lambda mode=mode, atol=atol: atol_zero(mode, atol), close_gradients, arg("atol")))
        one = np.zeros((1, 3, 2)) + 1.0
        cases.append(good(f"one output time, {mode}",
                          lambda mode=mode: gradient_of(mode, f, y0, [0.0], one),
                          lambda out: np.array_equal(out[0], one[0]) and not np.any(ravel_params(out[1]))))
        for label, bar in [("complex", np.zeros((3, 3, 2)) + 1j), ("NaN", np.full((3, 3, 2), np.nan)),
                           ("wrong shape", np.zeros((3, 2, 3)))]:
            cases.append(bad(f"ys_bar {label}, {mode}", lambda mode=mode, bar=bar: gradient_of(mode, f, y0, t, bar),
                             arg("ys_bar")))
    cases.append(bad("value_and_vjp returning its value transposed, adjoint",
                     lambda: gradient_of("adjoint", TransposedValue(), y0, t, w), "value_and_vjp"))
    cases.append(bad("complex y0", lambda: gradient_of("adjoint", f, y0 + 1j, t, w), arg("y0")))
    counted = checks.CountingDynamics(lambda t, y: -y)
    cases.append(bad("CountingDynamics of a plain function into odeint_vjp",
                     lambda: gradient_of("adjoint", counted, y0, t, w), r"vjp"))
    cases.append(good("CountingDynamics of a plain function offers no vjp",
                      lambda: checks.CountingDynamics(lambda t, y: -y),
                      lambda c: not hasattr(c, "vjp") and not hasattr(c, "jvp")))
    return cases


# ---------------------------------------------------------------------------------------------------
# regularise.KineticEnergy and models.ODENet
# ---------------------------------------------------------------------------------------------------


class Transposing:
    """MLP dynamics with one of f(t, z) or f.vjp returning a transposed array."""

    def __init__(self, broken):
        self.net, self.broken = MLP([2, 8, 2], rng=rng()), broken
        self.params = self.net.params

    def __call__(self, t, z):
        out = self.net(t, z)
        return out.T if self.broken == "call" else out

    def vjp(self, t, z, v):
        z_bar, params_bar, t_bar = self.net.vjp(t, z, v)
        if self.broken == "vjp":
            return z_bar.T, params_bar, t_bar
        return z_bar, params_bar[:-1] if self.broken == "vjp params" else params_bar, t_bar


def regularise_cases():
    f = MLP([2, 8, 2], rng=rng())
    reg = regularise.KineticEnergy(f, (3, 2))
    z0 = np.random.default_rng(2).standard_normal((3, 2))
    cases = sweep("KineticEnergy", lambda **k: regularise.KineticEnergy(**k), dict(f=f, shape=(3, 2)),
                  dict(f=[lambda t, z: z, None], shape=[(0, 2), (-1,), "ab", 2.5, (2.5, 2), None, ()]))
    cases += sweep("KineticEnergy.pack", lambda **k: reg.pack(**k), {},
                   dict(z0=[z0 + 1j, np.full((3, 2), np.nan), z0.T, "ab"]))
    cases += sweep("KineticEnergy.unpack", lambda **k: reg.unpack(**k), {},
                   dict(s=[np.zeros(6), np.zeros(7) + 1j, np.full(7, np.nan)]))
    for broken, words in [("call", [r"f\(t, z\)", r"\bf returned", r"f\(t, y\)"]), ("vjp", [r"f\.vjp"]),
                          ("vjp params", [r"f\.vjp"])]:
        wrapped = regularise.KineticEnergy(Transposing(broken), (3, 2))
        cases.append(bad(f"KineticEnergy of a field whose {broken} is transposed",
                         lambda wrapped=wrapped: gradient_of("adjoint", wrapped, wrapped.pack(z0), [0.0, 1.0],
                                                             np.ones((2, 7))), *words))
    rotation = MLP([2, 2], activation="identity")
    rotation.params[0][...], rotation.params[1][...] = [[0.0, 1.0], [-1.0, 0.0]], 0.0
    spin = regularise.KineticEnergy(rotation, (1, 2))
    cases.append(good("KineticEnergy of a rotation is T", lambda: spin.unpack(
        ne.odeint(spin, spin.pack(np.array([[1.0, 0.0]])), [0.0, 2.0], rtol=1e-10, atol=1e-12)[-1])[1],
        lambda energy: abs(energy - 2.0) < 1e-7))
    return cases


def odenet_cases():
    x = np.random.default_rng(3).standard_normal((5, 2))
    cases = []
    for options in (dict(norm="full"), dict(carry_step=False), dict(reset_state=False),
                    dict(gradient="checkpoint", checkpoints=2), dict(gradient="backprop", max_num_steps=500)):
        net = lambda options=options: models.ODENet(MLP([2, 8, 2], rng=rng()), 2, 3, rng=rng(), **options)  # noqa: E731
        cases.append(good(f"ODENet({options}).forward", lambda net=net: net().forward(x), lambda z: z.shape == (5, 3)))
        cases.append(good(f"ODENet({options}).flow", lambda net=net: net().flow(x, [0.0, 0.5, 1.0]),
                          lambda z: z.shape == (3, 5, 2)))
    for options, name in [(dict(gradient="backprop", norm="full"), "norm"), (dict(gradient="checkpoint", carry_step=False), "carry_step"),
                          (dict(bogus=1), "bogus"), (dict(method="rk5"), "method"), (dict(rtol=-1.0), "rtol")]:
        cases.append(bad(f"ODENet({options})", lambda options=options: models.ODENet(
            MLP([2, 8, 2], rng=rng()), 2, 3, rng=rng(), **options).forward_vjp(x), arg(name)))
    return cases


# ---------------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------------


class DroppingVJP:
    """MLP dynamics whose vjp drops the last parameter's cotangent."""

    def __init__(self):
        self.net = MLP([2, 4, 2], rng=rng())
        self.params = self.net.params

    def __call__(self, t, y):
        return self.net(t, y)

    def vjp(self, t, y, v):
        y_bar, params_bar, t_bar = self.net.vjp(t, y, v)
        return y_bar, params_bar[:-1], t_bar


def checks_cases():
    A, z0, c = np.array([[-0.5, 1.0], [0.0, -25.0]]), np.array([1.0, 1.0]), np.array([1.0, -2.0])
    square = lambda x: float(np.sum(np.asarray(x, dtype=float) ** 2))  # noqa: E731
    cases = [
        bad("relative_error of sizes 1 and 3", lambda: checks.relative_error(np.ones(1), np.array([1.0, 2.0, 3.0])), "shape"),
        bad("relative_error of a transposed array", lambda: checks.relative_error(np.arange(6.0).reshape(2, 3),
                                                                                 np.arange(6.0).reshape(3, 2)), "shape"),
        bad("relative_error with NaN", lambda: checks.relative_error(np.array([np.nan]), np.ones(1)), "finite"),
        bad("relative_error complex", lambda: checks.relative_error(np.ones(2) + 1j, np.ones(2)), "real|complex"),
        bad("fd_param_gradients of an integer array", lambda: checks.fd_param_gradients(
            lambda: 0.0, [np.array([3])]), "float|integer"),
        bad("fd_param_gradients of an array, not a list", lambda: checks.fd_param_gradients(lambda: 0.0, np.zeros(3)),
            arg("params")),
        bad("fd_param_gradients with a loss returning an array", lambda: checks.fd_param_gradients(
            lambda: np.zeros(2), [np.zeros(2)]), arg("loss")),
        bad("fd_gradient with a loss returning an array", lambda: checks.fd_gradient(lambda x: x, np.zeros(2)), arg("loss")),
        bad("fd_jvp with u of the wrong shape", lambda: checks.fd_jvp(lambda x: x, np.zeros(3), np.zeros(2)), arg("u")),
        bad("fd_vjp with v of the wrong shape", lambda: checks.fd_vjp(lambda x: x, np.zeros(3), np.zeros(2)), arg("v")),
        bad("observed_order of mismatched lengths", lambda: checks.observed_order([0.1, 0.05], [1e-2]), "errors|step_sizes"),
        bad("observed_order with a zero error", lambda: checks.observed_order([0.1, 0.05], [1e-2, 0.0]), "errors"),
        bad("observed_order of one point", lambda: checks.observed_order([0.1], [1e-2]), "at least two|step_sizes"),
        bad("observed_order of negative steps", lambda: checks.observed_order([-0.1, -0.05], [1e-2, 1e-3]), "step_sizes"),
        bad("dot_product_test with a jvp of the wrong shape", lambda: checks.dot_product_test(
            lambda u: np.zeros(3), lambda v: np.zeros(2), (2,), (2,), rng()), "jvp"),
        bad("check_dynamics_vjp of a vjp that drops a parameter", lambda: checks.check_dynamics_vjp(
            DroppingVJP(), 0.0, np.ones(2), rng()), r"f\.vjp"),
        bad("linear_field_gradient(points=2), an option of its former quadrature",
            lambda: checks.linear_field_gradient(A, z0, c, points=2), arg("points")),
        bad("linear_field_gradient of a non-square A", lambda: checks.linear_field_gradient(np.ones((2, 3)), z0, c), arg("A")),
        bad("linear_field_gradient with z0 of the wrong length", lambda: checks.linear_field_gradient(A, np.ones(3), c),
            arg("z0")),
        bad("linear_field_gradient with t1 = NaN", lambda: checks.linear_field_gradient(A, z0, c, t1=np.nan), arg("t1")),
        bad("peak_memory of a number", lambda: checks.peak_memory(3), arg("fn")),
        good("peak_memory keeps the caller's tracemalloc session", keeps_tracing, lambda kept: kept),
        bad("below of NaN", lambda: checks.below(np.nan, 1e-6), arg("error")),
        bad("fd_gradient with eps = 0", lambda: checks.fd_gradient(square, np.zeros(2), eps=0.0), arg("eps")),
        bad("fd_gradient with eps = NaN", lambda: checks.fd_gradient(square, np.zeros(2), eps=np.nan), arg("eps")),
        bad("fd_param_gradients with eps = -1", lambda: checks.fd_param_gradients(lambda: 0.0, [np.zeros(2)], eps=-1.0),
            arg("eps")),
    ]
    return cases


def keeps_tracing():
    tracemalloc.start()
    checks.peak_memory(lambda: np.zeros(1000))
    return tracemalloc.is_tracing()


# ---------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------
# A second round, wider: field methods called with wrong inputs, protocol shapes, more options
# ---------------------------------------------------------------------------------------------------


class ListVJP:
    """MLP dynamics whose vjp returns a list, or parameter cotangents as a generator."""

    def __init__(self, kind):
        self.net, self.kind = MLP([2, 4, 2], rng=rng()), kind
        self.params = self.net.params

    def __call__(self, t, y):
        return self.net(t, y)

    def vjp(self, t, y, v):
        y_bar, params_bar, t_bar = self.net.vjp(t, y, v)
        if self.kind == "list":
            return [y_bar, params_bar, t_bar]
        return y_bar, (g for g in params_bar), t_bar


def second_round_cases():
    f, y0, t, w = vjp_problem()
    tf, x = field(), np.random.default_rng(1).standard_normal((4, 2))
    cases = [
        bad("odeint_vjp(backprop, norm='mixed')", lambda: gradient_of("backprop", f, y0, t, w, norm="mixed"), arg("norm")),
        bad("odeint_vjp(adjoint, checkpoints='sqrt')", lambda: gradient_of("adjoint", f, y0, t, w, checkpoints="sqrt"),
            arg("checkpoints")),
        bad("odeint_vjp(checkpoint, checkpoints='Sqrt')", lambda: gradient_of("checkpoint", f, y0, t, w, checkpoints="Sqrt"),
            arg("checkpoints")),
        good("odeint_vjp(checkpoint, checkpoints=np.int64(2))",
             lambda: gradient_of("checkpoint", f, y0, t, w, checkpoints=np.int64(2)), lambda out: out[0].shape == (3, 2)),
        good("ys_bar as nested lists", lambda: gradient_of("adjoint", f, y0, t, w.tolist()),
             lambda out: out[0].shape == (3, 2)),
        bad("f.vjp returning a list", lambda: gradient_of("adjoint", ListVJP("list"), y0, t, w), r"f\.vjp"),
        bad("f.vjp returning a generator of cotangents", lambda: gradient_of("backprop", ListVJP("generator"), y0, t, w),
            r"f\.vjp"),
        bad("pullback_peak_memory with an option backprop does not use", lambda: checks.pullback_peak_memory(
            f, y0, t, gradient="backprop", norm="full"), arg("norm")),
        bad("trajectory_step with an option backprop does not use", lambda: ne.train.trajectory_step(
            f, ne.optim.SGD(f.params), data.Windows(y0, t, np.zeros((3, 3, 2)), np.arange(3)), gradient="backprop",
            carry_step=False), arg("carry_step")),
        bad("ODENet(checkpoints=2) with the adjoint", lambda: models.ODENet(MLP([2, 8, 2]), 2, 2, checkpoints=2),
            arg("checkpoints")),
        bad("TimeField.divergence of the wrong width", lambda: tf.divergence(0.0, np.zeros((3, 3))), arg("z")),
        bad("TimeField.divergence_vjp with w of the wrong length", lambda: tf.divergence_vjp(0.0, x, np.ones(3)), arg("w")),
        bad("TimeField.trace_estimate with eps of the wrong shape", lambda: tf.trace_estimate(0.0, x, np.ones((4, 3))),
            arg("eps")),
        bad("TimeField.jvp with u of the wrong shape", lambda: tf.jvp(0.0, x, np.ones((3, 2))), arg("u")),
        bad("TimeField.vjp with complex v", lambda: tf.vjp(0.0, x, x + 1j), arg("v")),
        bad("CNFDynamics with complex eps", lambda: cnf.CNFDynamics(tf, x + 1j), arg("eps")),
        bad("CNF of a field without divergence", lambda: cnf.CNF(MLP([2, 8, 2])), "divergence"),
        bad("CNF(hutchinson) of a field without trace_estimate", lambda: cnf.CNF(MLP([2, 8, 2]), trace="hutchinson"),
            "trace_estimate"),
        bad("KineticEnergy of a field whose params is not a list", lambda: regularise.KineticEnergy(NoList(), (2,)),
            r"params"),
        bad("relative_error of a ragged list", lambda: checks.relative_error([[1.0], [1.0, 2.0]], [1.0, 2.0]), arg("approx")),
        bad("fd_gradient at a NaN point", lambda: checks.fd_gradient(lambda z: float(z @ z), np.array([np.nan, 1.0])),
            arg("x")),
        bad("check_dynamics_vjp of a plain function", lambda: checks.check_dynamics_vjp(lambda t, y: y, 0.0, np.ones(2),
                                                                                      rng()), "vjp"),
        bad("below of a negative error", lambda: checks.below(-1.0, 1e-6), arg("error")),
        bad("two_moons(rng=RandomState)", lambda: data.two_moons(10, rng=np.random.RandomState(0)), arg("rng")),
        bad("concentric_spheres(rng=0)", lambda: data.concentric_spheres(10, rng=0), arg("rng")),
        bad("trajectory_windows(rng=0)", lambda: data.trajectory_windows(np.linspace(0, 1, 10), np.zeros((10, 2)), 2, 3, 0),
            arg("rng")),
        good("LatentODE loss with one series never observed after the first time", latent_sparse_loss,
             lambda out: np.isfinite(out[0]) and all(np.all(np.isfinite(g)) for g in out[1])),
    ]
    return cases


class NoList:
    params = (np.zeros(2) for _ in range(1))

    def __call__(self, t, y):
        return y

    def vjp(self, t, y, v):
        return v, [], 0.0


def latent_sparse_loss():
    times, values, mask = series()
    mask[0, 1:] = 0.0
    return latent_model().loss_and_grad(times, values, mask, rng())


def all_cases():
    groups = [data_cases, latent_sampler_cases, latent_density_cases, latent_model_cases, cnf_constructor_cases,
              cnf_call_cases, cnf_field_cases, vjp_option_cases, vjp_behaviour_cases, regularise_cases,
              odenet_cases, checks_cases, second_round_cases]
    return [case for group in groups for case in group()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="list every case")
    parser.add_argument("--show", choices=CLASSES, action="append", help="list the cases of this class")
    options = parser.parse_args(argv)
    cases = [run(case) for case in all_cases()]
    counts = Counter(case.outcome for case in cases)
    shown = set(CLASSES) if options.verbose else set(options.show or []) | (set(CLASSES) - {"clear error", "ok"})
    for case in cases:
        if case.outcome in shown:
            print(f"[{case.outcome}] {case.name}" + (f"\n      {case.detail}" if case.detail else ""))
    print(f"\n{len(cases)} cases:")
    for name in CLASSES:
        print(f"  {name:<18}{counts.get(name, 0):5d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
