"""The implicit stepping routine: Newton's method on the stages of an ESDIRK method, and its derivative.

An ESDIRK tableau (:mod:`neuralode.tableaux`) has an explicit first stage and the same diagonal entry
``gamma`` in every later one.  With ``psi_i = y + h sum_{j<i} a_ij k_j`` (what the earlier stages
give) and ``Z_i = h gamma k_i``, stage ``i`` is the equation

    Z_i = h gamma f(t + c_i h, psi_i + Z_i)                                          (1)

for the unknown ``Z_i``.  :class:`ImplicitStepper` solves it by a *simplified* Newton iteration: the
Jacobian ``J`` of ``f`` is evaluated once (at the start of a step, or even kept from an earlier step)
and the matrix ``I - h gamma J`` is factorised once per step size; each iteration then costs one
evaluation of ``f`` and one solve with the stored factors:

    (I - h gamma J) dZ = h gamma f(t_i, psi_i + Z) - Z,        Z <- Z + dZ.

Every stage of a step shares the factorisation, because they share ``h gamma``.  The iteration starts
from a prediction built from the stages already known (the tableau's
:attr:`~neuralode.tableaux.ButcherTableau.predictor`).  It stops when the estimated distance to the
solution, ``rate / (1 - rate) * |dZ|`` with ``rate`` the observed contraction factor, falls below a
fraction of the tolerance; it gives up as soon as ``rate >= 1`` (divergence) or the remaining
iterations could not bring it below (Hairer & Wanner 1996, Section IV.8).  A failure with a Jacobian
kept from an earlier step evaluates it afresh and tries again; a failure with a fresh one raises
:class:`~neuralode.errors.ConvergenceError`, and the adaptive loop halves the step.

:func:`implicit_step_vjp` differentiates a step through the converged equations (1) by the implicit
function theorem: one transposed solve per stage, never the Newton iterations themselves.

References:
    Hairer & Wanner, *Solving Ordinary Differential Equations II* (1996), Sections IV.3, IV.6 and IV.8.
    Kværnø, "Singly diagonally implicit Runge–Kutta methods with an explicit first stage", BIT 44 (2004).
"""

import math
from dataclasses import dataclass

import numpy as np

from .errors import ConvergenceError, NonFiniteError
from .params import ravel_params
from .stepsize import error_scale, rms_norm

GROWTH_LIMIT = 0.5
"""An adaptive implicit step keeps ``h gamma Re(lambda) <= GROWTH_LIMIT`` for every eigenvalue ``lambda``
of the Jacobian: beyond ``h gamma lambda = 1`` the stage matrix ``I - h gamma J`` is singular, and past it
the method damps a mode that grows, so that its error estimate no longer sees the error."""
NEWTON_MAX_ITER = 7
"""Newton iterations allowed for one stage of an adaptive step before the attempt fails and the step is
halved (RADAU5 allows 7)."""
NEWTON_MAX_ITER_FIXED = 20
"""The same for fixed steps, which cannot shrink: a slow iteration is given more room before it fails."""
REUSE_RATE = 1e-3
"""A step whose iterations contracted more slowly than this (after more than two) re-evaluates ``J``."""
ADJOINT_MAX_ITER = 12
"""Refinement sweeps of a stage's transposed solve before it falls back to the stage's exact Jacobian."""
ADJOINT_TOL = 1e-13
"""Relative residual at which a stage's transposed solve counts as exact."""


def newton_tolerance(rtol):
    """How close (in units of the error tolerance) Newton's iterate must be to the stage's solution.

    ``max(10 eps / rtol, min(0.03, sqrt(rtol)))``, the choice of Hairer & Wanner's RADAU5 (also scipy's
    ``Radau``): well below the error the step control accepts, and never below what rounding allows.

    Example:
        >>> newton_tolerance(1e-6)
        0.001
    """
    rtol = float(np.min(rtol))
    return max(10 * np.finfo(float).eps / rtol, min(0.03, math.sqrt(rtol)))


@dataclass(frozen=True, eq=False)
class Linearisation:
    """A Jacobian ``J`` evaluated at time ``t``, and the LU factors of ``I - hg J``.

    Immutable, so that a step, the tape of backprop and a checkpoint can share it safely.
    """

    t: float
    J: np.ndarray
    hg: float
    lu: tuple
    rates: tuple
    """The smallest and the largest real part of ``J``'s eigenvalues: the fastest decay and growth."""

    @classmethod
    def factor(cls, t, J, hg, rates=None, guarded=slice(None)):
        """Factorise ``I - hg J`` (LAPACK's LU with partial pivoting).

        ``rates`` are found unless given, from the eigenvalues of the block ``J[guarded, guarded]``.
        """
        from scipy.linalg.lapack import dgetrf

        if rates is None:
            block = J[guarded, guarded]
            real = np.linalg.eigvals(block).real if np.all(np.isfinite(block)) else np.array([np.nan])
            rates = (float(real.min()), float(real.max())) if real.size else (0.0, 0.0)
        lu, pivots, _ = dgetrf(np.eye(len(J)) - hg * J)   # a zero pivot gives non-finite solves: Newton fails
        return cls(t, J, hg, (lu, pivots), rates)

    def growth(self):
        """The largest ``Re(h gamma lambda)`` over ``J``'s eigenvalues, ``h`` with its sign: ``> 0`` means a
        mode that grows in the direction of integration."""
        return max(self.hg * self.rates[0], self.hg * self.rates[1])

    def solve(self, r, transposed=False):
        """``(I - hg J)^-1 r``, or with ``transposed=True`` the row vector ``r (I - hg J)^-1``."""
        from scipy.linalg.lapack import dgetrs

        return dgetrs(*self.lu, r, trans=1 if transposed else 0)[0]


def difference_jacobian(fun, t, y, m=None):
    """The Jacobian of ``fun`` at ``(t, y)`` by forward differences, one column per evaluation.

    Column ``j`` is ``(fun(t, y + d_j e_j) - fun(t, y)) / d_j`` with ``d_j = sqrt(eps * max(1e-5, |y_j|))``
    (the increment of RADAU5), rounded so that ``y_j + d_j`` is exactly representable.  Only the
    leading ``m`` entries are differentiated (rows and columns): those the stage equations couple.

    Returns:
        ``(J, evaluations)``: the ``m x m`` matrix and the number of calls of ``fun`` (``m + 1``).

    Example:
        >>> J, calls = difference_jacobian(lambda t, y: np.array([y[0] * y[1], -y[1]]), 0.0, np.array([2.0, 3.0]))
        >>> np.round(J, 6).tolist(), calls
        ([[3.0, 2.0], [0.0, -1.0]], 3)
    """
    m = y.size if m is None else m
    f0 = fun(t, y)
    J = np.empty((m, m))
    for j in range(m):
        shifted = y.copy()
        shifted[j] += math.sqrt(np.finfo(float).eps * max(1e-5, abs(y[j])))
        J[:, j] = (fun(t, shifted)[:m] - f0[:m]) / (shifted[j] - y[j])
    return J, m + 1


def dynamics_jacobian(func, shape):
    """The exact Jacobian of ``func`` on flat states, from ``func.jacobian`` or from ``func.jvp``; else ``None``.

    ``func.jacobian(t, y)`` (a dense ``n x n`` matrix) is used where the dynamics offer it; otherwise
    the columns ``J e_j = func.jvp(t, y, e_j)``.  The shape of what the dynamics return is checked.
    """
    n = int(np.prod(shape))
    dense, jvp = getattr(func, "jacobian", None), getattr(func, "jvp", None)
    if callable(dense):
        def jacobian(t, y):
            return _real("func.jacobian(t, y)", dense(t, y.reshape(shape)), (n, n), "the n x n matrix df/dy")
    elif callable(jvp):
        def jacobian(t, y):
            J, unit = np.empty((n, n)), np.zeros(n)
            for j in range(n):
                unit[j] = 1.0
                J[:, j] = _real("func.jvp(t, y, u)", jvp(t, y.reshape(shape), unit.reshape(shape)), shape,
                                "df/dy . u with y's shape").reshape(n)
                unit[j] = 0.0
            return J
    else:
        return None
    return jacobian


def _real(name, value, shape, what):
    """``value`` as a float array of ``shape``, or a ``ValueError`` saying what ``name`` returned instead."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        array = None
    if array is None or array.dtype.kind not in "iuf" or array.shape != shape:
        got = f"shape {array.shape}" if array is not None and array.dtype.kind in "iuf" else type(value).__name__
        raise ValueError(f"{name} returned {got}; it must return {what} {shape}")
    return array.astype(float)


class ImplicitStepper:
    """Takes ESDIRK steps with the interface of :func:`~neuralode.solver.rk_step`, and keeps their Jacobian.

    Args:
        tableau: an implicit :class:`~neuralode.tableaux.ButcherTableau`.
        rtol, atol: the solve's tolerances (the Newton test measures with them).
        jacobian: ``jacobian(t, y)`` giving the exact ``n x n`` Jacobian on flat states, or ``None`` for
            forward differences of ``fun`` (their calls count in :attr:`nfe`).
        coupled: how many leading entries of the state the stage equations couple (``None``: all).
            The rest must not influence ``f``; their stages follow from ``f`` directly (the adjoint's
            parameter cotangents).
        carried: a :class:`Linearisation` to start from (a checkpoint's), or ``None``.
        guard: refuse (with :class:`~neuralode.errors.ConvergenceError` and the size to retry with) a
            step so long that a growing mode exceeds :data:`GROWTH_LIMIT`; adaptive solves set it (and
            then allow :data:`NEWTON_MAX_ITER` iterations a stage, fixed steps :data:`NEWTON_MAX_ITER_FIXED`).
        guarded: the entries (a slice of the coupled ones) whose modes the guard watches: those of a
            block of ``J`` that nothing else feeds (the adjoint's ``a``; default all).

    Attributes:
        nfe, n_jac, n_lu: evaluations of ``fun`` (difference columns included), Jacobians formed,
            factorisations of ``I - h gamma J``.
        used: the :class:`Linearisation` of the last step that succeeded (the tape keeps it).
    """

    def __init__(self, tableau, rtol, atol, *, jacobian=None, coupled=None, carried=None, guard=False,
                 guarded=None):
        self.tableau, self.jacobian, self.coupled, self.guard = tableau, jacobian, coupled, guard
        self.guarded = slice(None) if guarded is None else guarded
        self.max_iter = NEWTON_MAX_ITER if guard else NEWTON_MAX_ITER_FIXED
        self.rtol, self.atol, self.tol = rtol, atol, newton_tolerance(rtol)
        self.shift = tableau.predictor - np.tril(tableau.a, -1)   # predictor minus psi, per stage
        self.nfe = self.n_jac = self.n_lu = 0
        self.lin, self.stale, self.used = carried, False, None

    def carry(self):
        """What the next step inherits: the Linearisation, or ``None`` when ``J`` must be evaluated afresh."""
        return None if self.stale else self.lin

    def restore(self, carried):
        """Continue as a step that inherited ``carried`` would (checkpointing repeats steps this way)."""
        self.lin, self.stale = carried, False

    def __call__(self, fun, t, h, tableau, YK):
        """One step from ``YK[0] = y`` with ``YK[1] = f(t, y)``; fills the later stages like ``rk_step``.

        Returns:
            ``(y_new, W)`` as :func:`~neuralode.solver.rk_step` does.

        Raises:
            ConvergenceError: if Newton's iteration fails for some stage with a Jacobian evaluated at ``t``.
        """
        W = tableau.unit + h * tableau.ab
        m = YK.shape[1] if self.coupled is None else self.coupled
        scale = error_scale(YK[0, :m], _leading(self.rtol, m), _leading(self.atol, m))
        lin = self._linearisation(fun, t, h, YK[0], fresh=False)
        self._check_growth(t, h, lin)
        slow = self._stages(fun, t, h, W, YK, lin, scale, m)
        if slow is None and lin.t != t:            # a Jacobian from an earlier step: evaluate it here
            lin = self._linearisation(fun, t, h, YK[0], fresh=True)
            self._check_growth(t, h, lin)
            slow = self._stages(fun, t, h, W, YK, lin, scale, m)
        if slow is None:
            self.lin = lin
            raise ConvergenceError(t, f"Newton's iteration for the implicit stages did not converge with step "
                                   f"{abs(h):.3g}", "Use a smaller step_size")
        self.lin, self.stale, self.used = lin, slow, lin
        return W[tableau.stages].dot(YK), W

    def longest_step(self, direction):
        """The longest step the growth guard allows with the Jacobian in hand (``inf`` without one)."""
        lin = self.lin
        if not self.guard or lin is None:
            return math.inf
        rate = max(direction * lin.rates[0], direction * lin.rates[1]) * self.tableau.gamma
        return GROWTH_LIMIT / rate if rate > 0 else math.inf

    def _check_growth(self, t, h, lin):
        """Refuse a step along which a mode of ``J`` grows by more than :data:`GROWTH_LIMIT` (if guarded)."""
        growth = lin.growth()
        if self.guard and not growth <= GROWTH_LIMIT * (1 + 1e-12):
            self.lin = lin
            retry = abs(h) * GROWTH_LIMIT / growth if math.isfinite(growth) else None
            raise ConvergenceError(t, f"a mode of the dynamics grows at rate {growth / abs(lin.hg):.3g}, too fast "
                                   f"for a step of {abs(h):.3g}", retry=retry)

    def _linearisation(self, fun, t, h, y, fresh):
        """The Linearisation for a step from ``(t, y)`` of size ``h``, evaluating and factorising as needed."""
        lin, hg = self.lin, h * self.tableau.gamma
        if fresh or lin is None or (self.stale and lin.t != t):
            if self.jacobian is None:
                J, calls = difference_jacobian(fun, t, y, self.coupled)
                self.nfe += calls
            else:
                J = self.jacobian(t, y)
            self.n_jac += 1
            if not np.all(np.isfinite(J)):
                source = "finite differences of func" if self.jacobian is None else "func.jvp or func.jacobian"
                raise NonFiniteError(t, f"the Jacobian from {source} is not finite at this state")
            lin = Linearisation.factor(t, J, hg, guarded=self.guarded)
            self.n_lu += 1
        elif lin.hg != hg:
            lin = Linearisation.factor(lin.t, lin.J, hg, lin.rates)
            self.n_lu += 1
        return lin

    def _stages(self, fun, t, h, W, YK, lin, scale, m):
        """Solve the implicit stages in turn; ``None`` on failure, else whether ``J`` served slowly.

        Slowly: some stage needed more than two iterations contracting by less than :data:`REUSE_RATE`;
        then the next step evaluates ``J`` afresh.
        """
        tab, hg, slow = self.tableau, lin.hg, False
        for i in range(1, tab.stages):
            psi = W[i, :i + 1].dot(YK[:i + 1])
            Z = h * self.shift[i, :i].dot(YK[1:i + 1])
            F, rate, iterations = self._newton(fun, t + tab.c[i] * h, psi, Z, lin, scale, m)
            if F is None:
                return None
            YK[i + 1, :m] = Z[:m] / hg
            YK[i + 1, m:] = F[m:]
            slow = slow or (iterations > 2 and rate > REUSE_RATE)
        return slow

    def _newton(self, fun, ti, psi, Z, lin, scale, m):
        """Simplified Newton for ``Z = hg f(ti, psi + Z)`` on the leading ``m`` entries, in place.

        After an increment ``dZ`` the distance to the solution is about ``rate / (1 - rate) |dZ|``,
        ``rate`` the contraction observed between two increments, so at least two iterations run:
        a first iteration alone says nothing about how well the (perhaps old) Jacobian serves.

        Returns ``(F, rate, iterations)`` with ``F`` the last evaluation of ``f``, or ``F = None`` if the
        iteration diverges, stalls, or produces a non-finite value.
        """
        norm_old, rate, most = None, 0.0, self.max_iter
        for iteration in range(1, most + 1):
            F = fun(ti, psi + Z)
            self.nfe += 1
            dZ = lin.solve(lin.hg * F[:m] - Z[:m])
            norm = rms_norm(dZ / scale)
            if not math.isfinite(norm):
                return None, rate, iteration
            if norm_old is not None:
                rate = norm / norm_old
                if rate >= 1.0 or rate ** (most - iteration) / (1.0 - rate) * norm > self.tol:
                    return None, rate, iteration
            Z[:m] += dZ
            if norm == 0.0 or norm_old is not None and rate / (1.0 - rate) * norm <= self.tol:
                return F, rate, iteration
            norm_old = norm
        return None, rate, most


def _leading(tolerance, m):
    return tolerance if np.ndim(tolerance) == 0 else np.ravel(tolerance)[:m]


# ---------------------------------------------------------------------------------------------------
# The derivative of a step: the implicit function theorem on the converged stage equations
# ---------------------------------------------------------------------------------------------------


def implicit_step_vjp(vjp, tableau, shape, tn, h, y, K, y_bar, K_bar, theta_bar, lin):
    """Pull cotangents back through one ESDIRK step, by the implicit function theorem on each stage.

    The converged stages satisfy ``k_i = f(t_n + c_i h, Y_i)`` with ``Y_i = y + h sum_{j<=i} a_ij k_j``,
    and ``y_new = y + h sum_i b_i k_i``.  Perturbing stage ``i``'s equation gives
    ``(I - h gamma J_i) dk_i = J_i (dy + h sum_{j<i} a_ij dk_j + ...) + df/dtheta dtheta + ...`` with
    ``J_i = df/dy`` at the stage, so a cotangent ``k_bar_i`` of ``k_i`` is first carried through
    ``(I - h gamma J_i)^-1`` (a transposed solve, :func:`stage_cotangent`) and then through ``f.vjp``,
    exactly where an explicit stage would apply ``f.vjp`` to ``k_bar_i`` itself.  The first stage
    (``gamma`` absent) is explicit.  Newton's iterations never enter the derivative.

    Args:
        vjp: the dynamics' vector-Jacobian product ``f.vjp``.
        tableau: the implicit method.
        shape: the shape of the state as ``f`` sees it.
        tn, h, y, K: the step's start time, size, start state and converged stages ``(s, n)``.
        y_bar: the cotangent of ``y_new`` (flat).
        K_bar: cotangents already collected for the stages (from dense output), ``(s, n)``; updated.
        theta_bar: the flat parameter cotangent; updated in place.
        lin: the step's :class:`Linearisation`, whose factors precondition the transposed solves.

    Returns:
        ``(y_bar, h_bar, tn_bar, n_vjp)`` as for an explicit step.
    """
    a, b, c = tableau.a, tableau.b, tableau.c
    K_bar += h * np.outer(b, y_bar)
    h_bar, tn_bar, n_vjp = float((b @ K) @ y_bar), 0.0, 0
    y_bar = y_bar.copy()
    for i in reversed(range(tableau.stages)):
        if not np.any(K_bar[i]):
            continue
        increment = a[i, :i + 1] @ K[:i + 1]
        Y = (y + h * increment).reshape(shape)
        if a[i, i]:
            (Y_bar, params_bar, t_bar), used = stage_cotangent(vjp, tn + c[i] * h, Y, K_bar[i], lin)
        else:
            (Y_bar, params_bar, t_bar), used = vjp(tn + c[i] * h, Y, K_bar[i].reshape(shape)), 1
        Y_bar = np.ravel(Y_bar)
        n_vjp += used
        y_bar += Y_bar
        K_bar[:i] += h * np.outer(a[i, :i], Y_bar)
        h_bar += float(increment @ Y_bar) + c[i] * t_bar
        tn_bar += t_bar
        theta_bar += ravel_params(params_bar)
    return y_bar, h_bar, tn_bar, n_vjp


def stage_cotangent(vjp, t, Y, k_bar, lin):
    """``f.vjp`` at the stage ``(t, Y)`` applied to ``w``, where ``w (I - hg J) = k_bar`` and ``J = df/dy`` there.

    The step's factors of ``I - hg J~`` (``J~`` the Jacobian Newton used, perhaps from an earlier point)
    give ``w`` in one transposed solve when ``J~ = J``; otherwise they precondition a few refinement
    sweeps ``w <- w + (k_bar - w (I - hg J)) (I - hg J~)^-1``, each one ``f.vjp``, until the residual
    is at rounding level.  Should ``J~`` be too far off for that, the stage's own Jacobian is formed
    row by row (``n`` VJPs) and the equation solved directly.

    Returns:
        ``(f.vjp(t, Y, w), number of VJPs evaluated)``.
    """
    shape, hg = np.shape(Y), lin.hg
    w = lin.solve(k_bar, transposed=True)
    for sweep in range(1, ADJOINT_MAX_ITER + 1):
        out = vjp(t, Y, w.reshape(shape))
        wJ = np.ravel(out[0])
        residual = k_bar - w + hg * wJ
        if _small(residual, k_bar, w, hg * wJ):
            return out, sweep
        w = w + lin.solve(residual, transposed=True)
    rows = np.array([np.ravel(vjp(t, Y, e.reshape(shape))[0]) for e in np.eye(k_bar.size)])
    w = np.linalg.solve((np.eye(k_bar.size) - hg * rows).T, k_bar)
    return vjp(t, Y, w.reshape(shape)), ADJOINT_MAX_ITER + k_bar.size + 1


def implicit_step_jvp(jvp, tableau, shape, tn, h, y, K, y_dot, lin):
    """Push a tangent ``y_dot`` of the start state through one ESDIRK step (``t_n``, ``h``, ``theta`` held).

    The forward-mode twin of :func:`implicit_step_vjp`, for the dot-product test: differentiating
    ``k_i = f(t_i, psi_i + h gamma k_i)`` gives ``(I - h gamma J_i) k_dot_i = J_i psi_dot_i`` with
    ``psi_dot_i = y_dot + h sum_{j<i} a_ij k_dot_j``, one solve per implicit stage
    (:func:`stage_tangent`), and ``y_new_dot = y_dot + h sum_i b_i k_dot_i``.

    Args:
        jvp: the dynamics' Jacobian-vector product ``f.jvp(t, y, u)``.
        tableau, shape, tn, h, y, K, lin: as for :func:`implicit_step_vjp`.
        y_dot: the tangent of ``y`` (flat).

    Returns:
        The tangent of ``y_new`` (flat).
    """
    a, b, c = tableau.a, tableau.b, tableau.c
    K_dot = np.zeros_like(K)
    for i in range(tableau.stages):
        psi_dot = y_dot + h * a[i, :i] @ K_dot[:i]
        Y = (y + h * a[i, :i + 1] @ K[:i + 1]).reshape(shape)
        rhs = np.ravel(jvp(tn + c[i] * h, Y, psi_dot.reshape(shape)))
        K_dot[i] = stage_tangent(jvp, tn + c[i] * h, Y, rhs, lin) if a[i, i] else rhs
    return y_dot + h * b @ K_dot


def stage_tangent(jvp, t, Y, rhs, lin):
    """The solution ``x`` of ``(I - hg J) x = rhs``, ``J = df/dy`` at the stage ``(t, Y)``.

    The column-vector mirror of :func:`stage_cotangent`: the step's factors give a first ``x`` and
    precondition refinement sweeps ``x <- x + (I - hg J~)^-1 (rhs - (I - hg J) x)``, one ``f.jvp`` each.
    """
    shape, hg = np.shape(Y), lin.hg
    x = lin.solve(rhs)
    for _ in range(ADJOINT_MAX_ITER):
        Jx = np.ravel(jvp(t, Y, x.reshape(shape)))
        residual = rhs - x + hg * Jx
        if _small(residual, rhs, x, hg * Jx):
            return x
        x = x + lin.solve(residual)
    columns = np.array([np.ravel(jvp(t, Y, e.reshape(shape))) for e in np.eye(rhs.size)]).T
    return np.linalg.solve(np.eye(rhs.size) - hg * columns, rhs)


def _small(residual, *terms):
    """Whether ``residual`` is below :data:`ADJOINT_TOL` times the sizes of the ``terms`` it is made of."""
    size = sum(math.sqrt(abs(term.dot(term))) for term in terms)
    return math.sqrt(residual.dot(residual)) <= ADJOINT_TOL * size
