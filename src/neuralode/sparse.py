"""Sparse regression: reading a formula back from samples of a function (SINDy).

Given states ``X`` (one per row) and the values ``Y`` of some unknown function at them (derivatives
``dX/dt``, or the outputs of a learned term), sparse identification of nonlinear dynamics (SINDy,
Brunton, Proctor & Kutz 2016) looks for a few columns of a library ``Theta(X)`` of candidate terms that
explain ``Y``::

    Y  ~  Theta(X) Xi,    with most entries of Xi exactly zero.

* :class:`MonomialLibrary` evaluates every monomial of the state up to a degree and names it
  (``"1"``, ``"x"``, ``"x y"``, ``"y^2"``...), so a coefficient matrix reads as equations;
* :func:`stlsq` is the sequentially thresholded least-squares of Brunton et al.: fit by least squares,
  zero every coefficient smaller than a threshold, refit the survivors, and repeat until the set of
  surviving terms stops changing.

When it cannot work, it says so or the caller can see it: a library whose columns are linearly
dependent on the data (states that all lie on a line, say) has no unique answer, and :func:`stlsq`
refuses it; a threshold above a true coefficient removes that term; noise larger than the threshold
can keep spurious ones.  The threshold applies to the raw coefficients, so it depends on the units of
the library's columns.

References:
    Brunton, Proctor & Kutz (2016), Discovering governing equations from data by sparse identification
    of nonlinear dynamical systems, PNAS 113(15).
    Zhang & Schaeffer (2019), On the convergence of the SINDy algorithm, Multiscale Model. Simul.
"""

from itertools import combinations_with_replacement

import numpy as np

from .errors import check_int, check_number


class MonomialLibrary:
    """Every monomial of ``n_vars`` variables of total degree ``0..degree``, with readable names.

    Terms are ordered by degree, then as ``itertools.combinations_with_replacement`` lists them:
    ``1, x, y, x^2, x y, y^2, x^3, ...`` for two variables named ``x`` and ``y``.

    Args:
        n_vars: the number of variables (columns of the states).
        degree: the highest total degree (0 gives the constant alone).
        names: one name per variable (default ``x``, ``y``, ``z`` for up to three, else ``x1, x2, ...``).

    Attributes:
        powers: integer array ``(n_terms, n_vars)``; term ``k`` is ``prod_j x_j ** powers[k, j]``.
        names: the terms as strings, e.g. ``"x y^2"``.

    Example:
        >>> lib = MonomialLibrary(2, 2)
        >>> lib.names
        ['1', 'x', 'y', 'x^2', 'x y', 'y^2']
        >>> lib(np.array([[2.0, 3.0]])).tolist()
        [[1.0, 2.0, 3.0, 4.0, 6.0, 9.0]]
    """

    def __init__(self, n_vars, degree, names=None):
        self.n_vars = check_int("n_vars", n_vars)
        self.degree = check_int("degree", degree, minimum=0)
        self.variables = _variable_names(self.n_vars, names)
        rows = [np.bincount(np.array(c, dtype=int), minlength=self.n_vars)
                for d in range(self.degree + 1) for c in combinations_with_replacement(range(self.n_vars), d)]
        self.powers = np.array(rows, dtype=int).reshape(-1, self.n_vars)
        self.names = [_monomial_name(p, self.variables) for p in self.powers]

    def __len__(self):
        return len(self.powers)

    def __call__(self, X):
        """``Theta(X)``: the terms evaluated at every row of ``X`` (shape ``(n, n_vars)``), shape ``(n, n_terms)``."""
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_vars:
            raise ValueError(f"X must have shape (n, {self.n_vars}), one state per row; got {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError("X must contain only finite values")
        return np.prod(X[:, None, :] ** self.powers[None, :, :], axis=2)

    def equations(self, Xi, lhs=None, digits=3):
        """Read a coefficient matrix as equations, e.g. ``["dx/dt = 1.000 x - 0.500 x y", ...]``.

        Args:
            Xi: coefficients, shape ``(n_terms,)`` or ``(n_terms, m)``, one column per equation.
            lhs: the left-hand side of each equation (default ``"y1"``, ``"y2"``, ...).
            digits: decimals printed for each coefficient.

        Example:
            >>> lib = MonomialLibrary(2, 2)
            >>> lib.equations(np.array([0, 1.0, 0, 0, -0.5, 0]), ["dx/dt"])
            ['dx/dt = 1.000 x - 0.500 x y']
        """
        Xi = _coefficients(Xi, len(self))
        lhs = [f"y{j + 1}" for j in range(Xi.shape[1])] if lhs is None else list(lhs)
        if len(lhs) != Xi.shape[1]:
            raise ValueError(f"lhs must name {Xi.shape[1]} equations, got {len(lhs)}")
        return [f"{name} = {_sum_of_terms(Xi[:, j], self.names, digits)}" for j, name in enumerate(lhs)]


def _variable_names(n_vars, names):
    if names is None:
        return ["x", "y", "z"][:n_vars] if n_vars <= 3 else [f"x{j + 1}" for j in range(n_vars)]
    names = list(names)
    if len(names) != n_vars or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"names must be {n_vars} non-empty strings, one per variable; got {names!r}")
    return names


def _monomial_name(powers, variables):
    factors = [v if p == 1 else f"{v}^{p}" for v, p in zip(variables, powers) if p > 0]
    return " ".join(factors) if factors else "1"


def _sum_of_terms(column, names, digits):
    terms = [(c, n) for c, n in zip(column, names) if c != 0]
    if not terms:
        return "0"
    text = ""
    for i, (c, name) in enumerate(terms):
        sign = ("-" if c < 0 else "") if i == 0 else (" - " if c < 0 else " + ")
        text += f"{sign}{abs(c):.{digits}f}" + ("" if name == "1" else f" {name}")
    return text


def _coefficients(Xi, n_terms):
    Xi = np.asarray(Xi, dtype=float)
    Xi = Xi[:, None] if Xi.ndim == 1 else Xi
    if Xi.ndim != 2 or Xi.shape[0] != n_terms:
        raise ValueError(f"Xi must have shape ({n_terms},) or ({n_terms}, m), one row per term; got {Xi.shape}")
    return Xi


def _check_regression(Theta, Y):
    """``Theta`` (n, p) and ``Y`` (n, m) as finite float arrays, or a ``ValueError`` naming the problem."""
    Theta, Y = np.asarray(Theta, dtype=float), np.asarray(Y, dtype=float)
    if Theta.ndim != 2 or Theta.shape[1] == 0:
        raise ValueError(f"Theta must have shape (n_samples, n_terms), got {Theta.shape}")
    Y = Y[:, None] if Y.ndim == 1 else Y
    if Y.ndim != 2 or Y.shape[0] != Theta.shape[0]:
        raise ValueError(f"Y must have shape ({Theta.shape[0]},) or ({Theta.shape[0]}, m), one row per "
                         f"sample of Theta; got {np.shape(Y)}")
    if not (np.all(np.isfinite(Theta)) and np.all(np.isfinite(Y))):
        raise ValueError("Theta and Y must contain only finite values")
    n, p = Theta.shape
    rank = np.linalg.matrix_rank(Theta)
    if rank < p:
        raise ValueError(f"the library's {p} columns are linearly dependent on these {n} samples (rank {rank}): "
                         "the coefficients are not determined. Sample more varied states or drop terms")
    return Theta, Y


def stlsq(Theta, Y, threshold, max_iter=10):
    """Sequentially thresholded least squares (Brunton et al. 2016): sparse ``Xi`` with ``Y ~ Theta Xi``.

    Start from the least-squares solution; then, each round, set every coefficient with
    ``|Xi| < threshold`` to zero and refit each column of ``Y`` by least squares on its surviving terms.
    Stop when no coefficient crosses the threshold any more (the supports are fixed), or after ``max_iter``
    rounds.  With exact data from a sparse model whose nonzero coefficients all exceed ``threshold`` in
    size, the first fit is exact, the zeros fall below the threshold, and the refit returns the model.

    Args:
        Theta: the library evaluated at the samples, shape ``(n_samples, n_terms)``, with linearly
            independent columns (else a ``ValueError``: the answer would not be unique).
        Y: the values to explain, shape ``(n_samples,)`` or ``(n_samples, m)``.
        threshold: the smallest coefficient size kept (``>= 0``; ``0`` gives plain least squares).
        max_iter: the most thresholding rounds.

    Returns:
        ``Xi`` of shape ``(n_terms, m)`` (or ``(n_terms,)`` for a 1-D ``Y``).

    Example:
        >>> x = np.linspace(-1.0, 1.0, 9)
        >>> Theta = np.stack([np.ones_like(x), x, x**2], axis=1)
        >>> stlsq(Theta, 2.0 * x**2, threshold=0.1).round(12).tolist()
        [0.0, 0.0, 2.0]
    """
    one_column = np.ndim(Y) == 1
    Theta, Y = _check_regression(Theta, Y)
    threshold = check_number("threshold", threshold, low=0.0)
    max_iter = check_int("max_iter", max_iter, minimum=0)
    Xi = np.linalg.lstsq(Theta, Y, rcond=None)[0]
    for _ in range(max_iter):
        keep = np.abs(Xi) >= threshold
        if np.array_equal(keep, Xi != 0):
            break
        Xi = _refit(Theta, Y, keep)
    return Xi[:, 0] if one_column else Xi


def _refit(Theta, Y, keep):
    """Least squares for each column of ``Y`` on the terms ``keep[:, j]`` only; zeros elsewhere."""
    Xi = np.zeros((Theta.shape[1], Y.shape[1]))
    for j in range(Y.shape[1]):
        if keep[:, j].any():
            Xi[keep[:, j], j] = np.linalg.lstsq(Theta[:, keep[:, j]], Y[:, j], rcond=None)[0]
    return Xi
