"""``odeint``: solve an initial value problem with a Runge–Kutta method, fixed-step or adaptive.

The module has three layers, each readable on its own:

* argument checks (:func:`prepare`), which turn bad input into a ``ValueError`` that names it;
* one stepping routine (:func:`rk_step`) that runs any explicit :class:`~neuralode.tableaux.ButcherTableau`,
  and beside it :class:`~neuralode.implicit.ImplicitStepper` for the implicit ones (:func:`stepper`);
* two loops: fixed steps inside each output interval, and adaptive steps with dense output, so that
  the output times never change the steps taken.

Internally the state is a flat vector; ``func`` always sees the shape of ``y0``.
"""

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from .errors import ConvergenceError, IntegrationError, NonFiniteError, StepSizeUnderflowError, TooManyStepsError
from .implicit import ImplicitStepper, dynamics_jacobian
from .stepsize import MIN_FACTOR, error_scale, hold_step, rms_norm, select_initial_step, step_factor
from .tableaux import IMPLICIT_TABLEAUX, TABLEAUX, ButcherTableau

DEFAULT_MAX_NUM_STEPS = 100_000


@dataclass
class ODESolution:
    """What ``integrate`` returns: the solution at the output times and what it cost.

    Attributes:
        ys: the solution, shape ``(len(t), *y0.shape)``.
        t: the output times.
        nfe: the number of evaluations of the dynamics.
        n_steps: accepted steps.
        n_rejected: rejected steps (adaptive methods only), a failed Newton iteration included.
        n_jac: Jacobians formed (implicit methods only).
        n_lu: factorisations of ``I - h gamma J`` (implicit methods only).
        step_times: the time at the start of every accepted step, and the final time.
        rejected_times: ``(t, h)`` for every rejected attempt.
        next_step: adaptive solves: the size the controller would try next, had ``t[-1]`` not ended it.

    ``step_times`` and ``rejected_times`` stay empty when the solve was asked not to record its steps
    (the adjoint method does so, to keep its memory independent of the number of steps).
    """

    ys: np.ndarray
    t: np.ndarray
    nfe: int = 0
    n_steps: int = 0
    n_rejected: int = 0
    n_jac: int = 0
    n_lu: int = 0
    step_times: list = field(default_factory=list)
    rejected_times: list = field(default_factory=list)
    next_step: float = None


@dataclass
class Problem:
    """A checked initial value problem, ready for one of the loops.

    Three options serve the gradient routines: ``h0``, the size of the first step to try (instead of
    selecting one; the adjoint carries its step across output times with it), ``measured``, the
    entries of the flat state the error control measures, as a slice or an index array (``None``:
    all of them; the adjoint's seminorm measures ``z`` and ``a`` and leaves the parameter cotangents
    out), and ``norm``, the norm of those scaled entries (``None``: the RMS norm; the adjoint's
    ``norm="mixed"`` takes the largest of one RMS norm per block).  Three more serve implicit methods:
    ``jacobian``, the exact Jacobian on flat states (``None``: forward differences); ``coupled``, how
    many leading entries the stage equations couple (``None``: all; the adjoint's parameter cotangents
    are not); and ``guarded``, the slice of those whose modes the growth guard watches (``None``: all;
    see :class:`~neuralode.implicit.ImplicitStepper`).
    """

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
    h0: float = None
    measured: object = None
    norm: object = None
    jacobian: object = None
    coupled: int = None
    guarded: object = None

    def __post_init__(self):
        self.zero = np.zeros(self.y0.size)


def _real_array(name, value):
    """``value`` as a float array, or a ``ValueError`` naming the argument if it does not hold real numbers."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise ValueError(f"{name} must be an array of real numbers, got {value!r:.60}") from None
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers, got an array of dtype {array.dtype}")
    return array.astype(float)


def _check_times(t):
    t = _real_array("t", t)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"t must be a non-empty 1-D array of output times, got shape {t.shape}")
    if not np.isfinite(t).all():
        raise ValueError("t must contain only finite times")
    if not math.isfinite(float(t.max()) - float(t.min())):
        raise ValueError(f"t spans [{t.min():.3g}, {t.max():.3g}], wider than floating point holds; rescale time")
    if t.size > 1:
        dt = np.diff(t)
        if not ((dt > 0).all() or (dt < 0).all()):
            raise ValueError("t must be strictly increasing or strictly decreasing (no repeated times)")
    return t


def _check_state(y0):
    y0 = _real_array("y0", y0)
    if y0.size == 0:
        raise ValueError("y0 must not be empty")
    if not np.isfinite(y0).all():
        raise ValueError("y0 must contain only finite values")
    return y0


def _check_tolerance(name, value, shape, allow_zero):
    value = _real_array(name, value)
    low_ok = (value >= 0).all() if allow_zero else (value > 0).all()
    if not (np.isfinite(value).all() and low_ok):
        raise ValueError(f"{name} must be finite and {'non-negative' if allow_zero else 'positive'}, got {value}")
    try:
        return np.broadcast_to(value, shape).reshape(-1) if value.ndim else float(value)
    except ValueError:
        raise ValueError(f"{name} of shape {value.shape} does not broadcast to y0's shape {shape}") from None


def _check_step_size(step_size):
    number = isinstance(step_size, (int, float, np.integer, np.floating)) and not isinstance(step_size, bool)
    if step_size is not None and not (number and math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step_size must be None or a positive finite number, got {step_size!r}")
    return None if step_size is None else float(step_size)


def _check_max_num_steps(max_num_steps):
    if isinstance(max_num_steps, bool) or not isinstance(max_num_steps, (int, np.integer)) or max_num_steps < 1:
        raise ValueError(f"max_num_steps must be a positive integer, got {max_num_steps!r}")
    return int(max_num_steps)


def _flat_dynamics(func, shape):
    """``func`` on flat states, checking the shape of every derivative it returns (a comparison, no copy)."""
    size = (int(np.prod(shape)),)

    def fun(t, y):
        dy = np.asarray(func(t, y.reshape(shape)), dtype=float)
        if dy.shape != shape:
            raise ValueError(f"func(t, y) returned shape {dy.shape} at t = {t:.6g}; it must return dy/dt "
                             f"with y's shape {shape}")
        return dy.reshape(size)

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
    tableau = _check_method(method)
    rtol = _check_tolerance("rtol", rtol, y0.shape, allow_zero=False)
    atol = _check_tolerance("atol", atol, y0.shape, allow_zero=True)
    if np.any((np.asarray(atol) == 0) & (y0.reshape(-1) == 0)):
        raise ValueError("atol is 0 where y0 is 0: the error of that component has no scale to be measured "
                         "against; give a positive atol")
    step_size, max_num_steps = _check_step_size(step_size), _check_max_num_steps(max_num_steps)
    f0 = _check_derivative(func(float(t[0]), y0.copy()), y0.shape, t[0])
    return Problem(_flat_dynamics(func, y0.shape), y0.reshape(-1), t, y0.shape, tableau, rtol, atol,
                   step_size, max_num_steps, f0.reshape(-1), jacobian=dynamics_jacobian(func, y0.shape))


def _check_method(method):
    if isinstance(method, ButcherTableau):
        return method
    if not isinstance(method, str) or method not in TABLEAUX and method not in IMPLICIT_TABLEAUX:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(TABLEAUX) + sorted(IMPLICIT_TABLEAUX)} "
                         "or pass a ButcherTableau")
    return TABLEAUX[method] if method in TABLEAUX else IMPLICIT_TABLEAUX[method]


def _check_derivative(f0, shape, t0):
    try:
        f0 = np.asarray(f0)
    except (ValueError, TypeError):
        f0 = np.asarray(None)
    if f0.shape != shape or f0.dtype.kind not in "iuf":
        raise ValueError(f"func(t, y) returned {f0.dtype} of shape {f0.shape}; it must return dy/dt as real "
                         f"numbers with y's shape {shape}")
    if not np.isfinite(f0).all():
        raise NonFiniteError(t0, "func(t, y) returned a non-finite derivative at the initial state")
    return f0.astype(float)


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


def stepper(problem, carried=None):
    """The routine that takes the steps of ``problem``: :func:`rk_step`, or an implicit stepper.

    An :class:`~neuralode.implicit.ImplicitStepper` has ``rk_step``'s interface and keeps the Jacobian
    from step to step; ``carried`` is a Linearisation to start from (a checkpoint's).
    """
    if not problem.tableau.implicit:
        return rk_step
    adaptive = problem.tableau.adaptive and problem.step_size is None
    return ImplicitStepper(problem.tableau, problem.rtol, problem.atol, jacobian=problem.jacobian,
                           coupled=problem.coupled, carried=carried, guard=adaptive, guarded=problem.guarded)


def steps_per_interval(t, step_size, max_num_steps=None):
    """How many equal steps each interval of ``t`` is cut into: one, or enough for ``step_size``.

    The counts are found in floating point and checked against ``max_num_steps`` before they become
    integers, so that a tiny ``step_size`` raises :class:`TooManyStepsError` instead of overflowing.
    """
    if step_size is None:
        counts = np.ones(len(t) - 1)
    else:
        counts = np.maximum(1.0, np.ceil(np.abs(np.diff(t)) / step_size - 1e-9))
    total = float(counts.sum())
    if max_num_steps is not None and not total <= max_num_steps:
        raise TooManyStepsError(t[0], f"{total:.4g} fixed steps needed, more than max_num_steps = "
                                f"{max_num_steps}", "Use a larger step_size or raise max_num_steps")
    return counts.astype(int)


def _quiet_overflow(solve):
    """Run a solve with NumPy's overflow and invalid-value warnings off.

    A trial step may overflow before the error test rejects it; the loops check every accepted state
    themselves and raise a clear :class:`IntegrationError` where the solution is really not finite.
    """

    @functools.wraps(solve)
    def quiet(problem, tape=None, **options):
        with np.errstate(over="ignore", invalid="ignore"):
            return solve(problem, tape, **options)

    return quiet


@_quiet_overflow
def integrate_fixed(problem, tape=None):
    """Fixed steps: each interval ``[t_k, t_k+1]`` in ``N_k`` equal steps (see ``steps_per_interval``).

    Args:
        problem: a checked :class:`Problem`.
        tape: a list to which every step is appended as ``(k, n, N, t_n, h, y_n, K, lin)`` (for backprop),
            ``lin`` the Linearisation an implicit step used (``None`` for explicit methods).
    """
    fun, t, tab, step = problem.fun, problem.t, problem.tableau, stepper(problem)
    counts = steps_per_interval(t, problem.step_size, problem.max_num_steps)
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
            y_new = step(fun, tn, h, tab, YK)[0]
            nfe += 0 if tab.implicit else tab.stages - 1
            if not math.isfinite(y_new.dot(problem.zero)):   # 0 * y is NaN exactly where y is inf or NaN
                raise NonFiniteError(tn + h, "the state became infinite or NaN",
                                     "The solution may blow up here, or the step is too large for stability")
            if tape is not None:
                tape.append((k, n, N, tn, h, y, YK[1:], getattr(step, "used", None)))
            y, k0 = y_new, (YK[-1].copy() if tab.fsal else None)
        ys[k + 1] = y
    nfe += getattr(step, "nfe", 0)     # an implicit stepper counts its own evaluations
    sol = ODESolution(ys.reshape((len(t),) + problem.shape), t, nfe=nfe, n_steps=int(counts.sum()),
                      step_times=_fixed_grid(t, counts) if problem.record_steps else [])
    return _implicit_costs(sol, step)


def _implicit_costs(sol, step):
    """Report an implicit stepper's Jacobians and factorisations (its evaluations are in ``sol.nfe``)."""
    if isinstance(step, ImplicitStepper):
        sol.n_jac, sol.n_lu = step.n_jac, step.n_lu
    return sol


def _fixed_grid(t, counts):
    grid = [t[0]]
    for k, N in enumerate(counts):
        grid.extend(t[k] + (t[k + 1] - t[k]) * np.arange(1, N + 1) / N)
    return grid


_POWERS = np.arange(1, 5)


def dense_eval(y, h, K, dense, theta):
    """Evaluate the continuous extension of one step at fractions ``theta`` (an array) of the step.

    ``y(t + theta h) = y + h * K.T @ (P @ [theta, theta^2, theta^3, theta^4])``, returned with one row
    per value of ``theta``.  (The adaptive loop evaluates the same formula for many steps at once.)
    """
    return y + (theta[:, None] ** _POWERS).dot((h * dense.T).dot(K))


@_quiet_overflow
def integrate_adaptive(problem, tape=None, watch=None):
    """Adaptive steps with error control, from ``t[0]`` to ``t[-1]``, output by dense interpolation.

    The step sequence depends only on ``t[0]``, ``t[-1]`` and the tolerances: output times in between
    are served by the continuous extension of the step that contains them (Hairer, Nørsett & Wanner,
    Section II.6), so asking for more outputs costs no extra evaluations.

    Args:
        problem: a checked :class:`Problem` whose tableau is adaptive.
        tape: a list; if given, ``("step", t_n, h, y_n, K, lin)`` is appended for every accepted step,
            after ``("out", i, theta)`` for every output time ``t[i]`` it serves (for backprop);
            ``lin`` is the Linearisation of an implicit step, ``None`` for explicit methods.
        watch: a function called before every accepted step with what the loop carries into it,
            ``(t_n, y_n, k, h)``, and for implicit methods the Linearisation too (see
            :meth:`_StepControl.accepted_steps`), for checkpointing.
    """
    t, record = problem.t, problem.record_steps
    sol = ODESolution(np.empty((len(t), problem.y0.size)), t, nfe=1, step_times=[float(t[0])] if record else [])
    sol.ys[0] = problem.y0
    if len(t) == 1:
        return _finish(sol, problem)
    control = _StepControl(problem, sol)
    outputs = _DenseOutput(sol, problem.tableau, control.direction, tape)
    state = float(t[0]), problem.y0, problem.f0, control._initial_step()
    for step in control.accepted_steps(state):   # (t_n, t_n+1, h, YK, y_n+1, lin); runs at least once
        if watch is not None:
            watch(state)
            state = control.state
        outputs.add(step)
        if record:
            sol.step_times.append(step[1])
    outputs.flush()
    sol.ys[-1] = step[4]
    sol.nfe, sol.n_steps = control.nfe, control.attempts - sol.n_rejected
    sol.next_step = control.state[3]
    return _finish(_implicit_costs(sol, control.step), problem)


class _StepControl:
    """The accept-or-reject loop of one adaptive solve, and what it carries from step to step.

    It keeps the tolerances as arrays shaped like the state (for small states NumPy is faster at
    array-by-array than at array-by-scalar arithmetic) and the error scale of the current state
    (:func:`~neuralode.stepsize.error_scale`), so that each attempt computes only the new state's.
    The error ratio and the first step use ``problem.norm`` (the RMS norm unless the problem names
    another).
    """

    def __init__(self, problem, sol):
        t = problem.t
        m = slice(None) if problem.measured is None else problem.measured
        count = np.empty(problem.y0.size)[m].size
        self.problem, self.sol, self.m = problem, sol, m
        self.direction, self.t_end = (1.0 if t[-1] >= t[0] else -1.0), float(t[-1])
        self.rtol = np.full(count, problem.rtol) if np.ndim(problem.rtol) == 0 else np.ravel(problem.rtol)[m]
        self.atol = np.full(count, problem.atol) if np.ndim(problem.atol) == 0 else np.ravel(problem.atol)[m]
        self.attempts, self.nfe = 0, 1      # so far: f(t0, y0)
        self.state, self.norm, self.step = None, problem.norm or rms_norm, stepper(problem)

    def accepted_steps(self, start=None):
        """Yield every accepted step as ``(t_n, t_n+1, h, YK, y_n+1, lin)``, until ``t[-1]`` is reached.

        ``YK`` holds ``y_n`` and the step's stages (see :func:`rk_step`); ``lin`` is the Linearisation
        an implicit step used (``None`` for explicit methods).
        A rejected attempt is retried from ``t_n`` with a smaller step before anything is yielded.
        Before each step is yielded, ``self.state`` holds ``(t_n+1, y_n+1, k, h)``: what the loop
        carries to the next step (its first stage ``k`` for a first-same-as-last method, else ``None``,
        and the step size it will try), followed for an implicit method by the Linearisation the next
        step inherits.  Passing such a tuple as ``start`` resumes the solve there and repeats exactly
        the steps it took (checkpointing recomputes steps this way).

        An implicit step is never longer than its growth guard allows, a failed Newton iteration is
        retried like a rejected step, and a step that would grow only a little keeps its size, and its
        factorisation (:func:`~neuralode.stepsize.hold_step`).
        """
        fun, tab, direction, t_end, m = self.problem.fun, self.problem.tableau, self.direction, self.t_end, self.m
        rtol, atol, zero, s, norm = self.rtol, self.atol, self.problem.zero, tab.stages, self.norm
        if start is None:
            start = float(self.problem.t[0]), self.problem.y0, self.problem.f0, self._initial_step()
        tn, y, k0, h_abs, *carried = start
        step, implicit = self.step, tab.implicit
        if implicit:
            step.restore(carried[0] if carried else None)
        scale, attempts, max_attempts = error_scale(y[m], rtol, atol), 0, self.problem.max_num_steps
        shape, fsal = (s + 1, y.size), tab.fsal
        while direction * (t_end - tn) > 0:
            YK = np.zeros(shape)                # a new array each step: the tape keeps its stages
            YK[0] = y
            YK[1] = self._first_stage(tn, y) if k0 is None else k0
            min_step, rejected = 10.0 * math.ulp(tn), False
            h_abs = max(h_abs, min_step)
            while True:
                if attempts == max_attempts:
                    _too_many_steps(tn, max_attempts)
                attempts += 1
                self.attempts = attempts
                if implicit:                    # no longer than a growing mode allows (see implicit.py)
                    h_abs = min(h_abs, step.longest_step(direction))
                t_new = tn + h_abs * direction
                if direction * (t_new - t_end) > 0:
                    t_new = t_end
                h = t_new - tn
                try:
                    y_new, W = step(fun, tn, h, tab, YK)
                except ConvergenceError as failure:
                    h_abs, rejected = self._not_converged(failure, h, min_step, YK), True
                    continue
                finite = math.isfinite(y_new.dot(zero))   # 0 * y is NaN exactly where y is inf or NaN
                scale_new = error_scale(y_new[m], rtol, atol)  # the ratio is error_ratio(err, y, y_new, ...)
                ratio = norm(W[s + 1].dot(YK[:, m]) / np.maximum(scale, scale_new))
                if ratio <= 1.0 and finite:
                    break
                h_abs, rejected = self._reject(tn, h, ratio, finite, min_step, YK), True
            h_abs = self._next_size(h, ratio, rejected, h_abs if t_new == t_end else 0.0)
            self.state = (t_new, y_new, (YK[s] if fsal else None), h_abs) + ((step.carry(),) if implicit else ())
            yield tn, t_new, h, YK, y_new, (step.used if implicit else None)
            tn, y, k0, scale = t_new, y_new, (YK[s] if fsal else None), scale_new
        self.attempts = attempts
        self.nfe += self.stage_evaluations()

    def _next_size(self, h, ratio, rejected, at_least):
        """The next step's size; ``at_least`` keeps a last step cut short to end at ``t[-1]`` from shrinking it.

        An implicit method that keeps its Jacobian also keeps a step that would grow only a little,
        and with it the factorisation (:func:`~neuralode.stepsize.hold_step`).
        """
        factor = step_factor(ratio, self.problem.tableau.error_order, rejected)
        if self.problem.tableau.implicit and self.step.carry() is not None:
            factor = hold_step(factor)
        return max(abs(h) * factor, at_least)

    def stage_evaluations(self):
        """Evaluations of ``f`` in the attempted steps so far, beyond their first stages."""
        if self.problem.tableau.implicit:
            return self.step.nfe           # Newton's iterations and difference columns, counted as they run
        return (self.problem.tableau.stages - 1) * self.attempts   # every stage but the first

    def _initial_step(self):
        p = self.problem
        if p.h0 is not None:
            return p.h0
        self.nfe += 1                       # the selection evaluates f once
        return select_initial_step(p.fun, p.t[0], p.y0, p.f0, self.direction, p.tableau.error_order,
                                   self.rtol, self.atol, abs(p.t[-1] - p.t[0]), self.m, self.norm)

    def _first_stage(self, tn, y):
        """``k_1 = f(t_n, y_n)``, for a method whose last stage is not the next step's first."""
        self.nfe += 1
        return self.problem.fun(tn, y)

    def _not_converged(self, failure, h, min_step, YK):
        """Record an implicit attempt that failed and return the size to retry with (or re-raise)."""
        self.sol.n_rejected += 1
        if self.problem.record_steps:
            self.sol.rejected_times.append((failure.t, h))
        if abs(h) <= min_step:
            raise ConvergenceError(failure.t, f"{failure.reason}, and the step cannot shrink further",
                                   "The dynamics may be discontinuous, or not finite, near this t")
        YK[2:] = 0.0                         # the stages not recomputed next must be finite
        return 0.5 * abs(h) if failure.retry is None else failure.retry

    def _reject(self, tn, h, ratio, finite, min_step, YK):
        """Record a rejected attempt and return the size of the next one (or raise if there is none)."""
        self.sol.n_rejected += 1
        if self.problem.record_steps:
            self.sol.rejected_times.append((tn, h))
        finite = finite and math.isfinite(ratio)
        if abs(h) <= min_step:
            _underflow(tn, abs(h), not finite)
        if not finite:
            YK[2:] = 0.0                     # the stages not recomputed next must be finite
        return abs(h) * (step_factor(ratio, self.problem.tableau.error_order) if finite else MIN_FACTOR)


_BATCH = 2**16
"""Dense output is evaluated in batches of about this many numbers, which bounds its temporary arrays."""


class _DenseOutput:
    """Serves the output times from the continuous extensions of the accepted steps, in batches.

    Accepted steps wait in a list; when it holds about ``_BATCH`` numbers, and at the end, the output
    times they contain are found all at once and evaluated together with the formula of
    :func:`dense_eval`, and the steps go on the tape (if there is one) after the outputs they serve.
    A few large NumPy operations instead of several small ones per step make dense output almost free
    for small states.
    """

    def __init__(self, sol, tableau, direction, tape):
        self.ys, self.t, self.tape = sol.ys, sol.t, tape
        self.keys, self.direction = direction * sol.t, direction     # increasing, for searchsorted
        self.dense_T = tableau.dense.T
        self.max_waiting = max(1, _BATCH // ((tableau.stages + 1) * sol.ys.shape[1]))
        self.next, self.last, self.waiting = 1, len(sol.t) - 1, []   # the first output not served yet

    def add(self, step):
        """Queue an accepted step ``(t_n, t_n+1, h, YK, y_n+1, lin)``."""
        self.waiting.append(step)
        if len(self.waiting) == self.max_waiting:
            self.flush()

    def flush(self):
        """Serve the output times of every waiting step, and write the steps to the tape."""
        if not self.waiting:
            return
        t_start, t_new, h, YK, _, lins = zip(*self.waiting)
        ends = np.searchsorted(self.keys, self.direction * np.array(t_new), side="right")  # past each step
        if self.tape is not None:
            self._write_tape(t_start, h, YK, lins, ends)
        stop = min(ends[-1], self.last)       # the last output time is the final state itself
        if stop > self.next:
            self._evaluate(stop, ends, t_start, h, YK)
        self.next, self.waiting = ends[-1], []

    def _write_tape(self, t_start, h, YK, lins, ends):
        i = self.next
        for tn, h_n, YK_n, lin, j in zip(t_start, h, YK, lins, ends):
            self.tape.extend(("out", k, (self.t[k] - tn) / h_n) for k in range(i, j))
            self.tape.append(("step", tn, h_n, YK_n[0], YK_n[1:], lin))
            i = j

    def _evaluate(self, stop, ends, t_start, h, YK):
        """``y_m + h_m K_m.T P [theta, .., theta^4]`` for each output up to ``stop``, ``m`` its step."""
        step = np.searchsorted(ends, np.arange(self.next, stop), side="right")   # the step of each output
        held, row = np.unique(step, return_inverse=True)             # the steps that hold outputs
        YK, h = np.array([YK[m] for m in held]), np.array(h)[held]
        hPK = np.matmul(h[:, None, None] * self.dense_T, YK[:, 1:])     # (held steps, 4, n)
        theta = (self.t[self.next:stop] - np.array(t_start)[step]) / h[row]
        powers, ys = theta[:, None] ** _POWERS, self.ys[self.next:stop]
        chunk = max(1, _BATCH // hPK[0].size)
        for a in range(0, len(step), chunk):
            m = row[a:a + chunk]
            ys[a:a + chunk] = YK[m, 0] + np.einsum("ip,ipn->in", powers[a:a + chunk], hPK[m])


def _too_many_steps(tn, max_num_steps):
    raise TooManyStepsError(tn, f"more than max_num_steps = {max_num_steps} steps attempted",
                            "Loosen rtol/atol, raise max_num_steps, or check the dynamics for stiffness")


def _underflow(tn, h_abs, nonfinite):
    if nonfinite:
        raise NonFiniteError(tn, "the state or its derivative became infinite or NaN however small the step",
                             "The solution blows up here, or the dynamics return NaN")
    raise StepSizeUnderflowError(tn, f"the step size {h_abs:.3g} is below what floating point resolves "
                                 "at this t", "The solution may blow up (become infinite) near this t, "
                                 "or the problem is too stiff for an explicit method")


def _finish(sol, problem):
    sol.ys = sol.ys.reshape((len(problem.t),) + problem.shape)
    return sol


def integrate(func, y0, t, *, method="dopri5", rtol=1e-7, atol=1e-9, step_size=None,
              max_num_steps=DEFAULT_MAX_NUM_STEPS):
    """Solve ``dy/dt = func(t, y)``, ``y(t[0]) = y0``, and report what it cost.

    The arguments are those of :func:`odeint`.  Returns an :class:`ODESolution` whose ``ys`` is what
    ``odeint`` returns, together with the number of function evaluations (NFE) and the steps taken,
    and for implicit methods the Jacobians formed (``n_jac``) and factorisations (``n_lu``).

    Example:
        A state pulled towards cos(t) at the rate 10^4 (stiff), which ``dopri5`` would cross in
        thousands of steps:

        >>> sol = integrate(lambda t, y: -1e4 * (y - np.cos(t)), np.ones(1), [0.0, 1.0], method="kvaerno3",
        ...                 rtol=1e-6, atol=1e-9)
        >>> bool(sol.n_steps < 30), sol.n_jac, bool(abs(sol.ys[-1, 0] - np.cos(1.0)) < 1e-4)
        (True, 1, True)
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
            ``"dopri5"`` (adaptive), or any :class:`~neuralode.tableaux.ButcherTableau`; for stiff
            problems the implicit ``"implicit_euler"`` (fixed step), ``"kvaerno3"`` or ``"kvaerno5"``
            (adaptive), whose Jacobian comes from ``func.jvp`` (or ``func.jacobian``) where ``func``
            offers it and from finite differences of ``func`` otherwise.
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
