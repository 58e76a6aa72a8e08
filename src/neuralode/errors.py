"""The engine's own exception types.

A failed integration raises an :class:`IntegrationError`, a ``RuntimeError`` subclass that records the
time ``t`` at which the solver gave up and says why.  Bad arguments raise ``ValueError`` instead.
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
