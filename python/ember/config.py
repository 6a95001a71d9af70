"""Engine settings: the OpenMP thread count and which GEMM kernel runs."""
from . import _core


def set_num_threads(n):
    """Sets the number of threads every kernel uses (default: OMP_NUM_THREADS or all cores)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads expects a positive integer. Received: n={n!r}")
    _core.set_num_threads(n)


def get_num_threads():
    """The number of threads the kernels use."""
    return _core.get_num_threads()


def gemm_kernel():
    """Name of the GEMM micro-kernel chosen at run time (e.g. 'avx2_fma_6x16', 'generic')."""
    return _core.gemm_kernel_name()


def openmp_enabled():
    """True when the core was built with OpenMP."""
    return _core.openmp_enabled()
