// parallel.h: the one OpenMP thread pool, and its settings.
#pragma once
#include <cstdint>

namespace ember {

// Number of threads the kernels use (OMP_NUM_THREADS is honoured at start-up).
int get_num_threads();
// Sets the thread count; n must be >= 1.
void set_num_threads(int n);
// True when the core was built with OpenMP.
bool openmp_enabled();

}  // namespace ember

// Memory-bound loops outside the GEMM (col2im, pooling, bias sums) get an AVX2 clone
// that the loader picks on CPUs that have it; the baseline clone keeps the library
// running on any x86-64. AVX2 without FMA: nothing is contracted or reassociated, so
// both clones compute the same bits.
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__) && !defined(EMBER_NO_CLONES)
#define EMBER_AVX2_CLONE __attribute__((target_clones("avx2", "default")))
#else
#define EMBER_AVX2_CLONE
#endif

namespace ember {

}  // namespace ember
