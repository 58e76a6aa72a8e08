"""Butcher tableaux: each method's coefficients are consistent, have the order they claim, and a
malformed tableau is refused when it is built."""

import numpy as np
import pytest

from neuralode.tableaux import DOPRI5, TABLEAUX, ButcherTableau, order_condition_residuals

ALL = sorted(TABLEAUX)
ADAPTIVE = [name for name in ALL if TABLEAUX[name].adaptive]
TIGHT = 1e-14

# The eight rooted trees up to order 4: their order, gamma, and elementary weight Phi(A, c).
TREES = [
    (1, 1, lambda A, c: np.ones_like(c)),
    (2, 2, lambda A, c: c),
    (3, 3, lambda A, c: c**2),
    (3, 6, lambda A, c: A @ c),
    (4, 4, lambda A, c: c**3),
    (4, 8, lambda A, c: c * (A @ c)),
    (4, 12, lambda A, c: A @ c**2),
    (4, 24, lambda A, c: A @ A @ c),
]


def with_weights(tab, b):
    """The tableau's stages with other weights ``b`` (e.g. the embedded solution's)."""
    return ButcherTableau(name=tab.name + "-weights", order=1, c=tab.c, a=tab.a, b=b)


def test_the_book_methods_are_all_there():
    assert {"euler", "midpoint", "heun", "rk4", "bosh3", "dopri5"} <= set(TABLEAUX)
    assert all(TABLEAUX[name].name == name for name in TABLEAUX)


@pytest.mark.parametrize("name", ALL)
def test_consistency(name):
    tab = TABLEAUX[name]
    s = tab.stages
    assert tab.a.shape == (s, s) and tab.b.shape == (s,) and tab.c.shape == (s,)
    assert np.all(np.triu(tab.a) == 0), "explicit methods have a strictly lower-triangular a"
    assert np.allclose(tab.a.sum(axis=1), tab.c, atol=TIGHT, rtol=0)
    assert abs(tab.b.sum() - 1.0) <= TIGHT
    assert tab.c[0] == 0.0
    if tab.adaptive:
        assert abs(tab.b_err.sum()) <= TIGHT
        assert np.any(tab.b_err != 0)
        assert tab.error_order < tab.order


@pytest.mark.parametrize("name", ADAPTIVE)
def test_dense_output_reproduces_the_step(name):
    """At theta = 1 the continuous extension gives b (the step's end); at theta = 0 it adds nothing."""
    tab = TABLEAUX[name]
    assert np.allclose(tab.dense @ np.ones(4), tab.b, atol=1e-13, rtol=0)
    assert np.all(tab.dense @ np.zeros(4) == 0)


@pytest.mark.parametrize("name", ALL)
def test_coefficients_are_read_only(name):
    with pytest.raises(ValueError):
        TABLEAUX[name].b[0] = 0.5


@pytest.mark.parametrize("name", ALL)
def test_order_conditions_hold_up_to_the_order(name):
    tab = TABLEAUX[name]
    residuals = order_condition_residuals(tab)
    assert len(residuals) == 8
    for condition, p, r in residuals:
        if p <= min(tab.order, 4):
            assert abs(r) <= TIGHT, f"{name}: {condition} has residual {r}"


@pytest.mark.parametrize("name", ["euler", "midpoint", "heun", "bosh3"])
def test_an_order_condition_beyond_the_order_fails(name):
    """Each method is of its order and no more: some condition of order p + 1 is clearly violated."""
    tab = TABLEAUX[name]
    beyond = [abs(r) for _, p, r in order_condition_residuals(tab) if p == tab.order + 1]
    assert beyond and max(beyond) > 1e-3


def test_order_conditions_of_the_embedded_solutions():
    """``b_hat = b - b_err`` is of the controller's ``error_order``: order 4 for dopri5, 2 for bosh3."""
    for name in ADAPTIVE:
        tab = TABLEAUX[name]
        embedded = with_weights(tab, tab.b - tab.b_err)
        residuals = order_condition_residuals(embedded)
        assert all(abs(r) <= TIGHT for _, p, r in residuals if p <= tab.error_order), name
        if tab.error_order < 4:
            assert max(abs(r) for _, p, r in residuals if p == tab.error_order + 1) > 1e-4, name


@pytest.mark.parametrize("theta", [0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
def test_dopri5_dense_output_is_of_order_four(theta):
    """The weights ``b(theta) = P [theta, .., theta^4]`` satisfy ``b(theta) . Phi = theta^p / gamma``."""
    b_theta = DOPRI5.dense @ theta ** np.arange(1, 5)
    for p, gamma, phi in TREES:
        assert abs(b_theta @ phi(DOPRI5.a, DOPRI5.c) - theta**p / gamma) <= TIGHT


def test_bosh3_dense_output_is_cubic_hermite():
    """bosh3's interpolant (built from its first-same-as-last stage) is of order 3, not 4."""
    bosh3 = TABLEAUX["bosh3"]
    for theta in (0.3, 0.5, 0.8):
        b_theta = bosh3.dense @ theta ** np.arange(1, 5)
        errors = [abs(b_theta @ phi(bosh3.a, bosh3.c) - theta**p / gamma) for p, gamma, phi in TREES]
        assert max(errors[:4]) <= TIGHT and max(errors[4:]) > 1e-3


def test_first_same_as_last():
    for name in ALL:
        assert TABLEAUX[name].fsal == (name in {"bosh3", "dopri5"}), name
    assert np.array_equal(DOPRI5.a[-1], DOPRI5.b) and DOPRI5.c[-1] == 1.0


def test_rows_skip_the_first_stage_and_a_reused_last_one():
    assert [i for i, _ in TABLEAUX["rk4"].rows] == [1, 2, 3]
    assert [i for i, _ in DOPRI5.rows] == [1, 2, 3, 4, 5]
    assert TABLEAUX["euler"].rows == ()


def test_step_coefficients_layout():
    """``unit + h * ab`` holds ``[1, h a_i]``, ``[1, h b]`` and ``[0, h b_err]``."""
    h = 0.3
    W = DOPRI5.unit + h * DOPRI5.ab
    s = DOPRI5.stages
    assert W.shape == (s + 2, s + 1)
    assert np.all(W[: s + 1, 0] == 1.0) and W[s + 1, 0] == 0.0
    assert np.allclose(W[:s, 1:], h * DOPRI5.a) and np.allclose(W[s, 1:], h * DOPRI5.b)
    assert np.allclose(W[s + 1, 1:], h * DOPRI5.b_err)


GOOD = dict(name="test", order=2, c=[0.0, 1.0], a=[[0.0, 0.0], [1.0, 0.0]], b=[0.5, 0.5])


@pytest.mark.parametrize("change, message", [
    (dict(c=[0.0, 0.9]), "rows of a must sum to c"),
    (dict(b=[0.5, 0.6]), "weights b must sum to 1"),
    (dict(a=[[0.0, 0.5], [0.5, 0.0]], c=[0.5, 0.5]), "strictly lower triangular"),
    (dict(a=[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), "a must be 2x2"),
    (dict(b=[1.0]), "b of length 2"),
    (dict(a=[0.0, 1.0]), "2-D array"),
    (dict(b_err=[0.1, -0.1]), "come with error_order"),
    (dict(b_err=[0.1, 0.1], error_order=1), "error weights b - b_hat must sum to 0"),
    (dict(b_err=[0.1, -0.1, 0.0], error_order=1), "b_err must have length 2"),
    (dict(b_err=[0.1, -0.1], error_order=1, dense=[[1.0, 0.0, 0.0]] * 2), "dense must be 2x4"),
    (dict(b_err=[0.1, -0.1], error_order=1, dense=[[1.0, 0.0, 0.0, 0.0]] * 2), "reproduce b at theta = 1"),
    (dict(b_err=[0.1, -0.1], error_order=1), "needs dense coefficients or FSAL"),
])
def test_malformed_tableaux_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        ButcherTableau(**{**GOOD, **change})


def test_a_well_formed_adaptive_tableau_without_dense_gets_hermite_interpolation():
    """First-same-as-last with an embedded pair: the dense output is built, and reproduces b."""
    tab = ButcherTableau(name="heun-euler", order=2, error_order=1, c=[0.0, 1.0, 1.0],
                         a=[[0, 0, 0], [1, 0, 0], [0.5, 0.5, 0]], b=[0.5, 0.5, 0.0], b_err=[-0.5, 0.5, 0.0])
    assert tab.fsal and tab.adaptive
    assert np.allclose(tab.dense.sum(axis=1), tab.b)
