"""Classic test problems of numerical analysis, shared by the tests and the benchmarks.

Each is a plain field ``f(t, y)`` (no parameters) whose behaviour is known: the chapters write their
own copies where the equation itself is the lesson, and the tests and benchmarks import these.

References:
    Hairer & Wanner, *Solving Ordinary Differential Equations II: Stiff and Differential-Algebraic
    Problems* (1996), Section IV.1 (Van der Pol's equation, Robertson's reaction).
"""

import numpy as np

from .errors import check_number

STIFF_LINEAR_RATES = np.array([-1.0, -1e3, -1e5])
"""The eigenvalues of :func:`stiff_linear`: one slow rate and two fast ones."""


def van_der_pol(mu=1.0):
    """Van der Pol's oscillator ``x'' = mu (1 - x^2) x' - x`` as the field of ``y = (x, x')``.

    Stiff for large ``mu``: slow drifts along the curve ``x' ~ 0`` alternate with jumps taking time
    of order ``1/mu``.

    Example:
        >>> van_der_pol(100.0)(0.0, np.array([2.0, 0.0]))
        array([ 0., -2.])
    """
    mu = check_number("mu", mu, low=0.0)

    def field(t, y):
        return np.array([y[1], mu * (1.0 - y[0] ** 2) * y[1] - y[0]])

    return field


def robertson(t, y):
    """Robertson's chemical kinetics, with rates 0.04, 1e4 and 3e7: stiff over ``[0, 1e5]``.

    Example:
        >>> robertson(0.0, np.array([1.0, 0.0, 0.0]))
        array([-0.04,  0.04,  0.  ])
    """
    return np.array([-0.04 * y[0] + 1e4 * y[1] * y[2], 0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] ** 2,
                     3e7 * y[1] ** 2])


def stiff_linear(t, y):
    """``dy/dt = y * STIFF_LINEAR_RATES``: decays at the rates 1, 1e3 and 1e5 at once."""
    return STIFF_LINEAR_RATES * y
