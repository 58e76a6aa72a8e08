"""The engine's own exception types, and the argument checks every module shares.

A failed integration raises an :class:`IntegrationError`, a ``RuntimeError`` subclass that records the
time ``t`` at which the solver gave up and says why.  Bad arguments raise ``ValueError`` (or
``TypeError``) instead, naming the argument: :func:`check_int`, :func:`check_number`,
:func:`check_array` and :func:`check_rng` are the checks every module shares, so that one kind of
mistake gets one kind of message wherever it is made.
"""

import numpy as np


class IntegrationError(RuntimeError):
    """An integration that could not be completed.

    Attributes:
        t: the time at which the solver stopped.
        reason: a short description of what went wrong.
    """

    headline = "integration failed at"

    def __init__(self, t, reason, advice=""):
        self.t = float(t)
        self.reason = reason
        message = f"{self.headline} t = {self.t:.6g}: {reason}"
        if advice:
            message += f". {advice}"
        super().__init__(message)


class NonFiniteError(IntegrationError):
    """The state or the derivative became infinite or NaN (a blow-up, or a NaN from the dynamics)."""


class StepSizeUnderflowError(IntegrationError):
    """The adaptive step size shrank below what floating point can resolve at ``t``."""


class TooManyStepsError(IntegrationError):
    """More than ``max_num_steps`` solver steps were needed."""


class ConvergenceError(IntegrationError):
    """An implicit step could not be taken as asked.

    Either Newton's iteration for a stage did not converge, even with a Jacobian evaluated afresh, or
    (adaptive solves) the step was too long to follow a mode of the dynamics that grows.  An adaptive
    solve catches it and retries with the step size ``retry`` (half the step when ``None``); a
    fixed-step solve raises it.
    """

    def __init__(self, t, reason, advice="", retry=None):
        super().__init__(t, reason, advice)
        self.retry = retry


class EventNotFoundError(IntegrationError):
    """An event search ended without the event function crossing zero (in the direction asked for).

    The search ends at ``t_max``, or after ``max_num_steps`` steps; ``t`` is where it stopped.
    """

    headline = "no event found by"


class GrazingEventError(RuntimeError):
    """An event whose time has no usable derivative: the trajectory meets the surface almost tangentially.

    Raised by the pullback of :func:`~neuralode.events.odeint_event_vjp` when the crossing is so
    shallow that an error of the size of the solver's tolerances could remove it (the ratio of the
    two is ``ratio``), so that the derivative of the event time, which divides by the rate ``slope``
    at which the event function crosses zero, is not to be trusted.

    Attributes:
        t: the event time.
        ratio: the uncertainty of the event function from the tolerances, over the crossing's depth.
        slope: ``d g(t, z(t)) / dt`` at the event.
    """

    def __init__(self, t, ratio, slope):
        self.t, self.ratio, self.slope = float(t), float(ratio), float(slope)
        super().__init__(
            f"the event at t = {self.t:.6g} is grazing: event_fn crosses zero at the rate dg/dt = {self.slope:.3g}, "
            f"so shallowly that an error within rtol/atol could remove the crossing (the event function's "
            f"uncertainty is {self.ratio:.3g} times the crossing's depth), and the derivative of the event time, "
            "which divides by that rate, is meaningless here. Move the event surface so that the trajectory "
            "crosses it, or tighten rtol and atol")


def check_int(name, value, minimum=1):
    """``value`` as an ``int`` of at least ``minimum``, or a ``ValueError``/``TypeError`` naming ``name``.

    Booleans, strings and non-integral floats are refused: ``check_int("n", 2.5)`` raises.

    Example:
        >>> check_int("n_blocks", 3.0)
        3
    """
    if isinstance(value, (bool, str)) or not hasattr(value, "__index__") and not isinstance(value, float):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r:.40}")
    if isinstance(value, float) and not (value.is_integer() and abs(value) < 2**53):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")
    return int(value)


def check_number(name, value, *, low=None, strict=False):
    """``value`` as a finite ``float`` (``> low`` if ``strict``, else ``>= low``), or an error naming ``name``.

    Example:
        >>> check_number("lr", 1e-3, low=0.0, strict=True)
        0.001
    """
    if isinstance(value, (bool, str)) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r:.40}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r:.40}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {number}")
    if low is not None and (number <= low if strict else number < low):
        raise ValueError(f"{name} must be {'greater than' if strict else 'at least'} {low}, got {number}")
    return number


def check_array(name, value, *, finite=True):
    """``value`` as a float array, or a ``ValueError`` naming ``name``.

    Refused: what is not an array of numbers (strings, ragged lists, ``None``), complex numbers (casting
    them to float would drop the imaginary part with only a warning) and, with ``finite=True``, NaN or
    infinity.  Booleans and integers are converted.  The shape is the caller's to check.

    Example:
        >>> check_array("x", [1, 2])
        array([1., 2.])
    """
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise ValueError(f"{name} must be an array of real numbers, got {value!r:.60}") from None
    if array.dtype.kind == "c":
        raise ValueError(f"{name} must hold real numbers, got complex values (dtype {array.dtype}); "
                         "pass the real part (x.real) if that is what you mean")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be an array of real numbers, got {type(value).__name__} {value!r:.60}")
    array = array.astype(float, copy=False)
    if finite and not np.isfinite(array).all():
        raise ValueError(f"{name} must contain only finite values (no NaN or infinity)")
    return array


def check_rng(rng, *, name="rng", required=False):
    """``rng`` if it is a ``numpy.random.Generator``; ``np.random.default_rng(0)`` for ``None`` unless required.

    A seed (an int) or a legacy ``numpy.random.RandomState`` is refused with a ``TypeError`` that says
    what to pass instead, rather than failing later on a method that only ``Generator`` has.

    Example:
        >>> int(check_rng(None).integers(0, 10)) == int(np.random.default_rng(0).integers(0, 10))
        True
    """
    if rng is None and not required:
        return np.random.default_rng(0)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{name} must be a numpy.random.Generator (np.random.default_rng(seed)), got "
                        f"{type(rng).__name__} {rng!r:.40}")
    return rng
