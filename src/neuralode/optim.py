"""Optimisers that update a model's parameter arrays in place from gradients handed to them.

There is no hidden ``.grad`` state: a gradient is computed by a VJP, passed to ``step``, and used once.
:class:`SGD` and :class:`Adam` take one step per call; :func:`minimize_lbfgs` runs a whole quasi-Newton
minimisation (SciPy's L-BFGS-B) for problems small and smooth enough to profit from curvature.
"""

import sys
from typing import NamedTuple

import numpy as np

from .errors import IntegrationError, check_int, check_number
from .params import ravel_params, unravel_params


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


def _check(params, grads, finite=True):
    if isinstance(grads, np.ndarray) or not hasattr(grads, "__len__"):
        raise TypeError(f"grads must be a list of arrays, one per parameter, got {type(grads).__name__}")
    if len(grads) != len(params):
        raise ValueError(f"expected {len(params)} gradient arrays, got {len(grads)}")
    for i, (p, g) in enumerate(zip(params, grads)):
        if np.shape(g) != p.shape:
            raise ValueError(f"gradient {i} has shape {np.shape(g)}, its parameter {p.shape}")
        if finite and not np.all(np.isfinite(g)):
            raise ValueError(f"gradient {i} contains NaN or infinity; lower the learning rate or check the loss")


FAILED_SOLVE_LOSS = 1e10
"""The loss :func:`minimize_lbfgs` reports for a trial point where the solve failed: larger than any loss
a fit meets, and finite, so that the line search shortens its step instead of stopping."""


class LBFGSResult(NamedTuple):
    """What :func:`minimize_lbfgs` did: the final ``loss``, iterations, evaluations, SciPy's message, and
    ``losses``, the loss after every iteration."""

    loss: float
    n_iter: int
    n_evals: int
    message: str
    losses: list


def minimize_lbfgs(loss_and_grads, params, *, max_iter=100, bounds=None, report_every=None, stream=None):
    """Minimise ``loss_and_grads()`` over the arrays ``params``, in place, with SciPy's L-BFGS-B.

    L-BFGS (Liu & Nocedal 1989; L-BFGS-B: Byrd, Lu, Nocedal & Zhu 1995) builds a picture of the loss's
    curvature from the last few gradients and takes a line search along the resulting direction.  On a
    small smooth problem (a few rates, a small network) it needs far fewer evaluations than Adam, and it
    wants the gradient of exactly the loss it evaluates.  A trial point whose solve fails
    (:class:`~neuralode.IntegrationError`) or whose loss or gradient overflows counts as the loss
    :data:`FAILED_SOLVE_LOSS` with a zero gradient, so the line search steps back (an infinite loss would
    stop SciPy's line search); at the starting point the same failures are raised.

    Args:
        loss_and_grads: a function of no arguments returning ``(loss, grads)`` at the current values of
            ``params``, ``grads`` one array per parameter array.
        params: the parameter arrays (float NumPy arrays, updated in place; at the end they hold the best
            point found).
        max_iter: the most iterations.
        bounds: ``None``, or one ``(low, high)`` pair per parameter array (``None`` for no bound), applied
            to each of its entries.
        report_every: print ``iter k | loss ...`` every that many iterations (``None``: silent).
        stream: where progress lines go (default ``sys.stdout``).

    Returns:
        An :class:`LBFGSResult`.

    Example:
        >>> x = np.array([3.0, -1.0])
        >>> result = minimize_lbfgs(lambda: (float(np.sum((x - 1.0) ** 2)), [2.0 * (x - 1.0)]), [x])
        >>> bool(np.allclose(x, 1.0, atol=1e-6)), result.loss < 1e-10
        (True, True)
    """
    from scipy.optimize import minimize

    params = _param_list(params)
    max_iter = check_int("max_iter", max_iter)
    if not callable(loss_and_grads):
        raise TypeError(f"loss_and_grads must be a function of no arguments, got {type(loss_and_grads).__name__}")
    box = _lbfgs_bounds(bounds, params)
    losses, stream = [], sys.stdout if stream is None else stream
    fun = _trial_loss(loss_and_grads, params)

    def callback(intermediate_result):
        losses.append(float(intermediate_result.fun))
        if report_every and len(losses) % report_every == 0:
            print(f"iter {len(losses):4d} | loss {losses[-1]:.6f}", file=stream)

    result = minimize(fun, ravel_params(params), jac=True, method="L-BFGS-B", bounds=box,
                      callback=callback, options={"maxiter": max_iter})
    for p, q in zip(params, unravel_params(result.x, params)):
        p[...] = q
    return LBFGSResult(float(result.fun), int(result.nit), int(result.nfev), str(result.message), losses)


def _trial_loss(loss_and_grads, params):
    """The function SciPy minimises: ``w -> (loss, flat gradient)``, with ``w`` written into ``params``.

    The starting point must evaluate: a failed solve or a non-finite loss or gradient there is raised.
    At later trial points they count as :data:`FAILED_SOLVE_LOSS`, a point the line search must avoid;
    overflow warnings are silenced because the result is checked instead.
    """
    calls = []

    def fun(w):
        for p, q in zip(params, unravel_params(w, params)):
            p[...] = q
        first = not calls
        calls.append(1)
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                loss, grads = loss_and_grads()
        except IntegrationError:
            if first:
                raise
            return FAILED_SOLVE_LOSS, np.zeros_like(w)
        _check(params, grads, finite=False)
        loss, flat = float(loss), ravel_params(grads)
        if np.isfinite(loss) and np.all(np.isfinite(flat)):
            return loss, flat
        if first:
            raise ValueError(f"loss_and_grads returned a non-finite loss or gradient at the starting point "
                             f"(loss {loss}); check the model and the data")
        return FAILED_SOLVE_LOSS, np.zeros_like(w)

    return fun


def _lbfgs_bounds(bounds, params):
    """One ``(low, high)`` per scalar parameter, from one pair per parameter array (or ``None``)."""
    if bounds is None:
        return None
    if not isinstance(bounds, (list, tuple)) or len(bounds) != len(params):
        raise ValueError(f"bounds must be a list of {len(params)} (low, high) pairs, one per parameter array")
    box = []
    for i, (pair, p) in enumerate(zip(bounds, params)):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise ValueError(f"bounds[{i}] must be a pair (low, high), got {pair!r}")
        low, high = (None if b is None else check_number(f"bounds[{i}]", b) for b in pair)
        if low is not None and high is not None and low > high:
            raise ValueError(f"bounds[{i}] has low > high: {pair!r}")
        box += [(low, high)] * p.size
    return box
