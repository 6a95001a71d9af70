"""Finite-difference checks (float64) of every Dense, activation and loss gradient,
and agreement of the float32 fast kernels with the float64 references."""
import numpy as np
import pytest

from ember import _core
from gradcheck import assert_close, numeric_grad

ACTS = ["linear", "relu", "sigmoid", "tanh", "softmax"]
rng = np.random.default_rng(0)


@pytest.mark.parametrize("act", ACTS)
def test_activation_gradient(act):
    x = rng.normal(size=(4, 7))
    if act == "relu":  # keep away from the kink at 0
        x[np.abs(x) < 0.05] = 0.3
    r = rng.normal(size=x.shape)
    f = lambda: float(np.sum(_core.activation_forward(x, act) * r))
    y = _core.activation_forward(x, act)
    assert_close(_core.activation_backward(y, r, act), numeric_grad(f, x), what=act)


def test_relu_edges():
    x = np.array([[-1.0, 0.0, 1.0]])
    y = _core.activation_forward(x, "relu")
    np.testing.assert_array_equal(y, [[0, 0, 1]])
    np.testing.assert_array_equal(_core.activation_backward(y, np.ones_like(x), "relu"), [[0, 0, 1]])


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias", [True, False])
def test_dense_gradient(act, bias):
    n, i, o = 3, 5, 4
    x, w = rng.normal(size=(n, i)), rng.normal(size=(i, o)) * 0.5
    b = rng.normal(size=o) if bias else None
    r = rng.normal(size=(n, o))
    f = lambda: float(np.sum(_core.dense_forward(x, w, b, act) * r))
    y = _core.dense_forward(x, w, b, act)
    dz = _core.activation_backward(y, r, act)
    dx, dw, db = _core.dense_backward(x, w, dz)
    assert_close(dx, numeric_grad(f, x), what="dx")
    assert_close(dw, numeric_grad(f, w), what="dw")
    if bias:
        assert_close(db, numeric_grad(f, b), what="db")


@pytest.mark.parametrize("act", ACTS)
def test_dense_float32_matches_reference(act):
    x, w, b = rng.normal(size=(37, 29)), rng.normal(size=(29, 11)), rng.normal(size=11)
    ref = _core.dense_forward(x, w, b, act)
    fast = _core.dense_forward(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32), act)
    np.testing.assert_allclose(fast, ref, rtol=1e-4, atol=1e-5)
    dz = rng.normal(size=(37, 11))
    for f32, f64 in zip(_core.dense_backward(x.astype(np.float32), w.astype(np.float32),
                                             dz.astype(np.float32)),
                        _core.dense_backward(x, w, dz)):
        np.testing.assert_allclose(f32, f64, rtol=1e-4, atol=1e-4)


def _targets(loss, n, c):
    labels = rng.integers(0, c, size=n).astype(np.int32)
    if loss == "sparse_categorical_crossentropy":
        return labels
    if loss == "categorical_crossentropy":
        return np.eye(c)[labels]
    if loss == "binary_crossentropy":
        return rng.integers(0, 2, size=(n, c)).astype(np.float64)
    return rng.normal(size=(n, c))


LOSSES = ["sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
          "mean_squared_error"]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("from_logits", [False, True])
def test_loss_gradient(loss, from_logits):
    n, c = 4, 5
    t = _targets(loss, n, c)
    if from_logits or loss == "mean_squared_error":
        out = rng.normal(size=(n, c))
    elif loss == "binary_crossentropy":
        out = rng.uniform(0.05, 0.95, size=(n, c))
    else:
        out = _core.activation_forward(rng.normal(size=(n, c)), "softmax")
    f = lambda: _core.loss(loss, out, t, from_logits)[0]
    _, g = _core.loss(loss, out, t, from_logits)
    assert_close(g, numeric_grad(f, out), tol=1e-5, what=loss)


@pytest.mark.parametrize("loss,act", [("sparse_categorical_crossentropy", "softmax"),
                                      ("categorical_crossentropy", "softmax"),
                                      ("binary_crossentropy", "sigmoid")])
def test_fused_loss_gradient_at_preactivation(loss, act):
    n, c = 4, 3
    z = rng.normal(size=(n, c))
    t = _targets(loss, n, c)
    f = lambda: _core.loss(loss, _core.activation_forward(z, act), t)[0]
    _, g = _core.loss(loss, _core.activation_forward(z, act), t, False, act)
    assert_close(g, numeric_grad(f, z), tol=1e-5, what=loss)


def test_loss_values_match_keras_formulas():
    p = np.array([[0.7, 0.2, 0.1], [0.0, 1.0, 0.0]])
    labels = np.array([0, 0], dtype=np.int32)
    total, _ = _core.loss("sparse_categorical_crossentropy", p, labels)
    # the second row's probability 0 is clipped to 1e-7
    assert total == pytest.approx(-np.log(0.7) - np.log(1e-7), rel=1e-9)
    y = np.array([[1.0, 0.0]])
    q = np.array([[0.8, 0.3]])
    total, _ = _core.loss("binary_crossentropy", q, y)
    assert total == pytest.approx(-(np.log(0.8) + np.log(0.7)) / 2, rel=1e-9)
    total, _ = _core.loss("mean_squared_error", q, y)
    assert total == pytest.approx((0.04 + 0.09) / 2, rel=1e-9)


def test_loss_rejects_label_out_of_range():
    with pytest.raises(ValueError, match="label value of 3"):
        _core.loss("sparse_categorical_crossentropy", np.full((2, 3), 1 / 3),
                   np.array([0, 3], dtype=np.int32))


def test_sgemm_all_forms_against_numpy():
    a, b = rng.normal(size=(67, 45)).astype(np.float32), rng.normal(size=(45, 33)).astype(np.float32)
    for ta in (False, True):
        for tb in (False, True):
            A = np.ascontiguousarray(a.T) if ta else a
            B = np.ascontiguousarray(b.T) if tb else b
            c = np.ones((67, 33), np.float32)
            _core.sgemm(A, B, c, trans_a=ta, trans_b=tb, alpha=1.0, beta=1.0)
            np.testing.assert_allclose(c, a @ b + 1, rtol=1e-4, atol=1e-4)
