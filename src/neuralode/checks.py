"""Numerical checks that the chapters and the tests share.

Every hand-written derivative in the engine is checked two ways: against central finite differences,
and by the dot-product test ``<v, J u> = <J^T v, u>``, which ties a vector-Jacobian product (VJP) to its
Jacobian-vector product (JVP) without any finite differences at all.  ``observed_order`` measures a
solver's order of convergence from errors at several step sizes.

A checker that can pass a wrong answer is worse than none, so these refuse what they cannot compare
honestly: arrays of different shapes, a VJP with a parameter's cotangent missing, an integer array
that a small perturbation cannot move, a loss that is not a scalar.
"""

import tracemalloc

import numpy as np

from .errors import check_array, check_number, check_rng
from .gradients import odeint_vjp
from .protocol import check_dynamics, check_returned, check_vjp_output


def relative_error(approx, exact):
    """``|approx - exact| / max(|approx|, |exact|)`` in the Euclidean norm over all entries (0 if both are 0).

    Both must hold real, finite numbers and have one shape, up to axes of length 1 (``(1, 3)`` and
    ``(3,)`` compare; ``(2, 3)`` and ``(3, 2)`` do not, nor sizes 1 and 3, which would broadcast).

    Example:
        >>> relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
        0.0
    """
    approx, exact = check_array("approx", approx), check_array("exact", exact)
    if np.squeeze(approx).shape != np.squeeze(exact).shape:
        raise ValueError(f"approx has shape {approx.shape} and exact has shape {exact.shape}: they must have one "
                         "shape, entry for entry")
    approx, exact = approx.ravel(), exact.ravel()
    scale = max(np.linalg.norm(approx), np.linalg.norm(exact))
    return 0.0 if scale == 0 else float(np.linalg.norm(approx - exact) / scale)


def fd_gradient(loss, x, eps=1e-6):
    """The gradient of a scalar function ``loss(x)`` by central differences, one coordinate at a time.

    Each entry is ``(loss(x + eps e_j) - loss(x - eps e_j)) / (2 eps)``, whose error is ``O(eps^2)``
    plus rounding ``O(machine eps / eps)``; ``eps = 1e-6`` balances the two for smooth functions of
    unit scale.  ``loss`` must return a real scalar and ``eps`` be positive and finite.

    Example:
        >>> g = fd_gradient(lambda x: float(np.sum(x**2)), np.array([1.0, -2.0]))
        >>> bool(np.allclose(g, [2.0, -4.0]))
        True
    """
    x = np.array(check_array("x", x), dtype=float)
    eps = _eps(eps)
    grad = np.empty_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for j in range(flat.size):
        saved = flat[j]
        flat[j] = saved + eps
        up = _scalar(loss(x))
        flat[j] = saved - eps
        down = _scalar(loss(x))
        flat[j] = saved
        gflat[j] = (up - down) / (2 * eps)
    return grad


def _eps(eps):
    try:
        return check_number("eps", eps, low=0.0, strict=True)
    except TypeError as error:
        raise ValueError(str(error)) from None


def _scalar(value, name="loss"):
    """``value`` as a float, or a ``ValueError`` saying that ``name`` must return a real scalar."""
    if np.ndim(value) != 0 or np.asarray(value).dtype.kind not in "biuf":
        raise ValueError(f"{name} must return a real scalar (a float), got {type(value).__name__} of shape "
                         f"{np.shape(value)}")
    return float(value)


def fd_param_gradients(loss, params, eps=1e-6):
    """Central-difference gradients of ``loss()`` with respect to each array in ``params``.

    Each array is perturbed in place, one entry at a time, and restored, so ``loss`` can simply
    evaluate a model that holds these arrays (``loss = lambda: L(model)``).  They must be float
    arrays: an integer array would round the perturbation away and return nonsense.

    Returns:
        One gradient array per parameter array, in order.

    Example:
        >>> w = np.array([3.0])
        >>> [g] = fd_param_gradients(lambda: float(w[0] ** 2), [w])
        >>> bool(np.isclose(g[0], 6.0)), float(w[0])
        (True, 3.0)
    """
    if not isinstance(params, (list, tuple)):
        raise ValueError(f"params must be a list of NumPy arrays (model.params), got {type(params).__name__}")
    for i, p in enumerate(params):
        if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
            raise ValueError(f"params[{i}] must be a float NumPy array, perturbed in place; got "
                             f"{type(p).__name__} of dtype {np.asarray(p).dtype} (an integer array would round "
                             "the perturbation away)")
    eps, grads = _eps(eps), []
    for p in params:
        saved = p.copy()

        def loss_at(q, p=p):
            p[...] = q
            return loss()

        try:
            grads.append(fd_gradient(loss_at, saved, eps))
        finally:
            p[...] = saved
    return grads


def fd_jvp(fn, x, u, eps=1e-6):
    """The Jacobian-vector product ``J u`` of ``fn`` at ``x`` by a central difference along ``u`` (``x``'s shape)."""
    x, u, eps = check_array("x", x), check_array("u", u), _eps(eps)
    if u.shape != x.shape:
        raise ValueError(f"u must have the shape of x, {x.shape}; got {u.shape}")
    return (np.asarray(fn(x + eps * u)) - np.asarray(fn(x - eps * u))) / (2 * eps)


def fd_vjp(fn, x, v, eps=1e-6):
    """The vector-Jacobian product ``v^T J`` of ``fn`` at ``x``: the gradient of ``x -> <v, fn(x)>``.

    ``v`` must have the shape of ``fn(x)``.
    """
    v = check_array("v", v)

    def inner(z):
        out = np.asarray(fn(z))
        if out.shape != v.shape:
            raise ValueError(f"v must have the shape of fn(x), {out.shape}; got {v.shape}")
        return float(np.sum(v * out))

    return fd_gradient(inner, x, eps)


def dot_product_test(jvp, vjp, x_shape, y_shape, rng):
    """Compare ``<v, J u>`` with ``<J^T v, u>`` for random ``u`` (shape of the input) and ``v`` (output).

    A JVP and a VJP of the same function are transposes of one another, so the two numbers agree to
    rounding error for every ``u`` and ``v``; a wrong sign, a missing term or a transposed matrix in
    either makes them differ.

    Returns:
        ``(lhs, rhs)``, the two inner products.

    Raises:
        ValueError: if ``jvp(u)`` does not have ``y_shape`` or ``vjp(v)`` does not have ``x_shape``.
    """
    rng = check_rng(rng, required=True)
    u, v = rng.standard_normal(x_shape), rng.standard_normal(y_shape)
    ju, vj = check_returned("jvp(u)", jvp(u), v.shape), check_returned("vjp(v)", vjp(v), u.shape)
    return float(np.sum(v * ju)), float(np.sum(vj * u))


def observed_order(step_sizes, errors):
    """The order ``p`` in ``error ~ C h^p``: the least-squares slope of ``log(error)`` against ``log(h)``.

    ``step_sizes`` and ``errors`` are 1-D, of one length, positive (an error of exactly 0 has no
    logarithm), with at least two different step sizes; anything else raises a ``ValueError``.

    Example:
        >>> h = np.array([0.1, 0.05, 0.025])
        >>> round(observed_order(h, 3.0 * h**2), 6)
        2.0
    """
    h, e = check_array("step_sizes", step_sizes), check_array("errors", errors)
    if h.ndim != 1 or e.shape != h.shape or len(np.unique(h)) < 2:
        raise ValueError(f"step_sizes and errors must be 1-D of one length, with at least two different step "
                         f"sizes; got shapes {h.shape} and {e.shape}")
    if np.any(h <= 0) or np.any(e <= 0):
        raise ValueError("step_sizes and errors must be positive: an order is fitted to their logarithms "
                         "(an error of exactly 0 has none)")
    return float(np.polyfit(np.log(h), np.log(e), 1)[0])


def check_dynamics_vjp(f, t, y, rng, eps=1e-6):
    """Check ``f.vjp(t, y, v)`` for a random ``v`` against finite differences in ``y``, ``t`` and each param.

    ``f`` follows the dynamics protocol; its output may have any shape (``v`` takes it), so an event
    function's scalar value is checked like a field's.

    The VJP's structure is checked first (:func:`~neuralode.protocol.check_vjp_output`): a cotangent
    list shorter than ``f.params`` is refused, not paired up with ``zip``.

    Returns:
        A dict of relative errors: ``"y"``, ``"t"`` and ``"params"`` (a list, one per parameter array).
    """
    check_dynamics(f)
    y, t, rng = check_array("y", y), check_number("t", t), check_rng(rng, required=True)
    # The output may have any shape: a field returns one like y, an event function a scalar.
    v = rng.standard_normal(np.shape(check_array("f(t, y)", f(t, y))))
    y_bar, params_bar, t_bar = check_vjp_output("f.vjp(t, y, v)", f.vjp(t, y, v), y.shape, f.params)
    report = {"y": relative_error(y_bar, fd_vjp(lambda z: f(t, z), y, v, eps)),
              "t": relative_error(t_bar, fd_gradient(lambda s: float(np.sum(v * f(s[0], y))), np.array([t]), eps)),
              "params": []}
    fd = fd_param_gradients(lambda: float(np.sum(v * f(t, y))), f.params, eps)
    report["params"] = [relative_error(p_bar, g) for p_bar, g in zip(params_bar, fd)]
    return report


def linear_field_gradient(A, z0, c, t1=1.0):
    """The exact gradient of ``L = c . z(t1)`` for the linear field ``dz/dt = A z + b`` at ``b = 0``.

    The reference for the contracting system of chapters 9 and 10 (``MLP([d, d], activation="identity")``
    with ``W = A``): the adjoint is ``a(t) = c exp(A (t1 - t))``, the state ``z(t) = exp(A t) z0``, and
    ``dL/dW_ij = int_0^t1 a_i z_j dt``, ``dL/db = int_0^t1 a dt``.  Both integrals come out of one
    matrix exponential each (Van Loan 1978, "Computing integrals involving the matrix exponential"):
    the upper-right block of ``expm([[A^T, M], [0, B]] t1)`` is ``int_0^t1 expm(A^T (t1 - s)) M expm(B s) ds``.
    With ``M = c z0^T`` and ``B = A^T`` its entry ``ij`` is ``int a_i z_j``; with ``M = c`` and ``B = 0``
    it is ``int a``.  Exact to rounding: no quadrature whose resolution a caller could get wrong.

    Args:
        A: the square matrix ``(d, d)``.
        z0, c: the initial state and the weights of the loss, each of length ``d``.
        t1: the end time.

    Returns:
        The flat gradient ``[dL/dW.ravel(), dL/db]``, in the order of :func:`~neuralode.params.ravel_params`.

    Example:
        >>> g = linear_field_gradient(-np.eye(1), np.ones(1), np.ones(1))
        >>> bool(abs(g[1] - (1 - np.exp(-1.0))) < 1e-12)
        True
    """
    import scipy.linalg

    A, z0, c = check_array("A", A), check_array("z0", z0), check_array("c", c)
    d, t1 = len(z0), check_number("t1", t1)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix, got shape {A.shape}")
    for name, vector in (("z0", z0), ("c", c)):
        if vector.shape != (A.shape[0],):
            raise ValueError(f"{name} must have shape ({A.shape[0]},) to match A, got {vector.shape}")
    weights = np.zeros((2 * d, 2 * d))
    weights[:d, :d], weights[:d, d:], weights[d:, d:] = A.T, np.outer(c, z0), A.T
    bias = np.zeros((d + 1, d + 1))
    bias[:d, :d], bias[:d, d] = A.T, c
    return np.concatenate([scipy.linalg.expm(weights * t1)[:d, d:].ravel(), scipy.linalg.expm(bias * t1)[:d, d]])


def peak_memory(fn):
    """Call ``fn()`` and return the peak memory it allocated, in bytes, as Python's tracemalloc sees it.

    NumPy reports its array buffers to tracemalloc, so the peak includes every array alive at the
    worst moment of the call (a backprop tape, say), and nothing allocated before the call.  If the
    caller is already tracing, its session is left running (tracemalloc has one peak, which this resets
    to measure the call: the caller's earlier peak is forgotten, its traces are not); otherwise a
    session is started for the call and stopped after it.

    Example:
        >>> peak_memory(lambda: np.zeros(1_000_000)) >= 8_000_000
        True
    """
    if not callable(fn):
        raise ValueError(f"fn must be a function of no arguments to call and measure, got {type(fn).__name__}")
    if tracemalloc.is_tracing():
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1] - before
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def pullback_peak_memory(f, y0, t, ys_bar=None, **options):
    """The peak memory, in bytes, of one ``odeint_vjp`` solve followed by one pullback.

    The measure behind "constant memory": with ``gradient="adjoint"`` it does not grow with the
    number of solver steps, with ``gradient="backprop"`` it grows like the tape.

    Args:
        f, y0, t: as for :func:`~neuralode.odeint_vjp`.
        ys_bar: the cotangent pulled back (default: ones shaped like the solution).
        **options: passed on to :func:`~neuralode.odeint_vjp` (``gradient``, ``method``, ``step_size``...).
    """
    def solve_and_pull_back():
        ys, pullback = odeint_vjp(f, y0, t, **options)
        pullback(np.ones_like(ys) if ys_bar is None else ys_bar)

    return peak_memory(solve_and_pull_back)


class CountingDynamics:
    """Wrap dynamics to count the evaluations of ``f`` (NFE) and of its ``vjp``, keeping its protocol.

    It offers ``vjp``, ``jvp`` and ``value_and_vjp`` exactly when ``f`` offers ``vjp``, ``jvp`` and
    ``vjp`` (``hasattr`` tells), so that a wrapped plain function is refused by the gradient routines
    as plainly as the function itself would be.

    Example:
        >>> f = CountingDynamics(lambda t, y: -y)
        >>> _ = f(0.0, np.ones(2)); f.nfe, hasattr(f, "vjp")
        (1, False)
    """

    def __init__(self, f):
        if not callable(f):
            raise ValueError(f"f must be callable as f(t, y), got {type(f).__name__}")
        self.f, self.nfe, self.nfe_vjp = f, 0, 0

    @property
    def params(self):
        return getattr(self.f, "params", [])

    def __call__(self, t, y):
        self.nfe += 1
        return self.f(t, y)

    def _offered(self, name):
        method = getattr(self.f, name, None)
        if not callable(method):
            raise AttributeError(f"the wrapped f offers no {name}")
        return method

    @property
    def vjp(self):
        """``f.vjp``, counted (an ``AttributeError`` when ``f`` has none)."""
        vjp = self._offered("vjp")

        def counted(t, y, v):
            self.nfe_vjp += 1
            return vjp(t, y, v)
        return counted

    @property
    def jvp(self):
        """``f.jvp`` (an ``AttributeError`` when ``f`` has none)."""
        return self._offered("jvp")

    @property
    def value_and_vjp(self):
        """``(f(t, y), f.vjp(t, y, v))``, counted as one evaluation of each; one pass where ``f`` offers it."""
        vjp, both = self.vjp, getattr(self.f, "value_and_vjp", None)
        if both is None:
            return lambda t, y, v: (self(t, y), vjp(t, y, v))

        def counted(t, y, v):
            self.nfe, self.nfe_vjp = self.nfe + 1, self.nfe_vjp + 1
            return both(t, y, v)
        return counted

    def reset(self):
        """Set both counters back to zero."""
        self.nfe, self.nfe_vjp = 0, 0



def below(error, limit):
    """Print a small error as a bound that holds on any processor (CONTRIBUTING.md, section 3a).

    The digits of a round-off-level error change with the processor (``7.4e-11`` on one machine,
    ``1.3e-10`` on another), so a chapter prints the bound it meets instead: ``"< 1e-06"`` when
    ``error < limit``, ``"< 1e-03"`` when it lies between ``limit`` and ``1e-3``. Errors of ``1e-3`` or
    more are set by the method, not by rounding, and keep two significant digits. Assert the bound
    the chapter relies on beside the print: this function only formats.

    Args:
        error: a non-negative finite error.
        limit: the bound to print for errors below it, a power of ten up to ``1e-3``.

    Example:
        >>> below(7.4e-11, 1e-6), below(2e-5, 1e-6), below(0.11, 1e-6)
        ('< 1e-06', '< 1e-03', '1.1e-01')
    """
    error, limit = float(error), float(limit)
    if not (np.isfinite(error) and error >= 0):
        raise ValueError(f"error must be a non-negative finite number, got {error!r}")
    if not 0 < limit <= 1e-3:
        raise ValueError(f"limit must lie in (0, 1e-3], got {limit!r}")
    if error >= 1e-3:
        return f"{error:.1e}"
    return f"< {limit:.0e}" if error < limit else "< 1e-03"
