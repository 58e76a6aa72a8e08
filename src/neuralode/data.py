"""Toy data sets made in code, each drawn from a random generator the caller passes in.

* :func:`spiral`: a trajectory of the cubic spiral ``dy/dt = (y**3) @ A`` of torchdiffeq's
  ``ode_demo``, and :func:`trajectory_windows`, random short windows of it for minibatches;
* :func:`two_moons` and :func:`concentric_circles`: two-class point clouds in the plane, the second
  the set of Dupont, Doucet & Teh (2019) that no flow of the plane can separate linearly
  (:func:`concentric_spheres` in any dimension).
"""

from typing import NamedTuple

import numpy as np

from .errors import check_array, check_int, check_number, check_rng
from .solver import odeint

SPIRAL_A = np.array([[-0.1, 2.0], [-2.0, -0.1]])
"""The matrix ``A`` of the spiral dynamics ``dy/dt = (y**3) @ A``."""


def spiral_dynamics(t, y):
    """The true field of the spiral: ``dy/dt = (y**3) @ A`` with :data:`SPIRAL_A`, row-vector states."""
    return (np.asarray(y, dtype=float) ** 3) @ SPIRAL_A


def spiral(n_points=1000, t_max=25.0, *, y0=(2.0, 0.0), noise=0.0, rng=None, rtol=1e-10, atol=1e-12):
    """A trajectory of :func:`spiral_dynamics` at ``n_points`` equally spaced times in ``[0, t_max]``.

    Args:
        n_points: the number of output times.
        t_max: the end time.
        y0: the initial state.
        noise: the standard deviation of Gaussian noise added to every observation (``0`` for none).
        rng: the ``numpy.random.Generator`` for the noise (needed only if ``noise > 0``).
        rtol, atol: the tolerances of the reference solve (``dopri5``).

    Returns:
        ``(t, ys)``: times of shape ``(n_points,)`` and states of shape ``(n_points, 2)``.

    Example:
        >>> t, ys = spiral(100)
        >>> ys.shape, ys[0].tolist()
        ((100, 2), [2.0, 0.0])
    """
    noise, n_points = check_number("noise", noise, low=0.0), check_int("n_points", n_points, minimum=2)
    t = np.linspace(0.0, check_number("t_max", t_max, low=0.0, strict=True), n_points)
    ys = odeint(spiral_dynamics, np.asarray(y0, dtype=float), t, rtol=rtol, atol=atol)
    if noise > 0:
        if rng is None:
            raise ValueError("pass rng=np.random.default_rng(seed) to draw the noise")
        ys = ys + noise * check_rng(rng).standard_normal(ys.shape)
    return t, ys


class Windows(NamedTuple):
    """A minibatch of trajectory windows: ``ys[:, j]`` is the window that starts at ``starts[j]``.

    Attributes:
        y0: the first state of every window, shape ``(batch, *state)``.
        t: the window's times relative to its start, ``t[:window] - t[0]``, shape ``(window,)``.
        ys: the observed states, shape ``(window, batch, *state)``, with ``ys[0] == y0``.
        starts: the start index of every window in the full trajectory, shape ``(batch,)``.
    """

    y0: np.ndarray
    t: np.ndarray
    ys: np.ndarray
    starts: np.ndarray


def trajectory_windows(t, ys, batch_size, window, rng):
    """Draw ``batch_size`` distinct windows of ``window`` consecutive observations, as ``ode_demo``'s ``get_batch``.

    Every window of an autonomous system started at its first state is the same initial value problem
    over ``t[:window] - t[0]``, so one batched solve fits all of them.  The times must be equally spaced.

    Args:
        t: the observation times, shape ``(N,)``, equally spaced.
        ys: the observations, shape ``(N, *state)``.
        batch_size: the number of windows (at most ``N - window + 1``).
        window: the number of observations per window (at least 2).
        rng: the ``numpy.random.Generator`` that picks the start indices (a seed is refused).

    Returns:
        A :class:`Windows` ``(y0, t, ys, starts)``.
    """
    t, ys = np.asarray(t, dtype=float), np.asarray(ys, dtype=float)
    n = len(t)
    if ys.shape[0] != n:
        raise ValueError(f"ys has {ys.shape[0]} observations but t has {n} times")
    window, batch_size = check_int("window", window, minimum=2), check_int("batch_size", batch_size)
    if t.ndim != 1 or not np.isfinite(t).all() or not np.isfinite(ys).all():
        raise ValueError(f"t must be a finite 1-D array and ys finite, got t of shape {t.shape}")
    if not 2 <= window <= n:
        raise ValueError(f"window must be between 2 and len(t) = {n}, got {window}")
    if not 1 <= batch_size <= n - window + 1:
        raise ValueError(f"batch_size must be between 1 and len(t) - window + 1 = {n - window + 1}, got {batch_size}")
    dt = np.diff(t)
    if not np.allclose(dt, dt[0], rtol=1e-9, atol=0.0):
        raise ValueError("t must be equally spaced, so that every window shares the relative times")
    starts = np.sort(check_rng(rng, required=True).choice(n - window + 1, size=batch_size, replace=False))
    batch = ys[starts[None, :] + np.arange(window)[:, None]]
    return Windows(batch[0], t[:window] - t[0], batch, starts)


def _split(n):
    """Sizes of two classes for ``n`` points: ``n // 2`` and the rest."""
    n = check_int("n", n, minimum=2)
    return n // 2, n - n // 2


def _shuffled(x, labels, rng):
    order = rng.permutation(len(labels))
    return x[order], labels[order]


def two_moons(n, noise=0.1, rng=None):
    """Two interleaving half circles, as scikit-learn's ``make_moons``, with angles drawn at random.

    Class 0 lies on ``(cos a, sin a)``, class 1 on ``(1 - cos a, 0.5 - sin a)``, ``a`` uniform in
    ``[0, pi]``, both with Gaussian noise of standard deviation ``noise``.  ``rng`` is a
    ``numpy.random.Generator`` (``None``: ``np.random.default_rng(0)``; a seed is refused).

    Returns:
        ``(x, labels)``: points of shape ``(n, 2)`` and integer labels of shape ``(n,)``, shuffled.

    Example:
        >>> x, labels = two_moons(10, rng=np.random.default_rng(0))
        >>> x.shape, int(labels.sum())
        ((10, 2), 5)
    """
    rng, noise = check_rng(rng), check_number("noise", noise, low=0.0)
    n0, n1 = _split(n)
    a0, a1 = rng.uniform(0.0, np.pi, n0), rng.uniform(0.0, np.pi, n1)
    x = np.concatenate([np.stack([np.cos(a0), np.sin(a0)], axis=1),
                        np.stack([1.0 - np.cos(a1), 0.5 - np.sin(a1)], axis=1)])
    x = x + noise * rng.standard_normal(x.shape)
    return _shuffled(x, np.repeat([0, 1], [n0, n1]), rng)


def _uniform_in_shell(n, dim, r_in, r_out, rng):
    """``n`` points uniform (by volume) in the shell ``r_in <= |x| <= r_out`` of ``R^dim``.

    The direction is a normalised Gaussian vector; the radius has ``P(|x| <= r) ~ r^dim``.
    """
    direction = rng.standard_normal((n, dim))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    r = rng.uniform(r_in**dim, r_out**dim, n) ** (1.0 / dim)
    return r[:, None] * direction


def concentric_spheres(n, dim=2, noise=0.0, rng=None, radii=(0.5, 1.0, 1.5)):
    """A ball inside a shell: the function ``g`` of Dupont, Doucet & Teh (2019), Section 3, in ``R^dim``.

    Class 0 is uniform in the ball ``|x| <= r1``, class 1 in the shell ``r2 <= |x| <= r3``.  The flow
    of a neural ODE on ``R^dim`` is a homeomorphism: it cannot carry the ball out through the shell
    that surrounds it, so no flow followed by a linear head separates the classes exactly.  On the
    line (``dim=1``) the flow keeps the order of points, and at most three quarters of them can be
    classified right; in the plane a flow can squeeze a thin neck of the annulus across the boundary.
    One extra dimension makes room (:func:`~neuralode.models.augment`).

    Args:
        n: the number of points, split evenly between the classes.
        dim: the dimension of the space.
        noise: the standard deviation of Gaussian noise added to the points.
        rng: a ``numpy.random.Generator`` (``None``: ``np.random.default_rng(0)``; a seed is refused).
        radii: ``(r1, r2, r3)`` with ``0 < r1 < r2 < r3``.

    Returns:
        ``(x, labels)``: points of shape ``(n, dim)`` and integer labels of shape ``(n,)``, shuffled.
    """
    if not hasattr(radii, "__len__") or len(radii) != 3:
        raise ValueError(f"radii must be three numbers (r1, r2, r3), got {radii!r}")
    r1, r2, r3 = (check_number(f"radii[{i}]", r) for i, r in enumerate(radii))
    noise = check_number("noise", noise, low=0.0)
    if not 0 < r1 < r2 < r3:
        raise ValueError(f"radii must satisfy 0 < r1 < r2 < r3, got {radii!r}")
    dim = check_int("dim", dim)
    rng = check_rng(rng)
    n0, n1 = _split(n)
    x = np.concatenate([_uniform_in_shell(n0, int(dim), 0.0, r1, rng), _uniform_in_shell(n1, int(dim), r2, r3, rng)])
    x = x + noise * rng.standard_normal(x.shape)
    return _shuffled(x, np.repeat([0, 1], [n0, n1]), rng)


def concentric_circles(n, noise=0.0, rng=None, radii=(0.5, 1.0, 1.5)):
    """A disk inside an annulus in the plane: :func:`concentric_spheres` with ``dim=2``.

    Returns:
        ``(x, labels)``: points of shape ``(n, 2)`` and integer labels of shape ``(n,)``, shuffled.
    """
    return concentric_spheres(n, 2, noise, rng, radii)


def one_hot(labels, n_classes):
    """Rows of the identity: ``one_hot(labels, k)[i, j] = 1`` where ``labels[i] == j``.

    Example:
        >>> one_hot(np.array([0, 2]), 3)
        array([[1., 0., 0.],
               [0., 0., 1.]])
    """
    labels, n_classes = np.asarray(labels), check_int("n_classes", n_classes)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    return np.eye(n_classes)[labels]


# ---------------------------------------------------------------------------------------------------
# Two-dimensional densities for continuous normalizing flows (the toy sets of FFJORD)
# ---------------------------------------------------------------------------------------------------


def eight_gaussians(n, std=0.2, radius=2.0, rng=None):
    """``n`` points from an equal mixture of eight Gaussians, centred evenly on a circle.

    Component ``k`` has mean ``radius (cos(k pi / 4), sin(k pi / 4))`` and covariance ``std^2 I``:
    the density of the form FFJORD (Grathwohl et al. 2019) and torchdiffeq's CNF example learn.

    Args:
        n: the number of points.
        std, radius: the components' standard deviation (positive) and the circle's radius.
        rng: a ``numpy.random.Generator`` (``None``: ``np.random.default_rng(0)``); a seed or a legacy
            ``RandomState`` is refused.

    Returns:
        Points of shape ``(n, 2)``.

    Example:
        >>> eight_gaussians(5, rng=np.random.default_rng(0)).shape
        (5, 2)
    """
    n = check_int("n", n)
    std = check_number("std", std, low=0.0, strict=True)
    radius = check_number("radius", radius, low=0.0)
    rng = check_rng(rng)
    angle = rng.integers(0, 8, n) * (np.pi / 4)
    centres = radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return centres + std * rng.standard_normal((n, 2))


def eight_gaussians_log_prob(x, std=0.2, radius=2.0):
    """The exact log-density of :func:`eight_gaussians` at each row of ``x`` (shape ``(n, 2)``).

    Example:
        >>> bool(eight_gaussians_log_prob(np.array([[2.0, 0.0]]))[0] > eight_gaussians_log_prob(np.zeros((1, 2)))[0])
        True
    """
    x = check_array("x", x)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (n, 2), got {x.shape}")
    std = check_number("std", std, low=0.0, strict=True)
    radius = check_number("radius", radius, low=0.0)
    angle = np.arange(8) * (np.pi / 4)
    centres = radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    sq = np.sum((x[:, None, :] - centres[None]) ** 2, axis=2)
    log_comp = -0.5 * sq / std**2 - np.log(2.0 * np.pi * std**2) - np.log(8.0)
    top = log_comp.max(axis=1)
    return top + np.log(np.sum(np.exp(log_comp - top[:, None]), axis=1))


def checkerboard(n, squares=4, size=1.0, rng=None):
    """``n`` points uniform on the dark cells of a ``squares x squares`` checkerboard centred at 0.

    Cells have side ``size``; cell ``(i, j)`` is dark when ``i + j`` is even, so half the board
    (area ``squares^2 size^2 / 2``) carries a constant density and the other half none.

    Args:
        n: the number of points.
        squares, size: the cells per side and the side of a cell (positive).
        rng: a ``numpy.random.Generator`` (``None``: ``np.random.default_rng(0)``); a seed or a legacy
            ``RandomState`` is refused.

    Returns:
        Points of shape ``(n, 2)``.

    Example:
        >>> x = checkerboard(100, rng=np.random.default_rng(0))
        >>> x.shape, bool(np.all(np.abs(x) <= 2.0))
        ((100, 2), True)
    """
    n, squares = check_int("n", n), check_int("squares", squares)
    size = check_number("size", size, low=0.0, strict=True)
    rng = check_rng(rng)
    cells = np.array([(i, j) for i in range(squares) for j in range(squares) if (i + j) % 2 == 0])
    pick = cells[rng.integers(0, len(cells), n)]
    return (pick + rng.uniform(0.0, 1.0, (n, 2)) - squares / 2.0) * size
