"""What user code returns, checked where it enters the engine.

The engine calls code it did not write: a field ``f(t, y)`` and its ``f.vjp``, a flow's divergence
and the divergence's VJP, a wrapped field inside a regulariser.  A mistake there (a transposed array,
a parameter's cotangent left out, a column where a vector belongs) must not travel on into a NumPy
broadcast message or, worse, into a silently wrong number.  So each result is checked where it comes
in, cheaply (shapes and lengths, no copies), and the message names the method at fault and what it
must return.  Every module that calls user code uses these checks: :mod:`~neuralode.gradients`,
:mod:`~neuralode.regularise`, :mod:`~neuralode.cnf` and :mod:`~neuralode.checks`.

The dynamics protocol: ``f(t, y)`` returns ``dy/dt`` with ``y``'s shape; ``f.params`` is a list of
NumPy arrays; ``f.vjp(t, y, v)`` returns ``(v . df/dy, [v . df/dtheta_i for each param], v . df/dt)``.
"""

import numpy as np


def check_dynamics(f, name="f"):
    """Raise a ``ValueError`` unless ``f`` is callable, has ``f.vjp`` and a list of arrays ``f.params``."""
    if not callable(f):
        raise ValueError(f"{name} must be callable as {name}(t, y), got {type(f).__name__}")
    if not callable(getattr(f, "vjp", None)):
        raise ValueError(f"{name} must follow the dynamics protocol: it has no method {name}.vjp(t, y, v); "
                         "use a model from neuralode.nn or write its vector-Jacobian product")
    params = getattr(f, "params", None)
    if not isinstance(params, (list, tuple)) or not all(isinstance(p, np.ndarray) for p in params):
        raise ValueError(f"{name}.params must be a list of NumPy arrays (possibly empty)")


def _real_kind(out):
    return getattr(out, "dtype", np.asarray(out).dtype).kind in "biuf"


def check_returned(method, out, shape, t=None):
    """Return ``out`` if it has ``shape`` and real entries, else raise a ``ValueError`` naming ``method``.

    Args:
        method: how the caller called it, as the message should show it, e.g. ``"field.divergence(t, z)"``.
        out: what it returned.
        shape: the shape it must have.
        t: the time of the call, for the message (optional).

    Example:
        >>> check_returned("f(t, y)", np.zeros((2, 3)), (3, 2))
        Traceback (most recent call last):
        ...
        ValueError: f(t, y) returned shape (2, 3); it must return real numbers of shape (3, 2)
    """
    if np.shape(out) != tuple(shape) or not _real_kind(out):
        at = "" if t is None else f" at t = {float(t):.6g}"
        what = f"shape {np.shape(out)}" if np.shape(out) != tuple(shape) else f"dtype {np.asarray(out).dtype}"
        raise ValueError(f"{method} returned {what}{at}; it must return real numbers of shape {tuple(shape)}")
    return out


def check_vjp_output(method, out, shape, params):
    """Return ``out`` if it has the structure of a VJP under the dynamics protocol, else raise naming ``method``.

    The structure: a tuple ``(y_bar, params_bar, t_bar)`` with ``y_bar`` of ``shape``, ``params_bar`` a
    list with one array per entry of ``params`` and of its shape, ``t_bar`` a scalar.  A list of the
    wrong length is refused rather than paired up with ``zip``, which would silently drop the rest.

    Example:
        >>> check_vjp_output("f.vjp(t, y, v)", (np.zeros(2), [], 0.0), (2,), [np.zeros(3)])
        Traceback (most recent call last):
        ...
        ValueError: f.vjp(t, y, v) does not follow the dynamics protocol: its second element must be a list of 1 arrays, one per parameter array, got 0
    """
    if _looks_right(out, shape, params):
        return out
    problem = None
    if not (isinstance(out, tuple) and len(out) == 3):
        problem = "it must return a tuple (v . df/dy, [v . df/dtheta_i], v . df/dt)"
    elif np.shape(out[0]) != tuple(shape) or not _real_kind(out[0]):
        problem = (f"its first element has shape {np.shape(out[0])}; it must hold real numbers of y's shape "
                   f"{tuple(shape)}")
    elif not isinstance(out[1], (list, tuple)) or len(out[1]) != len(params):
        got = len(out[1]) if isinstance(out[1], (list, tuple)) else type(out[1]).__name__
        problem = f"its second element must be a list of {len(params)} arrays, one per parameter array, got {got}"
    elif any(np.shape(g) != p.shape for g, p in zip(out[1], params)):
        problem = (f"its parameter cotangents have shapes {[np.shape(g) for g in out[1]]}; the parameters have "
                   f"{[p.shape for p in params]}")
    elif np.ndim(out[2]) != 0:
        problem = f"its third element (v . df/dt) has shape {np.shape(out[2])}; it must be a scalar"
    if problem is not None:
        raise ValueError(f"{method} does not follow the dynamics protocol: {problem}")
    return out


def _looks_right(out, shape, params):
    """The common case of :func:`check_vjp_output` in a few attribute reads, allocating nothing (it runs
    on every call of a VJP, and the memory benchmarks measure the backward pass)."""
    try:
        if not (type(out) is tuple and len(out) == 3 and out[0].shape == shape and out[0].dtype.kind in "fiub"
                and isinstance(out[1], (list, tuple)) and len(out[1]) == len(params)
                and (type(out[2]) is float or np.ndim(out[2]) == 0)):
            return False
        for g, p in zip(out[1], params):
            if g.shape != p.shape:
                return False
        return True
    except (TypeError, ValueError, AttributeError):
        return False
