"""A model's parameters as one flat vector, and the helpers every model shares.

A model is anything with ``params``, a list of NumPy arrays.  Optimisers and finite differences want
them as one vector; :func:`ravel_params` and :func:`unravel_params` go back and forth.  This module
imports nothing of the engine, so layers (:mod:`neuralode.nn`), gradients and models can all use it.
"""

import numpy as np


def ravel_params(arrays):
    """Concatenate a list of arrays into one flat vector (the inverse of :func:`unravel_params`)."""
    if not arrays:
        return np.zeros(0)
    return np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays])


def unravel_params(vector, like):
    """Split a flat vector into arrays shaped like the arrays in ``like``."""
    out, start = [], 0
    for a in like:
        out.append(np.reshape(vector[start:start + a.size], a.shape))
        start += a.size
    return out


def count_params(model):
    """The number of scalar parameters of a model: ``sum(p.size for p in model.params)``."""
    return int(sum(p.size for p in model.params))


def init_normal(model, std=0.1, rng=None):
    """Re-initialise a model in place: every weight matrix ``N(0, std^2)``, every bias zero.

    torchdiffeq's ``ode_demo`` starts its field this way: with small weights the tanh units work in
    their linear range, and the initial field is close to zero.

    Args:
        model: anything with ``params``; 2-D arrays count as weights, 1-D arrays as biases.
        std: the standard deviation of the weights.
        rng: the random generator.

    Returns:
        The model, for chaining.

    Example:
        >>> from neuralode.nn import MLP
        >>> f = init_normal(MLP([2, 4, 2]), 0.1, np.random.default_rng(0))
        >>> float(np.abs(f.params[1]).max())
        0.0
    """
    rng = np.random.default_rng(0) if rng is None else rng
    for p in model.params:
        p[...] = std * rng.standard_normal(p.shape) if p.ndim == 2 else 0.0
    return model
