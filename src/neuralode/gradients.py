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
  drifts; its memory grows with the forward steps, like backprop's.  With ``checkpoints=`` it keeps
  only checkpoints of the forward solve and re-solves forward from them one segment at a time, the
  segment's dense output serving the backward solve across that segment: the cure Chen et al. propose
  for a reconstruction that drifts (2018, Section 6, "Reconstructing forward trajectories"), with
  memory like checkpointing and accuracy like the interpolated adjoint.

Every derivative of ``f`` comes from its hand-written ``f.vjp(t, y, v)`` (the dynamics protocol), and
every result of it is checked where it enters (:mod:`~neuralode.protocol`).
"""

import hashlib
import math

import numpy as np

from .errors import check_array, check_number
from .implicit import implicit_step_vjp
from .params import ravel_params, unravel_params
from .protocol import check_dynamics, check_returned, check_vjp_output
from .solver import (DEFAULT_MAX_NUM_STEPS, ODESolution, Problem, _check_max_num_steps, _check_method,
                     _check_step_size, _check_tolerance, _StepControl, integrate_adaptive, integrate_fixed, prepare,
                     stepper, steps_per_interval)
from .stepsize import block_rms_max

GRADIENTS = ("adjoint", "backprop", "checkpoint", "interpolated")
NORMS = ("seminorm", "full", "mixed")
BLOCKS = {"adjoint": ("z", "a", "a_theta", "a_t"), "interpolated": ("a", "a_theta", "a_t")}
"""The blocks of each adjoint mode's backward state, in order; ``norm=`` may name a subset of them."""
SOLVER_OPTIONS = ("method", "rtol", "atol", "step_size", "max_num_steps")
"""The options ``odeint_vjp`` shares with ``odeint``; the others are its own (:data:`MODE_OPTIONS`)."""
MODE_OPTIONS = {"adjoint": ("norm", "carry_step", "reset_state", "adjoint_rtol", "adjoint_atol"), "backprop": (),
                "checkpoint": ("checkpoints",),
                "interpolated": ("norm", "carry_step", "checkpoints", "adjoint_rtol", "adjoint_atol")}
"""The options of ``odeint_vjp`` each gradient mode uses.  One rule for all of them: an option a mode
does not use must be left at its default (:data:`OPTION_DEFAULTS`), or it is refused, named."""
OPTION_DEFAULTS = {"norm": None, "carry_step": True, "reset_state": True, "checkpoints": None, "adjoint_rtol": None,
                   "adjoint_atol": None}
"""``None`` means "this mode's default" (the seminorm for ``"adjoint"``, the full norm for
``"interpolated"``; about ``sqrt(N)`` checkpoints for ``"checkpoint"``, none for ``"interpolated"``; the
forward solve's ``rtol`` and ``atol`` for the backward solve's)."""
ADJOINT_MODES = ("adjoint", "interpolated")


class Pullback:
    """The function ``ys_bar -> (y0_bar, params_bar, t_bar)`` that ``odeint_vjp`` returns.

    Calling it does not change it: it can be called again with another ``ys_bar``.  After a call its
    attributes report the cost of the last backward pass.

    It differentiates the solve at the parameters the forward solve used, and only there.  It keeps a
    snapshot of ``f.params`` from the forward solve, and a call after any of them changed (an
    optimiser's step between the solve and the pullback, say) raises a ``ValueError`` naming them:
    never a gradient that mixes the old solution with the new parameters.  Refusing beats quietly
    putting the old values back for the backward pass: the engine reads the parameters only through
    ``f.params`` and cannot know that writing into those arrays reaches what ``f`` computes with (a
    model may return copies, or derive cached quantities from them), it would change the caller's
    arrays behind its back, and a gradient taken after the update belongs to parameters the optimiser
    has already left, which is almost always a mistake in the order of the training loop.

    The snapshot is a fingerprint, 8 bytes per parameter array (a BLAKE2 digest of its shape, dtype
    and bytes), rather than a copy, which would double the parameters' memory for every pullback kept
    alive (an ODE-RNN encoder keeps one per time step).  Taking it and comparing it cost about one
    pass over the parameters each (measured in ``bench/gradients.py``).

    Attributes:
        nfe_forward: evaluations of ``f`` in the forward solve (NFE-F).
        steps_forward: accepted steps of the forward solve.
        nfe_backward: evaluations in the last backward pass (NFE-B): of the augmented dynamics for
            the adjoint modes (each one ``f.vjp``, and one ``f`` for ``"adjoint"``), of ``f.vjp`` for
            backprop and checkpointing.
        nfe_recomputed: evaluations of ``f`` spent recomputing steps in the last backward pass
            (checkpointing, and the interpolated adjoint with checkpoints; zero otherwise).
        steps_backward: accepted steps of the last backward solve (adjoint modes only).
        z0_backward: the adjoint's reconstruction of ``z(t[0])`` at the end of its backward solve.
        checkpoint_steps: with checkpoints: the indices of the steps whose starting states are
            stored (step 0 is the first), out of ``steps_forward``.
    """

    def __init__(self, backward, ys, forward_solution, f):
        self._backward, self._shape, self._f = backward, ys.shape, f
        self._params = _fingerprints(f.params)
        self.nfe_forward = forward_solution.nfe
        self.steps_forward = forward_solution.n_steps
        self.nfe_backward, self.nfe_recomputed, self.steps_backward, self.z0_backward = 0, 0, 0, None
        self.checkpoint_steps = None

    def _check_params(self):
        """Raise a ``ValueError`` naming the parameter arrays that changed since the forward solve."""
        now, size = _fingerprints(self._f.params), _DIGEST_SIZE
        if now == self._params:
            return
        if len(now) != len(self._params):
            changed = f"their number went from {len(self._params) // size} to {len(now) // size}"
        else:
            changed = [i for i in range(len(now) // size)
                       if now[i * size:(i + 1) * size] != self._params[i * size:(i + 1) * size]]
            changed = "f.params[" + "], f.params[".join(map(str, changed)) + "] changed"
        raise ValueError(f"f.params changed after the forward solve ({changed}): this pullback can only "
                         "differentiate the solve at the parameters it was computed with. Call the pullback "
                         "before updating the parameters (before the optimiser's step), or solve again")

    def __call__(self, ys_bar):
        ys_bar = check_array("ys_bar", ys_bar)
        if ys_bar.shape != self._shape:
            raise ValueError(f"ys_bar must have the shape of ys, {self._shape}; got {ys_bar.shape}")
        self._check_params()
        self.nfe_backward = self.nfe_recomputed = self.steps_backward = 0
        return self._backward(self, ys_bar)


_DIGEST_SIZE = 8


def _fingerprints(arrays):
    """One BLAKE2 digest of each array's shape, dtype and bytes, joined: 8 bytes per array.

    Two fingerprints differ when any array changed in any bit (two different arrays share a 64-bit
    digest with probability about ``2**-64``), and the ``i``-th 8 bytes tell whether array ``i`` did.
    """
    digests = []
    for p in arrays:
        p = np.ascontiguousarray(p)
        digest = hashlib.blake2b(f"{p.shape}{p.dtype.str}".encode(), digest_size=_DIGEST_SIZE)
        digest.update(p.data)
        digests.append(digest.digest())
    return b"".join(digests)


# ---------------------------------------------------------------------------------------------------
# Options: one rule for every mode
# ---------------------------------------------------------------------------------------------------


def check_options(gradient="adjoint", **options):
    """Check the options of :func:`odeint_vjp` without solving; return the mode's own, defaults filled in.

    Models that keep solver options for later (:class:`~neuralode.models.ODENet`,
    :class:`~neuralode.latent.LatentODE`) call this when they are built, so that a mistake is named
    at once rather than at the first solve.  The rule (:data:`MODE_OPTIONS`): an option the mode
    does not use must be left at its default (passing the default itself, as a loop over every mode
    may, is accepted); ``atol`` must be positive in an adaptive solve of the adjoint modes.

    Args:
        gradient: the gradient mode.
        **options: any of :data:`SOLVER_OPTIONS` and of :data:`OPTION_DEFAULTS`.

    Returns:
        A dict with ``norm`` (the measured blocks as a tuple, or ``"mixed"``), ``carry_step``,
        ``reset_state``, ``checkpoints``, ``adjoint_rtol`` and ``adjoint_atol``.

    Raises:
        TypeError: for an unknown option.
        ValueError: for a bad value, naming the option (and the mode, for an option it does not use).

    Example:
        >>> check_options("backprop", norm="full")
        Traceback (most recent call last):
        ...
        ValueError: norm='full' is not an option of gradient='backprop', which does not use it (norm is an option of 'adjoint' and 'interpolated'); leave it out
    """
    if not isinstance(gradient, str) or gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    unknown = sorted(set(options) - set(SOLVER_OPTIONS) - set(OPTION_DEFAULTS))
    if unknown:
        raise TypeError(f"odeint_vjp() got unknown option(s) {', '.join(unknown)}; its options are "
                        f"{', '.join(SOLVER_OPTIONS + tuple(OPTION_DEFAULTS))} besides gradient")
    mode = {name: options.get(name, default) for name, default in OPTION_DEFAULTS.items()}
    for name, value in mode.items():
        if name not in MODE_OPTIONS[gradient] and not _is_default(name, value):
            users = " and ".join(repr(g) for g, names in MODE_OPTIONS.items() if name in names)
            raise ValueError(f"{name}={value!r} is not an option of gradient={gradient!r}, which does not use it "
                             f"({name} is an option of {users}); leave it out")
    for name in ("reset_state", "carry_step"):
        if not isinstance(mode[name], (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {mode[name]!r}")
    mode["norm"] = _check_norm(mode["norm"], gradient)
    mode["checkpoints"] = _check_checkpoints(mode["checkpoints"], gradient)
    for name in ("adjoint_rtol", "adjoint_atol"):
        if mode[name] is not None:
            mode[name] = check_number(name, mode[name], low=0.0, strict=True)
    _check_solver_options(gradient, options)
    return mode


def _is_default(name, value):
    default = OPTION_DEFAULTS[name]
    return value is None if default is None else (isinstance(value, (bool, np.bool_)) and value == default)


def _check_solver_options(gradient, options):
    """The checks of ``odeint`` on the solver options given, and ``atol > 0`` for adaptive adjoint solves."""
    tableau = _check_method(options.get("method", "dopri5"))
    for name in ("rtol", "atol"):
        if name in options:
            value = options[name]
            _check_tolerance(name, value, np.shape(value), allow_zero=name == "atol")
    if "step_size" in options:
        _check_step_size(options["step_size"])
    if "max_num_steps" in options:
        _check_max_num_steps(options["max_num_steps"])
    _check_atol(gradient, options.get("atol", 1.0), tableau.adaptive and options.get("step_size") is None)


def _check_atol(gradient, atol, adaptive):
    """``atol > 0`` in an adaptive solve of an adjoint mode, whose backward state starts at zero."""
    if gradient in ADJOINT_MODES and adaptive and np.any(np.asarray(atol) == 0):
        raise ValueError(f"atol must be positive for gradient={gradient!r}: its backward solve starts the "
                         "cotangents a_theta and a_t at exactly 0 (and a wherever ys_bar is 0), and an error "
                         "tolerance of rtol * |0| + atol = 0 cannot be met there. Give atol > 0, or use "
                         "gradient='backprop' or 'checkpoint', which solve nothing backward")


def _check_norm(norm, gradient):
    """The blocks the backward error control measures, as a tuple of names from ``BLOCKS``, or ``"mixed"``."""
    blocks = BLOCKS.get(gradient, BLOCKS["adjoint"])
    if norm is None:
        norm = "full" if gradient == "interpolated" else "seminorm"
    if isinstance(norm, str):
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, a tuple of block names, or None; got {norm!r}")
        if norm == "mixed":
            return norm
        return blocks if norm == "full" else tuple(b for b in blocks if b not in ("a_theta", "a_t"))
    if not (isinstance(norm, (tuple, list)) and norm and all(isinstance(b, str) and b in blocks for b in norm)
            and len(set(norm)) == len(norm)):
        raise ValueError(f"norm as a tuple must name distinct blocks among {blocks}, got {norm!r}")
    return tuple(norm)


def _check_checkpoints(checkpoints, gradient):
    """``None``, ``"sqrt"`` (about the square root of the steps) or an int >= 1, the most stored at once."""
    if checkpoints is None:
        return "sqrt" if gradient == "checkpoint" else None
    if isinstance(checkpoints, str) and checkpoints == "sqrt":
        return checkpoints
    if isinstance(checkpoints, (bool, np.bool_)) or not isinstance(checkpoints, (int, np.integer)) or checkpoints < 1:
        raise ValueError(f"checkpoints must be an integer >= 1, 'sqrt' or None, got {checkpoints!r}")
    return int(checkpoints)


def _error_control(mode, sizes, params):
    """``(measured, norm function, rtol, atol)`` for the backward solve: which entries it measures, how,
    and against which tolerances (``None``: the forward solve's).

    ``sizes`` maps each block of the flat backward state, in order, to its length.  ``"mixed"``
    measures every entry with one RMS norm per block, the parameter cotangents split into one block per
    parameter array as torchdiffeq splits them (one per tensor); a tuple of names measures those
    blocks with one RMS norm over all their entries.
    """
    norm, tolerances = mode["norm"], (mode["adjoint_rtol"], mode["adjoint_atol"])
    if norm != "mixed":
        return (_measured(norm, sizes), None, *tolerances)
    blocks = [[p.size for p in params] if name == "a_theta" else [n] for name, n in sizes.items()]
    return (None, block_rms_max([n for block in blocks for n in block]), *tolerances)


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


def _checked_vjp(f, shape):
    """``f.vjp``, with the structure of every result checked (shapes and lengths: no copies).

    The parameters are read once: a pullback runs only while they are unchanged (:class:`Pullback`).
    """
    params = list(f.params)

    def vjp(t, y, v):
        return check_vjp_output("f.vjp(t, y, v)", f.vjp(t, y, v), shape, params)

    return vjp


def odeint_vjp(f, y0, t, *, gradient="adjoint", method="dopri5", rtol=1e-7, atol=1e-9, step_size=None,
               max_num_steps=DEFAULT_MAX_NUM_STEPS, reset_state=True, norm=None, carry_step=True,
               checkpoints=None, adjoint_rtol=None, adjoint_atol=None):
    """Solve ``dy/dt = f(t, y)`` like ``odeint`` and return the solution with its pullback.

    An option a gradient mode does not use must be left at its default (:data:`MODE_OPTIONS`); any
    other value is refused, naming the option and the mode, rather than ignored.

    Args:
        f: dynamics following the protocol: ``f(t, y)``, ``f.params``, ``f.vjp(t, y, v)``.
        y0, t, method, rtol, atol, step_size, max_num_steps: as for :func:`~neuralode.odeint`; the
            adjoint's backward solve uses the same method and, unless ``adjoint_rtol`` and
            ``adjoint_atol`` say otherwise, the same tolerances (``atol`` must be positive in the
            adjoint modes: their backward state starts at zero).
        gradient: ``"adjoint"`` (Chen et al. 2018, Algorithm 1), ``"backprop"`` (through the stages),
            ``"checkpoint"`` (backprop's numbers from stored checkpoints) or ``"interpolated"`` (the
            adjoint equations against the forward solve's dense output).
        reset_state: ``"adjoint"`` only.  At each output time the backward solve restarts ``z`` from
            the value stored by the forward solve (``True``, Algorithm 1), or carries on with its own
            backward reconstruction (``False``, to study how that reconstruction drifts).
        norm: the adjoint modes' backward error control: ``"seminorm"`` (Kidger et al. 2021) leaves
            out ``a_theta`` and ``a_t``, which nothing else depends on, and measures the rest with one
            RMS norm; ``"full"`` measures the whole augmented state with one RMS norm; ``"mixed"``
            measures it all with one RMS norm per block (``z``, ``a``, each parameter array's
            cotangent, ``a_t``) and takes the largest, torchdiffeq's default for its adjoint
            (``handle_adjoint_norm_`` in ``torchdiffeq/_impl/adjoint.py``, ``_mixed_norm`` in
            ``_impl/misc.py``), so that NFE compare like for like; a tuple of block names (see
            :data:`BLOCKS`) measures those blocks only, to study which drive the steps.  The default,
            ``None``, is the seminorm for ``"adjoint"`` (whose ``z`` block keeps the steps fine
            enough for the parameter integral) and the full norm for ``"interpolated"`` (whose state
            has no ``z``: measuring ``a`` alone lets the steps outgrow the integrand's variation).
        carry_step: the adjoint modes: each backward interval starts with the step size the previous
            one ended with (``True``), or selects a new first step (``False``, as before).
        checkpoints: ``"checkpoint"``: the most checkpoints stored at once (an int >= 1); the default
            (``None`` or ``"sqrt"``) lets their number grow like the square root of the number of
            steps.  ``"interpolated"``: ``None`` keeps the whole forward solve's dense output; an int or
            ``"sqrt"`` keeps checkpoints only, as ``"checkpoint"`` does, and re-solves forward from
            them one segment at a time during the backward solve (which then also stops at every
            checkpoint, carrying its step across).
        adjoint_rtol, adjoint_atol: the adjoint modes: scalar tolerances (``> 0``) for the backward
            solve alone (torchdiffeq's options of the same names); ``None`` uses ``rtol`` and
            ``atol``.  The forward solve, and a checkpointed mode's forward re-solves, keep ``rtol``
            and ``atol``.

    Returns:
        ``(ys, pullback)``: the solution, shape ``(len(t), *y0.shape)``, and a :class:`Pullback`;
        ``pullback(ys_bar)`` returns ``(y0_bar, params_bar, t_bar)`` where ``params_bar`` matches
        ``f.params`` and ``t_bar[i] = dL/dt[i]``, each time moved alone (``t_bar[0]`` moves the start
        with ``y(t[0]) = y0`` held).  The pullback refuses to run once ``f.params`` changed.

    Raises:
        ValueError: for bad arguments, an option the mode does not use, or if ``f`` does not follow
            the dynamics protocol.

    Example:
        >>> from neuralode.nn import MLP
        >>> f = MLP([2, 8, 2])
        >>> ys, pullback = odeint_vjp(f, np.ones(2), np.array([0.0, 1.0]))
        >>> y0_bar, params_bar, t_bar = pullback(np.ones_like(ys))
        >>> y0_bar.shape, len(params_bar), t_bar.shape
        ((2,), 4, (2,))
    """
    mode = check_options(gradient, reset_state=reset_state, norm=norm, carry_step=carry_step, checkpoints=checkpoints,
                         adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol)
    check_dynamics(f)
    problem = prepare(f, y0, t, method, rtol, atol, step_size, max_num_steps)
    _check_atol(gradient, problem.atol, _adaptive(problem))
    forward = _FORWARD[gradient if mode["checkpoints"] is None else f"{gradient} with checkpoints"]
    solution, backward, recorder = forward(f, problem, mode)
    pullback = Pullback(backward, solution.ys, solution, f)
    if recorder is not None:
        pullback.checkpoint_steps = [j for j, _ in recorder.saved]
    return solution.ys, pullback


def _adaptive(problem):
    return problem.tableau.adaptive and problem.step_size is None


def _solve(problem, tape=None):
    return integrate_adaptive(problem, tape) if _adaptive(problem) else integrate_fixed(problem, tape)


def _forward_adjoint(f, problem, mode):
    problem.record_steps = False
    solution = _solve(problem)
    return solution, _adjoint_backward(f, problem, solution.ys.copy(), mode), None


def _forward_taped(f, problem, mode, backprop=True):
    tape = []
    solution = _solve(problem, tape)
    if backprop:
        return solution, _backprop_backward(f, problem, tape, _adaptive(problem)), None
    return solution, _interpolated_backward(f, problem, solution.ys.copy(), tape, mode), None


def _forward_checkpointed(f, problem, mode, interpolated=False):
    """The forward solve keeping checkpoints only (:class:`CheckpointSchedule`), and its backward pass."""
    problem.record_steps = False
    recorder = CheckpointSchedule(None if mode["checkpoints"] == "sqrt" else mode["checkpoints"])
    adaptive = _adaptive(problem)
    solution = integrate_adaptive(problem, watch=recorder.watch) if adaptive else integrate_fixed(problem, recorder)
    if interpolated:
        return solution, _checkpointed_interpolated_backward(f, problem, solution.ys.copy(), recorder, mode), recorder
    return solution, _checkpoint_backward(f, problem, recorder, adaptive), recorder


_FORWARD = {
    "adjoint": _forward_adjoint,
    "backprop": _forward_taped,
    "interpolated": lambda f, problem, mode: _forward_taped(f, problem, mode, backprop=False),
    "checkpoint with checkpoints": _forward_checkpointed,
    "interpolated with checkpoints": lambda f, problem, mode: _forward_checkpointed(f, problem, mode, True),
}
"""The forward solve of each mode: ``(f, problem, mode) -> (solution, backward, checkpoint recorder)``."""
# ---------------------------------------------------------------------------------------------------
# The adjoint method (Chen et al. 2018, Algorithm 1)
# ---------------------------------------------------------------------------------------------------


def _value_and_vjp(f, shape):
    """``(t, y, v) -> (f(t, y), f.vjp(t, y, v))``, in one forward pass where the model offers it.

    Both results are checked on every call (:mod:`~neuralode.protocol`): a value of the right size but
    the wrong shape (transposed, say) would otherwise flatten into a silently wrong adjoint.
    """
    both, params = getattr(f, "value_and_vjp", None), list(f.params)
    if both is None:
        vjp = _checked_vjp(f, shape)
        return lambda t, y, v: (check_returned("f(t, y)", f(t, y), shape, t), vjp(t, y, v))

    def value_and_vjp(t, y, v):
        pair = both(t, y, v)
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValueError("f.value_and_vjp(t, y, v) must return a pair (f(t, y), f.vjp(t, y, v))")
        value, out = pair
        check_returned("f.value_and_vjp(t, y, v)[0]", value, shape, t)
        return value, check_vjp_output("f.value_and_vjp(t, y, v)[1]", out, shape, params)

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


def _adjoint_backward(f, problem, ys, mode):
    """Return the backward pass of Algorithm 1 for the forward solution ``ys``."""
    t, shape, reset_state = problem.t, problem.shape, mode["reset_state"]
    n, n_theta = problem.y0.size, sum(p.size for p in f.params)
    aug = augmented_dynamics(f, shape)
    control = _error_control(mode, {"z": n, "a": n, "a_theta": n_theta, "a_t": 1}, f.params)

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
            solution = _solve_backward(aug, s, ds, t[i], t[i - 1], problem, control, h, coupled=2 * n,
                                       guarded=slice(n, 2 * n))
            s, h = solution.ys[-1], (solution.next_step if mode["carry_step"] else None)
            pullback.nfe_backward += solution.nfe
            pullback.steps_backward += solution.n_steps
        pullback.z0_backward = s[:n].reshape(shape).copy()
        t_bar[0] = s[-1]
        y0_bar = s[n:2 * n].reshape(shape) + ys_bar[0]
        return y0_bar, unravel_params(s[2 * n:-1].copy(), f.params), t_bar

    return backward


def _solve_backward(aug, s, ds, t_from, t_to, problem, control, h0, coupled=None, guarded=None):
    """Integrate the augmented state from ``t_from`` back to ``t_to`` with the forward solve's settings.

    ``ds = aug(t_from, s)`` is already known: for the adjoint its ``z`` block, ``f(t_from, z)``, also
    gives ``t_bar`` when ``z`` was reset to the stored value (the dynamics of ``s`` do not depend on
    ``a_t``, so changing ``a_t`` afterwards leaves ``ds`` valid).  The error control measures the
    entries and with the norm ``control = (measured, norm, rtol, atol)`` names, against its
    tolerances (``None``: the forward solve's; see :func:`_error_control`), and tries ``h0`` first
    (``None``: selects a step).
    An implicit method iterates on the first ``coupled`` entries only (``z`` and ``a``): nothing
    depends on ``a_theta`` and ``a_t``, so their stages follow from ``aug`` directly, and the Jacobian
    it differences has ``coupled`` columns instead of the whole augmented state's.  Its growth guard
    watches the ``guarded`` entries: ``a`` for the adjoint, whose ``z`` block, run backward through
    dynamics that contract forward, grows, and may be damped toward the forward solution instead.
    """
    times = np.array([t_from, t_to])
    measured, norm, rtol, atol = control
    rtol = _augmented_tolerance(problem.rtol) if rtol is None else rtol
    atol = _augmented_tolerance(problem.atol) if atol is None else atol
    backward = Problem(aug, s, times, s.shape, problem.tableau, rtol, atol,
                       problem.step_size, problem.max_num_steps, ds, record_steps=False,
                       h0=h0, measured=measured, norm=norm, coupled=coupled, guarded=guarded)
    if problem.tableau.adaptive and problem.step_size is None:
        return integrate_adaptive(backward)
    return integrate_fixed(backward)


def _augmented_tolerance(value):
    """A per-entry tolerance broadcast to ``z`` and ``a`` is replaced by its smallest entry, valid on the
    longer augmented state."""
    return float(np.min(value)) if np.ndim(value) else value


# ---------------------------------------------------------------------------------------------------
# The interpolated adjoint: z(t) read from the forward solve's dense output
# ---------------------------------------------------------------------------------------------------


class _Interpolant:
    """``z(t)`` on the forward solve's steps, from each step's continuous extension.

    Adaptive methods use their own dense output (the one that produced ``ys``); fixed-step methods,
    which have none, use cubic Hermite interpolation between the step's ends with the slopes ``k_1``
    at both ends (the next step's ``k_1`` is the slope at this step's end; after the last step
    ``f`` is evaluated once, which ``nfe`` reports).
    """

    def __init__(self, f, problem, steps):
        self.nfe = 0
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
            t_end = float(last[0] + last[1])
            f_end = np.ravel(check_returned("f(t, y)", f(t_end, y_end.reshape(problem.shape)), problem.shape, t_end))
            self.f_end, self.nfe = [s[3][0] for s in steps[1:]] + [f_end], 1

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


def _interpolated_backward(f, problem, ys, tape, mode):
    """Return the backward pass of the interpolated adjoint over the forward solve's tape: one segment."""
    steps = _tape_steps(tape, _adaptive(problem))
    whole = [(float(problem.t[0]), _Interpolant(f, problem, steps))] if steps else []
    return _adjoint_on_segments(f, problem, ys, mode, lambda pullback: whole)


def _tape_steps(tape, adaptive):
    """The steps ``(t_n, h, y_n, K, lin)`` of a forward solve's tape, first to last (``lin``: an implicit
    step's Linearisation, else ``None``)."""
    return [entry[1:] for entry in tape if entry[0] == "step"] if adaptive else [entry[3:] for entry in tape]


def _adjoint_on_segments(f, problem, ys, mode, segments):
    """The backward pass of the interpolated adjoint, across segments of the forward solve.

    ``segments(pullback)`` yields ``(t_start, z_of_t)`` for each segment, the last first: where it
    starts and the interpolant of ``z`` over it (one segment covers the whole solve unless the
    forward solve kept checkpoints only).  The adjoint equations are solved backward across each
    segment, stopping at every output time inside it (to add ``ys_bar[i]``) and at its start.
    """
    t, shape, direction = problem.t, problem.shape, (1.0 if problem.t[-1] >= problem.t[0] else -1.0)
    n, n_theta = problem.y0.size, sum(p.size for p in f.params)
    control = _error_control(mode, {"a": n, "a_theta": n_theta, "a_t": 1}, f.params)

    def backward(pullback, ys_bar):
        s, t_bar, h, i, now = np.zeros(n + n_theta + 1), np.zeros(len(t)), None, len(t) - 1, t[-1]
        for start, z_of_t in segments(pullback):
            aug = _interpolated_dynamics(f, shape, z_of_t)
            while direction * (now - start) > 0:
                if i > 0 and t[i] == now:              # an output time: its cotangent joins a
                    s[:n] += ys_bar[i].ravel()
                    t_bar[i] = float(ys_bar[i].ravel() @ np.ravel(f(t[i], ys[i])))
                    s[-1] -= t_bar[i]
                    i -= 1
                target = t[i] if direction * (t[i] - start) > 0 else start
                solution = _solve_backward(aug, s, aug(now, s), now, target, problem, control, h, coupled=n)
                s, h, now = solution.ys[-1], (solution.next_step if mode["carry_step"] else None), target
                pullback.nfe_backward += solution.nfe
                pullback.steps_backward += solution.n_steps
            del aug, z_of_t                            # one segment's dense output at a time
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
    """Repeat ``length`` accepted steps from a checkpoint ``(t_n, y_n, k, h[, lin])``, rejections included.

    Returns each step with the output times it serves, ``((t_n, h, y_n, K, lin), [(i, theta), ...])``,
    as the reverse pass reads them, and the evaluations of ``f`` spent.
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


# ---------------------------------------------------------------------------------------------------
# The interpolated adjoint with checkpoints: z(t) re-solved forward one segment at a time
# ---------------------------------------------------------------------------------------------------


def _checkpointed_interpolated_backward(f, problem, ys, recorder, mode):
    """The interpolated adjoint whose ``z(t)`` comes from forward re-solves between checkpoints.

    Chen et al. (2018, Section 6, "Reconstructing forward trajectories") propose recovering ``z(t)``
    for the adjoint by storing intermediate states during the forward solve and integrating forward
    again from them, rather than backward; SciMLSensitivity's
    ``InterpolatingAdjoint(checkpointing=true)`` does the same between its saved time points
    (``src/sensitivity_algorithms.jl``, "Checkpointing").  Each segment between two checkpoints is
    re-solved forward from the earlier one, repeating exactly the steps of the forward solve
    (:func:`_recompute_adaptive`), and its dense output serves the backward solve across that segment;
    then it is dropped.  Memory: the checkpoints
    and one segment's steps, about ``sqrt(N)`` each with the default schedule, as for ``"checkpoint"``;
    accuracy: that of ``"interpolated"``, whose ``z(t)`` is the same dense output.
    """
    adaptive = _adaptive(problem)
    recompute = _recompute_adaptive if adaptive else _recompute_fixed

    def segments(pullback):
        for state, length in recorder.segments():
            steps, nfe = recompute(problem, state, length)
            steps = [step for step, _ in steps] if adaptive else [entry[3:] for entry in steps]
            z_of_t = _Interpolant(f, problem, steps)
            pullback.nfe_recomputed += nfe + z_of_t.nfe
            start = float(steps[0][0])
            del steps
            yield start, z_of_t
            del z_of_t

    return _adjoint_on_segments(f, problem, ys, mode, segments)
