"""Optimisers that update a model's parameter arrays in place from gradients handed to them.

There is no hidden ``.grad`` state: a gradient is computed by a VJP, passed to ``step``, and used once.
"""

import numpy as np


class SGD:
    """Gradient descent: ``theta <- theta - lr * g``.

    Example:
        >>> p = [np.array([1.0])]
        >>> SGD(p, lr=0.5).step([np.array([2.0])]); p[0]
        array([0.])
    """

    def __init__(self, params, lr=1e-2):
        self.params, self.lr = list(params), float(lr)

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
        self.params, self.lr, self.betas, self.eps = list(params), float(lr), betas, eps
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


def _check(params, grads):
    if len(grads) != len(params):
        raise ValueError(f"expected {len(params)} gradient arrays, got {len(grads)}")
    for i, (p, g) in enumerate(zip(params, grads)):
        if np.shape(g) != p.shape:
            raise ValueError(f"gradient {i} has shape {np.shape(g)}, its parameter {p.shape}")
        if not np.all(np.isfinite(g)):
            raise ValueError(f"gradient {i} contains NaN or infinity; lower the learning rate or check the loss")
