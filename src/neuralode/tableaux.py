"""Butcher tableaux: every Runge–Kutta method of the engine, written as data.

An explicit Runge–Kutta method with ``s`` stages advances ``y' = f(t, y)`` by one step of size ``h``:

    k_i = f(t + c_i h, y + h * sum_{j<i} a_ij k_j),   i = 1..s
    y_new = y + h * sum_i b_i k_i

The numbers ``c``, ``a`` and ``b`` are the method; ``odeint`` runs any of them with one stepping
routine.  Adaptive methods also carry ``b_err = b - b_hat``, the weights of an embedded lower-order
solution, whose difference estimates the local error, and ``dense``, the coefficients of a continuous
extension used to evaluate the solution between steps.

An implicit method of the ESDIRK family (explicit first stage, singly diagonally implicit) has the
same data with a non-zero diagonal, ``a_11 = 0`` and ``a_ii = gamma`` for every later stage, so that
stage ``i`` appears on both sides of its own equation,

    k_i = f(t + c_i h, y + h * sum_{j<i} a_ij k_j + h * gamma * k_i),

and is found by Newton's method (``neuralode.implicit``).  The same order conditions hold with the
full lower-triangular ``a``.

References:
    Butcher, *Numerical Methods for Ordinary Differential Equations* (2016).
    Hairer, Nørsett & Wanner, *Solving Ordinary Differential Equations I* (1993), Sections II.1–II.6.
    Dormand & Prince, "A family of embedded Runge–Kutta formulae" (1980).
    Bogacki & Shampine, "A 3(2) pair of Runge–Kutta formulas" (1989).
    Kværnø, "Singly diagonally implicit Runge–Kutta methods with an explicit first stage",
    BIT Numerical Mathematics 44 (2004), 489–502.
    Hairer & Wanner, *Solving Ordinary Differential Equations II* (1996), Section IV.6.
"""

from dataclasses import dataclass, field
from functools import cached_property
from fractions import Fraction as F

import numpy as np

_TOL = 1e-14


def _frozen(values, ndim):
    array = np.array(values, dtype=float)
    if array.ndim != ndim:
        raise ValueError(f"expected a {ndim}-D array of coefficients, got shape {array.shape}")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class ButcherTableau:
    """A Runge–Kutta method as data, checking its own consistency on construction.

    Explicit methods have a strictly lower-triangular ``a``.  Implicit ones are ESDIRK methods: ``a``
    is lower triangular with diagonal ``(0, gamma, ..., gamma)``, ``gamma > 0``, so the first stage is
    explicit and every later one solves an equation with the same matrix ``I - h gamma J``.

    Args:
        name: the method's name, as passed to ``odeint(method=...)``.
        order: the order ``p`` of the propagated solution (global error ``O(h^p)``).
        c: the ``s`` stage times, as fractions of the step.
        a: the ``s x s`` stage coefficients: strictly lower triangular (explicit), or lower triangular
            with the ESDIRK diagonal ``(0, gamma, ..., gamma)`` (implicit).
        b: the ``s`` weights of the solution.
        b_err: ``b - b_hat`` for an embedded solution of order ``error_order``, or ``None``.
        error_order: the order of the embedded solution (the controller's exponent uses it).
        dense: an ``s x 4`` matrix ``P``: between the step's ends the solution is
            ``y(t + theta h) = y + h * sum_i k_i * (P[i] @ [theta, theta^2, theta^3, theta^4])``.
            For a first-same-as-last method without one, cubic Hermite interpolation is built.

    Raises:
        ValueError: if the coefficients are inconsistent (row sums of ``a`` differ from ``c``, the
            weights do not sum to one, the error weights do not sum to zero, a diagonal that is not
            ``(0, gamma, ..., gamma)``, ...).

    Example:
        >>> tab = TABLEAUX["rk4"]
        >>> tab.stages, tab.order, tab.implicit
        (4, 4, False)
        >>> kv3 = IMPLICIT_TABLEAUX["kvaerno3"]
        >>> kv3.implicit, round(kv3.gamma, 4), kv3.fsal
        (True, 0.4359, True)
    """

    name: str
    order: int
    c: np.ndarray
    a: np.ndarray
    b: np.ndarray
    b_err: np.ndarray = None
    error_order: int = None
    dense: np.ndarray = None
    fsal: bool = field(init=False)
    """Whether the last stage is ``f(t + h, y_new)``, so that it is the next step's first stage."""
    stages: int = field(init=False)
    """The number of stages ``s`` (function evaluations per step, before first-same-as-last reuse)."""
    implicit: bool = field(init=False)
    """Whether a stage depends on itself (a non-zero diagonal): then Newton's method finds it."""
    gamma: float = field(init=False)
    """The diagonal entry ``gamma`` shared by every implicit stage (``0.0`` for an explicit method)."""

    def __post_init__(self):
        for name in ("c", "a", "b", "b_err", "dense"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _frozen(value, 2 if name in ("a", "dense") else 1))
        object.__setattr__(self, "stages", len(self.c))
        self._check_shapes()
        object.__setattr__(self, "gamma", float(self.a[-1, -1]))
        object.__setattr__(self, "implicit", self.gamma != 0.0)
        self._check_consistency()
        fsal = bool(np.allclose(self.a[-1], self.b, atol=_TOL, rtol=0) and self.c[-1] == 1.0)
        object.__setattr__(self, "fsal", fsal and self.stages > 1)
        if self.adaptive and self.dense is None:
            if not self.fsal:
                raise ValueError(f"{self.name}: an adaptive tableau needs dense coefficients or FSAL")
            object.__setattr__(self, "dense", _frozen(_hermite_dense(self.b), 2))

    @cached_property
    def rows(self):
        """``(i, c_i)`` for the stages that ``rk_step`` computes from ``a`` (all but the first).

        For a first-same-as-last method the last stage is left out: it is ``f(t + h, y_new)``.
        """
        return tuple((i, float(self.c[i])) for i in range(1, self.stages - 1 if self.fsal else self.stages))

    @cached_property
    def ab(self):
        """The coefficients of every linear combination a step forms, with a zero column in front.

        Rows ``0..s-1`` are ``a`` (the stages' inputs), row ``s`` is ``b`` (the new state) and, for an
        adaptive method, row ``s + 1`` is ``b_err`` (the error estimate).  ``unit + h * ab`` then
        holds ``[1, h a_i]``, ``[1, h b]`` and ``[0, h b_err]``: dotted with the rows ``y, k_1..k_s``
        each gives its combination in one product.
        """
        rows = [self.a, self.b[None]] + ([self.b_err[None]] if self.adaptive else [])
        coefficients = np.concatenate(rows)
        return np.hstack([np.zeros((len(coefficients), 1)), coefficients])

    @cached_property
    def unit(self):
        """Zeros shaped like :attr:`ab`, with ones in the first column of the stage and solution rows."""
        unit = np.zeros_like(self.ab)
        unit[: self.stages + 1, 0] = 1.0
        return unit

    @property
    def adaptive(self):
        """Whether the method carries an embedded error estimate."""
        return self.b_err is not None

    @cached_property
    def predictor(self):
        """Weights ``alpha`` (``s x s``, strictly lower triangular) of each implicit stage's first guess.

        Newton's method for stage ``i`` starts from ``y + h * sum_{j<i} alpha_ij k_j``.  When an earlier
        stage ``j`` sits at the same time (``c_j = c_i``), the guess is that stage's value itself
        (``alpha_i = a_j``).  Otherwise ``alpha_i`` makes the guess exact for solutions that are
        polynomials of the highest degree the earlier distinct stage times allow, at most quadratic:
        ``sum_j alpha_ij c_j^(q-1) = c_i^q / q`` for ``q = 1, 2, ...`` over the first stage and up to
        two of the latest earlier stages with distinct times (Hairer & Wanner 1996, Section IV.8,
        discuss such starting values).
        """
        alpha = np.zeros_like(self.a)
        for i in range(1, self.stages):
            same = [j for j in range(i) if self.c[j] == self.c[i]]
            if same:
                alpha[i] = self.a[same[-1]]
                continue
            nodes = [0]
            for j in reversed(range(1, i)):
                if len(nodes) < 3 and all(self.c[j] != self.c[m] for m in nodes):
                    nodes.append(j)
            powers = np.arange(len(nodes))
            vandermonde = self.c[nodes][None, :] ** powers[:, None]
            alpha[i, nodes] = np.linalg.solve(vandermonde, self.c[i] ** (powers + 1) / (powers + 1))
        alpha.setflags(write=False)
        return alpha

    def _check_shapes(self):
        s = len(self.c)
        if self.a.shape != (s, s) or self.b.shape != (s,):
            raise ValueError(f"{self.name}: a must be {s}x{s} and b of length {s}")
        if np.any(np.triu(self.a, 1) != 0):
            raise ValueError(f"{self.name}: a must be strictly lower triangular (explicit method), or lower "
                             "triangular with the diagonal (0, gamma, ..., gamma) (ESDIRK)")
        diagonal = np.diag(self.a)
        if np.any(diagonal != 0) and not (diagonal[0] == 0 and s > 1 and diagonal[1] > 0
                                          and np.all(diagonal[1:] == diagonal[1])):
            raise ValueError(f"{self.name}: an implicit tableau must have the ESDIRK diagonal (0, gamma, ..., gamma) "
                             f"with gamma > 0 (an explicit first stage), got {diagonal.tolist()}")
        if self.b_err is not None and (self.b_err.shape != (s,) or self.error_order is None):
            raise ValueError(f"{self.name}: b_err must have length {s} and come with error_order")
        if self.dense is not None and self.dense.shape != (s, 4):
            raise ValueError(f"{self.name}: dense must be {s}x4")

    def _check_consistency(self):
        if not np.allclose(self.a.sum(axis=1), self.c, atol=_TOL, rtol=0):
            raise ValueError(f"{self.name}: the rows of a must sum to c")
        if abs(self.b.sum() - 1.0) > _TOL:
            raise ValueError(f"{self.name}: the weights b must sum to 1")
        if self.b_err is not None and abs(self.b_err.sum()) > _TOL:
            raise ValueError(f"{self.name}: the error weights b - b_hat must sum to 0")
        if self.dense is not None and not np.allclose(self.dense.sum(axis=1), self.b, atol=1e-12):
            raise ValueError(f"{self.name}: the dense output must reproduce b at theta = 1")


def _padded(a, b):
    ab = np.zeros((len(b) + 1, len(b) + 1))
    ab[:-1, 1:] = a
    ab[-1, 1:] = b
    return ab


def _hermite_dense(b):
    """Cubic Hermite interpolation from y0, y1 = y0 + h b.k, f0 = k_1 and f1 = k_s (FSAL)."""
    dense = np.zeros((len(b), 4))
    dense[:, 1] += 3.0 * b
    dense[:, 2] += -2.0 * b
    dense[0] += [1.0, -2.0, 1.0, 0.0]
    dense[-1] += [0.0, -1.0, 1.0, 0.0]
    return dense


def order_condition_residuals(tableau, max_order=4):
    """The order conditions up to ``max_order`` (4 or 5), as ``(name, order, lhs - rhs)`` triples.

    A method has order ``p`` when every condition of order at most ``p`` holds (Butcher 2016, Sec. 31).
    With ``A`` the matrix ``a``, ``c`` the stage times and ``b`` the weights (products of vectors are
    entrywise):

    ====  ==========================  =====
    p     condition                   value
    ====  ==========================  =====
    1     sum b                        1
    2     b . c                        1/2
    3     b . c^2                      1/3
    3     b . A c                      1/6
    4     b . c^3                      1/4
    4     (b * c) . A c                1/8
    4     b . A c^2                    1/12
    4     b . A A c                    1/24
    ====  ==========================  =====

    ``max_order=5`` adds the nine conditions of order five (``b . c^4 = 1/5`` ... ``b . A A A c =
    1/120``).  The conditions are the same for implicit methods, with ``A`` the full lower-triangular
    matrix, diagonal included.
    """
    A, b, c = tableau.a, tableau.b, tableau.c
    Ac = A @ c
    conditions = [
        ("sum b = 1", 1, b.sum() - 1.0),
        ("b.c = 1/2", 2, b @ c - 1 / 2),
        ("b.c^2 = 1/3", 3, b @ c**2 - 1 / 3),
        ("b.Ac = 1/6", 3, b @ Ac - 1 / 6),
        ("b.c^3 = 1/4", 4, b @ c**3 - 1 / 4),
        ("(b*c).Ac = 1/8", 4, (b * c) @ Ac - 1 / 8),
        ("b.Ac^2 = 1/12", 4, b @ A @ c**2 - 1 / 12),
        ("b.AAc = 1/24", 4, b @ A @ Ac - 1 / 24),
    ]
    if max_order == 5:
        conditions += [
            ("b.c^4 = 1/5", 5, b @ c**4 - 1 / 5),
            ("(b*c^2).Ac = 1/10", 5, (b * c**2) @ Ac - 1 / 10),
            ("(b*c).Ac^2 = 1/15", 5, (b * c) @ A @ c**2 - 1 / 15),
            ("(b*c).AAc = 1/30", 5, (b * c) @ A @ Ac - 1 / 30),
            ("b.(Ac)^2 = 1/20", 5, b @ Ac**2 - 1 / 20),
            ("b.Ac^3 = 1/20", 5, b @ A @ c**3 - 1 / 20),
            ("b.A(c*Ac) = 1/40", 5, b @ A @ (c * Ac) - 1 / 40),
            ("b.AAc^2 = 1/60", 5, b @ A @ A @ c**2 - 1 / 60),
            ("b.AAAc = 1/120", 5, b @ A @ A @ Ac - 1 / 120),
        ]
    elif max_order != 4:
        raise ValueError(f"max_order must be 4 or 5, got {max_order!r}")
    return [(name, p, float(r)) for name, p, r in conditions]


def _fractions(rows):
    return [[float(F(x)) for x in row] for row in rows]


EULER = ButcherTableau(name="euler", order=1, c=[0.0], a=[[0.0]], b=[1.0])

MIDPOINT = ButcherTableau(name="midpoint", order=2, c=[0.0, 0.5], a=[[0, 0], [0.5, 0]], b=[0.0, 1.0])

HEUN = ButcherTableau(name="heun", order=2, c=[0.0, 1.0], a=[[0, 0], [1, 0]], b=[0.5, 0.5])

RK4 = ButcherTableau(
    name="rk4",
    order=4,
    c=[0.0, 0.5, 0.5, 1.0],
    a=[[0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1, 0]],
    b=_fractions([["1/6", "1/3", "1/3", "1/6"]])[0],
)

BOSH3 = ButcherTableau(
    name="bosh3",
    order=3,
    error_order=2,
    c=_fractions([["0", "1/2", "3/4", "1"]])[0],
    a=_fractions([
        ["0", "0", "0", "0"],
        ["1/2", "0", "0", "0"],
        ["0", "3/4", "0", "0"],
        ["2/9", "1/3", "4/9", "0"],
    ]),
    b=_fractions([["2/9", "1/3", "4/9", "0"]])[0],
    b_err=_fractions([["-5/72", "1/12", "1/9", "-1/8"]])[0],
)

DOPRI5 = ButcherTableau(
    name="dopri5",
    order=5,
    error_order=4,
    c=_fractions([["0", "1/5", "3/10", "4/5", "8/9", "1", "1"]])[0],
    a=_fractions([
        ["0", "0", "0", "0", "0", "0", "0"],
        ["1/5", "0", "0", "0", "0", "0", "0"],
        ["3/40", "9/40", "0", "0", "0", "0", "0"],
        ["44/45", "-56/15", "32/9", "0", "0", "0", "0"],
        ["19372/6561", "-25360/2187", "64448/6561", "-212/729", "0", "0", "0"],
        ["9017/3168", "-355/33", "46732/5247", "49/176", "-5103/18656", "0", "0"],
        ["35/384", "0", "500/1113", "125/192", "-2187/6784", "11/84", "0"],
    ]),
    b=_fractions([["35/384", "0", "500/1113", "125/192", "-2187/6784", "11/84", "0"]])[0],
    b_err=_fractions([["71/57600", "0", "-71/16695", "71/1920", "-17253/339200", "22/525", "-1/40"]])[0],
    dense=_fractions([
        ["1", "-8048581381/2820520608", "8663915743/2820520608", "-12715105075/11282082432"],
        ["0", "0", "0", "0"],
        ["0", "131558114200/32700410799", "-68118460800/10900136933", "87487479700/32700410799"],
        ["0", "-1754552775/470086768", "14199869525/1410260304", "-10690763975/1880347072"],
        ["0", "127303824393/49829197408", "-318862633887/49829197408", "701980252875/199316789632"],
        ["0", "-282668133/205662961", "2019193451/616988883", "-1453857185/822651844"],
        ["0", "40617522/29380423", "-110615467/29380423", "69997945/29380423"],
    ]),
)

TABLEAUX = {tab.name: tab for tab in (EULER, MIDPOINT, HEUN, RK4, BOSH3, DOPRI5)}
"""Every explicit method ``odeint`` knows, by name (the implicit ones are in :data:`IMPLICIT_TABLEAUX`)."""


IMPLICIT_EULER = ButcherTableau(name="implicit_euler", order=1, c=[0.0, 1.0], a=[[0, 0], [0, 1]], b=[0.0, 1.0])
"""Backward Euler, ``y_new = y + h f(t + h, y_new)``, written as an ESDIRK with ``gamma = 1``: the explicit
first stage ``f(t, y)`` has weight 0 and only serves as the predictor (and it is the last stage of the
step before, so it costs nothing)."""


def _kvaerno3():
    """Kværnø (2004), the L-stable ESDIRK 3(2) with four stages, every coefficient a function of gamma.

    ``gamma = 0.4358665215`` as the paper gives it: the root of ``gamma^3 - 3 gamma^2 + 3 gamma / 2
    - 1/6 = 0`` that makes the stability function vanish at infinity (L-stability).  The order
    conditions hold for any gamma; the embedded solution of order 2 is the third stage (``c_3 = 1``).
    """
    g = 0.4358665215
    a31, a32 = (-4 * g**2 + 6 * g - 1) / (4 * g), (-2 * g + 1) / (4 * g)
    a41, a42, a43 = (6 * g - 1) / (12 * g), -1 / ((24 * g - 12) * g), (-6 * g**2 + 6 * g - 1) / (6 * g - 3)
    a = [[0, 0, 0, 0], [g, g, 0, 0], [a31, a32, g, 0], [a41, a42, a43, g]]
    b, b_hat = np.array(a[3]), np.array(a[2])
    return ButcherTableau(name="kvaerno3", order=3, error_order=2, c=[0.0, 2 * g, 1.0, 1.0], a=a, b=b,
                          b_err=b - b_hat)


def _kvaerno5():
    """Kværnø (2004), the L-stable ESDIRK 5(4) with seven stages, ``gamma = 0.26``, as the paper prints it.

    The embedded solution of order 4 is the sixth stage (``c_6 = 1``).  Like ``kvaerno3`` it has no
    dense coefficients of its own: between its step ends the solution is the cubic Hermite interpolant
    of the step (order 3), so output times inside long steps are less accurate than the step ends.
    """
    g = 0.26
    a = np.zeros((7, 7))
    a[1, :2] = [g, g]
    a[2, :3] = [0.13, 0.84033320996790809, g]
    a[3, :4] = [0.22371961478320505, 0.47675532319799699, -0.06470895363112615, g]
    a[4, :5] = [0.16648564323248321, 0.10450018841591720, 0.03631482272098715, -0.13090704451073998, g]
    a[5, :6] = [0.13855640231268224, 0, -0.04245337201752043, 0.02446657898003141, 0.61943039072480676, g]
    a[6, :7] = [0.13659751177640291, 0, -0.05496908796538376, -0.04118626728321046, 0.62993304899016403,
                0.06962479448202728, g]
    b, b_hat = a[6].copy(), a[5].copy()
    c = [0.0, 0.52, 1.230333209967908, 0.8957659843500759, 0.43639360985864756, 1.0, 1.0]
    return ButcherTableau(name="kvaerno5", order=5, error_order=4, c=c, a=a, b=b, b_err=b - b_hat)


KVAERNO3 = _kvaerno3()
KVAERNO5 = _kvaerno5()

IMPLICIT_TABLEAUX = {tab.name: tab for tab in (IMPLICIT_EULER, KVAERNO3, KVAERNO5)}
"""Every implicit (ESDIRK) method ``odeint`` knows, by name."""
