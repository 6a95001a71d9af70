"""Engine settings: the OpenMP thread count, and which GEMM kernel and vector loops run."""
import numpy as np

from . import _core


MAX_THREADS = _core.MAX_THREADS


def set_num_threads(n):
    """Sets the number of threads every kernel uses (default: OMP_NUM_THREADS or all cores).

    n must be an integer in [1, MAX_THREADS] (1024). A process forked from one that had
    loaded ember (multiprocessing's default start method on Linux) runs single-threaded,
    whatever n: OpenMP's threads do not survive a fork.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_THREADS:
        raise ValueError(f"set_num_threads expects an integer in [1, {MAX_THREADS}]. "
                         f"Received: n={n!r}")
    _core.set_num_threads(int(n))


def get_num_threads():
    """The number of threads the kernels use."""
    return _core.get_num_threads()


def gemm_kernel():
    """Name of the GEMM micro-kernel chosen at run time (e.g. 'avx2_fma_6x16', 'generic')."""
    return _core.gemm_kernel_name()


def vector_isa():
    """Instruction set of the loops outside the GEMM (activations, pooling, normalization,
    optimizer updates, random draws): 'avx512', 'avx2' or 'generic'. The widest the CPU
    runs unless EMBER_VECTOR_ISA names a narrower one; every choice gives the same bits."""
    return _core.vector_isa_name()


def openmp_enabled():
    """True when the core was built with OpenMP."""
    return _core.openmp_enabled()
