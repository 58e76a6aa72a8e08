"""Optimisers that update a model's parameter arrays in place from gradients handed to them.

There is no hidden ``.grad`` state: a gradient is computed by a VJP, passed to ``step``, and used once.
"""

import numpy as np

from .errors import check_number


def _param_list(params):
    """The parameter arrays as a list of float NumPy arrays (updated in place), or a ``TypeError``."""
    params = list(params)
    for i, p in enumerate(params):
        if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
            raise TypeError(f"params[{i}] must be a float NumPy array (updated in place), got {type(p).__name__}")
    return params


class SGD:
    """Gradient descent: ``theta <- theta - lr * g``.

    Example:
        >>> p = [np.array([1.0])]
        >>> SGD(p, lr=0.5).step([np.array([2.0])]); p[0]
        array([0.])
    """

    def __init__(self, params, lr=1e-2):
        self.params, self.lr = _param_list(params), check_number("lr", lr, low=0.0, strict=True)

    def step(self, grads):
        """Apply one update with the gradients ``grads`` (one array per parameter array)."""
        _check(self.params, grads)
        for p, g in zip(self.params, grads):
            p -= self.lr * g


class Adam:
    """Adam (Kingma & Ba, 2015): gradient descent with per-coordinate step sizes from running moments.

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``, and
    ``theta <- theta - lr * m_hat / (sqrt(v_hat) + eps)`` with the bias corrections
    ``m_hat = m / (1 - b1^k)``, ``v_hat = v / (1 - b2^k)`` at step ``k``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr = _param_list(params), check_number("lr", lr, low=0.0, strict=True)
        self.betas, self.eps = _check_betas(betas), check_number("eps", eps, low=0.0, strict=True)
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.k = 0

    def step(self, grads):
        """Apply one update with the gradients ``grads`` (one array per parameter array)."""
        _check(self.params, grads)
        b1, b2 = self.betas
        self.k += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1**self.k), v / (1 - b2**self.k)
            p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def _check_betas(betas):
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    b1, b2 = (check_number(f"betas[{i}]", b, low=0.0) for i, b in enumerate(betas))
    if not (b1 < 1 and b2 < 1):
        raise ValueError(f"betas must lie in [0, 1), got {betas!r}")
    return b1, b2


def _check(params, grads):
    if isinstance(grads, np.ndarray) or not hasattr(grads, "__len__"):
        raise TypeError(f"grads must be a list of arrays, one per parameter, got {type(grads).__name__}")
    if len(grads) != len(params):
        raise ValueError(f"expected {len(params)} gradient arrays, got {len(grads)}")
    for i, (p, g) in enumerate(zip(params, grads)):
        if np.shape(g) != p.shape:
            raise ValueError(f"gradient {i} has shape {np.shape(g)}, its parameter {p.shape}")
        if not np.all(np.isfinite(g)):
            raise ValueError(f"gradient {i} contains NaN or infinity; lower the learning rate or check the loss")
