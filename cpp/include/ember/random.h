// random.h: counter-based random numbers (Philox4x32-10), so every value depends
// only on (seed, stream, index), never on thread scheduling.
#pragma once
#include <cstdint>

namespace ember {

// Four 32-bit random words for counter (c0, c1, c2, c3) under key (k0, k1).
void philox4x32(uint32_t c[4], uint32_t k0, uint32_t k1);

// Uniform float in [0, 1) for element i of stream (seed, stream).
float philox_uniform(uint64_t seed, uint64_t stream, uint64_t i);

// Fills out[0..n) with uniform values in [lo, hi) / normal(mean, std) values.
void fill_uniform(float* out, int64_t n, float lo, float hi, uint64_t seed, uint64_t stream);
void fill_normal(float* out, int64_t n, float mean, float stddev, uint64_t seed,
                 uint64_t stream, bool truncated);

}  // namespace ember
