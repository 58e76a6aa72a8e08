"""Regularisers that make learned dynamics cheaper to solve (Finlay et al. 2020).

A neural ODE is free to learn a field whose trajectories wiggle: it fits the data as well as a
straight one, and the adaptive solver pays for every wiggle with extra steps.  Finlay et al. (2020)
add to the loss the kinetic energy of the flow,

    E = integral from t0 to t1 of ||f(z(t), t)||^2 dt,

which is smallest for trajectories that move at constant speed along straight lines.  The integral
is computed by the solver itself, as one more coordinate of the state whose derivative is
``||f||^2``, so any of ``odeint_vjp``'s gradients differentiates it with the rest.
"""

import numpy as np

from .errors import check_array, check_int
from .protocol import check_dynamics, check_returned, check_vjp_output


class KineticEnergy:
    """The dynamics of ``[z, E]`` with ``dz/dt = f(t, z)`` and ``dE/dt = ||f(t, z)||^2 / B``.

    ``B`` is the batch size (the first axis of a 2-D state ``z``; 1 otherwise), so ``E`` is the mean
    kinetic energy of one trajectory.  The state is flat: ``z.ravel()`` followed by ``E``;
    :meth:`pack` and :meth:`unpack` convert.  It follows the dynamics protocol, so it can be passed
    to :func:`~neuralode.odeint_vjp` in place of ``f``; its VJP needs only ``f``'s, because the
    derivative of ``||f||^2 / B`` with respect to ``z`` is ``(2 / B) f . df/dz``.

    The wrapper flattens ``z``, so it checks what ``f`` and ``f.vjp`` return against ``shape`` on
    every call (:mod:`~neuralode.protocol`): a transposed result has the right size and would
    otherwise give a silently wrong energy or gradient.

    Args:
        f: dynamics following the protocol (``f(t, z)``, ``f.params``, ``f.vjp``).
        shape: the shape of ``z``.

    Example:
        >>> import neuralode as ne
        >>> from neuralode.nn import MLP
        >>> reg = KineticEnergy(MLP([2, 8, 2]), (5, 2))
        >>> ys = ne.odeint(reg, reg.pack(np.zeros((5, 2))), np.array([0.0, 1.0]))
        >>> z1, energy = reg.unpack(ys[-1])
        >>> z1.shape, bool(energy >= 0.0)
        ((5, 2), True)
    """

    def __init__(self, f, shape):
        if not callable(f) or not callable(getattr(f, "vjp", None)):
            raise ValueError("f must follow the dynamics protocol: f(t, y) and f.vjp(t, y, v)")
        check_dynamics(f)
        self.f, self.shape = f, _check_shape(shape)
        self.n = int(np.prod(shape))
        self.batch = shape[0] if len(shape) == 2 else 1

    @property
    def params(self):
        return self.f.params

    def pack(self, z0):
        """The initial state ``[z0.ravel(), 0]``."""
        z0 = check_array("z0", z0)
        if z0.shape != self.shape:
            raise ValueError(f"z0 must have shape {self.shape}, got {z0.shape}")
        return np.append(z0.ravel(), 0.0)

    def unpack(self, s):
        """``(z, E)`` from one flat state ``s`` (or ``(zs, Es)`` from a solution of several)."""
        s = check_array("s", s)
        if s.ndim == 0 or s.shape[-1] != self.n + 1:
            raise ValueError(f"the state's last axis must have length {self.n + 1}, got shape {s.shape}")
        return s[..., :-1].reshape(s.shape[:-1] + self.shape), s[..., -1]

    def _split(self, s):
        s = np.asarray(s)
        if s.shape != (self.n + 1,):
            raise ValueError(f"the state must be flat of length {self.n + 1}, got shape {s.shape}")
        return s[:-1].reshape(self.shape)

    def _value(self, t, z):
        return np.asarray(check_returned("f(t, z)", self.f(t, z), self.shape, t), dtype=float)

    def __call__(self, t, s):
        dz = self._value(t, self._split(s))
        return np.append(dz.ravel(), float(np.sum(dz * dz)) / self.batch)

    def vjp(self, t, s, v):
        """``v . d[f, ||f||^2/B]/d(z, E)``: ``f``'s VJP with the cotangent ``v_z + (2 v_E / B) f``."""
        z, v = self._split(s), np.asarray(v, dtype=float)
        if v.shape != (self.n + 1,):
            raise ValueError(f"v must be flat of length {self.n + 1}, got shape {v.shape}")
        v_z = v[:-1].reshape(self.shape) + (2.0 * v[-1] / self.batch) * self._value(t, z)
        z_bar, params_bar, t_bar = check_vjp_output("f.vjp(t, z, v)", self.f.vjp(t, z, v_z), self.shape, self.f.params)
        return np.append(np.ravel(z_bar), 0.0), params_bar, t_bar


def _check_shape(shape):
    """``shape`` as a non-empty tuple of positive integers, or a ``ValueError`` naming it."""
    if isinstance(shape, (str, bytes)) or shape is None:
        raise ValueError(f"shape must be a tuple of positive integers, got {shape!r}")
    dims = tuple(shape) if np.ndim(shape) else (shape,)
    try:
        dims = tuple(check_int(f"shape[{i}]", d) for i, d in enumerate(dims))
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a tuple of positive integers, got {shape!r}") from None
    if not dims:
        raise ValueError(f"shape must be a tuple of positive integers, got {shape!r}")
    return dims
