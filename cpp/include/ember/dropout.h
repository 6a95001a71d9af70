// dropout.h: inverted dropout with a counter-based mask.
#pragma once
#include <cstdint>

namespace ember {

// x, y, mask (n); mask[i] = 1/(1-rate) if kept else 0, drawn from
// (seed, step, i) so the mask is the same for any thread count. y may alias x.
void dropout_forward(const float* x, float* y, float* mask, int64_t n, float rate,
                     uint64_t seed, uint64_t step);
// dx = dy * mask. dx may alias dy.
void dropout_backward(const float* dy, const float* mask, float* dx, int64_t n);

}  // namespace ember
