"""The engine's own exception types.

A failed integration raises an :class:`IntegrationError`, a ``RuntimeError`` subclass that records the
time ``t`` at which the solver gave up and says why.  Bad arguments raise ``ValueError`` (or
``TypeError``) instead; :func:`check_int` and :func:`check_number` are the checks every module shares.
"""


class IntegrationError(RuntimeError):
    """An integration that could not be completed.

    Attributes:
        t: the time at which the solver stopped.
        reason: a short description of what went wrong.
    """

    def __init__(self, t, reason, advice=""):
        self.t = float(t)
        self.reason = reason
        message = f"integration failed at t = {self.t:.6g}: {reason}"
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
