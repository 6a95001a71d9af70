"""Finite-difference gradient checks in float64 over the core's reference kernels."""
import numpy as np


def numeric_grad(f, x, eps=1e-6):
    """Central differences of the scalar function f at x (float64)."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        hi = f()
        flat[i] = old - eps
        lo = f()
        flat[i] = old
        gflat[i] = (hi - lo) / (2 * eps)
    return g


def assert_close(analytic, numeric, tol=1e-6, what=""):
    err = np.max(np.abs(analytic - numeric) / (1.0 + np.abs(numeric)))
    assert err < tol, f"{what}: max relative error {err:.3e} >= {tol:.0e}"
