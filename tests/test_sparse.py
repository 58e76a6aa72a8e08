"""Sparse regression (SINDy): the monomial library, sequentially thresholded least squares recovering
sparse polynomial systems exactly from clean data, and the cases where it cannot (a threshold above a
true coefficient, noise above the threshold, a library whose columns coincide on the samples)."""

from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import neuralode as ne
from neuralode.sparse import MonomialLibrary, stlsq

PROPERTY = settings(deadline=None, max_examples=60)


def test_library_terms_and_names():
    lib = MonomialLibrary(2, 3)
    assert lib.names == ["1", "x", "y", "x^2", "x y", "y^2", "x^3", "x^2 y", "x y^2", "y^3"]
    X = np.array([[2.0, -3.0], [0.5, 1.0]])
    x, y = X[:, 0], X[:, 1]
    expected = np.stack([np.ones(2), x, y, x**2, x * y, y**2, x**3, x**2 * y, x * y**2, y**3], axis=1)
    assert np.allclose(lib(X), expected, rtol=1e-15, atol=0)
    assert MonomialLibrary(3, 0).names == ["1"]
    assert MonomialLibrary(4, 1).names == ["1", "x1", "x2", "x3", "x4"]
    assert MonomialLibrary(2, 1, names=["prey", "lynx"]).names == ["1", "prey", "lynx"]


@given(st.integers(1, 4), st.integers(0, 4))
def test_library_size_is_the_number_of_monomials(n_vars, degree):
    lib = MonomialLibrary(n_vars, degree)
    assert len(lib) == comb(n_vars + degree, degree) == len(set(lib.names))
    assert lib.powers.sum(axis=1).max() == degree and np.all(np.diff(lib.powers.sum(axis=1)) >= 0)


def test_equations_read_like_formulas():
    lib = MonomialLibrary(2, 2)
    Xi = np.zeros((6, 2))
    Xi[[0, 1, 4], 0] = [2.0, 1.0, -0.5]
    assert lib.equations(Xi, ["dx/dt", "dy/dt"]) == ["dx/dt = 2.000 + 1.000 x - 0.500 x y", "dy/dt = 0"]
    assert lib.equations(-Xi[:, 0], digits=1) == ["y1 = -2.0 - 1.0 x + 0.5 x y"]


@st.composite
def sparse_systems(draw):
    """A random sparse polynomial system: 1-3 variables, degree 1-3, 1-3 nonzero terms per equation with
    coefficients of size 0.5 to 3, and 2-3 times as many random states as library terms."""
    n_vars, degree = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lib = MonomialLibrary(n_vars, degree)
    Xi = np.zeros((len(lib), n_vars))
    for j in range(n_vars):
        terms = rng.choice(len(lib), size=min(len(lib), int(rng.integers(1, 4))), replace=False)
        Xi[terms, j] = rng.uniform(0.5, 3.0, size=len(terms)) * rng.choice([-1.0, 1.0], size=len(terms))
    X = rng.uniform(-2.0, 2.0, size=(int(rng.integers(2, 4)) * len(lib) + 5, n_vars))
    return lib, Xi, X


@PROPERTY
@given(sparse_systems())
def test_stlsq_recovers_a_sparse_system_exactly_from_clean_data(system):
    lib, Xi, X = system
    found = stlsq(lib(X), lib(X) @ Xi, threshold=0.1)
    assert np.array_equal(found != 0, Xi != 0)
    assert np.allclose(found, Xi, rtol=1e-9, atol=1e-9)


def test_lorenz_is_recovered_from_a_trajectory():
    """The classic test: dx = 10 (y - x), dy = x (28 - z) - y, dz = x y - 8/3 z, from states on the attractor."""
    def lorenz(t, s):
        x, y, z = s
        return np.array([10.0 * (y - x), x * (28.0 - z) - y, x * y - 8.0 / 3.0 * z])

    X = ne.odeint(lorenz, np.array([-8.0, 8.0, 27.0]), np.linspace(0.0, 5.0, 400), rtol=1e-10, atol=1e-10)
    dX = np.array([lorenz(0.0, s) for s in X])
    lib = MonomialLibrary(3, 2)
    found = stlsq(lib(X), dX, threshold=0.5)
    assert lib.equations(found, ["dx", "dy", "dz"], digits=4) == [
        "dx = -10.0000 x + 10.0000 y", "dy = 28.0000 x - 1.0000 y - 1.0000 x z", "dz = -2.6667 z + 1.0000 x y"]


def test_a_threshold_above_a_true_coefficient_removes_it():
    X = np.random.default_rng(0).uniform(0.5, 3.0, size=(50, 2))
    lib = MonomialLibrary(2, 2)
    Y = 1.0 * X[:, 0] - 0.5 * X[:, 0] * X[:, 1]
    assert np.allclose(stlsq(lib(X), Y, threshold=0.4), [0, 1.0, 0, 0, -0.5, 0], rtol=1e-10, atol=1e-12)
    too_high = stlsq(lib(X), Y, threshold=0.6)
    assert too_high[4] == 0.0, "the x y term is gone"
    assert np.linalg.norm(lib(X) @ too_high - Y) > 0.1 * np.linalg.norm(Y), "and the model no longer fits"


def test_noise_above_the_threshold_keeps_spurious_terms():
    rng = np.random.default_rng(1)
    X = rng.uniform(0.5, 3.0, size=(60, 2))
    lib = MonomialLibrary(2, 2)
    Y = -0.5 * X[:, 0] * X[:, 1]
    small = stlsq(lib(X), Y + 0.01 * rng.standard_normal(60), threshold=0.2)
    assert np.array_equal(small != 0, [False, False, False, False, True, False]) and abs(small[4] + 0.5) < 0.01
    large = stlsq(lib(X), Y + 1.0 * rng.standard_normal(60), threshold=0.2)
    assert not np.array_equal(large != 0, [False, False, False, False, True, False])


def test_collinear_library_has_no_answer_and_says_so():
    x = np.linspace(0.5, 3.0, 20)
    X = np.stack([x, 2 * x], axis=1)   # on the line y = 2x, x y, x^2 and y^2 are multiples of each other
    with pytest.raises(ValueError, match="linearly dependent"):
        stlsq(MonomialLibrary(2, 2)(X), -0.5 * X[:, 0] * X[:, 1], threshold=0.1)


def test_threshold_zero_is_least_squares_and_one_column_stays_one_column():
    rng = np.random.default_rng(2)
    Theta, Y = rng.standard_normal((30, 4)), rng.standard_normal(30)
    found = stlsq(Theta, Y, threshold=0.0)
    assert found.shape == (4,)
    assert np.allclose(found, np.linalg.lstsq(Theta, Y, rcond=None)[0], rtol=1e-12, atol=1e-14)


@PROPERTY
@given(sparse_systems(), st.floats(0.01, 0.5), st.integers(0, 2**32 - 1))
def test_stlsq_returns_the_least_squares_fit_on_its_own_support(system, noise, seed):
    """On noisy data the answer is a fixed point of the iteration: every kept coefficient is at least the
    threshold, and the kept ones are exactly the least-squares fit of their column on those terms."""
    lib, Xi, X = system
    Theta = lib(X)
    Y = Theta @ Xi + noise * np.random.default_rng(seed).standard_normal((len(X), Xi.shape[1]))
    found = stlsq(Theta, Y, threshold=0.3, max_iter=50)
    for j in range(Y.shape[1]):
        keep = found[:, j] != 0
        assert np.all(np.abs(found[keep, j]) >= 0.3)
        if keep.any():
            refit = np.linalg.lstsq(Theta[:, keep], Y[:, j], rcond=None)[0]
            assert np.allclose(found[keep, j], refit, rtol=1e-10, atol=1e-12)
