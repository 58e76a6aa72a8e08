"""Models under the dynamics protocol, each forward pass beside its hand-written VJP and JVP.

The dynamics protocol: an object ``f`` with

* ``f(t, y)`` returning ``dy/dt`` (``y`` is a row-vector batch, or a single vector);
* ``f.params``, a list of NumPy arrays, the ``theta`` of Chen et al. (2018);
* ``f.vjp(t, y, v)`` returning ``(v . df/dy, [v . df/dtheta_i], v . df/dt)``;
* ``f.jvp(t, y, u)`` returning ``df/dy . u``.

Every rule here is a pure function of its inputs: nothing is cached between calls, so a reader can
re-run any cell in any order.
"""

import numpy as np

from .errors import check_int
from .params import count_params, init_normal, ravel_params, unravel_params  # noqa: F401 (re-exported)


def _check_sizes(sizes):
    """``sizes`` as a list of at least two positive integer widths, or an error naming ``sizes``."""
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
        raise TypeError(f"sizes must be a list of layer widths such as [2, 50, 2], got {sizes!r}")
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least two positive layer widths, got {sizes!r}")
    return [check_int(f"sizes[{i}]", n) for i, n in enumerate(sizes)]


def _check_rng(rng):
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    return np.random.default_rng(0) if rng is None else rng


def _softplus(x):
    return np.logaddexp(0.0, x)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


ACTIVATIONS = {
    "tanh": (np.tanh, lambda x, s: 1.0 - s * s),
    "softplus": (_softplus, lambda x, s: _sigmoid(x)),
    "sigmoid": (_sigmoid, lambda x, s: s * (1.0 - s)),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x, s: (x > 0).astype(float)),
    "identity": (lambda x: x, lambda x, s: np.ones_like(x)),
}
"""Each activation as data: ``name -> (sigma, dsigma)``, where ``dsigma(x, sigma(x))`` is its derivative.

The derivative may use the already computed ``sigma(x)`` (``tanh' = 1 - tanh^2``) to save work.
"""


class Linear:
    """An affine layer ``x @ W.T + b`` on row vectors, with ``W`` of shape ``(out, in)``.

    Initialised like common deep-learning libraries: entries uniform in ``+-1/sqrt(in)``.
    """

    def __init__(self, n_in, n_out, rng):
        n_in, n_out, rng = check_int("n_in", n_in), check_int("n_out", n_out), _check_rng(rng)
        bound = 1.0 / np.sqrt(n_in)
        self.W = rng.uniform(-bound, bound, size=(n_out, n_in))
        self.b = rng.uniform(-bound, bound, size=n_out)

    @property
    def params(self):
        return [self.W, self.b]

    def forward(self, x):
        """``x @ W.T + b`` for a batch ``x`` of shape ``(batch, in)``."""
        return x @ self.W.T + self.b

    def vjp(self, x, v):
        """Pull ``v`` (shape ``(batch, out)``) back: ``(v @ W, [v.T @ x, sum_batch v])``."""
        return v @ self.W, [v.T @ x, v.sum(axis=0)]

    def jvp(self, u):
        """Push a tangent ``u`` of the input forward: ``u @ W.T`` (the bias does not depend on ``x``)."""
        return u @ self.W.T


class MLP:
    """A multilayer perceptron ``f(t, y)`` with hand-written VJP and JVP; autonomous (ignores ``t``).

    Args:
        sizes: layer widths, input first, e.g. ``[2, 50, 2]``.
        activation: a name in :data:`ACTIVATIONS`, applied after every layer but the last.
        rng: the random generator for the initial weights.

    Example:
        >>> f = MLP([2, 16, 2])
        >>> f(0.0, np.zeros((5, 2))).shape
        (5, 2)
    """

    def __init__(self, sizes, activation="tanh", rng=None):
        sizes = _check_sizes(sizes)
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        rng = _check_rng(rng)
        self.sizes, self.activation = sizes, activation
        self.layers = [Linear(m, n, rng) for m, n in zip(sizes[:-1], sizes[1:])]

    @property
    def params(self):
        """``[W1, b1, W2, b2, ...]``: the arrays themselves, so an optimiser can update them in place."""
        return [p for layer in self.layers for p in layer.params]

    def _batch(self, y):
        y = np.asarray(y, dtype=float)
        if y.ndim not in (1, 2) or y.shape[-1] != self.sizes[0]:
            raise ValueError(f"expected input of shape ({self.sizes[0]},) or (batch, {self.sizes[0]}), got {y.shape}")
        return np.atleast_2d(y)

    def _forward_tape(self, x):
        """The forward pass, keeping each layer's input ``h`` and pre-activation ``z`` for the VJP."""
        sigma = ACTIVATIONS[self.activation][0]
        hs, zs, h = [], [], x
        for i, layer in enumerate(self.layers):
            hs.append(h)
            z = layer.forward(h)
            zs.append(z)
            h = z if i == len(self.layers) - 1 else sigma(z)
        return h, hs, zs

    def forward(self, x):
        """Apply the network to ``x`` (a vector, or a batch of row vectors)."""
        out = self._forward_tape(self._batch(x))[0]
        return out.reshape(np.shape(x)[:-1] + (self.sizes[-1],))

    def __call__(self, t, y):
        return self.forward(y)

    def forward_and_backward(self, x, v):
        """``(output, v . df/dx, [v . df/dtheta_i])``: the output and the VJP from one forward pass."""
        xb = self._batch(x)
        dsigma = ACTIVATIONS[self.activation][1]
        out, hs, zs = self._forward_tape(xb)
        v = np.asarray(v, float).reshape(xb.shape[0], self.sizes[-1])
        grads = []
        for i in reversed(range(len(self.layers))):
            if i < len(self.layers) - 1:
                v = v * dsigma(zs[i], hs[i + 1])
            v, layer_grads = self.layers[i].vjp(hs[i], v)
            grads = layer_grads + grads
        return out.reshape(np.shape(x)[:-1] + (self.sizes[-1],)), v.reshape(np.shape(x)), grads

    def backward(self, x, v):
        """The VJP with respect to the input and the parameters: ``(v . df/dx, [v . df/dtheta_i])``."""
        return self.forward_and_backward(x, v)[1:]

    def vjp(self, t, y, v):
        """``(v . df/dy, [v . df/dtheta_i], v . df/dt)``; the last is ``0.0`` (autonomous)."""
        y_bar, params_bar = self.backward(y, v)
        return y_bar, params_bar, 0.0

    def value_and_vjp(self, t, y, v):
        """``(f(t, y), f.vjp(t, y, v))`` from a single forward pass (the adjoint method needs both)."""
        out, y_bar, params_bar = self.forward_and_backward(y, v)
        return out, (y_bar, params_bar, 0.0)

    def jvp(self, t, y, u):
        """``df/dy . u``: the tangent ``u`` pushed forward through every layer (forward mode)."""
        x = self._batch(y)
        sigma, dsigma = ACTIVATIONS[self.activation]
        du = np.asarray(u, float).reshape(x.shape)
        for i, layer in enumerate(self.layers):
            z, du = layer.forward(x), layer.jvp(du)
            if i < len(self.layers) - 1:
                x = sigma(z)
                du = dsigma(z, x) * du
        return du.reshape(np.shape(y)[:-1] + (self.sizes[-1],))


def _append_column(y, value):
    """``y`` with one more feature holding ``value`` in every row: ``[y, value]``."""
    y = np.asarray(y, dtype=float)
    return np.concatenate([y, np.full(y.shape[:-1] + (1,), float(value))], axis=-1)


class TimeMLP:
    """A time-dependent field ``f(t, y) = MLP([y, t])``: the time is one more input feature of every row.

    Chen et al. (2018) feed ``t`` to the dynamics in the same way.  Because ``f`` depends on ``t``, its
    VJP has a non-zero last entry ``v . df/dt``, summed over the batch.

    Args:
        sizes: layer widths with the state dimension first, e.g. ``[2, 50, 2]``; the first layer
            takes ``sizes[0] + 1`` inputs.
        activation: a name in :data:`ACTIVATIONS`.
        rng: the random generator for the initial weights.

    Example:
        >>> f = TimeMLP([2, 16, 2])
        >>> f(0.5, np.zeros((5, 2))).shape
        (5, 2)
    """

    def __init__(self, sizes, activation="tanh", rng=None):
        sizes = _check_sizes(sizes)
        self.sizes = sizes
        self.net = MLP([sizes[0] + 1] + list(sizes[1:]), activation, rng)

    @property
    def params(self):
        """The parameters of the inner MLP, ``[W1, b1, ...]``; ``W1`` has a last column for ``t``."""
        return self.net.params

    def _input(self, t, y):
        if np.shape(y)[-1:] != (self.sizes[0],):
            raise ValueError(f"expected y with last dimension {self.sizes[0]}, got shape {np.shape(y)}")
        return _append_column(y, t)

    def __call__(self, t, y):
        return self.net.forward(self._input(t, y))

    def vjp(self, t, y, v):
        """``(v . df/dy, [v . df/dtheta_i], v . df/dt)``: the input cotangent split into ``y`` and ``t``."""
        return self.value_and_vjp(t, y, v)[1]

    def value_and_vjp(self, t, y, v):
        """``(f(t, y), f.vjp(t, y, v))`` from a single forward pass."""
        out, x_bar, params_bar = self.net.forward_and_backward(self._input(t, y), v)
        return out, (x_bar[..., :-1], params_bar, float(np.sum(x_bar[..., -1])))

    def jvp(self, t, y, u):
        """``df/dy . u``: the MLP's JVP with a zero tangent for the time feature."""
        return self.net.jvp(t, self._input(t, y), _append_column(u, 0.0))


class CubeInputMLP:
    """The field ``f(t, y) = MLP(y**3)`` of the spiral demonstration in torchdiffeq's ``ode_demo``.

    The true spiral dynamics are ``dy/dt = (y**3) @ A``; a network that sees ``y**3`` only has to learn
    a map close to linear.  Autonomous: the VJP's last entry is ``0.0``.

    Args:
        sizes, activation, rng: as for :class:`MLP`.

    Example:
        >>> f = CubeInputMLP([2, 50, 2])
        >>> f(0.0, np.ones(2)).shape
        (2,)
    """

    def __init__(self, sizes, activation="tanh", rng=None):
        self.net = MLP(sizes, activation, rng)
        self.sizes = self.net.sizes

    @property
    def params(self):
        return self.net.params

    def __call__(self, t, y):
        return self.net.forward(np.asarray(y, dtype=float) ** 3)

    def vjp(self, t, y, v):
        """``(v . df/dy, [v . df/dtheta_i], 0.0)``, by the chain rule ``d(y**3)/dy = 3 y**2``."""
        return self.value_and_vjp(t, y, v)[1]

    def value_and_vjp(self, t, y, v):
        """``(f(t, y), f.vjp(t, y, v))`` from a single forward pass."""
        y = np.asarray(y, dtype=float)
        out, x_bar, params_bar = self.net.forward_and_backward(y**3, v)
        return out, (3.0 * y**2 * x_bar, params_bar, 0.0)

    def jvp(self, t, y, u):
        """``df/dy . u = MLP'(y**3) . (3 y**2 u)``."""
        y = np.asarray(y, dtype=float)
        return self.net.jvp(t, y**3, 3.0 * y**2 * np.asarray(u, dtype=float))


class ScaledField:
    """The field ``f(t, y) = scale * field(t, y)``: a network's outputs multiplied by fixed scales.

    Stiff dynamics have rates of very different sizes; a network whose outputs are multiplied by
    scales of those sizes can learn them with weights of order one; Kim et al. (2021) name this
    scaling of the outputs among the techniques that make stiff neural ODEs trainable.  ``scale`` is
    a number, or an array broadcast against the last axis (one scale per state component).  The
    parameters are the inner field's.

    Args:
        field: dynamics under the protocol (``__call__``, ``params``, ``vjp``; ``jvp`` if offered).
        scale: a finite number or array of them, broadcast over the output's last axis.

    Example:
        >>> f = ScaledField(MLP([2, 8, 2]), [1.0, 100.0])
        >>> bool(np.allclose(f(0.0, np.ones(2)), [1.0, 100.0] * f.field(0.0, np.ones(2))))
        True
    """

    def __init__(self, field, scale):
        if not callable(field) or not callable(getattr(field, "vjp", None)):
            raise TypeError("field must follow the dynamics protocol: field(t, y), field.params, field.vjp")
        given = scale
        try:
            scale = np.asarray(scale, dtype=float)
        except (TypeError, ValueError):
            scale = np.array([np.nan])
        if scale.ndim > 1 or not np.all(np.isfinite(scale)):
            raise ValueError(f"scale must be a finite number or a 1-D array of them, got {given!r:.60}")
        outputs = getattr(field, "sizes", [None])[-1]
        if scale.ndim == 1 and outputs is not None and scale.size not in (1, outputs):
            raise ValueError(f"scale has {scale.size} entries; the field has {outputs} outputs")
        self.field, self.scale = field, scale
        if not callable(getattr(field, "jvp", None)):
            self.jvp = None             # nothing to scale: implicit methods difference f instead

    @property
    def params(self):
        return self.field.params

    def __call__(self, t, y):
        return self.field(t, y) * self.scale

    def vjp(self, t, y, v):
        """``(v . df/dy, [v . df/dtheta_i], v . df/dt)``: the inner field's VJP of ``v * scale``."""
        return self.field.vjp(t, y, np.asarray(v, dtype=float) * self.scale)

    def value_and_vjp(self, t, y, v):
        """``(f(t, y), f.vjp(t, y, v))``, in one pass where the inner field offers it."""
        both = getattr(self.field, "value_and_vjp", None)
        if both is None:
            return self(t, y), self.vjp(t, y, v)
        value, out = both(t, y, np.asarray(v, dtype=float) * self.scale)
        return value * self.scale, out

    def jvp(self, t, y, u):
        """``df/dy . u = scale * (dfield/dy . u)``."""
        return self.field.jvp(t, y, u) * self.scale
