"""``odeint_event``: solve until something happens, and differentiate *when* it happens.

An event is the first time ``t*`` after ``t0`` at which a scalar event function ``g(t, z(t))``
crosses zero: a ball reaching the ground (``g`` = height), a temperature reaching a threshold.  The
solver steps as usual; after every accepted step it compares the sign of ``g`` at the step's end with
its sign before, and when the sign has changed it locates the root on the step's continuous extension
(the dense output of an adaptive method, cubic Hermite interpolation for a fixed-step one) with a
bracketing root finder, the Illinois variant of regula falsi (Dowell & Jarratt 1971), down to
neighbouring floating-point numbers.  The location costs evaluations of ``g``, none of ``f``.

The event time moves with everything the solution depends on.  Since ``g(t*, z(t*), phi) = 0`` holds
for every value of the inputs, differentiating it (the implicit function theorem) gives

    dt* = -(dg/dz . dz(t*) + dg/dphi . dphi) / (dg/dz . f(t*, z*) + dg/dt)

where ``dz(t*)`` is the change of the solution at the fixed time ``t*`` (from ``z0``, the field's
parameters ``theta`` or ``t0``) and ``phi`` are the event function's own parameters; the state at the
event moves with its time, ``dz* = dz(t*) + f(t*, z*) dt*``.  :class:`ImplicitEventTime` holds this
step; :func:`odeint_event_vjp` pulls a loss's gradient back through it and through
:func:`~neuralode.odeint_vjp` (any of its gradient modes) for ``dz(t*)``.

Conventions:

* A zero of ``g`` at ``t0`` is not an event: the search starts there and reports the first crossing
  after ``g`` has left zero (a ball thrown up from the ground lands when it comes back down).
* The returned time is on the far side of the crossing: ``g(t*, z*)`` has the sign ``g`` takes after
  the event, or is zero.  A search restarted from ``(t*, z*)`` under the same dynamics does not find
  the same event again; after a jump that sends the state back (a bounce), ``direction`` tells the
  next search which crossings count.
* A crossing and a return that both fall inside one step are not seen: the sign is compared at the
  step's ends only, as in torchdiffeq and diffrax.

References:
    Hairer, Nørsett & Wanner, *Solving Ordinary Differential Equations I* (1993), Section II.6.
    Shampine & Thompson, "Event location for ordinary differential equations" (2000).
    Dowell & Jarratt, "A modified regula falsi method for computing the root of an equation" (1971).
    Chen, Amos & Nickel, "Learning Neural Event Functions for Ordinary Differential Equations" (2021).
"""

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import (EventNotFoundError, GrazingEventError, NonFiniteError, StepSizeUnderflowError, TooManyStepsError,
                     check_array, check_number)
from .gradients import check_options, odeint_vjp
from .protocol import check_dynamics
from .solver import DEFAULT_MAX_NUM_STEPS, ODESolution, _StepControl, dense_eval, prepare, stepper

DIRECTIONS = (-1, 0, 1)
"""``direction=``: ``+1`` counts crossings where ``g`` rises, ``-1`` where it falls, ``0`` both."""
HORIZON = 1e300
"""Without ``t_max``, a search may run this far past ``t0`` (``max_num_steps`` ends it long before)."""
FD_STEP = np.finfo(float).eps ** (1 / 3)
"""Relative step of the central differences that differentiate a plain event function."""
MAX_ROOT_ITERATIONS = 20_000
"""The root finder halves its bracket at least every fifth iteration, and no bracket of float64 numbers
survives 2100 halvings: this bound is never reached."""


@dataclass
class EventSolution:
    """What :func:`integrate_event` returns: the event and what finding it cost.

    Attributes:
        t_event, y_event: the event time and the state there (shape of ``y0``).
        nfe: evaluations of ``f``.
        n_steps: accepted steps, the one that holds the event included.
        n_rejected: rejected steps (adaptive methods).
        n_event: evaluations of the event function (one per step, plus the root finder's).
        step_times: the start of every accepted step, and the end of the last one.
        g0: the event function at ``(t0, y0)``.
        interpolate: ``interpolate(t)`` evaluates the continuous extension of the step that holds
            the event (shape of ``y0``); the root was located on it.
    """

    t_event: float
    y_event: np.ndarray
    nfe: int = 0
    n_steps: int = 0
    n_rejected: int = 0
    n_event: int = 0
    step_times: list = field(default_factory=list)
    g0: float = None
    interpolate: object = None


def _check_direction(direction):
    if isinstance(direction, (bool, np.bool_)) or direction not in DIRECTIONS:
        raise ValueError(f"direction must be -1 (falling), 0 (either) or +1 (rising), got {direction!r}")
    return int(direction)


def _check_t_max(t0, t_max):
    if t_max is None:
        if abs(t0) >= HORIZON:
            raise ValueError(f"t0 = {t0:.3g} is too large for a search without t_max; rescale time")
        return t0 + HORIZON
    t_max = check_number("t_max", t_max)
    if not t_max > t0:
        raise ValueError(f"t_max must be later than t0 = {t0:.6g} (events are searched forward), got {t_max:.6g}")
    return t_max


def _check_event_value(value, t):
    """One value returned by the event function, as a float, or an error saying what is wrong with it."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        array = np.asarray(None)
    if array.shape != () or array.dtype.kind not in "iuf":
        what = "a boolean" if array.dtype.kind == "b" else f"{array.dtype} of shape {array.shape}"
        raise ValueError(f"event_fn(t, y) returned {what} at t = {t:.6g}; it must return one real number "
                         "whose sign changes at the event (a condition as a boolean has no root to locate)")
    number = float(array)
    if not math.isfinite(number):
        raise NonFiniteError(t, f"event_fn(t, y) returned {number}")
    return number


class _EventFunction:
    """The user's event function on flat states, checking every value and counting the calls."""

    def __init__(self, event_fn, shape):
        if not callable(event_fn):
            raise ValueError(f"event_fn must be callable as event_fn(t, y), got {type(event_fn).__name__}")
        self.event_fn, self.shape, self.calls = event_fn, shape, 0

    def __call__(self, t, y):
        self.calls += 1
        return _check_event_value(self.event_fn(t, y.reshape(self.shape)), t)


def _crossed(before, after, direction):
    """Whether ``g`` went from ``before`` (not zero) onto or across zero at ``after``, in ``direction``."""
    return (direction >= 0 and before < 0 <= after) or (direction <= 0 and before > 0 >= after)


# ---------------------------------------------------------------------------------------------------
# The steps: the adaptive loop of the solver, or fixed steps from t0; each with its continuous extension
# ---------------------------------------------------------------------------------------------------


def _dense(tn, h, YK, dense):
    """The continuous extension of an adaptive step (its dense output) as a function of ``t``."""
    y, K = YK[0], YK[1:]
    return lambda t: dense_eval(y, h, K, dense, np.array([(t - tn) / h]))[0]


def _hermite(tn, h, y0, f0, y1, f1):
    """Cubic Hermite interpolation between a step's ends, with the slopes ``f0`` and ``f1`` there."""

    def interpolate(t):
        s = (t - tn) / h
        return ((2 * s**3 - 3 * s**2 + 1) * y0 + (s**3 - 2 * s**2 + s) * h * f0
                + (3 * s**2 - 2 * s**3) * y1 + (s**3 - s**2) * h * f1)

    return interpolate


def _adaptive_steps(problem, stats):
    """Yield ``(t_n, t_n+1, y_n+1, interpolate)`` for every accepted step of the solver's adaptive loop."""
    control = _StepControl(problem, ODESolution(None, problem.t))
    for tn, t_new, h, YK, y_new, _ in control.accepted_steps():
        stats.nfe = control.nfe + control.stage_evaluations()
        stats.n_rejected = control.sol.n_rejected
        yield tn, t_new, y_new, _dense(tn, h, YK, problem.tableau.dense)


def _fixed_steps(problem, stats):
    """Yield fixed steps ``t_n = t0 + n h`` like :func:`_adaptive_steps`, until ``max_num_steps``."""
    fun, tab, h, step = problem.fun, problem.tableau, problem.step_size, stepper(problem)
    t0, t_end = float(problem.t[0]), float(problem.t[-1])
    tn, y, k0 = t0, problem.y0, problem.f0
    for n in range(problem.max_num_steps):
        t_new = min(t0 + (n + 1) * h, t_end)
        if not t_new > tn:
            raise StepSizeUnderflowError(tn, f"step_size = {h:.3g} is below what floating point resolves at this t")
        YK = np.zeros((tab.stages + 1, y.size))
        YK[0], YK[1] = y, k0
        before = getattr(step, "nfe", 0)                              # an implicit stepper counts its own
        y_new = step(fun, tn, t_new - tn, tab, YK)[0]
        k_new = YK[-1].copy() if tab.fsal else fun(t_new, y_new)
        if tab.implicit:
            stats.nfe += step.nfe - before
        else:
            stats.nfe += tab.stages - 1 if tab.fsal else tab.stages  # the first stage is the last one's
        if not (np.isfinite(y_new).all() and np.isfinite(k_new).all()):
            raise NonFiniteError(t_new, "the state or its derivative became infinite or NaN",
                                 "The solution may blow up here, or the step is too large for stability")
        interpolate = (_dense(tn, t_new - tn, YK, tab.dense) if tab.dense is not None
                       else _hermite(tn, t_new - tn, y, k0, y_new, k_new))
        yield tn, t_new, y_new, interpolate
        if t_new == t_end:
            return
        tn, y, k0 = t_new, y_new, k_new
    raise TooManyStepsError(tn, f"more than max_num_steps = {problem.max_num_steps} steps")


# ---------------------------------------------------------------------------------------------------
# Locating the root on a step's continuous extension
# ---------------------------------------------------------------------------------------------------


def locate_root(G, a, ga, b, gb):
    """A zero of the scalar function ``G`` between ``a < b``, by the Illinois method, to the last bit.

    ``G(a) = ga`` is not zero and ``G(b) = gb`` has the other sign or is zero.  Each iteration
    evaluates ``G`` once, at the regula falsi point (where the chord through the bracket's ends meets
    zero), and keeps the half of the bracket where the sign changes.  When the same end is kept twice
    in a row, its value is halved for the chord (Dowell & Jarratt 1971), which stops the chord from
    creeping up on the root from one side.  A bisection step is taken whenever three iterations did not
    halve the bracket, unless the chord's point is within a few bits of an end: there the root has
    probably been found, and the next point, one bit past it, closes the bracket (if it does not,
    the bisection follows).  The search ends when ``G`` is zero or ``a`` and ``b`` are neighbouring
    floating-point numbers.

    Returns:
        ``(t, g)`` with ``g = G(t)`` of ``gb``'s sign or zero: the crossing lies in ``(a, t]``, and
        ``a`` is the floating-point number just before ``t`` unless ``g`` is zero.

    Example:
        >>> t, g = locate_root(lambda t: t * t - 2.0, 1.0, -1.0, 2.0, 2.0)
        >>> bool(0 <= t - 2 ** 0.5 <= np.spacing(2 ** 0.5)), g >= 0
        (True, True)
    """
    chord_a, chord_b, side, widths, nudged = ga, gb, 0, [math.inf] * 3, False
    for _ in range(MAX_ROOT_ITERATIONS):
        mid = a + 0.5 * (b - a)
        if gb == 0 or mid in (a, b):
            break
        c = _chord_zero(a, chord_a, b, chord_b)
        near = c - a <= 4 * abs(np.spacing(a)) or b - c <= 4 * abs(np.spacing(b))
        if b - a > 0.5 * widths[0] and (nudged or not near):
            c = mid
        nudged = near and c != mid
        c = min(max(c, np.nextafter(a, b)), np.nextafter(b, a))     # strictly inside, if only by one bit
        widths = widths[1:] + [b - a]
        gc = G(c)
        if gc == 0 or (gc > 0) == (gb > 0):
            b, gb, chord_b = c, gc, gc
            chord_a, side = (0.5 * chord_a if side == 1 else chord_a), 1
        else:
            a, chord_a = c, gc
            chord_b, side = (0.5 * chord_b if side == -1 else chord_b), -1
    return b, gb


def _chord_zero(a, ga, b, gb):
    """Where the chord through ``(a, ga)`` and ``(b, gb)`` meets zero, written from the end nearer to it.

    ``b - gb (b - a) / (gb - ga)`` and ``a - ga (b - a) / (gb - ga)`` are the same number, but when the
    zero lies very close to one end, only the form that starts from that end keeps its digits.
    """
    if abs(ga) < abs(gb):
        return a - ga * (b - a) / (gb - ga)
    return b - gb * (b - a) / (gb - ga)


# ---------------------------------------------------------------------------------------------------
# The search
# ---------------------------------------------------------------------------------------------------


def _search(func, y0, t0, event_fn, method, rtol, atol, step_size, direction, t_max, max_num_steps):
    """Check the arguments and run the search; return the :class:`EventSolution` and the checked problem."""
    direction = _check_direction(direction)
    t0 = check_number("t0", t0)
    t_end = _check_t_max(t0, t_max)
    problem = prepare(func, y0, np.array([t0, t_end]), method, rtol, atol, step_size, max_num_steps)
    g = _EventFunction(event_fn, problem.shape)
    adaptive = problem.tableau.adaptive and problem.step_size is None
    if not adaptive and problem.step_size is None:
        raise ValueError(f"method {problem.tableau.name!r} takes fixed steps: give step_size (the search "
                         "has no output times to cut into steps)")
    stats = EventSolution(None, None, nfe=1, step_times=[t0])
    with np.errstate(over="ignore", invalid="ignore"):
        steps = _adaptive_steps(problem, stats) if adaptive else _fixed_steps(problem, stats)
        stats.g0 = g(t0, problem.y0)
        _follow(steps, g, direction, stats, t_max, problem.max_num_steps)
    stats.n_event = g.calls
    stats.n_steps = len(stats.step_times) - 1
    stats.y_event = stats.y_event.reshape(problem.shape)
    return stats, problem


def _follow(steps, g, direction, stats, t_max, max_num_steps):
    """Watch the sign of ``g`` at the end of every step; at a crossing, locate it and fill ``stats``."""
    before = stats.g0 if stats.g0 != 0 else None        # the last nonzero value of g
    value = stats.g0
    try:
        for tn, t_new, y_new, interpolate in steps:
            stats.step_times.append(t_new)
            value = g(t_new, y_new)
            if before is not None and _crossed(before, value, direction):
                t_event, _ = locate_root(lambda t: g(t, interpolate(t)), tn, before, t_new, value)
                stats.t_event, stats.interpolate = t_event, interpolate
                stats.y_event = y_new if t_event == t_new else interpolate(t_event)
                return
            before = value if value != 0 else before
    except TooManyStepsError as error:
        raise EventNotFoundError(error.t, f"event_fn did not cross zero{_which(direction)} within max_num_steps = "
                                 f"{max_num_steps} steps", _advice(stats.g0, value)) from None
    where = "before the horizon t0 + 1e300" if t_max is None else f"before t_max = {t_max:.6g}"
    raise EventNotFoundError(stats.step_times[-1], f"event_fn did not cross zero{_which(direction)} {where}",
                             _advice(stats.g0, value))


def _which(direction):
    return {1: " rising (direction=+1)", -1: " falling (direction=-1)", 0: ""}[direction]


def _advice(g0, last):
    return (f"It was {g0:.6g} at t0 and {last:.6g} at the last step. Check the event function's sign "
            "and the direction, or give t_max")


def integrate_event(func, y0, t0, *, event_fn, method="dopri5", rtol=1e-7, atol=1e-9, step_size=None,
                    direction=0, t_max=None, max_num_steps=DEFAULT_MAX_NUM_STEPS):
    """Solve from ``t0`` until ``event_fn`` crosses zero, and report the event and what it cost.

    The arguments are those of :func:`odeint_event`.  Returns an :class:`EventSolution`.
    """
    return _search(func, y0, t0, event_fn, method, rtol, atol, step_size, direction, t_max, max_num_steps)[0]


def odeint_event(func, y0, t0, *, event_fn, method="dopri5", rtol=1e-7, atol=1e-9, step_size=None,
                 direction=0, t_max=None, max_num_steps=DEFAULT_MAX_NUM_STEPS):
    """Solve ``dy/dt = func(t, y)`` from ``y(t0) = y0`` until ``event_fn(t, y)`` first crosses zero.

    Args:
        func: the dynamics ``func(t, y)``, returning ``dy/dt`` with the shape of ``y``.
        y0: the initial state, an array of any shape.
        t0: the initial time, a finite number.
        event_fn: ``event_fn(t, y)`` returning one real number; the event is where its sign changes.
            A zero at ``t0`` is not an event (the search reports the next crossing).
        method, rtol, atol: as for :func:`~neuralode.odeint`.
        step_size: the step of a fixed-step method (required for one), steps ``t0 + n * step_size``.
        direction: ``+1`` counts only crossings where ``event_fn`` rises (from negative to zero or
            positive), ``-1`` only falling ones, ``0`` both.
        t_max: the search gives up at this time (``None``: only ``max_num_steps`` ends it).
        max_num_steps: a bound on the number of steps.

    Returns:
        ``(t_event, y_event)``: the time of the crossing, located on the step's continuous extension
        to neighbouring floating-point numbers, and the state there (shape of ``y0``).
        ``event_fn(t_event, y_event)`` has the sign of after the crossing, or is zero.

    Raises:
        ValueError: for bad arguments, or an event function that does not return one real number.
        EventNotFoundError: if ``event_fn`` did not cross zero before ``t_max`` or ``max_num_steps``.
        IntegrationError: if the integration itself fails.

    Example:
        >>> fall = lambda t, z: np.array([z[1], -9.81])            # height and velocity of a ball
        >>> t_event, z_event = odeint_event(fall, np.array([0.0, 5.0]), 0.0, event_fn=lambda t, z: z[0])
        >>> bool(abs(t_event - 2 * 5.0 / 9.81) < 1e-12)              # back on the ground
        True
    """
    solution = integrate_event(func, y0, t0, event_fn=event_fn, method=method, rtol=rtol, atol=atol,
                               step_size=step_size, direction=direction, t_max=t_max, max_num_steps=max_num_steps)
    return solution.t_event, solution.y_event


# ---------------------------------------------------------------------------------------------------
# The derivatives of the event function at the event
# ---------------------------------------------------------------------------------------------------


def _event_protocol(event_fn):
    """Whether ``event_fn`` offers its own derivatives (``vjp`` and ``params``), checking them if so."""
    has_vjp, params = callable(getattr(event_fn, "vjp", None)), getattr(event_fn, "params", None)
    if not has_vjp:
        if params is not None:
            raise ValueError("event_fn has params but no method vjp(t, y, v): the gradients of its parameters "
                             "need its vector-Jacobian product")
        return False
    check_dynamics(event_fn, "event_fn")
    return True


def _check_event_vjp(event_fn, shape, out):
    """``out = event_fn.vjp(t, y, 1.0)`` as ``(dg/dy flat, dg/dt, [dg/dphi_i])``, or an error naming the problem."""
    problem = None
    if not (isinstance(out, tuple) and len(out) == 3):
        problem = "it must return a tuple (v * dg/dy, [v * dg/dphi_i], v * dg/dt)"
    elif np.shape(out[0]) != shape:
        problem = f"its first element has shape {np.shape(out[0])}; it must have y's shape {shape}"
    elif not isinstance(out[1], (list, tuple)) or len(out[1]) != len(event_fn.params):
        problem = f"its second element must be a list of {len(event_fn.params)} arrays, one per event_fn.params"
    elif any(np.shape(d) != p.shape for d, p in zip(out[1], event_fn.params)):
        problem = f"its parameter cotangents have shapes {[np.shape(d) for d in out[1]]}; event_fn.params have " \
                  f"{[p.shape for p in event_fn.params]}"
    elif np.ndim(out[2]) != 0:
        problem = f"its third element (v * dg/dt) has shape {np.shape(out[2])}; it must be a scalar"
    if problem is None:
        parts = [np.asarray(out[0], dtype=float).ravel(), float(out[2]), [np.asarray(d, float) for d in out[1]]]
        if all(np.isfinite(x).all() for x in (parts[0], parts[1], *parts[2])):
            return parts
        problem = "it returned a non-finite value"
    raise ValueError(f"event_fn.vjp(t, y, v) does not follow the protocol: {problem}")


def _fd_partials(g, t, y):
    """``(dg/dy, dg/dt)`` of a plain event function by central differences, ``2 (n + 1)`` evaluations.

    Each step is ``FD_STEP * max(1, |x|)`` (about ``6e-6`` for coordinates of unit size): the error
    is ``O(step^2)`` from the third derivative plus ``O(eps |g| / step)`` from rounding, about ``1e-10``
    relative for a smooth ``g`` of unit scale, and rounding alone when ``g`` is linear in ``(t, y)``.
    """
    g_y = np.empty(y.size)
    for i in range(y.size):
        step = FD_STEP * max(1.0, abs(y[i]))
        up, down = y.copy(), y.copy()
        up[i] += step
        down[i] -= step
        g_y[i] = (g(t, up) - g(t, down)) / (up[i] - down[i])
    step = FD_STEP * max(1.0, abs(t))
    return g_y, (g(t + step, y) - g(t - step, y)) / ((t + step) - (t - step))


class ImplicitEventTime:
    """The implicit function theorem at an event: how ``t*`` and ``z*`` move with the solution.

    At the event ``g(t*, z(t*), phi) = 0``.  Let the solution at the fixed time ``t*`` change by
    ``dz`` (because ``z0``, ``theta`` or ``t0`` changed) and the event function's parameters by
    ``dphi``.  For ``g`` to stay zero the event time must move by

        dt* = -(g_z . dz + g_phi . dphi) / g_dot,     g_dot = g_z . f* + g_t,

    the rate at which ``g(t, z(t))`` crosses zero; the state at the event moves by
    ``dz* = dz + f* dt*``.  :meth:`jvp` is this map; :meth:`vjp` is its transpose.

    Args:
        g_z: ``dg/dz`` at the event, flat.
        g_t: ``dg/dt`` there.
        g_phi: ``[dg/dphi_i]``, one array per parameter of the event function (possibly empty).
        f_star: ``f(t*, z*)``, flat.
        t_event: the event time, for messages.

    Example:
        >>> layer = ImplicitEventTime(np.array([1.0, 0.0]), 0.0, [], np.array([-3.0, -9.8]))
        >>> dt, dz = layer.jvp(np.array([0.3, 0.0]), [])      # the ball 0.3 higher lands 0.1 later
        >>> round(dt, 12), dz.round(12).tolist()
        (0.1, [0.0, -0.98])
    """

    def __init__(self, g_z, g_t, g_phi, f_star, t_event=math.nan):
        self.g_z, self.g_t, self.f_star = np.ravel(g_z), float(g_t), np.ravel(f_star)
        self.g_phi, self.t_event = list(g_phi), float(t_event)
        self.g_dot = float(self.g_z @ self.f_star) + self.g_t
        self.moves = bool(np.any(self.g_z) or any(np.any(d) for d in self.g_phi))

    def _per_unit(self):
        """``1 / g_dot``; zero when nothing moves the event (its time is then fixed however g crosses)."""
        if not self.moves:
            return 0.0
        if self.g_dot == 0.0:
            raise GrazingEventError(self.t_event, math.inf, 0.0)
        return 1.0 / self.g_dot

    def jvp(self, dz, dphi):
        """``(dt*, dz*)`` for a change ``dz`` of the solution at ``t*`` and ``dphi`` of the parameters."""
        dz = np.ravel(dz)
        dt = -(float(self.g_z @ dz) + sum(float(np.sum(d * p)) for d, p in zip(self.g_phi, dphi))) * self._per_unit()
        return dt, dz + self.f_star * dt

    def vjp(self, t_bar, y_bar):
        """``(z_bar, [phi_bar_i])``: the cotangents of ``z(t*)`` and ``phi`` for those of ``t*`` and ``z*``.

        With ``mu = (t_bar + y_bar . f*) / g_dot``, ``z_bar = y_bar - mu g_z`` and ``phi_bar = -mu g_phi``.
        """
        y_bar = np.ravel(y_bar)
        mu = (float(t_bar) + float(y_bar @ self.f_star)) * self._per_unit()
        return y_bar - mu * self.g_z, [-mu * d for d in self.g_phi]


# ---------------------------------------------------------------------------------------------------
# The pullback
# ---------------------------------------------------------------------------------------------------


def _at_event(f, event_fn, protocol, search, problem):
    """The :class:`ImplicitEventTime` at the event found by ``search``, and its grazing ratio."""
    t, y, shape = search.t_event, search.y_event.ravel(), problem.shape
    g = _EventFunction(event_fn, shape)
    if protocol:
        g_y, g_t, g_phi = _check_event_vjp(event_fn, shape, event_fn.vjp(t, y.reshape(shape).copy(), 1.0))
    else:
        (g_y, g_t), g_phi = _fd_partials(g, t, y), []
    f_star = problem.fun(t, y)
    if not np.isfinite(f_star).all():
        raise NonFiniteError(t, "f(t, y) is not finite at the event")
    layer = ImplicitEventTime(g_y, g_t, g_phi, f_star, t)
    return layer, _grazing_ratio(layer, g, search, problem)


def _grazing_ratio(layer, g, search, problem):
    """How the event function's uncertainty from the tolerances compares with the depth of the crossing.

    Near the event ``G(t) = g(t, z(t))`` is about ``g_dot (t - t*) + G'' (t - t*)^2 / 2``: a parabola
    that dips ``g_dot^2 / (2 |G''|)`` beyond zero.  A state wrong by its tolerance
    (``atol + rtol |z|`` in each entry) changes ``g`` by about ``spread = |g_z| . (atol + rtol |z*|)``;
    when that reaches the depth, the crossing itself is in doubt.  ``G''`` comes from a central second
    difference on the event step's continuous extension, a quarter step either side of ``t*``.
    """
    if not layer.moves:
        return 0.0
    if layer.g_dot == 0.0:
        return math.inf
    spread = float(np.abs(layer.g_z) @ (problem.atol + problem.rtol * np.abs(search.y_event.ravel())))
    t, delta, G = search.t_event, 0.25 * (search.step_times[-1] - search.step_times[-2]), search.interpolate
    curvature = (g(t + delta, G(t + delta)) - 2 * g(t, G(t)) + g(t - delta, G(t - delta))) / delta**2
    return 2.0 * abs(curvature) * spread / layer.g_dot**2


class EventPullback:
    """The function ``(t_bar, y_bar) -> (y0_bar, params_bar, t0_bar[, event_params_bar])``.

    ``t_bar`` and ``y_bar`` are the gradients of a loss with respect to the event time and the state
    there (each as if the other were held).  The pullback turns them, by :class:`ImplicitEventTime`,
    into a cotangent of the solution at the fixed time ``t*``, and pulls that back through the solve
    over ``[t0, t*]``.  Calling it does not change it.

    Attributes:
        layer: the :class:`ImplicitEventTime` at the event (``layer.g_dot``: how fast ``g`` crosses zero).
        grazing: the event function's uncertainty from the tolerances over the depth of the crossing;
            at 1 or more the pullback raises :class:`~neuralode.errors.GrazingEventError`.
        search: the :class:`EventSolution` of the search.
        solve: the :class:`~neuralode.gradients.Pullback` of the solve over ``[t0, t*]`` (its
            ``nfe_forward``, ``nfe_backward``, ...).
        derivatives: how ``dg/dz`` and ``dg/dt`` were obtained: ``"vjp"`` (the event function's own)
            or ``"finite differences"``.
    """

    def __init__(self, layer, grazing, search, solve, protocol):
        self.layer, self.grazing, self.search, self.solve = layer, grazing, search, solve
        self.derivatives, self._protocol = ("vjp" if protocol else "finite differences"), protocol
        self._shape = search.y_event.shape

    def __call__(self, t_bar, y_bar):
        t_bar = check_number("t_bar", t_bar)
        y_bar = check_array("y_bar", y_bar)
        if y_bar.shape != self._shape:
            raise ValueError(f"y_bar must have the shape of y_event, {self._shape}; got {y_bar.shape}")
        if self.grazing >= 1.0:
            raise GrazingEventError(self.search.t_event, self.grazing, self.layer.g_dot)
        z_bar, phi_bar = self.layer.vjp(t_bar, y_bar)
        ys_bar = np.zeros((2,) + self._shape)
        ys_bar[1] = z_bar.reshape(self._shape)
        y0_bar, params_bar, times_bar = self.solve(ys_bar)
        grads = (y0_bar, params_bar, float(times_bar[0]))
        return grads + (phi_bar,) if self._protocol else grads


def odeint_event_vjp(f, y0, t0, *, event_fn, gradient="backprop", method="dopri5", rtol=1e-7, atol=1e-9,
                     step_size=None, direction=0, t_max=None, max_num_steps=DEFAULT_MAX_NUM_STEPS, **options):
    """Solve until an event like :func:`odeint_event`, and return the event with its pullback.

    The event time is an implicit function of everything the solution depends on:
    ``g(t*, z(t*; z0, theta, t0), phi) = 0``.  The pullback applies the implicit function theorem
    (:class:`ImplicitEventTime`) at the event, then pulls the resulting cotangent of ``z(t*)`` back
    through :func:`~neuralode.odeint_vjp` over ``[t0, t*]``, which solves that interval once more in
    the chosen gradient mode (so the pullback costs one more forward solve than the search).

    The derivatives of ``event_fn`` at the event: if it has a method ``vjp(t, y, v)`` (with ``v`` a
    scalar, returning ``(v dg/dy, [v dg/dphi_i], v dg/dt)``) and a list ``params`` (the dynamics
    protocol), they come from it and the pullback returns the gradients of its parameters too;
    otherwise ``dg/dy`` and ``dg/dt`` come from central differences (see :func:`_fd_partials`:
    about ``1e-10`` relative for a smooth function of unit scale, rounding alone for a linear one).

    Args:
        f: dynamics following the protocol (``f(t, y)``, ``f.params``, ``f.vjp``).
        y0, t0, event_fn, method, rtol, atol, step_size, direction, t_max, max_num_steps: as for
            :func:`odeint_event`.
        gradient: a gradient mode of :func:`~neuralode.odeint_vjp` (``"backprop"``, ``"adjoint"``,
            ``"checkpoint"``, ``"interpolated"``).
        **options: passed on to :func:`~neuralode.odeint_vjp` (``norm``, ``checkpoints``, ...).

    Returns:
        ``((t_event, y_event), pullback)``; ``pullback(t_bar, y_bar)`` returns
        ``(y0_bar, params_bar, t0_bar)``, and ``event_params_bar`` (one array per ``event_fn.params``)
        as a fourth item when ``event_fn`` has a ``vjp``.  See :class:`EventPullback`.

    Raises:
        ValueError: for bad arguments, or derivatives of ``event_fn`` that break the protocol.
        EventNotFoundError: as :func:`odeint_event`.
        GrazingEventError: from the pullback, if the crossing is too shallow to be differentiated.

    Example:
        >>> from neuralode.nn import MLP
        >>> f = MLP([2, 8, 2])
        >>> (t_event, y_event), pullback = odeint_event_vjp(f, np.array([1.0, 0.5]), 0.0, t_max=50.0,
        ...                                                 event_fn=lambda t, y: y[0] + y[1] - 3.0)
        >>> y0_bar, params_bar, t0_bar = pullback(1.0, np.zeros(2))     # the gradient of t_event
        >>> y0_bar.shape, len(params_bar)
        ((2,), 4)
    """
    check_options(gradient, method=method, rtol=rtol, atol=atol, step_size=step_size, max_num_steps=max_num_steps,
                  **options)
    check_dynamics(f)
    protocol = _event_protocol(event_fn)
    search, problem = _search(f, y0, t0, event_fn, method, rtol, atol, step_size, direction, t_max, max_num_steps)
    layer, grazing = _at_event(f, event_fn, protocol, search, problem)
    times = np.array([float(t0), search.t_event])
    _, solve = odeint_vjp(f, y0, times, gradient=gradient, method=method, rtol=rtol, atol=atol,
                          step_size=step_size, max_num_steps=max_num_steps, **options)
    return (search.t_event, search.y_event), EventPullback(layer, grazing, search, solve, protocol)
