"""Known physics as fields under the dynamics protocol, and fields made of a known part and a learned one.

* :class:`LotkaVolterra`: the predator-prey equations with their four parameters, forward beside its
  hand-written VJP and JVP, on row batches like the MLP;
* :class:`Fixed`: a field whose parameters are known and held, not fitted (its ``params`` is empty);
* :class:`PerCapita`: ``f = y * g``, a field given by per-capita rates ``g`` (an MLP, say), as population
  models are: a species that is absent stays absent;
* :class:`Hybrid`: ``f = known + learned``, a universal differential equation (Rackauckas et al. 2020):
  the physics one trusts written out, the term one does not know left to a network.  Its ``params`` are
  the known part's followed by the learned part's, and its VJP and JVP are composed from theirs.

Every part is checked where it enters: a part that does not follow the protocol, parts of different
dimensions, or a part that returns the wrong shape raise an error that names the part.

References:
    Lotka (1925), Elements of physical biology; Volterra (1926), Fluctuations in the abundance of a
    species considered mathematically.
    Rackauckas, Ma, Martensen, Warner, Zubov, Supekar, Skinner, Ramadhan & Edelman (2020), Universal
    differential equations for scientific machine learning, arXiv:2001.04385.
"""

import numpy as np

from .errors import check_number
from .protocol import check_returned, check_vjp_output

_SIGNS_LINEAR = np.array([1.0, -1.0])
_SIGNS_INTERACTION = np.array([-1.0, 1.0])


def _rows(name, y, dim):
    """``y`` as a float array whose last axis has length ``dim``, or a ``ValueError`` naming ``name``."""
    y = np.asarray(y, dtype=float)
    if y.ndim == 0 or y.shape[-1] != dim:
        raise ValueError(f"{name} must have shape ({dim},) or (batch, {dim}), got {y.shape}")
    return y


def _rates_array(**rates):
    """The rates as ``theta`` of shape ``(4,)`` (all scalars) or ``(n, 4)`` (1-D arrays of one length n)."""
    if all(np.ndim(v) == 0 for v in rates.values()):
        return np.array([check_number(name, v) for name, v in rates.items()])
    columns = []
    for name, v in rates.items():
        try:
            column = np.asarray(v, dtype=float)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a real number or a 1-D array of them, got {v!r:.40}") from None
        if column.ndim > 1:
            raise ValueError(f"{name} must be a number or a 1-D array (one value per state), got shape {column.shape}")
        if not np.all(np.isfinite(column)):
            raise ValueError(f"{name} must be finite")
        columns.append(column)
    lengths = {c.size for c in columns if c.ndim == 1}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"the rates given as arrays must share one non-zero length, got lengths {sorted(lengths)}")
    n = lengths.pop()
    return np.stack([np.broadcast_to(c, (n,)) for c in columns], axis=-1).copy()


class LotkaVolterra:
    """The Lotka-Volterra predator-prey field, with ``theta = [alpha, beta, gamma, delta]``.

    For prey ``x`` and predators ``y`` (the state ``z = (x, y)``, a row or a batch of rows)::

        dx/dt = alpha x - beta x y,        dy/dt = delta x y - gamma y

    ``alpha`` is the prey's growth rate, ``beta`` the rate at which encounters remove prey, ``gamma``
    the predators' death rate and ``delta`` the rate at which encounters feed predators.  Autonomous:
    the VJP's last entry is ``0.0``.

    ``theta`` has shape ``(4,)``, one set of rates for every state of a batch, or ``(n, 4)`` when the
    rates are given as arrays of length ``n``: then row ``i`` of a batch of ``n`` states follows rates
    ``theta[i]``, so that ``n`` models are solved (and differentiated) at once.

    Args:
        alpha, beta, gamma, delta: finite real numbers (zero switches a term off), or 1-D arrays of one
            length ``n`` (numbers among them are repeated ``n`` times).

    Example:
        >>> f = LotkaVolterra(1.0, 0.5, 1.5, 0.75)
        >>> f(0.0, np.array([2.0, 2.0])).tolist()
        [0.0, 0.0]
        >>> f.equilibrium
        (2.0, 2.0)
        >>> family = LotkaVolterra([1.0, 2.0], 0.5, 1.5, 0.75)
        >>> family.theta.shape, family(0.0, np.full((2, 2), 2.0)).tolist()
        ((2, 4), [[0.0, 0.0], [2.0, 0.0]])
    """

    dim = 2

    def __init__(self, alpha, beta, gamma, delta):
        self.theta = _rates_array(alpha=alpha, beta=beta, gamma=gamma, delta=delta)

    @property
    def params(self):
        """``[theta]``: one array of the four rates, the array itself, so an optimiser updates it in place."""
        return [self.theta]

    @property
    def equilibrium(self):
        """The coexistence point ``(gamma / delta, alpha / beta)`` where both rates of change vanish.

        A pair of floats, or of arrays when ``theta`` has one row per state.
        """
        alpha, beta, gamma, delta = np.moveaxis(self.theta, -1, 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            x, y = gamma / delta, alpha / beta
        return (float(x), float(y)) if self.theta.ndim == 1 else (x, y)

    def _rates(self, z):
        """``(linear, interaction)``: ``f(z) = z * (linear + z[::-1] * interaction)``, row by row.

        ``linear = (alpha, -gamma)`` and ``interaction = (-beta, delta)``, so that
        ``dx/dt = x (alpha - beta y)`` and ``dy/dt = y (-gamma + delta x)``.
        """
        theta = self.theta
        if theta.ndim == 2 and z.shape != (theta.shape[0], 2):
            raise ValueError(f"with one row of parameters per state (theta of shape {theta.shape}), y must have "
                             f"shape ({theta.shape[0]}, 2); got {z.shape}")
        return theta[..., 0::2] * _SIGNS_LINEAR, theta[..., 1::2] * _SIGNS_INTERACTION

    def __call__(self, t, y):
        z = _rows("y", y, 2)
        linear, interaction = self._rates(z)
        return z * (linear + z[..., ::-1] * interaction)

    def vjp(self, t, y, v):
        """``(v . df/dz, [v . df/dtheta], 0.0)``.

        With ``J = [[alpha - beta y, -beta x], [delta y, delta x - gamma]]``, ``v . df/dz = v J`` and
        ``v . df/dtheta = (v1 x, -v1 x y, -v2 y, v2 x y)``, summed over the batch when one ``theta`` serves
        every row, row by row when ``theta`` has one row per state.
        """
        _, _, z_bar, theta_bar = self._vjp(t, y, v)
        return z_bar, theta_bar, 0.0

    def value_and_vjp(self, t, y, v):
        """``(f(t, y), f.vjp(t, y, v))`` from one evaluation of the rates (the adjoint asks for both)."""
        z, per_rate, z_bar, theta_bar = self._vjp(t, y, v)
        return z * per_rate, (z_bar, theta_bar, 0.0)

    def _vjp(self, t, y, v):
        """``(z, per-head rates, v . df/dz, [v . df/dtheta])``, the pieces both VJP methods need."""
        z, v = _rows("y", y, 2), np.asarray(v, dtype=float)
        if v.shape != z.shape:
            raise ValueError(f"v must have the shape of y, {z.shape}; got {v.shape}")
        linear, interaction = self._rates(z)
        swapped = z[..., ::-1]
        per_rate = linear + swapped * interaction
        vz = v * z
        z_bar = v * per_rate + (vz * interaction)[..., ::-1]
        vzz = vz * swapped
        if self.theta.ndim == 1:
            vz, vzz = vz.reshape(-1, 2).sum(axis=0), vzz.reshape(-1, 2).sum(axis=0)
        theta_bar = np.empty(self.theta.shape)
        theta_bar[..., 0::2] = vz * _SIGNS_LINEAR
        theta_bar[..., 1::2] = vzz * _SIGNS_INTERACTION
        return z, per_rate, z_bar, [theta_bar]

    def jvp(self, t, y, u):
        """``df/dz . u``: the Jacobian applied to a tangent ``u`` of the state."""
        z, u = _rows("y", y, 2), np.asarray(u, dtype=float)
        if u.shape != z.shape:
            raise ValueError(f"u must have the shape of y, {z.shape}; got {u.shape}")
        linear, interaction = self._rates(z)
        swapped = z[..., ::-1]
        return u * (linear + swapped * interaction) + z * interaction * u[..., ::-1]

    def invariant(self, y):
        """The conserved quantity ``V = delta x - gamma log x + beta y - alpha log y`` (positive states).

        ``dV/dt = 0`` along every solution with ``x, y > 0``, so each orbit is a closed curve ``V = const``.

        Example:
            >>> f = LotkaVolterra(1.0, 0.5, 1.5, 0.75)
            >>> round(float(f.invariant(np.array([2.0, 2.0]))), 6)
            0.767132
        """
        z = _rows("y", y, 2)
        if np.any(z <= 0):
            raise ValueError("the invariant needs positive states (it takes log x and log y)")
        alpha, beta, gamma, delta = np.moveaxis(self.theta, -1, 0)
        x, p = z[..., 0], z[..., 1]
        return delta * x - gamma * np.log(x) + beta * p - alpha * np.log(p)


# ---------------------------------------------------------------------------------------------------
# Combinators
# ---------------------------------------------------------------------------------------------------


def _check_part(name, part):
    """Raise a ``TypeError`` naming ``name`` unless ``part`` follows the dynamics protocol."""
    if not callable(part):
        raise TypeError(f"the {name} part must be callable as f(t, y), got {type(part).__name__}")
    if not callable(getattr(part, "vjp", None)):
        raise TypeError(f"the {name} part ({type(part).__name__}) has no method vjp(t, y, v); "
                        "it must follow the dynamics protocol")
    params = getattr(part, "params", None)
    if not isinstance(params, (list, tuple)) or not all(isinstance(p, np.ndarray) for p in params):
        raise TypeError(f"the {name} part's params must be a list of NumPy arrays, got {type(params).__name__}")
    return part


def _state_dims(part):
    """``(input, output)`` dimensions of a part where it says them (``dim`` or an MLP's ``sizes``), else None."""
    dim = getattr(part, "dim", None)
    if dim is not None:
        return int(dim), int(dim)
    sizes = getattr(part, "sizes", None)
    if sizes is not None:
        return int(sizes[0]), int(sizes[-1])
    return None


def _checked_value(name, out, shape, call="f(t, y)"):
    """A part's ``f(t, y)`` (or ``jvp``), refused unless it holds real numbers of ``y``'s shape (no broadcast)."""
    return check_returned(f"the {name} part's {call}", out, shape)


def _checked_vjp(name, out, shape, params):
    """A part's ``vjp(t, y, v)`` result, refused unless it has the protocol's structure and shapes."""
    return check_vjp_output(f"the {name} part's vjp(t, y, v)", out, shape, params)


def _part_jvps(owner, parts):
    """The ``jvp`` of each ``(whose, part)``, or an ``AttributeError`` naming the part that has none.

    A wrapper's ``jvp`` is a property built on this, so that the wrapper offers a ``jvp`` exactly when
    its parts do: ``getattr(wrapper, "jvp", None)`` is then ``None`` otherwise, and an implicit method
    differences ``f`` for its Jacobian instead of failing on the missing part."""
    jvps = []
    for name, part in parts:
        jvp = getattr(part, "jvp", None)
        if not callable(jvp):
            raise AttributeError(f"{owner}.jvp needs {name} jvp; {type(part).__name__} has none")
        jvps.append(jvp)
    return jvps


class Fixed:
    """A field whose parameters are known and held: the same field, with ``params == []``.

    Wrap the known part of a :class:`Hybrid` in it when its constants are not to be fitted.

    Example:
        >>> known = Fixed(LotkaVolterra(1.0, 0.0, 1.5, 0.0))
        >>> known.params, known.dim
        ([], 2)
    """

    def __init__(self, field):
        self.field = _check_part("fixed", field)
        dims = _state_dims(field)
        self.dim = None if dims is None or dims[0] != dims[1] else dims[0]

    @property
    def params(self):
        return []

    def __call__(self, t, y):
        return self.field(t, y)

    def vjp(self, t, y, v):
        """``(v . df/dy, [], v . df/dt)``: the wrapped field's VJP without its parameter cotangents."""
        y_bar, _, t_bar = self.field.vjp(t, y, v)
        return y_bar, [], t_bar

    def value_and_vjp(self, t, y, v):
        """``(f(t, y), f.vjp(t, y, v))``, in one pass where the wrapped field offers it."""
        both = getattr(self.field, "value_and_vjp", None)
        value, (y_bar, _, t_bar) = both(t, y, v) if callable(both) else (self.field(t, y), self.field.vjp(t, y, v))
        return value, (y_bar, [], t_bar)

    @property
    def jvp(self):
        """The wrapped field's ``jvp`` (an ``AttributeError`` when it has none)."""
        return _part_jvps("Fixed", [("the wrapped field's", self.field)])[0]


class PerCapita:
    """``f(t, y) = y * g(t, y)``: a field given by per-capita rates ``g``, entry by entry.

    Population models know this much: each species changes in proportion to how many there are, so an
    absent species stays absent (``f = 0`` where ``y = 0``).  What remains unknown is how the per-capita
    rates ``g`` depend on the state; ``g`` is any field under the dynamics protocol (an MLP, say).  With
    ``w = v * y`` (entry by entry)::

        v . df/dy = v * g + w . dg/dy,     v . df/dtheta = w . dg/dtheta,     v . df/dt = w . dg/dt
        df/dy . u = u * g + y * (dg/dy . u)

    Args:
        rates: the field ``g``, returning a vector of the state's dimension.

    Example:
        >>> from neuralode.nn import MLP
        >>> f = PerCapita(MLP([2, 8, 2]))
        >>> bool(np.all(f(0.0, np.zeros((3, 2))) == 0.0))
        True
    """

    def __init__(self, rates):
        self.rates = _check_part("per-capita rates", rates)
        self._params = list(rates.params)      # the arrays themselves: updated in place, fixed in shape
        dims = _state_dims(rates)
        if dims is not None and dims[0] != dims[1]:
            raise ValueError(f"the per-capita rates map {dims[0]}-dimensional states to {dims[1]} numbers; "
                             "they must return one rate per entry of the state")
        self.dim = None if dims is None else dims[0]

    @property
    def params(self):
        """The rates' parameter arrays (the arrays themselves)."""
        return self.rates.params

    def __call__(self, t, y):
        y = np.asarray(y, dtype=float)
        return y * _checked_value("per-capita rates", self.rates(t, y), y.shape)

    def vjp(self, t, y, v):
        """``(v * g + w . dg/dy, w . dg/dtheta, w . dg/dt)`` with ``w = v * y``."""
        return self.value_and_vjp(t, y, v)[1]

    def value_and_vjp(self, t, y, v):
        """``(f(t, y), f.vjp(t, y, v))``, with one pass through the rates where they offer it."""
        y, v = np.asarray(y, dtype=float), np.asarray(v, dtype=float)
        w = v * y
        both = getattr(self.rates, "value_and_vjp", None)
        g, out = both(t, y, w) if callable(both) else (self.rates(t, y), self.rates.vjp(t, y, w))
        g = _checked_value("per-capita rates", g, y.shape)
        w_bar, params_bar, t_bar = _checked_vjp("per-capita rates", out, y.shape, self._params)
        return y * g, (v * g + w_bar, params_bar, t_bar)

    @property
    def jvp(self):
        """``u -> u * g + y * (dg/dy . u)``; offered when the rates offer a ``jvp``."""
        rates_jvp, = _part_jvps("PerCapita", [("the rates'", self.rates)])
        return lambda t, y, u: self._jvp(rates_jvp, t, y, u)

    def _jvp(self, jvp, t, y, u):
        y, u = np.asarray(y, dtype=float), np.asarray(u, dtype=float)
        g = _checked_value("per-capita rates", self.rates(t, y), y.shape)
        return u * g + y * _checked_value("per-capita rates", jvp(t, y, u), y.shape, "jvp(t, y, u)")


class Hybrid:
    """``f(t, y) = known(t, y) + learned(t, y)``: known physics plus a learned term.

    The universal differential equation of Rackauckas et al. (2020) in its additive form.  Derivatives
    of a sum are sums of derivatives, so every rule is composed from the parts' own::

        v . df/dy = v . dknown/dy + v . dlearned/dy          (and likewise for d/dt)
        v . df/dtheta = [v . dknown/dtheta_known..., v . dlearned/dtheta_learned...]
        df/dy . u = dknown/dy . u + dlearned/dy . u

    Args:
        known: the part one trusts, a field under the dynamics protocol (wrap it in :class:`Fixed` to
            hold its parameters).
        learned: the unknown term, e.g. :class:`~neuralode.nn.MLP`, mapping the state to a vector of the
            state's dimension.

    Example:
        >>> from neuralode.nn import MLP
        >>> f = Hybrid(Fixed(LotkaVolterra(1.0, 0.0, 1.5, 0.0)), MLP([2, 8, 2]))
        >>> f(0.0, np.ones((3, 2))).shape, len(f.params)
        ((3, 2), 4)
    """

    def __init__(self, known, learned):
        self.known, self.learned = _check_part("known", known), _check_part("learned", learned)
        self._params = {"known": list(known.params), "learned": list(learned.params)}
        dims = {name: _state_dims(part) for name, part in (("known", known), ("learned", learned))}
        for name, d in dims.items():
            if d is not None and d[0] != d[1]:
                raise ValueError(f"the {name} part maps {d[0]}-dimensional states to {d[1]} numbers; "
                                 "a field must return a vector of its state's dimension")
        if None not in dims.values() and dims["known"] != dims["learned"]:
            raise ValueError(f"the known part acts on {dims['known'][0]}-dimensional states and the learned "
                             f"part on {dims['learned'][0]}-dimensional ones; they must match")
        known_dims = dims["known"] or dims["learned"]
        self.dim = None if known_dims is None else known_dims[0]

    @property
    def params(self):
        """The known part's parameter arrays followed by the learned part's (the arrays themselves)."""
        return list(self.known.params) + list(self.learned.params)

    def __call__(self, t, y):
        shape = np.shape(y)
        return _checked_value("known", self.known(t, y), shape) + _checked_value("learned", self.learned(t, y), shape)

    def vjp(self, t, y, v):
        """The sum of the parts' input and time cotangents, and their parameter cotangents concatenated."""
        shape = np.shape(y)
        yk, pk, tk = _checked_vjp("known", self.known.vjp(t, y, v), shape, self._params["known"])
        yl, pl, tl = _checked_vjp("learned", self.learned.vjp(t, y, v), shape, self._params["learned"])
        return yk + yl, list(pk) + list(pl), tk + tl

    def value_and_vjp(self, t, y, v):
        """``(f(t, y), f.vjp(t, y, v))``, with one forward pass per part where the part offers it."""
        shape, values, vjps = np.shape(y), [], []
        for name, part in (("known", self.known), ("learned", self.learned)):
            both = getattr(part, "value_and_vjp", None)
            value, out = both(t, y, v) if callable(both) else (part(t, y), part.vjp(t, y, v))
            values.append(_checked_value(name, value, shape))
            vjps.append(_checked_vjp(name, out, shape, self._params[name]))
        (yk, pk, tk), (yl, pl, tl) = vjps
        return values[0] + values[1], (yk + yl, list(pk) + list(pl), tk + tl)

    @property
    def jvp(self):
        """``u -> dknown/dy . u + dlearned/dy . u``; offered when both parts offer a ``jvp``."""
        jvps = _part_jvps("Hybrid", [("the known part's", self.known), ("the learned part's", self.learned)])
        return lambda t, y, u: self._jvp(jvps, t, y, u)

    def _jvp(self, jvps, t, y, u):
        shape = np.shape(y)
        known, learned = (_checked_value(name, jvp(t, y, u), shape, "jvp(t, y, u)")
                          for name, jvp in zip(("known", "learned"), jvps))
        return known + learned
