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
