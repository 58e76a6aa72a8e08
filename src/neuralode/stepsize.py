"""The adaptive policy: how large a step to try, how to judge it, and how to pick the next one.

These are apart from the Runge–Kutta arithmetic on purpose: the tableau says how a step is computed,
this module says which steps to take.  The conventions are those of Hairer, Nørsett & Wanner (1993),
Section II.4, as used by ``scipy.integrate.solve_ivp`` and torchdiffeq, so that the number of function
evaluations at equal tolerances is comparable.
"""

import math

import numpy as np

SAFETY = 0.9
"""Aim a little below the largest step the error model allows, so that fewer steps are rejected."""
MIN_FACTOR = 0.2
"""A step never shrinks by more than this factor at once."""
MAX_FACTOR = 10.0
"""A step never grows by more than this factor at once."""


def rms_norm(x):
    """The root-mean-square norm ``sqrt(mean(x**2))`` over every entry of ``x``."""
    return math.sqrt(x.dot(x) / x.size)


def block_rms_max(sizes):
    """The norm ``x -> max over blocks of rms(block)`` for consecutive blocks of the given sizes.

    torchdiffeq measures the adjoint's backward state this way by default: one RMS norm per tensor of
    the augmented state (``a_t``, ``z``, ``a`` and one per parameter tensor) and the largest of them
    (``_mixed_norm`` in ``torchdiffeq/_impl/misc.py``, combined in ``handle_adjoint_norm_`` of
    ``torchdiffeq/_impl/adjoint.py``).  Unlike one RMS over everything, a small block is not diluted
    by a large one: its error counts in full.  A NaN anywhere gives NaN (the step is rejected).

    Args:
        sizes: the number of entries of each block, in the order they occupy the flat vector; blocks
            of size 0 are skipped.

    Example:
        >>> norm = block_rms_max([3, 1])
        >>> norm(np.array([1.0, 1.0, 1.0, 4.0])), rms_norm(np.array([1.0, 1.0, 1.0, 4.0]))
        (4.0, 2.179449471770337)
    """
    sizes = np.array([int(n) for n in sizes if n > 0])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])

    def norm(x):
        return math.sqrt(float(np.max(np.add.reduceat(x * x, starts) / sizes)))

    return norm


def error_scale(y, rtol, atol):
    """The error tolerated in each entry of a state ``y``: ``atol + rtol * |y|``.

    Example:
        >>> error_scale(np.array([-2.0, 0.0]), 1e-3, 1e-6)
        array([2.001e-03, 1.000e-06])
    """
    return np.abs(y) * rtol + atol


def error_ratio(err, y_old, y_new, rtol, atol):
    """How large the local error estimate is compared with the tolerance; ``<= 1`` accepts the step.

    The ratio is the RMS norm over the whole state of
    ``err / (atol + rtol * max(|y_old|, |y_new|))``.  Since ``atol + rtol * |y|`` grows with ``|y|``,
    the denominator is also ``max(error_scale(y_old), error_scale(y_new))``, which lets the adaptive
    loop keep each accepted state's scale for the next step instead of computing it twice.

    Args:
        err: the local error estimate ``h * sum_i (b_i - b_hat_i) k_i``, flat.
        y_old, y_new: the state before and after the step, flat.
        rtol, atol: relative and absolute tolerances (scalars or arrays shaped like the state).

    Example:
        >>> float(error_ratio(np.array([1e-6]), np.array([1.0]), np.array([1.0]), 1e-6, 0.0))
        1.0
    """
    scale = np.maximum(error_scale(y_old, rtol, atol), error_scale(y_new, rtol, atol))
    return rms_norm(err / scale)


def select_initial_step(fun, t0, y0, f0, direction, error_order, rtol, atol, interval, measured=None,
                        norm=rms_norm):
    """Choose the first step size from the problem's own scales (Hairer, Nørsett & Wanner, II.4).

    A first guess ``h0 = 0.01 * |y0| / |f0|`` (in the tolerance-scaled RMS norm) makes the first Euler
    step change ``y`` by about one percent; one more evaluation of ``f`` at ``t0 + h0`` estimates the
    second derivative, and ``h1`` makes the local error of a method of order ``error_order`` about
    ``0.01`` of the tolerance.  The smaller of ``100 h0``, ``h1`` and the interval is used.

    Args:
        fun: the flat dynamics ``fun(t, y)``.
        t0, y0, f0: the initial time, state and derivative ``f0 = fun(t0, y0)``.
        direction: ``+1.0`` for forward integration, ``-1.0`` for backward.
        error_order: the order of the embedded error estimate.
        rtol, atol: the tolerances.
        interval: the length of the whole integration interval, an upper bound on the step.
        measured: the entries of the state the norms measure, a slice or index array (``None``: all).
        norm: the norm of those entries (the error control's own: :func:`rms_norm` unless told otherwise).

    Returns:
        The absolute size of the first step to try.  Costs one function evaluation.
    """
    m = slice(None) if measured is None else measured
    scale = error_scale(y0[m], rtol, atol)
    d0, d1 = norm(y0[m] / scale), norm(f0[m] / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, interval)
    if not h0 > 0:      # |f0| overflows the norm: start from the smallest step, and let the loop judge it
        return 0.0
    f1 = fun(t0 + direction * h0, y0 + direction * h0 * f0)
    d2 = norm((f1[m] - f0[m]) / scale) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (error_order + 1))
    return min(100.0 * h0, h1, interval)


def step_factor(ratio, error_order, rejected_before=False):
    """The factor by which to multiply the step size after a step with this error ratio.

    The local error of the embedded pair scales like ``h^(q+1)`` with ``q = error_order``, so the step
    that would make the ratio exactly one is ``h * ratio^(-1/(q+1))``; the safety factor aims a little
    lower, and the change is clipped to ``[MIN_FACTOR, MAX_FACTOR]``.  Right after a rejection the step
    is not allowed to grow (Hairer, Nørsett & Wanner, II.4).

    Example:
        >>> step_factor(1.0, 4)
        0.9
        >>> step_factor(0.0, 4), step_factor(1e9, 4)
        (10.0, 0.2)
    """
    if ratio == 0.0:
        factor = MAX_FACTOR
    else:
        factor = min(MAX_FACTOR, max(MIN_FACTOR, SAFETY * ratio ** (-1.0 / (error_order + 1))))
    if rejected_before and ratio <= 1.0:
        factor = min(1.0, factor)
    return factor


HOLD = 1.2
"""An implicit method keeps its step size when the controller would grow it by less than this factor."""


def hold_step(factor):
    """``1.0`` instead of a growth ``factor`` below :data:`HOLD`, else ``factor``.

    An implicit method factorises ``I - h gamma J`` for each new step size ``h``; growing the step by a
    few percent saves less work than the factorisation costs, so the step is kept and the next step
    reuses the factors (Hairer & Wanner 1996, Section IV.8; scipy's ``Radau`` does the same).

    Example:
        >>> hold_step(1.1), hold_step(1.5), hold_step(0.7)
        (1.0, 1.5, 0.7)
    """
    return 1.0 if 1.0 <= factor < HOLD else factor
