"""Multiple shooting: a trajectory fitted as segments, each from a start of its own, tied by penalties.

Fitting an ODE to a long series by one solve from the first state (single shooting) gives a loss with
many local minima: a small change of a rate shifts every later oscillation, and the fit lands on a
trajectory that is out of phase, or one that sits at the mean.  Multiple shooting cuts the observation
times into ``K`` segments at indices ``b_0 = 0 < b_1 < ... < b_K = N - 1``, starts segment ``k`` from a
free state ``s_k`` at ``t[b_k]``, and penalises the gap between where segment ``k - 1`` ends and where
segment ``k`` starts::

    L = 1/(N d) sum_i |z(t_i) - y_i|^2  +  w/((K - 1) d) sum_{k=1}^{K-1} |z_{k-1}(t[b_k]) - s_k|^2

where ``z(t_i)`` is the prediction of the segment that holds ``t_i`` (a boundary time belongs to the
segment that starts there, whose prediction is its start ``s_k``), ``d`` is the size of one state and
``w`` the continuity weight.  Each segment is short, so each of its solutions depends gently on the
parameters; the penalty makes the pieces one trajectory as the fit converges.  Direct multiple
shooting goes back to Bock & Plitt (1984), for optimal control.

The gradient with respect to the parameters and to every start comes from one pullback per segment
(:func:`~neuralode.odeint_vjp`) plus the penalty's own derivative.

References:
    Bock & Plitt (1984), A multiple shooting algorithm for direct solution of optimal control problems,
    Proceedings of the 9th IFAC World Congress.
"""

import numpy as np

from .errors import check_int, check_number
from .gradients import odeint_vjp
from .protocol import check_dynamics


def segment_bounds(n_times, n_segments):
    """Indices ``b_0 = 0 < ... < b_K = n_times - 1`` cutting ``n_times`` observations into nearly equal segments.

    Consecutive segments share their boundary index.

    Example:
        >>> segment_bounds(10, 3).tolist()
        [0, 3, 6, 9]
    """
    n_times, n_segments = check_int("n_times", n_times, minimum=2), check_int("n_segments", n_segments)
    if n_segments > n_times - 1:
        raise ValueError(f"n_segments must be at most n_times - 1 = {n_times - 1} (each segment needs two "
                         f"observation times), got {n_segments}")
    return np.round(np.linspace(0, n_times - 1, n_segments + 1)).astype(int)


class MultipleShooting:
    """The multiple-shooting loss of a field ``f`` on observations ``ys`` at times ``t``, and its gradient.

    Args:
        f: the dynamics (the dynamics protocol).
        t: observation times, shape ``(N,)``, strictly increasing.
        ys: observations, shape ``(N, *state)``.
        n_segments: the number of segments ``K`` (cut by :func:`segment_bounds`), or
        bounds: the segment boundaries as indices into ``t`` (``0 = b_0 < ... < b_K = N - 1``).
        weight: the continuity weight ``w`` (``> 0``).
        **solver: options for :func:`~neuralode.odeint_vjp` (``gradient``, ``method``, ``rtol``...).

    Example:
        >>> from neuralode import odeint
        >>> from neuralode.physics import LotkaVolterra
        >>> f = LotkaVolterra(1.0, 0.5, 1.5, 0.75)
        >>> t = np.linspace(0.0, 4.0, 9)
        >>> ys = odeint(f, np.ones(2), t)
        >>> shooting = MultipleShooting(f, t, ys, n_segments=2)
        >>> loss, starts_bar, params_bar = shooting.loss_and_grad(ys[shooting.bounds[:-1]])
        >>> loss < 1e-12, starts_bar.shape
        (True, (2, 2))
    """

    def __init__(self, f, t, ys, n_segments=None, *, bounds=None, weight=1.0, **solver):
        check_dynamics(f)
        self.f, self.solver = f, solver
        self.t, self.ys = _check_series(t, ys)
        if (n_segments is None) == (bounds is None):
            raise ValueError("give either n_segments or bounds, not both and not neither")
        self.bounds = segment_bounds(len(self.t), n_segments) if bounds is None else _check_bounds(bounds, len(self.t))
        self.weight = check_number("weight", weight, low=0.0, strict=True)

    @property
    def n_segments(self):
        return len(self.bounds) - 1

    def starts_from_data(self):
        """The observations at the segments' first times: a natural first guess for the starts."""
        return self.ys[self.bounds[:-1]].copy()

    def _check_starts(self, starts):
        starts = np.asarray(starts, dtype=float)
        expected = (self.n_segments,) + self.ys.shape[1:]
        if starts.shape != expected:
            raise ValueError(f"starts must have shape {expected}, one state per segment; got {starts.shape}")
        if not np.all(np.isfinite(starts)):
            raise ValueError("starts must contain only finite values")
        return starts

    def predict(self, starts):
        """Each segment's solution: a list of ``(times, states)``, segment ``k`` on ``t[b_k .. b_{k+1}]``."""
        starts = self._check_starts(starts)
        out = []
        for k, (lo, hi) in enumerate(zip(self.bounds[:-1], self.bounds[1:])):
            ts = self.t[lo:hi + 1]
            out.append((ts, odeint_vjp(self.f, starts[k], ts, **self.solver)[0]))
        return out

    def gaps(self, starts):
        """``z_{k-1}(t[b_k]) - s_k`` for ``k = 1..K-1``: how far each segment ends from the next start."""
        starts = self._check_starts(starts)
        ends = np.array([zs[-1] for _, zs in self.predict(starts)[:-1]])
        return ends - starts[1:] if len(ends) else np.zeros((0,) + starts.shape[1:])

    def loss_and_grad(self, starts):
        """``(L, dL/dstarts, [dL/dtheta_i])``: the loss above and its gradient, one pullback per segment."""
        starts = self._check_starts(starts)
        n_data = self.ys.size
        n_gap = max(self.n_segments - 1, 1) * int(np.prod(self.ys.shape[1:], dtype=int))
        loss, starts_bar = 0.0, np.zeros_like(starts)
        params_bar = [np.zeros_like(p) for p in self.f.params]
        for k, (lo, hi) in enumerate(zip(self.bounds[:-1], self.bounds[1:])):
            last = k == self.n_segments - 1
            zs, pullback = odeint_vjp(self.f, starts[k], self.t[lo:hi + 1], **self.solver)
            zs_bar = np.zeros_like(zs)
            r = zs - self.ys[lo:hi + 1]
            fitted = slice(0, len(zs) if last else len(zs) - 1)
            loss += float(np.sum(r[fitted] ** 2)) / n_data
            zs_bar[fitted] = 2.0 * r[fitted] / n_data
            if not last:
                gap = zs[-1] - starts[k + 1]
                loss += self.weight * float(np.sum(gap**2)) / n_gap
                zs_bar[-1] = 2.0 * self.weight * gap / n_gap
                starts_bar[k + 1] -= zs_bar[-1]
            y0_bar, theta_bar, _ = pullback(zs_bar)
            starts_bar[k] += y0_bar
            for acc, g in zip(params_bar, theta_bar):
                acc += g
        return loss, starts_bar, params_bar


def _check_series(t, ys):
    t, ys = np.asarray(t, dtype=float), np.asarray(ys, dtype=float)
    if t.ndim != 1 or len(t) < 2 or not np.all(np.isfinite(t)) or not np.all(np.diff(t) > 0):
        raise ValueError(f"t must be a finite, strictly increasing 1-D array of at least two times; got shape {t.shape}")
    if ys.ndim < 2 or ys.shape[0] != len(t):
        raise ValueError(f"ys must have shape ({len(t)}, *state), one observation per time; got {ys.shape}")
    if not np.all(np.isfinite(ys)):
        raise ValueError("ys must contain only finite values")
    return t, ys


def _check_bounds(bounds, n_times):
    b = np.asarray(bounds)
    if b.ndim != 1 or len(b) < 2 or b.dtype.kind not in "iu":
        raise ValueError(f"bounds must be a 1-D array of at least two integer indices, got {bounds!r:.60}")
    if b[0] != 0 or b[-1] != n_times - 1 or not np.all(np.diff(b) > 0):
        raise ValueError(f"bounds must increase strictly from 0 to len(t) - 1 = {n_times - 1}, got {b.tolist()}")
    return b.astype(int)
