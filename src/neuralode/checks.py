"""Numerical checks that the chapters and the tests share.

Every hand-written derivative in the engine is checked two ways: against central finite differences,
and by the dot-product test ``<v, J u> = <J^T v, u>``, which ties a vector-Jacobian product (VJP) to its
Jacobian-vector product (JVP) without any finite differences at all.  ``observed_order`` measures a
solver's order of convergence from errors at several step sizes.
"""

import tracemalloc

import numpy as np

from .gradients import odeint_vjp


def relative_error(approx, exact):
    """``|approx - exact| / max(|approx|, |exact|)`` in the Euclidean norm over all entries (0 if both are 0).

    Example:
        >>> relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
        0.0
    """
    approx, exact = np.ravel(np.asarray(approx, float)), np.ravel(np.asarray(exact, float))
    scale = max(np.linalg.norm(approx), np.linalg.norm(exact))
    return 0.0 if scale == 0 else float(np.linalg.norm(approx - exact) / scale)


def fd_gradient(loss, x, eps=1e-6):
    """The gradient of a scalar function ``loss(x)`` by central differences, one coordinate at a time.

    Each entry is ``(loss(x + eps e_j) - loss(x - eps e_j)) / (2 eps)``, whose error is ``O(eps^2)``
    plus rounding ``O(machine eps / eps)``; ``eps = 1e-6`` balances the two for smooth functions of
    unit scale.

    Example:
        >>> g = fd_gradient(lambda x: float(np.sum(x**2)), np.array([1.0, -2.0]))
        >>> bool(np.allclose(g, [2.0, -4.0]))
        True
    """
    x = np.array(x, dtype=float)
    grad = np.empty_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for j in range(flat.size):
        saved = flat[j]
        flat[j] = saved + eps
        up = loss(x)
        flat[j] = saved - eps
        down = loss(x)
        flat[j] = saved
        gflat[j] = (up - down) / (2 * eps)
    return grad


def fd_param_gradients(loss, params, eps=1e-6):
    """Central-difference gradients of ``loss()`` with respect to each array in ``params``.

    Each array is perturbed in place, one entry at a time, and restored, so ``loss`` can simply
    evaluate a model that holds these arrays (``loss = lambda: L(model)``).

    Returns:
        One gradient array per parameter array, in order.

    Example:
        >>> w = np.array([3.0])
        >>> [g] = fd_param_gradients(lambda: float(w[0] ** 2), [w])
        >>> bool(np.isclose(g[0], 6.0)), float(w[0])
        (True, 3.0)
    """
    grads = []
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
    """The Jacobian-vector product ``J u`` of ``fn`` at ``x`` by a central difference along ``u``."""
    x, u = np.asarray(x, float), np.asarray(u, float)
    return (np.asarray(fn(x + eps * u)) - np.asarray(fn(x - eps * u))) / (2 * eps)


def fd_vjp(fn, x, v, eps=1e-6):
    """The vector-Jacobian product ``v^T J`` of ``fn`` at ``x``: the gradient of ``x -> <v, fn(x)>``."""
    v = np.asarray(v, float)
    return fd_gradient(lambda z: float(np.sum(v * np.asarray(fn(z)))), x, eps)


def dot_product_test(jvp, vjp, x_shape, y_shape, rng):
    """Compare ``<v, J u>`` with ``<J^T v, u>`` for random ``u`` (shape of the input) and ``v`` (output).

    A JVP and a VJP of the same function are transposes of one another, so the two numbers agree to
    rounding error for every ``u`` and ``v``; a wrong sign, a missing term or a transposed matrix in
    either makes them differ.

    Returns:
        ``(lhs, rhs)``, the two inner products.
    """
    u, v = rng.standard_normal(x_shape), rng.standard_normal(y_shape)
    return float(np.sum(v * jvp(u))), float(np.sum(vjp(v) * u))


def observed_order(step_sizes, errors):
    """The order ``p`` in ``error ~ C h^p``: the least-squares slope of ``log(error)`` against ``log(h)``.

    Example:
        >>> h = np.array([0.1, 0.05, 0.025])
        >>> round(observed_order(h, 3.0 * h**2), 6)
        2.0
    """
    logh, loge = np.log(np.asarray(step_sizes, float)), np.log(np.asarray(errors, float))
    return float(np.polyfit(logh, loge, 1)[0])


def check_dynamics_vjp(f, t, y, rng, eps=1e-6):
    """Check ``f.vjp(t, y, v)`` for a random ``v`` against finite differences in ``y``, ``t`` and each param.

    Returns:
        A dict of relative errors: ``"y"``, ``"t"`` and ``"params"`` (a list, one per parameter array).
    """
    y = np.asarray(y, float)
    v = rng.standard_normal(np.shape(f(t, y)))
    y_bar, params_bar, t_bar = f.vjp(t, y, v)
    report = {"y": relative_error(y_bar, fd_vjp(lambda z: f(t, z), y, v, eps)),
              "t": relative_error(t_bar, fd_gradient(lambda s: float(np.sum(v * f(s[0], y))), np.array([t]), eps)),
              "params": []}
    fd = fd_param_gradients(lambda: float(np.sum(v * f(t, y))), f.params, eps)
    report["params"] = [relative_error(p_bar, g) for p_bar, g in zip(params_bar, fd)]
    return report


def linear_field_gradient(A, z0, c, t1=1.0, points=4001):
    """The exact gradient of ``L = c . z(t1)`` for the linear field ``dz/dt = A z + b`` at ``b = 0``.

    The reference for the contracting system of chapters 9 and 10 (``MLP([d, d], activation="identity")``
    with ``W = A``): the adjoint is ``a(t) = c exp(A (t1 - t))``, the state ``z(t) = exp(A t) z0``, and
    ``dL/dW_ij = int_0^t1 a_i z_j dt``, ``dL/db = int_0^t1 a dt``, by Simpson's rule on ``points`` times.

    Returns:
        The flat gradient ``[dL/dW.ravel(), dL/db]``, in the order of :func:`~neuralode.params.ravel_params`.

    Example:
        >>> g = linear_field_gradient(-np.eye(1), np.ones(1), np.ones(1))
        >>> bool(abs(g[1] - (1 - np.exp(-1.0))) < 1e-12)
        True
    """
    import scipy.linalg
    from scipy.integrate import simpson

    A, z0, c = (np.asarray(x, dtype=float) for x in (A, z0, c))
    s = np.linspace(0.0, float(t1), int(points))
    a = np.array([c @ scipy.linalg.expm(A * (t1 - x)) for x in s])
    z = np.array([scipy.linalg.expm(A * x) @ z0 for x in s])
    return np.concatenate([simpson(a[:, :, None] * z[:, None, :], x=s, axis=0).ravel(), simpson(a, x=s, axis=0)])


def peak_memory(fn):
    """Call ``fn()`` and return the peak memory it allocated, in bytes, as Python's tracemalloc sees it.

    NumPy reports its array buffers to tracemalloc, so the peak includes every array alive at the
    worst moment of the call (a backprop tape, say), and nothing allocated before the call.

    Example:
        >>> peak_memory(lambda: np.zeros(1_000_000)) >= 8_000_000
        True
    """
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

    Example:
        >>> f = CountingDynamics(lambda t, y: -y)
        >>> _ = f(0.0, np.ones(2)); f.nfe
        1
    """

    def __init__(self, f):
        self.f, self.nfe, self.nfe_vjp = f, 0, 0
        if not callable(getattr(f, "jvp", None)):
            self.jvp = None             # no JVP to pass on: implicit methods then difference f

    @property
    def params(self):
        return getattr(self.f, "params", [])

    def __call__(self, t, y):
        self.nfe += 1
        return self.f(t, y)

    def vjp(self, t, y, v):
        self.nfe_vjp += 1
        return self.f.vjp(t, y, v)

    def jvp(self, t, y, u):
        return self.f.jvp(t, y, u)

    def value_and_vjp(self, t, y, v):
        """``(f(t, y), f.vjp(t, y, v))``, counted as one evaluation of each; one pass where ``f`` offers it."""
        both = getattr(self.f, "value_and_vjp", None)
        if both is None:
            return self(t, y), self.vjp(t, y, v)
        self.nfe, self.nfe_vjp = self.nfe + 1, self.nfe_vjp + 1
        return both(t, y, v)

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
