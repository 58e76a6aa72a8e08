"""``odeint``: solve an initial value problem with a Runge–Kutta method, fixed-step or adaptive.

The module has three layers, each readable on its own:

* argument checks (:func:`prepare`), which turn bad input into a ``ValueError`` that names it;
* one stepping routine (:func:`rk_step`) that runs any :class:`~neuralode.tableaux.ButcherTableau`;
* two loops: fixed steps inside each output interval, and adaptive steps with dense output, so that
  the output times never change the steps taken.

Internally the state is a flat vector; ``func`` always sees the shape of ``y0``.
"""

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from .errors import IntegrationError, NonFiniteError, StepSizeUnderflowError, TooManyStepsError
from .stepsize import MIN_FACTOR, error_ratio, select_initial_step, step_factor
from .tableaux import TABLEAUX

DEFAULT_MAX_NUM_STEPS = 100_000


@dataclass
class ODESolution:
    """What ``integrate`` returns: the solution at the output times and what it cost.

    Attributes:
        ys: the solution, shape ``(len(t), *y0.shape)``.
        t: the output times.
        nfe: the number of evaluations of the dynamics.
        n_steps: accepted steps.
        n_rejected: rejected steps (adaptive methods only).
        step_times: the time at the start of every accepted step, and the final time.
        rejected_times: ``(t, h)`` for every rejected attempt.

    ``step_times`` and ``rejected_times`` stay empty when the solve was asked not to record its steps
    (the adjoint method does so, to keep its memory independent of the number of steps).
    """

    ys: np.ndarray
    t: np.ndarray
    nfe: int = 0
    n_steps: int = 0
    n_rejected: int = 0
    step_times: list = field(default_factory=list)
    rejected_times: list = field(default_factory=list)


@dataclass
class Problem:
    """A checked initial value problem, ready for one of the loops."""

    fun: object
    y0: np.ndarray
    t: np.ndarray
    shape: tuple
    tableau: object
    rtol: object
    atol: object
    step_size: object
    max_num_steps: int
    f0: np.ndarray
    zero: np.ndarray = None
    record_steps: bool = True

    def __post_init__(self):
        self.zero = np.zeros(self.y0.size)


def _check_times(t):
    t = np.asarray(t, dtype=float) if np.isrealobj(t) else None
    if t is None or t.ndim != 1 or t.size == 0:
        raise ValueError("t must be a non-empty 1-D array of real output times")
    if not np.all(np.isfinite(t)):
        raise ValueError("t must contain only finite times")
    if t.size > 1:
        dt = np.diff(t)
        if not (np.all(dt > 0) or np.all(dt < 0)):
            raise ValueError("t must be strictly increasing or strictly decreasing")
    return t


def _check_state(y0):
    if not np.isrealobj(y0) or np.asarray(y0).dtype == object:
        raise ValueError("y0 must be an array of real numbers")
    y0 = np.array(y0, dtype=float)
    if y0.size == 0:
        raise ValueError("y0 must not be empty")
    if not np.all(np.isfinite(y0)):
        raise ValueError("y0 must contain only finite values")
    return y0


def _check_tolerance(name, value, shape, allow_zero):
    value = np.asarray(value, dtype=float)
    low_ok = np.all(value >= 0) if allow_zero else np.all(value > 0)
    if not (np.all(np.isfinite(value)) and low_ok):
        raise ValueError(f"{name} must be finite and {'non-negative' if allow_zero else 'positive'}")
    try:
        value = np.broadcast_to(value, shape).reshape(-1) if value.ndim else float(value)
    except ValueError:
        raise ValueError(f"{name} of shape {value.shape} does not broadcast to y0's shape {shape}")
    return value


def _flat_dynamics(func, shape):
    if len(shape) == 1:
        return func

    def fun(t, y):
        return np.asarray(func(t, y.reshape(shape)), dtype=float).reshape(-1)

    return fun


def prepare(func, y0, t, method, rtol, atol, step_size, max_num_steps):
    """Check every argument of ``odeint`` and evaluate ``func`` once at ``(t[0], y0)``.

    Raises:
        ValueError: naming the argument that is wrong and how.
        NonFiniteError: if ``func(t[0], y0)`` is not finite.
    """
    if not callable(func):
        raise ValueError(f"func must be callable as func(t, y), got {type(func).__name__}")
    y0, t = _check_state(y0), _check_times(t)
    if method not in TABLEAUX:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(TABLEAUX)}")
    tableau = TABLEAUX[method]
    rtol = _check_tolerance("rtol", rtol, y0.shape, allow_zero=False)
    atol = _check_tolerance("atol", atol, y0.shape, allow_zero=True)
    if step_size is not None and not (np.isscalar(step_size) and np.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step_size must be None or a positive finite number, got {step_size!r}")
    if isinstance(max_num_steps, bool) or not isinstance(max_num_steps, (int, np.integer)) or max_num_steps < 1:
        raise ValueError(f"max_num_steps must be a positive integer, got {max_num_steps!r}")
    f0 = np.asarray(func(t[0], y0.copy()), dtype=float)
    if f0.shape != y0.shape:
        raise ValueError(f"func(t, y) returned shape {f0.shape}; it must return dy/dt with y's shape {y0.shape}")
    if not np.all(np.isfinite(f0)):
        raise NonFiniteError(t[0], "func(t, y) returned a non-finite derivative at the initial state")
    fun = _flat_dynamics(func, y0.shape)
    return Problem(fun, y0.reshape(-1), t, y0.shape, tableau, rtol, atol,
                   None if step_size is None else float(step_size), int(max_num_steps), f0.reshape(-1))


def rk_step(fun, t, h, tableau, YK):
    """Take one explicit Runge–Kutta step; the one stepping routine every method runs.

    The state and the stages share one work array ``YK`` (rows ``y, k_1, ..., k_s``), so that each
    stage's input ``y + h * sum_j a_ij k_j`` is a single dot product with the row ``[1, h a_i]`` of
    ``W = unit + h * ab`` (see :attr:`~neuralode.tableaux.ButcherTableau.ab`).  Rows of ``YK`` not yet
    computed in this step must be finite (they meet zero coefficients).

    Args:
        fun: the flat dynamics.
        t, h: the time and the signed step size.
        tableau: the method.
        YK: an ``(s + 1, n)`` array holding the state ``y`` in row 0 and ``k_1 = fun(t, y)`` in row 1;
            rows ``2..s`` are filled with the other stages.

    Returns:
        ``(y_new, W)``: the new state ``y + h * sum_i b_i k_i``, and the step's coefficients, whose
        row ``s + 1`` (adaptive methods) gives the error estimate ``W[s + 1].dot(YK)``.  For a
        first-same-as-last method the last stage is ``fun(t + h, y_new)``, the next step's ``k_1``.
    """
    W = tableau.unit + h * tableau.ab
    for i, c_i in tableau.rows:
        YK[i + 1] = fun(t + c_i * h, W[i].dot(YK))
    s = tableau.stages
    y_new = W[s].dot(YK)
    if tableau.fsal:
        YK[s] = fun(t + h, y_new)
    return y_new, W


def steps_per_interval(t, step_size):
    """How many equal steps each interval of ``t`` is cut into: one, or enough for ``step_size``."""
    if step_size is None:
        return np.ones(len(t) - 1, dtype=int)
    return np.maximum(1, np.ceil(np.abs(np.diff(t)) / step_size - 1e-9).astype(int))


def integrate_fixed(problem, tape=None):
    """Fixed steps: each interval ``[t_k, t_k+1]`` in ``N_k`` equal steps (see ``steps_per_interval``).

    Args:
        problem: a checked :class:`Problem`.
        tape: a list to which every step is appended as ``(k, n, N, t_n, h, y_n, K)`` (for backprop).
    """
    fun, t, tab = problem.fun, problem.t, problem.tableau
    counts = steps_per_interval(t, problem.step_size)
    if counts.sum() > problem.max_num_steps:
        raise TooManyStepsError(t[0], f"{counts.sum()} fixed steps needed, more than max_num_steps = "
                                f"{problem.max_num_steps}", "Use a larger step_size or raise max_num_steps")
    ys = np.empty((len(t), problem.y0.size))
    ys[0] = y = problem.y0
    k0, nfe = problem.f0, 1
    YK = np.zeros((tab.stages + 1, y.size))
    for k, N in enumerate(counts):
        h = (t[k + 1] - t[k]) / N
        for n in range(N):
            tn = t[k] + n * h
            if tape is not None:
                YK = np.zeros((tab.stages + 1, y.size))
            YK[0] = y
            if k0 is None:
                k0, nfe = fun(tn, y), nfe + 1
            YK[1] = k0
            y_new = rk_step(fun, tn, h, tab, YK)[0]
            nfe += tab.stages - 1
            if not math.isfinite(float(y_new.sum())):
                raise NonFiniteError(tn + h, "the state became infinite or NaN",
                                     "The solution may blow up here, or the step is too large for stability")
            if tape is not None:
                tape.append((k, n, N, tn, h, y, YK[1:]))
            y, k0 = y_new, (YK[-1].copy() if tab.fsal else None)
        ys[k + 1] = y
    return ODESolution(ys.reshape((len(t),) + problem.shape), t, nfe=nfe, n_steps=int(counts.sum()),
                       step_times=_fixed_grid(t, counts) if problem.record_steps else [])


def _fixed_grid(t, counts):
    grid = [t[0]]
    for k, N in enumerate(counts):
        grid.extend(t[k] + (t[k + 1] - t[k]) * np.arange(1, N + 1) / N)
    return grid


_POWERS = np.arange(1, 5)


def dense_eval(y, h, K, dense, theta):
    """Evaluate the continuous extension of one step at fractions ``theta`` (an array) of the step.

    ``y(t + theta h) = y + h * K.T @ (P @ [theta, theta^2, theta^3, theta^4])``, returned with one row
    per value of ``theta``.
    """
    return y + (theta[:, None] ** _POWERS).dot((h * dense.T).dot(K))


def integrate_adaptive(problem, tape=None):
    """Adaptive steps with error control, from ``t[0]`` to ``t[-1]``, output by dense interpolation.

    The step sequence depends only on ``t[0]``, ``t[-1]`` and the tolerances: output times in between
    are served by the continuous extension of the step that contains them (Hairer, Nørsett & Wanner,
    Section II.6), so asking for more outputs costs no extra evaluations.

    Args:
        problem: a checked :class:`Problem` whose tableau is adaptive.
        tape: a list; if given, ``("step", t_n, h, y_n, K)`` is appended for every accepted step and
            ``("out", i, theta)`` for every output time ``t[i]`` it serves (for backprop).
    """
    t, tab = problem.t, problem.tableau
    direction = 1.0 if t[-1] >= t[0] else -1.0
    s_out, y, k0 = list(direction * t), problem.y0, problem.f0
    sol = ODESolution(np.empty((len(t), y.size)), t, nfe=1, step_times=[t[0]] if problem.record_steps else [])
    sol.ys[0] = y
    if len(t) == 1:
        return _finish(sol, problem)
    h_abs = select_initial_step(problem.fun, t[0], y, k0, direction, tab.error_order,
                                problem.rtol, problem.atol, abs(t[-1] - t[0]))
    sol.nfe += 1
    tn, t_end, i_out = float(t[0]), float(t[-1]), 1
    while direction * (t_end - tn) > 0:
        YK = np.zeros((tab.stages + 1, y.size))
        YK[0], YK[1] = y, k0
        t_new, h, y_new, h_abs = _attempt_until_accepted(problem, sol, tn, h_abs, direction, YK)
        j = bisect.bisect_right(s_out, direction * t_new)
        if j > i_out:
            theta = (t[i_out:j] - tn) / h
            sol.ys[i_out:j] = dense_eval(y, h, YK[1:], tab.dense, theta)
            if tape is not None:
                tape.extend(("out", i, th) for i, th in zip(range(i_out, j), theta))
            i_out = j
        if tape is not None:
            tape.append(("step", tn, h, y, YK[1:]))
        tn, y, k0 = t_new, y_new, YK[-1]
        sol.n_steps += 1
        if problem.record_steps:
            sol.step_times.append(tn)
    sol.ys[-1] = y
    return _finish(sol, problem)


def _attempt_until_accepted(problem, sol, tn, h_abs, direction, YK):
    """Try steps from ``tn``, shrinking after each rejection, until one passes the error test.

    Returns:
        ``(t_new, h, y_new, h_next)``: the accepted step and the size to try next.  ``YK`` holds the
        state and the accepted step's stages.
    """
    fun, tab, t_end = problem.fun, problem.tableau, float(problem.t[-1])
    min_step, rejected = 10.0 * math.ulp(tn), False
    h_abs = max(h_abs, min_step)
    while True:
        if sol.n_steps + sol.n_rejected >= problem.max_num_steps:
            raise TooManyStepsError(tn, f"more than max_num_steps = {problem.max_num_steps} steps attempted",
                                    "Loosen rtol/atol, raise max_num_steps, or check the dynamics for stiffness")
        t_new = tn + h_abs * direction
        if direction * (t_new - t_end) > 0:
            t_new = t_end
        h = t_new - tn
        y_new, W = rk_step(fun, tn, h, tab, YK)
        sol.nfe += tab.stages - 1
        finite = math.isfinite(y_new.dot(problem.zero))  # 0 * y is NaN exactly where y is inf or NaN
        ratio = error_ratio(W[-1].dot(YK), YK[0], y_new, problem.rtol, problem.atol)
        if ratio <= 1.0 and finite:
            return t_new, h, y_new, abs(h) * step_factor(ratio, tab.error_order, rejected)
        sol.n_rejected += 1
        if problem.record_steps:
            sol.rejected_times.append((tn, h))
        finite = finite and math.isfinite(ratio)
        if abs(h) <= min_step:
            _underflow(tn, abs(h), not finite)
        h_abs = abs(h) * (step_factor(ratio, tab.error_order) if finite else MIN_FACTOR)
        if not finite:
            YK[2:] = 0.0
        rejected = True


def _underflow(tn, h_abs, nonfinite):
    if nonfinite:
        raise NonFiniteError(tn, "the state or its derivative became infinite or NaN however small the step",
                             "The solution blows up here, or the dynamics return NaN")
    raise StepSizeUnderflowError(tn, f"the step size {h_abs:.3g} is below what floating point resolves "
                                 "at this t", "The problem may be stiff or singular here; try a "
                                 "smaller tolerance only if the solution is smooth")


def _finish(sol, problem):
    sol.ys = sol.ys.reshape((len(problem.t),) + problem.shape)
    return sol


def integrate(func, y0, t, *, method="dopri5", rtol=1e-7, atol=1e-9, step_size=None,
              max_num_steps=DEFAULT_MAX_NUM_STEPS):
    """Solve ``dy/dt = func(t, y)``, ``y(t[0]) = y0``, and report what it cost.

    The arguments are those of :func:`odeint`.  Returns an :class:`ODESolution` whose ``ys`` is what
    ``odeint`` returns, together with the number of function evaluations (NFE) and the steps taken.
    """
    problem = prepare(func, y0, t, method, rtol, atol, step_size, max_num_steps)
    if problem.tableau.adaptive and problem.step_size is None:
        return integrate_adaptive(problem)
    return integrate_fixed(problem)


def odeint(func, y0, t, *, method="dopri5", rtol=1e-7, atol=1e-9, step_size=None,
           max_num_steps=DEFAULT_MAX_NUM_STEPS):
    """Solve the initial value problem ``dy/dt = func(t, y)``, ``y(t[0]) = y0``, at the times ``t``.

    Args:
        func: the dynamics ``func(t, y)``, returning ``dy/dt`` with the shape of ``y``.
        y0: the initial state, an array of any shape (a batch is just a leading axis); float64.
        t: a 1-D, finite, strictly increasing or strictly decreasing array of output times.
        method: ``"euler"``, ``"midpoint"``, ``"heun"``, ``"rk4"`` (fixed step), ``"bosh3"`` or
            ``"dopri5"`` (adaptive).
        rtol, atol: tolerances of the adaptive methods' error control.
        step_size: for fixed-step methods, ``None`` takes one step per interval of ``t``; a number
            cuts each interval into the fewest equal steps no longer than it.  Given to an adaptive
            method, it runs that method with fixed steps and no error control.
        max_num_steps: a bound on the number of steps; more raises ``TooManyStepsError``.

    Returns:
        An array of shape ``(len(t), *y0.shape)`` with ``ys[0] == y0``.

    Raises:
        ValueError: for bad arguments, naming the argument.
        IntegrationError: (a ``RuntimeError``) if the integration fails, saying at which ``t`` and why.

    Example:
        >>> ys = odeint(lambda t, y: y, np.array([1.0]), np.array([0.0, 1.0]))
        >>> bool(abs(ys[-1, 0] - np.e) < 1e-6)
        True
    """
    return integrate(func, y0, t, method=method, rtol=rtol, atol=atol, step_size=step_size,
                     max_num_steps=max_num_steps).ys
