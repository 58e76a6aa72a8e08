"""``odeint_vjp``: gradients of an ODE solve, four ways.

Every mode answers the same question.  Given the solution ``ys = odeint(f, y0, t)`` and the gradient
of a loss with respect to it, ``ys_bar = dL/dys``, what are ``dL/dy0``, ``dL/dtheta`` (for every
parameter array of ``f``) and ``dL/dt`` (for every output time)?

* ``gradient="backprop"`` differentiates the solver's own arithmetic, stage by stage, in reverse
  (discretise-then-optimise).  It is the exact gradient of the numbers the solver computed (for an
  adaptive solve: with the accepted step sizes held fixed, as if they had been chosen in advance), and
  it keeps every step on a tape, so its memory grows with the number of steps.
* ``gradient="checkpoint"`` gives backprop's numbers while storing only some of the steps'
  starting points (checkpoints); the reverse pass recomputes the steps between two checkpoints from
  the earlier one, differentiates them, and forgets them.  Memory grows like the square root of the
  number of steps, for about one more forward solve of work.
* ``gradient="adjoint"`` solves the adjoint ODE of Chen et al. (2018), Algorithm 1, backward in time:
  the augmented state ``[z, a, a_theta, a_t]`` with ``dz/dt = f``, ``da/dt = -a df/dz``,
  ``da_theta/dt = -a df/dtheta`` and ``da_t/dt = -a df/dt`` (optimise-then-discretise).  Its memory
  does not grow with the number of steps; its gradient is accurate to about the solver's tolerance
  unless the reversed dynamics amplify the error of the backward reconstruction of ``z``.
* ``gradient="interpolated"`` solves the same adjoint equations for ``[a, a_theta, a_t]`` only,
  reading ``z(t)`` from the forward solve's dense output instead of reconstructing it, so nothing
  drifts; its memory grows with the forward steps, like backprop's.

Every derivative of ``f`` comes from its hand-written ``f.vjp(t, y, v)`` (the dynamics protocol).
"""

import math

import numpy as np

from .implicit import implicit_step_vjp
from .params import ravel_params, unravel_params
from .solver import (DEFAULT_MAX_NUM_STEPS, ODESolution, Problem, _StepControl, integrate_adaptive,
                     integrate_fixed, prepare, stepper, steps_per_interval)

GRADIENTS = ("adjoint", "backprop", "checkpoint", "interpolated")
NORMS = ("seminorm", "full")
BLOCKS = {"adjoint": ("z", "a", "a_theta", "a_t"), "interpolated": ("a", "a_theta", "a_t")}
"""The blocks of each adjoint mode's backward state, in order; ``norm=`` may name a subset of them."""


class Pullback:
    """The function ``ys_bar -> (y0_bar, params_bar, t_bar)`` that ``odeint_vjp`` returns.

    Calling it does not change it: it can be called again with another ``ys_bar``.  After a call its
    attributes report the cost of the last backward pass.

    Attributes:
        nfe_forward: evaluations of ``f`` in the forward solve (NFE-F).
        steps_forward: accepted steps of the forward solve.
        nfe_backward: evaluations in the last backward pass (NFE-B): of the augmented dynamics for
            the adjoint modes (each one ``f.vjp``, and one ``f`` for ``"adjoint"``), of ``f.vjp`` for
            backprop and checkpointing.
        nfe_recomputed: evaluations of ``f`` spent recomputing steps in the last backward pass
            (checkpointing only; zero otherwise).
        steps_backward: accepted steps of the last backward solve (adjoint modes only).
        z0_backward: the adjoint's reconstruction of ``z(t[0])`` at the end of its backward solve.
        checkpoint_steps: checkpointing only: the indices of the steps whose starting states are
            stored (step 0 is the first), out of ``steps_forward``.
    """

    def __init__(self, backward, ys, forward_solution):
        self._backward, self._shape = backward, ys.shape
        self.nfe_forward = forward_solution.nfe
        self.steps_forward = forward_solution.n_steps
        self.nfe_backward, self.nfe_recomputed, self.steps_backward, self.z0_backward = 0, 0, 0, None
        self.checkpoint_steps = None

    def __call__(self, ys_bar):
        ys_bar = np.asarray(ys_bar, dtype=float)
        if ys_bar.shape != self._shape:
            raise ValueError(f"ys_bar must have the shape of ys, {self._shape}; got {ys_bar.shape}")
        if not np.all(np.isfinite(ys_bar)):
            raise ValueError("ys_bar must contain only finite values")
        self.nfe_backward = self.nfe_recomputed = self.steps_backward = 0
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


def _check_norm(norm, gradient):
    """The blocks the backward error control measures, as a tuple of names from ``BLOCKS``."""
    blocks = BLOCKS.get(gradient, BLOCKS["adjoint"])
    if norm is None:
        norm = "full" if gradient == "interpolated" else "seminorm"
    if isinstance(norm, str):
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, a tuple of block names, or None; got {norm!r}")
        return blocks if norm == "full" else tuple(b for b in blocks if b not in ("a_theta", "a_t"))
    if not (isinstance(norm, (tuple, list)) and norm and all(b in blocks for b in norm)
            and len(set(norm)) == len(norm)):
        raise ValueError(f"norm as a tuple must name distinct blocks among {blocks}, got {norm!r}")
    return tuple(norm)


def _measured(norm, sizes):
    """The entries of the flat backward state that the blocks named in ``norm`` occupy.

    ``sizes`` maps each block, in order, to its length.  A leading run of blocks is a slice (cheap);
    any other choice an index array.  ``None`` when every block is measured.
    """
    names, ends = list(sizes), np.cumsum(list(sizes.values()))
    if set(norm) == set(names):
        return None
    chosen = [names.index(b) for b in norm]
    if sorted(chosen) == list(range(len(chosen))):
        return slice(0, int(ends[len(chosen) - 1]))
    return np.concatenate([np.arange(ends[i] - sizes[names[i]], ends[i]) for i in sorted(chosen)])


def _check_vjp_output(f, shape, out):
    """Raise a clear error unless ``out = f.vjp(t, y, v)`` has the protocol's structure."""
    problem = None
    if not (isinstance(out, tuple) and len(out) == 3):
        problem = "it must return a tuple (v . df/dy, [v . df/dtheta_i], v . df/dt)"
    elif np.shape(out[0]) != shape:
        problem = f"its first element has shape {np.shape(out[0])}; it must have y's shape {shape}"
    elif not isinstance(out[1], (list, tuple)) or len(out[1]) != len(f.params):
        problem = f"its second element must be a list of {len(f.params)} arrays, one per f.params"
    elif any(np.shape(g) != p.shape for g, p in zip(out[1], f.params)):
        shapes = [np.shape(g) for g in out[1]]
        problem = f"its parameter cotangents have shapes {shapes}; f.params have {[p.shape for p in f.params]}"
    elif np.ndim(out[2]) != 0:
        problem = f"its third element (v . df/dt) has shape {np.shape(out[2])}; it must be a scalar"
    if problem is not None:
        raise ValueError(f"f.vjp(t, y, v) does not follow the dynamics protocol: {problem}")
    return out


def _checked_vjp(f, shape):
    """``f.vjp``, with the structure of its first result checked (later calls go straight through)."""
    checked = False

    def vjp(t, y, v):
        nonlocal checked
        out = f.vjp(t, y, v)
        if not checked:
            _check_vjp_output(f, shape, out)
            checked = True
        return out

    return vjp


def odeint_vjp(f, y0, t, *, gradient="adjoint", method="dopri5", rtol=1e-7, atol=1e-9, step_size=None,
               max_num_steps=DEFAULT_MAX_NUM_STEPS, reset_state=True, norm=None, carry_step=True,
               checkpoints=None):
    """Solve ``dy/dt = f(t, y)`` like ``odeint`` and return the solution with its pullback.

    Args:
        f: dynamics following the protocol: ``f(t, y)``, ``f.params``, ``f.vjp(t, y, v)``.
        y0, t, method, rtol, atol, step_size, max_num_steps: as for :func:`~neuralode.odeint`; the
            adjoint's backward solve uses the same method and tolerances.
        gradient: ``"adjoint"`` (Chen et al. 2018, Algorithm 1), ``"backprop"`` (through the stages),
            ``"checkpoint"`` (backprop's numbers from stored checkpoints) or ``"interpolated"`` (the
            adjoint equations against the forward solve's dense output).
        reset_state: ``"adjoint"`` only.  At each output time the backward solve restarts ``z`` from
            the value stored by the forward solve (``True``, Algorithm 1), or carries on with its own
            backward reconstruction (``False``, to study how that reconstruction drifts).
        norm: the adjoint modes' backward error control: ``"seminorm"`` (Kidger et al. 2021) leaves
            out ``a_theta`` and ``a_t``, which nothing else depends on, and measures the rest;
            ``"full"`` measures the whole augmented state, as Chen et al. did; a tuple of block names
            (see :data:`BLOCKS`) measures those blocks only, to study which drive the steps.  The default,
            ``None``, is the seminorm for ``"adjoint"`` (whose ``z`` block keeps the steps fine
            enough for the parameter integral) and the full norm for ``"interpolated"`` (whose state
            has no ``z``: measuring ``a`` alone lets the steps outgrow the integrand's variation).
        carry_step: the adjoint modes: each backward interval starts with the step size the previous
            one ended with (``True``), or selects a new first step (``False``, as before).
        checkpoints: ``"checkpoint"`` only: the most checkpoints stored at once (an int >= 1); the
            default lets their number grow like the square root of the number of steps.

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
    norm = _check_norm(norm, gradient)
    for name, value in (("reset_state", reset_state), ("carry_step", carry_step)):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    if checkpoints is not None and gradient != "checkpoint":
        raise ValueError(f"checkpoints is an option of gradient='checkpoint', not of {gradient!r}")
    if checkpoints is not None and (isinstance(checkpoints, bool) or not isinstance(checkpoints, (int, np.integer))
                                    or checkpoints < 1):
        raise ValueError(f"checkpoints must be an integer >= 1 (or None), got {checkpoints!r}")
    _check_dynamics(f)
    problem = prepare(f, y0, t, method, rtol, atol, step_size, max_num_steps)
    adaptive = problem.tableau.adaptive and problem.step_size is None
    solve = integrate_adaptive if adaptive else integrate_fixed
    options = {"norm": norm, "carry_step": carry_step}
    if gradient == "adjoint":
        problem.record_steps = False
        solution = solve(problem)
        backward = _adjoint_backward(f, problem, solution.ys.copy(), reset_state, options)
    elif gradient == "checkpoint":
        problem.record_steps = False
        recorder = CheckpointSchedule(checkpoints)
        solution = integrate_adaptive(problem, watch=recorder.watch) if adaptive else integrate_fixed(problem, recorder)
        backward = _checkpoint_backward(f, problem, recorder, adaptive)
    else:
        tape = []
        solution = solve(problem, tape)
        if gradient == "backprop":
            backward = _backprop_backward(f, problem, tape, adaptive)
        else:
            backward = _interpolated_backward(f, problem, solution.ys.copy(), tape, adaptive, options)
    pullback = Pullback(backward, solution.ys, solution)
    if gradient == "checkpoint":
        pullback.checkpoint_steps = [j for j, _ in recorder.saved]
    return solution.ys, pullback


# ---------------------------------------------------------------------------------------------------
# The adjoint method (Chen et al. 2018, Algorithm 1)
# ---------------------------------------------------------------------------------------------------


def _value_and_vjp(f, shape):
    """``(t, y, v) -> (f(t, y), f.vjp(t, y, v))``, in one forward pass where the model offers it."""
    both = getattr(f, "value_and_vjp", None)
    vjp = _checked_vjp(f, shape)
    if both is None:
        return lambda t, y, v: (f(t, y), vjp(t, y, v))
    checked = False

    def value_and_vjp(t, y, v):
        nonlocal checked
        value, out = both(t, y, v)
        if not checked:
            _check_vjp_output(f, shape, out)
            checked = True
        return value, out

    return value_and_vjp


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
    value_and_vjp = _value_and_vjp(f, shape)

    def aug(t, s):
        dz, (a_dfdz, a_dfdtheta, a_dfdt) = value_and_vjp(t, s[:n].reshape(shape), s[n:2 * n].reshape(shape))
        out = np.empty_like(s)
        out[:n] = np.ravel(dz)
        out[n:2 * n] = np.ravel(a_dfdz)
        out[2 * n:-1] = ravel_params(a_dfdtheta)
        out[-1] = a_dfdt
        out[n:] *= -1.0
        return out

    return aug


def _adjoint_backward(f, problem, ys, reset_state, options):
    """Return the backward pass of Algorithm 1 for the forward solution ``ys``."""
    t, shape = problem.t, problem.shape
    n, n_theta = problem.y0.size, sum(p.size for p in f.params)
    aug = augmented_dynamics(f, shape)
    measured = _measured(options["norm"], {"z": n, "a": n, "a_theta": n_theta, "a_t": 1})

    def backward(pullback, ys_bar):
        s = np.zeros(2 * n + n_theta + 1)
        t_bar, h = np.zeros(len(t)), None
        s[:n] = ys[-1].ravel()
        for i in range(len(t) - 1, 0, -1):
            if reset_state:
                s[:n] = ys[i].ravel()
            s[n:2 * n] += ys_bar[i].ravel()
            ds = aug(t[i], s)
            f_i = ds[:n] if reset_state else np.ravel(f(t[i], ys[i]))
            t_bar[i] = float(ys_bar[i].ravel() @ f_i)
            s[-1] -= t_bar[i]
            solution = _solve_backward(aug, s, ds, t[i], t[i - 1], problem, measured, h, coupled=2 * n,
                                       guarded=slice(n, 2 * n))
            s, h = solution.ys[-1], (solution.next_step if options["carry_step"] else None)
            pullback.nfe_backward += solution.nfe
            pullback.steps_backward += solution.n_steps
        pullback.z0_backward = s[:n].reshape(shape).copy()
        t_bar[0] = s[-1]
        y0_bar = s[n:2 * n].reshape(shape) + ys_bar[0]
        return y0_bar, unravel_params(s[2 * n:-1].copy(), f.params), t_bar

    return backward


def _solve_backward(aug, s, ds, t_from, t_to, problem, measured, h0, coupled=None, guarded=None):
    """Integrate the augmented state from ``t_from`` back to ``t_to`` with the forward solve's settings.

    ``ds = aug(t_from, s)`` is already known: for the adjoint its ``z`` block, ``f(t_from, z)``, also
    gives ``t_bar`` when ``z`` was reset to the stored value (the dynamics of ``s`` do not depend on
    ``a_t``, so changing ``a_t`` afterwards leaves ``ds`` valid).  The error control measures the
    first ``measured`` entries (``None``: all), and tries ``h0`` first (``None``: selects a step).
    An implicit method iterates on the first ``coupled`` entries only (``z`` and ``a``): nothing
    depends on ``a_theta`` and ``a_t``, so their stages follow from ``aug`` directly, and the Jacobian
    it differences has ``coupled`` columns instead of the whole augmented state's.  Its growth guard
    watches the ``guarded`` entries: ``a`` for the adjoint, whose ``z`` block, run backward through
    dynamics that contract forward, grows, and may be damped toward the forward solution instead.
    """
    times = np.array([t_from, t_to])
    backward = Problem(aug, s, times, s.shape, problem.tableau, problem.rtol, problem.atol,
                       problem.step_size, problem.max_num_steps, ds, record_steps=False,
                       h0=h0, measured=measured, coupled=coupled, guarded=guarded)
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
# The interpolated adjoint: z(t) read from the forward solve's dense output
# ---------------------------------------------------------------------------------------------------


class _Interpolant:
    """``z(t)`` on the forward solve's steps, from each step's continuous extension.

    Adaptive methods use their own dense output (the one that produced ``ys``); fixed-step methods,
    which have none, use cubic Hermite interpolation between the step's ends with the slopes ``k_1``
    at both ends (the next step's ``k_1`` is the slope at this step's end).
    """

    def __init__(self, f, problem, steps):
        self.tn = np.array([s[0] for s in steps])
        self.h = np.array([s[1] for s in steps])
        self.y = [s[2] for s in steps]
        self.K = [s[3] for s in steps]
        self.dense, self.shape, self.direction = problem.tableau.dense, problem.shape, math.copysign(1.0, self.h[0])
        self.keys = self.direction * self.tn
        if self.dense is None:     # slopes at the ends, for Hermite interpolation
            last = steps[-1]
            y_end = last[2] + last[1] * (problem.tableau.b @ last[3])
            self.y_end = [s[2] for s in steps[1:]] + [y_end]
            f_end = np.ravel(f(float(last[0] + last[1]), y_end.reshape(problem.shape)))
            self.f_end = [s[3][0] for s in steps[1:]] + [f_end]

    def __call__(self, t):
        m = max(0, int(np.searchsorted(self.keys, self.direction * t, side="right")) - 1)
        theta, h = (t - self.tn[m]) / self.h[m], self.h[m]
        if self.dense is not None:
            powers = theta ** np.arange(1, 5)
            return self.y[m] + h * (self.dense @ powers) @ self.K[m]
        y0, y1, f0, f1 = self.y[m], self.y_end[m], self.K[m][0], self.f_end[m]
        h00, h10 = 2 * theta**3 - 3 * theta**2 + 1, theta**3 - 2 * theta**2 + theta
        h01, h11 = -2 * theta**3 + 3 * theta**2, theta**3 - theta**2
        return h00 * y0 + h10 * h * f0 + h01 * y1 + h11 * h * f1


def _interpolated_dynamics(f, shape, z_of_t):
    """The adjoint equations for ``[a, a_theta, a_t]`` with ``z = z_of_t(t)``: one ``f.vjp`` each."""
    n = int(np.prod(shape))
    vjp = _checked_vjp(f, shape)

    def aug(t, s):
        a_dfdz, a_dfdtheta, a_dfdt = vjp(t, z_of_t(t).reshape(shape), s[:n].reshape(shape))
        out = np.empty_like(s)
        out[:n] = np.ravel(a_dfdz)
        out[n:-1] = ravel_params(a_dfdtheta)
        out[-1] = a_dfdt
        return -out

    return aug


def _interpolated_backward(f, problem, ys, tape, adaptive, options):
    """Return the backward pass of the interpolated adjoint over the forward solve's tape."""
    t, shape = problem.t, problem.shape
    n, n_theta = problem.y0.size, sum(p.size for p in f.params)
    steps = [entry[1:] for entry in tape if entry[0] == "step"] if adaptive else [entry[3:] for entry in tape]
    aug = _interpolated_dynamics(f, shape, _Interpolant(f, problem, steps))
    measured = _measured(options["norm"], {"a": n, "a_theta": n_theta, "a_t": 1})

    def backward(pullback, ys_bar):
        s, t_bar, h = np.zeros(n + n_theta + 1), np.zeros(len(t)), None
        for i in range(len(t) - 1, 0, -1):
            s[:n] += ys_bar[i].ravel()
            t_bar[i] = float(ys_bar[i].ravel() @ np.ravel(f(t[i], ys[i])))
            s[-1] -= t_bar[i]
            solution = _solve_backward(aug, s, aug(t[i], s), t[i], t[i - 1], problem, measured, h, coupled=n)
            s, h = solution.ys[-1], (solution.next_step if options["carry_step"] else None)
            pullback.nfe_backward += solution.nfe
            pullback.steps_backward += solution.n_steps
        t_bar[0] = s[-1]
        return s[:n].reshape(shape) + ys_bar[0], unravel_params(s[n:-1].copy(), f.params), t_bar

    return backward


# ---------------------------------------------------------------------------------------------------
# Backprop through the solver (discretise-then-optimise)
# ---------------------------------------------------------------------------------------------------


def _backprop_backward(f, problem, tape, adaptive):
    """Return the reverse pass over the forward solve's tape."""
    if adaptive:
        return _reverse_pass(f, problem, lambda pullback: reversed(_steps_with_outputs(tape)), _reverse_adaptive)
    return _reverse_pass(f, problem, lambda pullback: reversed(tape), _reverse_fixed)


def _reverse_pass(f, problem, steps_in_reverse, reverse):
    """The backward function shared by backprop and checkpointing: ``reverse`` over the steps."""
    n_theta, shape = sum(p.size for p in f.params), problem.shape
    vjp = _checked_vjp(f, shape)

    def backward(pullback, ys_bar):
        y_bar_flat = ys_bar.reshape(len(problem.t), -1)
        theta_bar = np.zeros(n_theta)
        y_bar, t_bar, n_vjp = reverse(vjp, problem, steps_in_reverse(pullback), y_bar_flat, theta_bar)
        pullback.nfe_backward = n_vjp
        return y_bar.reshape(shape) + ys_bar[0], unravel_params(theta_bar, f.params), t_bar

    return backward


def _step_vjp(vjp, tableau, shape, tn, h, y, K, y_bar, K_bar, theta_bar):
    """Pull cotangents back through one Runge–Kutta step ``y_new = y + h sum_i b_i k_i``.

    The stages are ``k_i = f(t_n + c_i h, Y_i)`` with ``Y_i = y + h sum_{j<i} a_ij k_j``.  Going
    through the stages in reverse, each ``k_i``'s cotangent is pulled back through ``f.vjp`` to
    ``Y_i``, and from ``Y_i`` to ``y`` and to the earlier stages.

    Args:
        vjp: the dynamics' vector-Jacobian product ``f.vjp``.
        tableau: the method.
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
        Y_bar, params_bar, t_bar = vjp(tn + c[i] * h, (y + h * increment).reshape(shape), K_bar[i].reshape(shape))
        Y_bar = np.ravel(Y_bar)
        n_vjp += 1
        y_bar += Y_bar
        K_bar[:i] += h * np.outer(a[i, :i], Y_bar)
        h_bar += float(increment @ Y_bar) + c[i] * t_bar
        tn_bar += t_bar
        theta_bar += ravel_params(params_bar)
    return y_bar, h_bar, tn_bar, n_vjp


def _any_step_vjp(lin, *args):
    """``_step_vjp(*args)`` for an explicit step; for an implicit one (``lin`` its Linearisation), the
    implicit function theorem's :func:`~neuralode.implicit.implicit_step_vjp`."""
    return _step_vjp(*args) if lin is None else implicit_step_vjp(*args, lin)


def _reverse_fixed(vjp, problem, steps, ys_bar, theta_bar):
    """Reverse over fixed steps: interval ``k`` holds ``N`` steps ``t_n = t_k + n h``, ``h = (t_k+1 - t_k)/N``.

    ``steps`` yields the tape entries ``(k, n, N, t_n, h, y_n, K, lin)`` from the last step to the first.
    """
    t_bar = np.zeros(len(problem.t))
    y_bar, n_vjp = np.zeros(ys_bar.shape[1]), 0
    for k, n, N, tn, h, y, K, lin in steps:
        if n == N - 1:
            y_bar = y_bar + ys_bar[k + 1]
        y_bar, h_bar, tn_bar, used = _any_step_vjp(lin, vjp, problem.tableau, problem.shape, tn, h, y, K, y_bar,
                                                   np.zeros_like(K), theta_bar)
        n_vjp += used
        t_bar[k] += tn_bar * (1 - n / N) - h_bar / N
        t_bar[k + 1] += tn_bar * n / N + h_bar / N
    return y_bar, t_bar, n_vjp


def _reverse_adaptive(vjp, problem, steps, ys_bar, theta_bar):
    """Reverse over adaptive steps, holding the accepted step sizes fixed.

    ``steps`` yields ``((t_n, h, y_n, K, lin), [(i, theta), ...])`` from the last step to the first.  The
    outputs come from each step's continuous extension ``y(t_i) = y_m + h sum_j k_j P_j(theta_i)``
    with ``theta_i = (t_i - tau_m) / h``.  Moving an output time ``t_i`` moves ``theta_i``; moving
    ``t[0]`` shifts every step (and no output time) by the same amount, so it moves every stage time
    and every ``theta_i`` the other way.
    """
    tableau, t_bar = problem.tableau, np.zeros(len(problem.t))
    y_bar, n_vjp = np.zeros(ys_bar.shape[1]), 0
    for (tn, h, y, K, lin), outputs in steps:
        K_bar, direct = np.zeros_like(K), np.zeros_like(y_bar)
        for i, theta in outputs:
            K_bar += h * np.outer(tableau.dense @ theta ** _POWERS, ys_bar[i])
            direct += ys_bar[i]
            t_bar[i] += float(((tableau.dense @ (_POWERS * theta ** (_POWERS - 1))) @ K) @ ys_bar[i])
        y_bar, _, tn_bar, used = _any_step_vjp(lin, vjp, tableau, problem.shape, tn, h, y, K, y_bar, K_bar, theta_bar)
        y_bar += direct
        n_vjp += used
        t_bar[0] += tn_bar
    t_bar[0] -= t_bar[1:].sum()
    return y_bar, t_bar, n_vjp


_POWERS = np.arange(1, 5)


def _steps_with_outputs(tape):
    """Group the adaptive tape into ``((t_n, h, y_n, K, lin), [(i, theta), ...])``, one entry per step."""
    steps, outputs = [], []
    for entry in tape:
        if entry[0] == "out":
            outputs.append(entry[1:])
        else:
            steps.append((entry[1:], outputs))
            outputs = []
    return steps


# ---------------------------------------------------------------------------------------------------
# Checkpointing: backprop's numbers from a few stored states
# ---------------------------------------------------------------------------------------------------


class CheckpointSchedule:
    """The checkpoints of one forward solve: what the solve carried into every ``stride``-th step.

    Args:
        limit: the most checkpoints kept at once (``None``: about the square root of the steps).

    The forward solve reports every step (``append`` for fixed steps, ``watch`` for adaptive ones);
    this keeps those whose index is a multiple of ``stride``.  Whenever the checkpoints become too many,
    ``stride`` doubles and every other one is dropped.  "Too many" is ``limit`` if one was given, and
    otherwise more than ``sqrt(number of steps so far)``.  Then at any moment about ``sqrt(N)``
    checkpoints are stored and about ``sqrt(N)`` steps lie between two of them, so the reverse pass,
    which recomputes one such segment at a time, also holds about ``sqrt(N)`` steps' stages at once.
    """

    def __init__(self, limit=None):
        self.limit, self.stride, self.steps, self.saved = limit, 1, 0, []

    def append(self, entry):        # a fixed step (k, n, N, t_n, h, y_n, K[, lin]), as integrate_fixed tapes it
        k, n, N, tn, h, y, K, *lin = entry
        self._add((k, n, y, K[0].copy(), *lin))

    def watch(self, state):         # an adaptive step's starting state (t_n, y_n, k, h[, lin])
        tn, y, k0, h_abs, *lin = state
        self._add((tn, y, None if k0 is None else k0.copy(), h_abs, *lin))

    def _add(self, state):
        if self.steps % self.stride == 0:
            self.saved.append((self.steps, state))
        self.steps += 1
        too_many = (len(self.saved) > self.limit if self.limit is not None
                    else self.stride * self.stride < self.steps)
        if too_many:
            self.stride *= 2
            self.saved = [(j, s) for j, s in self.saved if j % self.stride == 0]

    def segments(self):
        """``(state, number of steps)`` for each checkpoint, the last one first."""
        ends = [j for j, _ in self.saved[1:]] + [self.steps]
        return [(state, end - j) for (j, state), end in reversed(list(zip(self.saved, ends)))]


def _checkpoint_backward(f, problem, recorder, adaptive):
    """Return the reverse pass that recomputes each segment between checkpoints, then reverses it."""
    recompute = _recompute_adaptive if adaptive else _recompute_fixed

    def steps_in_reverse(pullback):
        for state, length in recorder.segments():
            steps, nfe = recompute(problem, state, length)
            pullback.nfe_recomputed += nfe
            yield from reversed(steps)
            del steps

    return _reverse_pass(f, problem, steps_in_reverse, _reverse_adaptive if adaptive else _reverse_fixed)


def _recompute_fixed(problem, state, length):
    """Repeat ``length`` fixed steps from a checkpoint ``(k, n, y, k_1[, lin])``; return their tape entries."""
    fun, t, tab = problem.fun, problem.t, problem.tableau
    counts = steps_per_interval(t, problem.step_size)
    k, n, y, k0, *lin = state
    step = stepper(problem, *lin)
    entries, nfe = [], 0
    for _ in range(length):
        N = int(counts[k])
        h = (t[k + 1] - t[k]) / N
        tn = t[k] + n * h
        YK = np.zeros((tab.stages + 1, y.size))
        YK[0] = y
        if k0 is None:
            k0, nfe = fun(tn, y), nfe + 1
        YK[1] = k0
        with np.errstate(over="ignore", invalid="ignore"):
            y_new = step(fun, tn, h, tab, YK)[0]
        nfe += 0 if tab.implicit else tab.stages - 1
        entries.append((k, n, N, tn, h, y, YK[1:], getattr(step, "used", None)))
        y, k0 = y_new, (YK[-1].copy() if tab.fsal else None)
        k, n = (k + 1, 0) if n == N - 1 else (k, n + 1)
    return entries, nfe + getattr(step, "nfe", 0)


def _recompute_adaptive(problem, state, length):
    """Repeat ``length`` accepted steps from a checkpoint ``(t_n, y_n, k, h)``, rejections included.

    Returns each step with the output times it serves, ``((t_n, h, y_n, K), [(i, theta), ...])``, as
    the reverse pass reads them, and the evaluations of ``f`` spent.
    """
    t = problem.t
    control = _StepControl(problem, ODESolution(None, t))
    keys = control.direction * t
    served = max(1, int(np.searchsorted(keys, control.direction * state[0], side="right")))
    control.nfe, steps = 0, []
    with np.errstate(over="ignore", invalid="ignore"):
        for tn, t_new, h, YK, _, lin in control.accepted_steps(state):
            end = int(np.searchsorted(keys, control.direction * t_new, side="right"))
            steps.append(((tn, h, YK[0], YK[1:], lin), [(i, (t[i] - tn) / h) for i in range(served, end)]))
            served = end
            if len(steps) == length:
                break
    return steps, control.nfe + control.stage_evaluations()
