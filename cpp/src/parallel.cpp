// parallel.cpp: thread-count settings for the OpenMP pool.
#include "ember/parallel.h"

#include <stdexcept>
#include <string>
#ifdef EMBER_OPENMP
#include <omp.h>
#endif

namespace ember {

int get_num_threads() {
#ifdef EMBER_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

void set_num_threads(int n) {
  if (n < 1)
    throw std::invalid_argument("set_num_threads: n must be >= 1. Received: n=" +
                                std::to_string(n));
#ifdef EMBER_OPENMP
  omp_set_num_threads(n);
#endif
}

bool openmp_enabled() {
#ifdef EMBER_OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace ember
