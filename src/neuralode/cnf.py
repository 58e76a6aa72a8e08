"""Continuous normalizing flows (Chen et al. 2018, Section 4; Grathwohl et al. 2019, FFJORD).

A density is carried by the flow of ``dz/dt = f(z, t)``: the base density ``N(0, I_d)`` lives at ``t0``,
the data at ``t1``.  Along a trajectory the log-density changes by the instantaneous change of
variables (Chen et al. 2018, Theorem 1)::

    d log p(z(t)) / dt = -tr(df/dz)

so the log-density of a data point ``x`` is

    log p(x) = log N(z(t0); 0, I) - integral_{t0}^{t1} div f(z(t), t) dt,   z(t1) = x.

:class:`CNF` solves the augmented state ``[z, Delta]`` (one row of ``d + 1`` numbers per point, the last
one ``Delta(t) = log p_t(z(t)) - log p(x)``) backward from ``t1`` to ``t0`` and differentiates it with
the adjoint method of :func:`~neuralode.odeint_vjp`.  The trace is either exact (``field.divergence``)
or Hutchinson's estimate ``eps^T (df/dz) eps`` with one probe ``eps`` per point, drawn once per solve
(FFJORD).

What a field must offer, besides the dynamics protocol (``f(t, z)``, ``f.params``, ``f.vjp``), on row
batches ``z`` of shape ``(n, d)``:

* ``trace="exact"``: ``divergence(t, z)`` of shape ``(n,)`` and ``divergence_vjp(t, z, w)`` returning
  ``(w . d div/dz, [w . d div/dtheta_i], w . d div/dt)`` for weights ``w`` of shape ``(n,)``;
* ``trace="hutchinson"``: ``trace_estimate(t, z, eps)``, the row-wise ``eps_n^T (df/dz)(z_n) eps_n``
  (shape ``(n,)``), and ``trace_estimate_vjp(t, z, eps, w)``, its VJP with the same layout as
  ``divergence_vjp`` (``eps`` is held fixed: it is not a parameter).

:class:`TimeField` offers all of them.  :func:`divergence_by_jvps` computes the exact trace of any field
with a ``jvp`` by ``d`` Jacobian-vector products: the ``O(d)`` passes behind FFJORD's cost argument.

References:
    Chen, Rubanova, Bettencourt & Duvenaud (2018), Neural ordinary differential equations, Section 4.
    Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud (2019), FFJORD.
    Hutchinson (1989), A stochastic estimator of the trace of the influence matrix.
"""

import numpy as np

from .errors import check_array, check_int, check_number, check_rng
from .gradients import odeint_vjp
from .protocol import check_dynamics, check_returned, check_vjp_output
from .solver import odeint
from .tableaux import TABLEAUX

LOG_2PI = float(np.log(2.0 * np.pi))
TRACES = ("exact", "hutchinson")
NOISES = ("rademacher", "gaussian")


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _tanh_rules(h):
    a = np.tanh(h)
    d1 = 1.0 - a * a
    return a, d1, -2.0 * a * d1


def _softplus_rules(h):
    s = _sigmoid(h)
    return np.logaddexp(0.0, h), s, s * (1.0 - s)


ACTIVATION_RULES = {"tanh": _tanh_rules, "softplus": _softplus_rules}
"""``name -> rules(h)`` returning ``(sigma(h), sigma'(h), sigma''(h))``: a divergence's VJP needs ``sigma''``.

``tanh' = 1 - tanh^2`` and ``tanh'' = -2 tanh (1 - tanh^2)``; ``softplus' = sigmoid`` and
``softplus'' = sigmoid (1 - sigmoid)``.
"""


# ---------------------------------------------------------------------------------------------------
# Argument checks: every one raises ValueError naming the argument
# ---------------------------------------------------------------------------------------------------


def _int(name, value, minimum=1):
    try:
        return check_int(name, value, minimum)
    except TypeError as error:
        raise ValueError(str(error)) from None


def _number(name, value, **bounds):
    try:
        return check_number(name, value, **bounds)
    except TypeError as error:
        raise ValueError(str(error)) from None


def _rng(rng, name="rng", required=True):
    if rng is None and not required:
        return None
    try:
        return check_rng(rng, name=name, required=True)
    except TypeError as error:
        raise ValueError(str(error)) from None


def _rows(name, z, dim=None):
    """``z`` as a finite real array of shape ``(n, dim)`` with ``n >= 1``, or a ValueError naming ``name``."""
    z = check_array(name, z, finite=False)
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 1 or (dim is not None and z.shape[1] != dim):
        want = "(n, d)" if dim is None else f"(n, {dim})"
        raise ValueError(f"{name} must have shape {want} with n >= 1 (one point per row), got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} must contain only finite values")
    return z


def _weights(name, w, n):
    w = check_array(name, w, finite=False)
    if w.shape != (n,) or not np.all(np.isfinite(w)):
        raise ValueError(f"{name} must be a finite array of shape ({n},), one weight per row, got shape {w.shape}")
    return w


def _like(name, v, shape):
    """``v`` as a finite float array of exactly ``shape``, or a ValueError naming ``name``."""
    v = check_array(name, v, finite=False)
    if v.shape != tuple(shape) or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be a finite array of shape {tuple(shape)}, got shape {v.shape}")
    return v


def standard_normal_log_prob(z):
    """``log N(z; 0, I_d)`` for each row of ``z``: ``-|z|^2 / 2 - d log(2 pi) / 2``.

    Example:
        >>> standard_normal_log_prob(np.zeros((1, 2))).round(6)
        array([-1.837877])
    """
    z = _rows("z", z)
    return -0.5 * np.sum(z * z, axis=1) - 0.5 * z.shape[1] * LOG_2PI


def hutchinson_probes(shape, rng, noise="rademacher"):
    """Probe vectors ``eps`` with ``E[eps] = 0`` and ``E[eps eps^T] = I``, one per row of ``shape = (n, d)``.

    ``"rademacher"``: entries ``+1`` or ``-1`` with equal probability; ``"gaussian"``: standard normal.
    Either makes ``E[eps^T A eps] = tr A`` (Hutchinson 1989); Rademacher probes have the smaller
    variance, ``2 sum_{i != j} S_ij^2`` against ``2 |S|_F^2`` with ``S = (A + A^T) / 2``.

    Example:
        >>> hutchinson_probes((2, 3), np.random.default_rng(0)).shape
        (2, 3)
    """
    if not isinstance(shape, tuple) or len(shape) != 2:
        raise ValueError(f"shape must be a tuple (n, d), got {shape!r}")
    n, d = _int("shape[0]", shape[0]), _int("shape[1]", shape[1])
    rng = _rng(rng)
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    if noise == "gaussian":
        return rng.standard_normal((n, d))
    return rng.choice(np.array([-1.0, 1.0]), size=(n, d))


# ---------------------------------------------------------------------------------------------------
# A time-dependent field with its exact divergence and its second derivatives
# ---------------------------------------------------------------------------------------------------


class TimeField:
    r"""``f(z, t) = sigma(z W1^T + t u + b1) W2^T + b2``: one hidden layer, time entering the pre-activation.

    Rows ``z`` of shape ``(n, d)``; ``W1`` is ``(H, d)``, ``u`` and ``b1`` are ``(H,)``, ``W2`` is
    ``(d, H)``, ``b2`` is ``(d,)``.  With ``h = z W1^T + t u + b1`` (one row per point) the Jacobian of a
    row is ``df/dz = W2 diag(sigma'(h)) W1``, a ``d x d`` matrix.

    **Divergence.**  The trace is invariant under cyclic shifts, ``tr(A B) = tr(B A)``, so

        div f = tr(W2 diag(sigma'(h)) W1) = tr(diag(sigma'(h)) W1 W2) = sum_k sigma'(h_k) c_k,

    with ``c_k = (W1 W2)_{kk} = sum_i W1_{ki} W2_{ik}``, the diagonal of the ``H x H`` matrix ``W1 W2``.
    It costs ``O(H)`` per row once ``c`` is known: this field's exact divergence is cheap, unlike that
    of a deeper network (see :func:`divergence_by_jvps`).

    **Divergence VJP** (a second derivative of the network).  For weights ``w`` (one per row) and
    ``L = sum_n w_n div_n``: ``dL/dh_{nk} = w_n sigma''(h_{nk}) c_k =: g_{nk}``, and ``h`` depends on
    ``z``, ``u``, ``b1``, ``t`` and ``W1`` as a linear layer does, so ``z_bar = g W1``, ``b1_bar = sum_n g_n``,
    ``u_bar = t sum_n g_n``, ``t_bar = sum_n g_n . u``.  ``c`` adds direct terms: with
    ``s_k = sum_n w_n sigma'(h_{nk})``, ``dL/dW1_{ki} = (g^T z)_{ki} + s_k W2_{ik}`` and
    ``dL/dW2_{ik} = s_k W1_{ki}``; ``b2`` does not enter (``b2_bar = 0``).

    **Hutchinson's estimate** for a probe ``eps`` (a row per point): ``eps^T W2 diag(sigma'(h)) W1 eps =
    sum_k sigma'(h_k) p_k q_k`` with ``p = eps W1^T`` and ``q = eps W2``: ``O(d H)`` per row, no ``d x d``
    matrix.  Its VJP follows the same steps: ``g_{nk} = w_n sigma''(h_{nk}) p_{nk} q_{nk}`` through
    ``h``, plus ``dL/dW1 += (w sigma' q)^T eps`` (through ``p``) and ``dL/dW2 = eps^T (w sigma' p)``
    (through ``q``).

    Args:
        dim: the dimension ``d`` of ``z``.
        hidden: the hidden width ``H``.
        activation: ``"tanh"`` or ``"softplus"`` (both twice differentiable; see :data:`ACTIVATION_RULES`).
        rng: the random generator for the initial weights (uniform in ``+-1/sqrt(fan_in)``).
        scale: a factor on the initial ``W2`` and ``b2`` (``0.1`` starts the flow near the identity).

    Example:
        >>> f = TimeField(2, 16, rng=np.random.default_rng(0))
        >>> z = np.ones((3, 2))
        >>> f(0.5, z).shape, f.divergence(0.5, z).shape
        ((3, 2), (3,))
        >>> bool(np.allclose(f.divergence(0.5, z), divergence_by_jvps(f, 0.5, z), atol=1e-12))
        True
    """

    def __init__(self, dim, hidden=32, activation="tanh", rng=None, scale=1.0):
        self.dim, self.hidden = _int("dim", dim), _int("hidden", hidden)
        if activation not in ACTIVATION_RULES:
            raise ValueError(f"activation must be one of {sorted(ACTIVATION_RULES)}, got {activation!r}")
        rng = np.random.default_rng(0) if rng is None else _rng(rng)
        scale = _number("scale", scale, low=0.0)
        self.activation, self._rules = activation, ACTIVATION_RULES[activation]
        b1, b2 = 1.0 / np.sqrt(self.dim + 1), 1.0 / np.sqrt(self.hidden)
        self.W1 = rng.uniform(-b1, b1, (self.hidden, self.dim))
        self.u = rng.uniform(-b1, b1, self.hidden)
        self.b1 = rng.uniform(-b1, b1, self.hidden)
        self.W2 = scale * rng.uniform(-b2, b2, (self.dim, self.hidden))
        self.b2 = scale * rng.uniform(-b2, b2, self.dim)

    @property
    def params(self):
        """``[W1, u, b1, W2, b2]``: the arrays themselves, so an optimiser updates them in place."""
        return [self.W1, self.u, self.b1, self.W2, self.b2]

    def _pre(self, t, z):
        z = _rows("z", z, self.dim)
        return z, z @ self.W1.T + float(t) * self.u + self.b1

    def __call__(self, t, z):
        z, h = self._pre(t, z)
        return self._rules(h)[0] @ self.W2.T + self.b2

    def _pull(self, t, z, g):
        """Pull ``g = dL/dh`` back through ``h = z W1^T + t u + b1``: ``(z_bar, W1_bar, u_bar, b1_bar, t_bar)``."""
        g_sum = g.sum(axis=0)
        return g @ self.W1, g.T @ z, float(t) * g_sum, g_sum, float(g_sum @ self.u)

    def value_and_vjp(self, t, z, v):
        """``(f(t, z), f.vjp(t, z, v))`` from one forward pass."""
        z, h = self._pre(t, z)
        a, d1, _ = self._rules(h)
        v = _like("v", v, z.shape)
        g = (v @ self.W2) * d1
        z_bar, W1_bar, u_bar, b1_bar, t_bar = self._pull(t, z, g)
        return a @ self.W2.T + self.b2, (z_bar, [W1_bar, u_bar, b1_bar, v.T @ a, v.sum(axis=0)], t_bar)

    def vjp(self, t, z, v):
        """``(v . df/dz, [v . df/dtheta_i], v . df/dt)``, ``v`` of shape ``(n, d)``."""
        return self.value_and_vjp(t, z, v)[1]

    def jvp(self, t, z, u):
        """``df/dz . u`` row by row: ``((u W1^T) * sigma'(h)) W2^T``."""
        z, h = self._pre(t, z)
        u = _like("u", u, z.shape)
        return ((u @ self.W1.T) * self._rules(h)[1]) @ self.W2.T

    def _diag(self):
        """``c_k = (W1 W2)_{kk}``, the diagonal of ``W1 W2`` without forming the ``H x H`` product."""
        return np.sum(self.W1 * self.W2.T, axis=1)

    def divergence(self, t, z):
        """``tr(df/dz)`` for each row: ``sigma'(h) . diag(W1 W2)``, shape ``(n,)``."""
        _, h = self._pre(t, z)
        return self._rules(h)[1] @ self._diag()

    def divergence_vjp(self, t, z, w):
        """``(w . d div/dz, [w . d div/dtheta_i], w . d div/dt)`` for weights ``w`` of shape ``(n,)``."""
        z, h = self._pre(t, z)
        w = _weights("w", w, z.shape[0])
        _, d1, d2 = self._rules(h)
        g = w[:, None] * d2 * self._diag()
        z_bar, W1_bar, u_bar, b1_bar, t_bar = self._pull(t, z, g)
        s = w @ d1
        W1_bar += s[:, None] * self.W2.T
        return z_bar, [W1_bar, u_bar, b1_bar, self.W1.T * s, np.zeros(self.dim)], t_bar

    def divergence_jvp(self, t, z, u):
        """``d div/dz . u`` for each row, the transpose of :meth:`divergence_vjp`'s ``z`` part.

        It is ``(sigma''(h) c) . (u W1^T)`` row by row, with ``c = diag(W1 W2)``.
        """
        z, h = self._pre(t, z)
        u = _like("u", u, z.shape)
        return np.sum(self._rules(h)[2] * self._diag() * (u @ self.W1.T), axis=1)

    def _probe(self, z, eps):
        eps = check_array("eps", eps, finite=False)
        if eps.shape != z.shape or not np.all(np.isfinite(eps)):
            raise ValueError(f"eps must be a finite array of the shape of z, {z.shape}; got {eps.shape}")
        return eps, eps @ self.W1.T, eps @ self.W2

    def trace_estimate(self, t, z, eps):
        """Hutchinson's ``eps_n^T (df/dz)(z_n) eps_n`` for each row: ``sum_k sigma'(h_k) p_k q_k``."""
        z, h = self._pre(t, z)
        _, p, q = self._probe(z, eps)
        return np.sum(self._rules(h)[1] * p * q, axis=1)

    def trace_estimate_jvp(self, t, z, eps, u):
        """``d(trace estimate)/dz . u`` for each row: ``sum_k sigma''(h_k) (u W1^T)_k p_k q_k``."""
        z, h = self._pre(t, z)
        _, p, q = self._probe(z, eps)
        u = _like("u", u, z.shape)
        return np.sum(self._rules(h)[2] * (u @ self.W1.T) * p * q, axis=1)

    def trace_estimate_vjp(self, t, z, eps, w):
        """The VJP of :meth:`trace_estimate` for weights ``w`` (shape ``(n,)``), ``eps`` held fixed."""
        z, h = self._pre(t, z)
        eps, p, q = self._probe(z, eps)
        w = _weights("w", w, z.shape[0])
        _, d1, d2 = self._rules(h)
        g = w[:, None] * d2 * p * q
        z_bar, W1_bar, u_bar, b1_bar, t_bar = self._pull(t, z, g)
        W1_bar += (w[:, None] * d1 * q).T @ eps
        W2_bar = eps.T @ (w[:, None] * d1 * p)
        return z_bar, [W1_bar, u_bar, b1_bar, W2_bar, np.zeros(self.dim)], t_bar


def divergence_by_jvps(field, t, z):
    """The exact trace of ``df/dz`` for each row from ``d`` Jacobian-vector products ``(df/dz) e_i``.

    The generic exact trace of any field with a ``jvp``: ``sum_i e_i^T (df/dz) e_i``, one JVP per basis
    vector, so ``d`` network passes per evaluation, ``O(d^2)`` work for a field whose JVP costs
    ``O(d)``.  This is the cost FFJORD's Hutchinson estimator avoids (Grathwohl et al. 2019, Section 3).

    Example:
        >>> f = TimeField(3, 8)
        >>> z = np.zeros((2, 3))
        >>> bool(np.allclose(divergence_by_jvps(f, 0.0, z), f.divergence(0.0, z), atol=1e-12))
        True
    """
    if not callable(getattr(field, "jvp", None)):
        raise ValueError("field must offer field.jvp(t, z, u) for the trace by Jacobian-vector products")
    t, z = _number("t", t), _rows("z", z)
    trace = np.zeros(z.shape[0])
    basis = np.zeros_like(z)
    for i in range(z.shape[1]):
        basis[:, i] = 1.0
        trace += check_returned("field.jvp(t, z, u)", field.jvp(t, z, basis), z.shape, t)[:, i]
        basis[:, i] = 0.0
    return trace


# ---------------------------------------------------------------------------------------------------
# The augmented dynamics [z, Delta] and the flow
# ---------------------------------------------------------------------------------------------------


class CNFDynamics:
    """The augmented dynamics of a CNF on rows ``s = [z, Delta]`` of ``d + 1`` numbers (dynamics protocol).

    ``dz/dt = f(z, t)`` and ``dDelta/dt = -tr(df/dz)``, the trace exact (``eps=None``:
    ``field.divergence``) or Hutchinson's estimate with the fixed probes ``eps`` (shape ``(n, d)``).
    Its VJP for ``v = [v_z, v_Delta]`` is the field's VJP with ``v_z`` minus the trace's VJP with
    weights ``v_Delta``; nothing depends on ``Delta`` itself, so its cotangent is zero.

    Every result of the field's methods is checked where it comes in (:mod:`~neuralode.protocol`):
    the value ``(n, d)``, the trace ``(n,)``, each VJP a tuple with one cotangent per parameter array.
    A mistake is named by the method that made it, not by NumPy's concatenation or by ``f.vjp``.

    Example:
        >>> f = TimeField(2, 4)
        >>> CNFDynamics(f)(0.0, np.zeros((3, 3))).shape
        (3, 3)
    """

    def __init__(self, field, eps=None):
        check_dynamics(field, "field")
        self.field, self.eps = field, None if eps is None else _rows("eps", eps)
        need = ("divergence", "divergence_vjp") if eps is None else ("trace_estimate", "trace_estimate_vjp")
        for name in need:
            if not callable(getattr(field, name, None)):
                raise ValueError(f"field must offer field.{name}(...) for this trace; see neuralode.cnf's docstring")

    @property
    def params(self):
        return self.field.params

    def _split(self, s):
        s = np.asarray(s, dtype=float)
        if s.ndim != 2 or s.shape[1] < 2:
            raise ValueError(f"s must have shape (n, d + 1) with d >= 1, got {s.shape}")
        return s[:, :-1]

    def _trace(self, t, z):
        if self.eps is None:
            return check_returned("field.divergence(t, z)", self.field.divergence(t, z), z.shape[:1], t)
        estimate = self.field.trace_estimate(t, z, self.eps)
        return check_returned("field.trace_estimate(t, z, eps)", estimate, z.shape[:1], t)

    def _trace_vjp(self, t, z, w):
        if self.eps is None:
            out, method = self.field.divergence_vjp(t, z, w), "field.divergence_vjp(t, z, w)"
        else:
            out, method = self.field.trace_estimate_vjp(t, z, self.eps, w), "field.trace_estimate_vjp(t, z, eps, w)"
        return check_vjp_output(method, out, z.shape, self.field.params)

    def _value(self, t, z):
        return check_returned("field(t, z)", self.field(t, z), z.shape, t)

    def __call__(self, t, s):
        z = self._split(s)
        return np.concatenate([self._value(t, z), -self._trace(t, z)[:, None]], axis=1)

    def vjp(self, t, s, v):
        """``(v . dg/ds, [v . dg/dtheta_i], v . dg/dt)`` for ``g = [f, -trace]``."""
        return self.value_and_vjp(t, s, v)[1]

    def value_and_vjp(self, t, s, v):
        """``(g(t, s), g.vjp(t, s, v))``, with the field's value and VJP from one pass where it offers that."""
        z = self._split(s)
        v = _like("v", v, np.shape(s))
        f_value, (z_bar, params_bar, t_bar) = self._field_value_and_vjp(t, z, v[:, :-1])
        tz_bar, tparams_bar, tt_bar = self._trace_vjp(t, z, v[:, -1])
        value = np.concatenate([f_value, -self._trace(t, z)[:, None]], axis=1)
        s_bar = np.concatenate([z_bar - tz_bar, np.zeros((z.shape[0], 1))], axis=1)
        return value, (s_bar, [p - q for p, q in zip(params_bar, tparams_bar)], float(t_bar - tt_bar))

    def _field_value_and_vjp(self, t, z, v_z):
        """The field's value and VJP, each checked, from ``field.value_and_vjp`` where it offers one."""
        both = getattr(self.field, "value_and_vjp", None)
        if both is None:
            return self._value(t, z), check_vjp_output("field.vjp(t, z, v)", self.field.vjp(t, z, v_z), z.shape,
                                                       self.field.params)
        pair = both(t, z, v_z)
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValueError("field.value_and_vjp(t, z, v) must return a pair (field(t, z), field.vjp(t, z, v))")
        return (check_returned("field.value_and_vjp(t, z, v)[0]", pair[0], z.shape, t),
                check_vjp_output("field.value_and_vjp(t, z, v)[1]", pair[1], z.shape, self.field.params))


class CNF:
    """A continuous normalizing flow: ``N(0, I_d)`` at ``t0`` carried by ``dz/dt = f(z, t)`` to the data at ``t1``.

    Args:
        field: the dynamics (protocol plus the trace methods of the module docstring).
        t0, t1: the base time and the data time, ``t0 != t1``.
        trace: ``"exact"`` (``field.divergence``) or ``"hutchinson"`` (one probe per point, drawn from
            the ``rng`` passed to each call, once per solve).
        noise: the Hutchinson probes, ``"rademacher"`` or ``"gaussian"``.
        method, rtol, atol, step_size: the solver settings for every solve (``atol > 0``: the
            ``Delta`` column starts at 0).

    After each :meth:`log_prob` or :meth:`nll_and_grad`, ``nfe_forward`` and ``nfe_backward`` report the
    evaluations of the augmented dynamics in the last solve (``nfe_backward`` 0 for ``log_prob``).

    Example:
        >>> flow = CNF(TimeField(2, 8), rtol=1e-6, atol=1e-8)
        >>> x = flow.sample(4, np.random.default_rng(0))
        >>> x.shape, flow.log_prob(x).shape
        ((4, 2), (4,))
    """

    def __init__(self, field, *, t0=0.0, t1=1.0, trace="exact", noise="rademacher", method="dopri5",
                 rtol=1e-5, atol=1e-7, step_size=None):
        check_dynamics(field, "field")
        self.t0, self.t1 = _number("t0", t0), _number("t1", t1)
        if self.t0 == self.t1:
            raise ValueError(f"t0 and t1 must differ, got t0 = t1 = {self.t0}")
        if trace not in TRACES:
            raise ValueError(f"trace must be one of {TRACES}, got {trace!r}")
        if noise not in NOISES:
            raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
        if not isinstance(method, str) or method not in TABLEAUX:
            raise ValueError(f"method must be one of {sorted(TABLEAUX)}, got {method!r}")
        self.rtol = _number("rtol", rtol, low=0.0, strict=True)
        self.atol = _number("atol", atol, low=0.0, strict=True)
        self.step_size = None if step_size is None else _number("step_size", step_size, low=0.0, strict=True)
        self.field, self.trace, self.noise, self.method = field, trace, noise, method
        CNFDynamics(field, None if trace == "exact" else np.zeros((1, 1)))
        self.nfe_forward = self.nfe_backward = 0

    @property
    def params(self):
        return self.field.params

    def _options(self):
        return {"method": self.method, "rtol": self.rtol, "atol": self.atol, "step_size": self.step_size}

    def _dynamics(self, x, rng):
        if self.trace == "exact":
            _rng(rng, required=False)
            return CNFDynamics(self.field)
        if rng is None:
            raise ValueError('rng is required for trace="hutchinson": the probes are drawn from it once per solve')
        return CNFDynamics(self.field, hutchinson_probes(x.shape, _rng(rng), self.noise))

    def _solve(self, x, rng):
        x = _rows("x", x, getattr(self.field, "dim", None))
        s1 = np.concatenate([x, np.zeros((x.shape[0], 1))], axis=1)
        ys, pullback = odeint_vjp(self._dynamics(x, rng), s1, np.array([self.t1, self.t0]), **self._options())
        self.nfe_forward, self.nfe_backward = pullback.nfe_forward, 0
        z0, delta0 = ys[-1, :, :-1], ys[-1, :, -1]
        return ys, pullback, z0, delta0

    def log_prob(self, x, rng=None):
        """``log p(x)`` for each row of ``x`` (shape ``(n, d)``): ``log N(z(t0); 0, I) - Delta(t0)``.

        Args:
            x: points at ``t1``, one per row.
            rng: the generator for Hutchinson's probes (required for ``trace="hutchinson"``, unused
                for the exact trace).
        """
        _, _, z0, delta0 = self._solve(x, rng)
        return standard_normal_log_prob(z0) - delta0

    def nll_and_grad(self, x, rng=None):
        """``(mean of -log p(x), [d/dtheta_i of it])`` by the adjoint through the augmented state ``[z, Delta]``.

        ``-log p(x_n) = |z_n(t0)|^2 / 2 + d log(2 pi) / 2 + Delta_n(t0)``, so the cotangent of the solve's
        final row is ``[z_n(t0), 1] / n``; the adjoint pulls it back to ``t1``.
        """
        ys, pullback, z0, delta0 = self._solve(x, rng)
        n = z0.shape[0]
        nll = float(np.mean(-standard_normal_log_prob(z0) + delta0))
        ys_bar = np.zeros_like(ys)
        ys_bar[-1, :, :-1], ys_bar[-1, :, -1] = z0 / n, 1.0 / n
        _, params_bar, _ = pullback(ys_bar)
        self.nfe_backward = pullback.nfe_backward
        return nll, params_bar

    def sample(self, n, rng):
        """``n`` samples: ``z(t0) ~ N(0, I_d)`` from ``rng`` carried by the flow to ``t1`` (shape ``(n, d)``)."""
        n, rng = _int("n", n), _rng(rng)
        dim = getattr(self.field, "dim", None)
        if dim is None:
            raise ValueError("field must have an attribute dim (the dimension d) to be sampled from")
        z0 = rng.standard_normal((n, dim))
        return odeint(self.field, z0, np.array([self.t0, self.t1]), **self._options())[-1]
