"""``odeint_vjp``: gradients of an ODE solve, by backprop through the solver or by the adjoint method.

Both modes answer the same question.  Given the solution ``ys = odeint(f, y0, t)`` and the gradient of a
loss with respect to it, ``ys_bar = dL/dys``, what are ``dL/dy0``, ``dL/dtheta`` (for every parameter
array of ``f``) and ``dL/dt`` (for every output time)?

* ``gradient="backprop"`` differentiates the solver's own arithmetic, stage by stage, in reverse
  (discretise-then-optimise).  It is the exact gradient of the numbers the solver computed, and it
  keeps every step on a tape, so its memory grows with the number of steps.
* ``gradient="adjoint"`` solves the adjoint ODE of Chen et al. (2018), Algorithm 1, backward in time:
  the augmented state ``[z, a, a_theta, a_t]`` with ``dz/dt = f``, ``da/dt = -a df/dz``,
  ``da_theta/dt = -a df/dtheta`` and ``da_t/dt = -a df/dt`` (optimise-then-discretise).  Its memory
  does not grow with the number of steps; its gradient is accurate to the solver's tolerance.

Every derivative of ``f`` comes from its hand-written ``f.vjp(t, y, v)`` (the dynamics protocol).
"""

import numpy as np

from .params import ravel_params, unravel_params
from .solver import DEFAULT_MAX_NUM_STEPS, Problem, integrate_adaptive, integrate_fixed, prepare

GRADIENTS = ("adjoint", "backprop")


class Pullback:
    """The function ``ys_bar -> (y0_bar, params_bar, t_bar)`` that ``odeint_vjp`` returns.

    Calling it does not change it: it can be called again with another ``ys_bar``.  After a call its
    attributes report the cost of the last backward pass.

    Attributes:
        nfe_forward: evaluations of ``f`` in the forward solve (NFE-F).
        steps_forward: accepted steps of the forward solve.
        nfe_backward: evaluations in the last backward pass (NFE-B): of the augmented dynamics for
            the adjoint (each one ``f`` and one ``f.vjp``), of ``f.vjp`` for backprop.
        steps_backward: accepted steps of the last backward solve (adjoint only).
        z0_backward: the adjoint's reconstruction of ``z(t[0])`` at the end of its backward solve.
    """

    def __init__(self, backward, ys, forward_solution):
        self._backward, self._ys = backward, ys
        self.nfe_forward = forward_solution.nfe
        self.steps_forward = forward_solution.n_steps
        self.nfe_backward, self.steps_backward, self.z0_backward = 0, 0, None

    def __call__(self, ys_bar):
        ys_bar = np.asarray(ys_bar, dtype=float)
        if ys_bar.shape != self._ys.shape:
            raise ValueError(f"ys_bar must have the shape of ys, {self._ys.shape}; got {ys_bar.shape}")
        if not np.all(np.isfinite(ys_bar)):
            raise ValueError("ys_bar must contain only finite values")
        return self._backward(self, ys_bar)


def _check_dynamics(f):
    if not callable(f):
        raise ValueError("f must be callable as f(t, y)")
    if not callable(getattr(f, "vjp", None)):
        raise ValueError("f must follow the dynamics protocol: it has no method f.vjp(t, y, v); "
                         "use a model from neuralode.nn or write its vector-Jacobian product")
    params = getattr(f, "params", None)
    if not isinstance(params, (list, tuple)) or not all(isinstance(p, np.ndarray) for p in params):
        raise ValueError("f.params must be a list of NumPy arrays (possibly empty)")


def odeint_vjp(f, y0, t, *, gradient="adjoint", method="dopri5", rtol=1e-7, atol=1e-9, step_size=None,
               max_num_steps=DEFAULT_MAX_NUM_STEPS, reset_state=True):
    """Solve ``dy/dt = f(t, y)`` like ``odeint`` and return the solution with its pullback.

    Args:
        f: dynamics following the protocol: ``f(t, y)``, ``f.params``, ``f.vjp(t, y, v)``.
        y0, t, method, rtol, atol, step_size, max_num_steps: as for :func:`~neuralode.odeint`; the
            adjoint's backward solve uses the same method and tolerances.
        gradient: ``"adjoint"`` (Chen et al. 2018, Algorithm 1) or ``"backprop"`` (through the stages).
        reset_state: adjoint only.  At each output time the backward solve restarts ``z`` from the
            value stored by the forward solve (``True``, Algorithm 1), or carries on with its own
            backward reconstruction (``False``, to study how that reconstruction drifts).

    Returns:
        ``(ys, pullback)``: the solution, shape ``(len(t), *y0.shape)``, and a :class:`Pullback`;
        ``pullback(ys_bar)`` returns ``(y0_bar, params_bar, t_bar)`` where ``params_bar`` matches
        ``f.params`` and ``t_bar[i] = dL/dt[i]``, each time moved alone (``t_bar[0]`` moves the start
        with ``y(t[0]) = y0`` held).

    Raises:
        ValueError: for bad arguments, or if ``f`` does not follow the dynamics protocol.

    Example:
        >>> from neuralode.nn import MLP
        >>> f = MLP([2, 8, 2])
        >>> ys, pullback = odeint_vjp(f, np.ones(2), np.array([0.0, 1.0]))
        >>> y0_bar, params_bar, t_bar = pullback(np.ones_like(ys))
        >>> y0_bar.shape, len(params_bar), t_bar.shape
        ((2,), 4, (2,))
    """
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    _check_dynamics(f)
    problem = prepare(f, y0, t, method, rtol, atol, step_size, max_num_steps)
    adaptive = problem.tableau.adaptive and problem.step_size is None
    solve = integrate_adaptive if adaptive else integrate_fixed
    if gradient == "adjoint":
        problem.record_steps = False
        solution = solve(problem)
        backward = _adjoint_backward(f, problem, solution.ys, reset_state)
    else:
        tape = []
        solution = solve(problem, tape)
        backward = _backprop_backward(f, problem, solution.ys, tape, adaptive)
    return solution.ys, Pullback(backward, solution.ys, solution)


# ---------------------------------------------------------------------------------------------------
# The adjoint method (Chen et al. 2018, Algorithm 1)
# ---------------------------------------------------------------------------------------------------


def _value_and_vjp(f):
    """``(t, y, v) -> (f(t, y), f.vjp(t, y, v))``, in one forward pass where the model offers it."""
    both = getattr(f, "value_and_vjp", None)
    if both is not None:
        return both
    return lambda t, y, v: (f(t, y), f.vjp(t, y, v))


def augmented_dynamics(f, shape):
    """The dynamics of the augmented state ``s = [z, a, a_theta, a_t]``, flattened into one vector.

    ``dz/dt = f(t, z)``, ``da/dt = -a . df/dz``, ``da_theta/dt = -a . df/dtheta`` and
    ``da_t/dt = -a . df/dt``: one evaluation of ``f`` and one of its VJP with ``v = a``.

    Args:
        f: the dynamics.
        shape: the shape of ``z`` (and of ``a``).

    Returns:
        ``aug(t, s)`` on flat vectors of length ``2 n + n_theta + 1``.
    """
    n = int(np.prod(shape))
    value_and_vjp = _value_and_vjp(f)

    def aug(t, s):
        dz, (a_z, a_theta, a_t) = value_and_vjp(t, s[:n].reshape(shape), s[n:2 * n].reshape(shape))
        out = np.empty_like(s)
        out[:n] = np.ravel(dz)
        out[n:2 * n] = np.ravel(a_z)
        out[2 * n:-1] = ravel_params(a_theta)
        out[-1] = a_t
        out[n:] *= -1.0
        return out

    return aug


def _adjoint_backward(f, problem, ys, reset_state):
    """Return the backward pass of Algorithm 1 for the forward solution ``ys``."""
    t, shape = problem.t, problem.shape
    n, n_theta = problem.y0.size, sum(p.size for p in f.params)
    aug = augmented_dynamics(f, shape)

    def backward(pullback, ys_bar):
        s = np.zeros(2 * n + n_theta + 1)
        t_bar = np.zeros(len(t))
        pullback.nfe_backward = pullback.steps_backward = 0
        s[:n] = ys[-1].ravel()
        for i in range(len(t) - 1, 0, -1):
            if reset_state:
                s[:n] = ys[i].ravel()
            s[n:2 * n] += ys_bar[i].ravel()
            ds = aug(t[i], s)
            f_i = ds[:n] if reset_state else np.ravel(f(t[i], ys[i]))
            t_bar[i] = float(ys_bar[i].ravel() @ f_i)
            s[-1] -= t_bar[i]
            solution = _solve_backward(aug, s, ds, t[i], t[i - 1], problem)
            s = solution.ys[-1]
            pullback.nfe_backward += solution.nfe
            pullback.steps_backward += solution.n_steps
        pullback.z0_backward = s[:n].reshape(shape).copy()
        t_bar[0] = s[-1]
        y0_bar = s[n:2 * n].reshape(shape) + ys_bar[0]
        return y0_bar, unravel_params(s[2 * n:-1].copy(), f.params), t_bar

    return backward


def _solve_backward(aug, s, ds, t_from, t_to, problem):
    """Integrate the augmented state from ``t_from`` back to ``t_to`` with the forward solve's settings.

    ``ds = aug(t_from, s)`` is already known: its ``z`` block, ``f(t_from, z)``, also gives ``t_bar``
    when ``z`` was reset to the stored value (the dynamics of ``s`` do not depend on ``a_t``, so
    changing ``a_t`` afterwards leaves ``ds`` valid).
    """
    times = np.array([t_from, t_to])
    f0 = ds
    backward = Problem(aug, s, times, s.shape, problem.tableau, problem.rtol, problem.atol,
                       problem.step_size, problem.max_num_steps, f0, record_steps=False)
    if problem.tableau.adaptive and problem.step_size is None:
        return integrate_adaptive(_augmented_tolerances(backward, problem))
    return integrate_fixed(backward)


def _augmented_tolerances(backward, problem):
    """Per-entry tolerances broadcast to ``z`` and ``a`` stay valid on the longer augmented state."""
    for name in ("rtol", "atol"):
        value = getattr(problem, name)
        if np.ndim(value):
            setattr(backward, name, float(np.min(value)))
    return backward


# ---------------------------------------------------------------------------------------------------
# Backprop through the solver (discretise-then-optimise)
# ---------------------------------------------------------------------------------------------------


def _step_vjp(f, tableau, shape, tn, h, y, K, y_bar, K_bar, theta_bar):
    """Pull cotangents back through one Runge–Kutta step ``y_new = y + h sum_i b_i k_i``.

    The stages are ``k_i = f(t_n + c_i h, Y_i)`` with ``Y_i = y + h sum_{j<i} a_ij k_j``.  Going
    through the stages in reverse, each ``k_i``'s cotangent is pulled back through ``f.vjp`` to
    ``Y_i``, and from ``Y_i`` to ``y`` and to the earlier stages.

    Args:
        f, tableau: the dynamics and the method.
        shape: the shape of the state as ``f`` sees it.
        tn, h, y, K: the step's start time, size, start state and stages ``(s, n)``, from the tape.
        y_bar: the cotangent of ``y_new`` (flat).
        K_bar: cotangents already collected for the stages (from dense output), ``(s, n)``; updated.
        theta_bar: the flat parameter cotangent; updated in place.

    Returns:
        ``(y_bar, h_bar, tn_bar, n_vjp)``: the cotangents of ``y``, ``h`` and ``t_n``, and how many
        VJPs of ``f`` were evaluated.
    """
    a, b, c = tableau.a, tableau.b, tableau.c
    K_bar += h * np.outer(b, y_bar)
    h_bar, tn_bar, n_vjp = float((b @ K) @ y_bar), 0.0, 0
    y_bar = y_bar.copy()
    for i in reversed(range(tableau.stages)):
        if not np.any(K_bar[i]):
            continue
        increment = a[i, :i] @ K[:i]
        Y_bar, params_bar, t_bar = f.vjp(tn + c[i] * h, (y + h * increment).reshape(shape), K_bar[i].reshape(shape))
        Y_bar = np.ravel(Y_bar)
        n_vjp += 1
        y_bar += Y_bar
        K_bar[:i] += h * np.outer(a[i, :i], Y_bar)
        h_bar += float(increment @ Y_bar) + c[i] * t_bar
        tn_bar += t_bar
        theta_bar += ravel_params(params_bar)
    return y_bar, h_bar, tn_bar, n_vjp


def _backprop_backward(f, problem, ys, tape, adaptive):
    """Return the reverse pass over the forward solve's tape."""
    reverse = _reverse_adaptive if adaptive else _reverse_fixed
    n_theta = sum(p.size for p in f.params)
    shape = problem.shape

    def backward(pullback, ys_bar):
        y_bar_flat = ys_bar.reshape(len(problem.t), -1)
        theta_bar = np.zeros(n_theta)
        y_bar, t_bar, n_vjp = reverse(f, problem, tape, y_bar_flat, theta_bar)
        pullback.nfe_backward, pullback.steps_backward = n_vjp, 0
        return y_bar.reshape(shape) + ys_bar[0], unravel_params(theta_bar, f.params), t_bar

    return backward


def _reverse_fixed(f, problem, tape, ys_bar, theta_bar):
    """Reverse over fixed steps: interval ``k`` holds ``N`` steps ``t_n = t_k + n h``, ``h = (t_k+1 - t_k)/N``."""
    t_bar = np.zeros(len(problem.t))
    y_bar, n_vjp = np.zeros(ys_bar.shape[1]), 0
    for k, n, N, tn, h, y, K in reversed(tape):
        if n == N - 1:
            y_bar = y_bar + ys_bar[k + 1]
        y_bar, h_bar, tn_bar, used = _step_vjp(f, problem.tableau, problem.shape, tn, h, y, K, y_bar, np.zeros_like(K), theta_bar)
        n_vjp += used
        t_bar[k] += tn_bar * (1 - n / N) - h_bar / N
        t_bar[k + 1] += tn_bar * n / N + h_bar / N
    return y_bar, t_bar, n_vjp


def _reverse_adaptive(f, problem, tape, ys_bar, theta_bar):
    """Reverse over adaptive steps, holding the accepted step sizes fixed.

    The outputs come from each step's continuous extension
    ``y(t_i) = y_m + h sum_j k_j P_j(theta_i)`` with ``theta_i = (t_i - tau_m) / h``.  Moving an output
    time ``t_i`` moves ``theta_i``; moving ``t[0]`` shifts every step (and no output time) by the same
    amount, so it moves every stage time and every ``theta_i`` the other way.
    """
    tableau, t_bar = problem.tableau, np.zeros(len(problem.t))
    y_bar, n_vjp = np.zeros(ys_bar.shape[1]), 0
    for (tn, h, y, K), outputs in reversed(_steps_with_outputs(tape)):
        K_bar, direct = np.zeros_like(K), np.zeros_like(y_bar)
        for i, theta in outputs:
            K_bar += h * np.outer(tableau.dense @ theta ** _POWERS, ys_bar[i])
            direct += ys_bar[i]
            t_bar[i] += float(((tableau.dense @ (_POWERS * theta ** (_POWERS - 1))) @ K) @ ys_bar[i])
        y_bar, _, tn_bar, used = _step_vjp(f, tableau, problem.shape, tn, h, y, K, y_bar, K_bar, theta_bar)
        y_bar += direct
        n_vjp += used
        t_bar[0] += tn_bar
    t_bar[0] -= t_bar[1:].sum()
    return y_bar, t_bar, n_vjp


_POWERS = np.arange(1, 5)


def _steps_with_outputs(tape):
    """Group the adaptive tape into ``((t_n, h, y_n, K), [(i, theta), ...])``, one entry per step."""
    steps, outputs = [], []
    for entry in tape:
        if entry[0] == "out":
            outputs.append(entry[1:])
        else:
            steps.append((entry[1:], outputs))
            outputs = []
    return steps
