"""Models built on a solve, or on a stack of layers: ResNets, ODE-Nets and their classifiers.

The layers and vector fields they are made of live in :mod:`neuralode.nn`; the solve and its
gradient in :mod:`neuralode.solver` and :mod:`neuralode.gradients`.  Imports run one way, from these
models down to the solver: nothing below imports this module.
"""

import numpy as np

from .errors import check_int, check_number
from .gradients import SOLVER_OPTIONS, check_options, odeint_vjp
from .nn import MLP, Linear
from .regularise import KineticEnergy
from .solver import odeint


def augment(x, extra):
    """Append ``extra`` zero features to every row: the initial state ``[x, 0]`` of an augmented neural ODE.

    Dupont, Doucet & Teh (2019) lift ``x`` in ``R^d`` to ``R^(d + p)`` so that the flow has room to move
    points past one another.  ``augment`` and :func:`strip` are linear maps and each other's transpose,
    so the VJP of ``augment`` is ``strip`` and the VJP of ``strip`` is ``augment``.

    Example:
        >>> augment(np.ones((2, 2)), 1)
        array([[1., 1., 0.],
               [1., 1., 0.]])
    """
    extra, x = check_int("extra", extra, minimum=0), _features("x", x)
    return np.concatenate([x, np.zeros(x.shape[:-1] + (extra,))], axis=-1)


def _features(name, x):
    """``x`` as a float array with at least one axis of features, or a ``ValueError`` naming it."""
    x = np.asarray(x, dtype=float)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"{name} must have a last axis of features, got shape {x.shape}")
    return x


def strip(z, dim):
    """Keep the first ``dim`` features of every row: the inverse of :func:`augment` on its image.

    Example:
        >>> strip(np.arange(6.0).reshape(2, 3), 2)
        array([[0., 1.],
               [3., 4.]])
    """
    z = _features("z", z)
    dim = check_int("dim", dim)
    if dim > z.shape[-1]:
        raise ValueError(f"dim = {dim} is more than the {z.shape[-1]} features of z")
    return z[..., :dim]


class ResNet:
    """A residual network ``h <- h + g_i(h)``, each block ``g_i`` an :class:`MLP` ``[dim, hidden, dim]``.

    Each residual block is one Euler step of size 1 of ``dh/dt = g_i(h)`` (Chen et al., 2018, Eq. 1),
    with its own parameters.  A feed-forward model, not a field: ``forward(x)`` and ``backward(x, v)``.

    Args:
        dim: the width of the state ``h``.
        hidden: the hidden width of every block.
        n_blocks: the number of residual blocks.
        activation: a name in :data:`ACTIVATIONS`.
        rng: the random generator for the initial weights.

    Example:
        >>> net = ResNet(2, 8, 3)
        >>> net.forward(np.zeros((4, 2))).shape
        (4, 2)
    """

    def __init__(self, dim, hidden, n_blocks, activation="tanh", rng=None):
        n_blocks, dim, hidden = check_int("n_blocks", n_blocks), check_int("dim", dim), check_int("hidden", hidden)
        rng = np.random.default_rng(0) if rng is None else rng
        self.dim = dim
        self.blocks = [MLP([dim, hidden, dim], activation, rng) for _ in range(n_blocks)]

    @property
    def params(self):
        """Every block's ``[W1, b1, W2, b2]``, block after block."""
        return [p for block in self.blocks for p in block.params]

    def states(self, x):
        """The hidden states ``[h_0 = x, h_1, ..., h_n]``, one after every block."""
        hs = [np.asarray(x, dtype=float)]
        for block in self.blocks:
            hs.append(hs[-1] + block.forward(hs[-1]))
        return hs

    def forward(self, x):
        """The output ``h_n``."""
        return self.states(x)[-1]

    def backward(self, x, v):
        """The VJP ``(v . dh_n/dx, [v . dh_n/dtheta_i])``: through each block, ``v <- v + v . dg_i/dh``."""
        hs = self.states(x)
        v, params_bar = np.asarray(v, dtype=float), []
        for block, h in zip(reversed(self.blocks), reversed(hs[:-1])):
            h_bar, block_bar = block.backward(h, v)
            v = v + h_bar
            params_bar = block_bar + params_bar
        return v, params_bar

    def jvp(self, x, u):
        """``dh_n/dx . u``: the tangent carried forward, ``u <- u + dg_i/dh . u``."""
        h, u = np.asarray(x, dtype=float), np.asarray(u, dtype=float)
        for block in self.blocks:
            h, u = h + block.forward(h), u + block.jvp(0.0, h, u)
        return u


class ODENet:
    """A classifier ``x -> z(t0) = [x, 0] -> z(t1) -> logits = head(z(t1))``: an ODE-Net.

    The features are the flow of ``dz/dt = field(t, z)`` over ``[t0, t1] = [0, t1]`` (Chen et al.,
    2018, Section 3); with ``extra > 0`` the state is augmented by zeros (Dupont et al., 2019).  The
    head is a :class:`Linear` layer to ``n_classes`` logits.

    Args:
        field: dynamics on ``dim + extra`` features, e.g. ``MLP([dim + extra, 32, dim + extra])``.
        dim: the number of input features.
        n_classes: the number of classes.
        extra: the number of zero features appended to ``x``.
        t1: the end time of the flow.
        kinetic: the weight ``lambda`` of the kinetic-energy regulariser (Finlay et al., 2020):
            :meth:`forward_vjp`'s gradient is that of ``loss + lambda E``, with
            ``E = integral of ||f||^2 dt`` per example (:class:`~neuralode.regularise.KineticEnergy`).
        rng: the random generator for the head's initial weights.
        **solver: options of :func:`~neuralode.odeint_vjp` (``gradient``, ``method``, ``rtol``, ``atol``,
            ``step_size``, ``max_num_steps``, and the gradient mode's own: ``norm``, ``checkpoints``...),
            checked here, when the model is built.  :meth:`forward_vjp` passes them all on;
            :meth:`forward` and :meth:`flow` solve without a gradient and pass only those
            :func:`~neuralode.odeint` takes (:data:`~neuralode.gradients.SOLVER_OPTIONS`).
    """

    def __init__(self, field, dim, n_classes, *, extra=0, t1=1.0, kinetic=0.0, rng=None, **solver):
        if not callable(field):
            raise TypeError(f"field must be dynamics f(t, z) with params, got {type(field).__name__}")
        dim, extra, n_classes = check_int("dim", dim), check_int("extra", extra, minimum=0), check_int("n_classes", n_classes)
        if check_number("t1", t1) == 0:
            raise ValueError("t1 must differ from t0 = 0, or the flow does nothing")
        state = getattr(field, "sizes", [dim + extra])[0]
        if state != dim + extra:
            raise ValueError(f"the field acts on {state} features, but dim + extra = {dim + extra}")
        if check_number("kinetic", kinetic) < 0:
            raise ValueError(f"kinetic must be >= 0, got {kinetic}")
        rng = np.random.default_rng(0) if rng is None else rng
        self.field, self.dim, self.extra, self.t1 = field, dim, int(extra), float(t1)
        self.kinetic = float(kinetic)
        self.head = Linear(dim + extra, n_classes, rng)
        self.solver = {"gradient": "adjoint", "rtol": 1e-5, "atol": 1e-6, **solver}
        check_options(**self.solver)

    @property
    def params(self):
        """The field's parameters followed by the head's ``[W, b]``."""
        return self.field.params + self.head.params

    def flow(self, x, t):
        """The augmented states ``z(t)`` at the times ``t`` (from ``t[0]``), shape ``(len(t), n, dim + extra)``."""
        options = {k: v for k, v in self.solver.items() if k in SOLVER_OPTIONS}
        return odeint(self.field, augment(x, self.extra), t, **options)

    def forward(self, x):
        """The logits, shape ``(n, n_classes)``."""
        return self.head.forward(self.flow(x, [0.0, self.t1])[-1])

    def forward_vjp(self, x):
        """The logits and a pullback ``logits_bar -> (x_bar, params_bar)`` through the head and the flow.

        The loss depends on the flow only through ``z(t1)``, so the cotangent of the trajectory is
        zero at ``t0`` and ``head``'s input cotangent at ``t1``.  ``pullback.flow`` is the flow's own
        :class:`~neuralode.gradients.Pullback`, which reports ``nfe_forward`` and ``nfe_backward``;
        ``pullback.energy`` is the kinetic energy ``E`` of the flow when ``kinetic > 0`` (else ``None``).
        """
        z0, times = augment(x, self.extra), np.array([0.0, self.t1])
        if self.kinetic == 0.0:
            zs, flow_pullback = odeint_vjp(self.field, z0, times, **self.solver)
            z1, energy = zs[-1], None
        else:
            reg = KineticEnergy(self.field, z0.shape)
            zs, flow_pullback = odeint_vjp(reg, reg.pack(z0), times, **self.solver)
            z1, energy = reg.unpack(zs[-1])
        logits = self.head.forward(z1)

        def pullback(logits_bar):
            z1_bar, head_bar = self.head.vjp(z1, logits_bar)
            zs_bar = np.zeros_like(zs)
            zs_bar[-1] = z1_bar if energy is None else np.append(z1_bar.ravel(), self.kinetic)
            z0_bar, field_bar, _ = flow_pullback(zs_bar)
            z0_bar = z0_bar if energy is None else z0_bar[:-1].reshape(z0.shape)
            return strip(z0_bar, self.dim), list(field_bar) + head_bar

        pullback.flow, pullback.energy = flow_pullback, energy
        return logits, pullback


class ResNetClassifier:
    """The discrete counterpart of :class:`ODENet`: ``x -> ResNet -> Linear head -> logits``.

    Args:
        dim, hidden, n_blocks, activation: as for :class:`ResNet`.
        n_classes: the number of classes.
        rng: the random generator for the initial weights.
    """

    def __init__(self, dim, hidden, n_blocks, n_classes, activation="tanh", rng=None):
        n_classes, rng = check_int("n_classes", n_classes), np.random.default_rng(0) if rng is None else rng
        self.body = ResNet(dim, hidden, n_blocks, activation, rng)
        self.head = Linear(dim, n_classes, rng)

    @property
    def params(self):
        """The blocks' parameters followed by the head's ``[W, b]``."""
        return self.body.params + self.head.params

    def forward(self, x):
        """The logits, shape ``(n, n_classes)``."""
        return self.head.forward(self.body.forward(x))

    def forward_vjp(self, x):
        """The logits and a pullback ``logits_bar -> (x_bar, params_bar)``."""
        h = self.body.forward(x)

        def pullback(logits_bar):
            h_bar, head_bar = self.head.vjp(h, logits_bar)
            x_bar, body_bar = self.body.backward(x, h_bar)
            return x_bar, body_bar + head_bar

        return self.head.forward(h), pullback
