// dropout.cpp: inverted dropout, masks drawn from (seed, step, element index).
#include "ember/dropout.h"

#include "ember/random.h"

namespace ember {

// x, y, mask (n): y = x * mask, mask = 1/(1-rate) with probability 1 - rate, else 0.
void dropout_forward(const float* x, float* y, float* mask, int64_t n, float rate,
                     uint64_t seed, uint64_t step) {
  const float scale = 1.f / (1.f - rate);
  fill_uniform(mask, n, 0.f, 1.f, seed, step);
#pragma omp parallel for schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    mask[i] = mask[i] >= rate ? scale : 0.f;
    y[i] = x[i] * mask[i];
  }
}

void dropout_backward(const float* dy, const float* mask, float* dx, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * mask[i];
}

}  // namespace ember
