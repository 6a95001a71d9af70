// random.cpp: Philox4x32-10 (Salmon et al., SC'11) and the fills built on it.
#include "ember/random.h"

#include <cmath>

namespace ember {

void philox4x32(uint32_t c[4], uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(kM1) * c[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    const uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
    c[0] = n0; c[1] = lo1; c[2] = n2; c[3] = lo0;
    k0 += kW0; k1 += kW1;
  }
}

namespace {
// 24 random bits -> [0, 1), exactly representable in float.
inline float to_unit(uint32_t r) { return static_cast<float>(r >> 8) * (1.0f / 16777216.0f); }

// The four words for block i/4 of stream (seed, stream).
inline void block(uint64_t seed, uint64_t stream, uint64_t blk, uint32_t out[4]) {
  out[0] = static_cast<uint32_t>(blk);
  out[1] = static_cast<uint32_t>(blk >> 32);
  out[2] = static_cast<uint32_t>(stream);
  out[3] = static_cast<uint32_t>(stream >> 32);
  philox4x32(out, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}
}  // namespace

float philox_uniform(uint64_t seed, uint64_t stream, uint64_t i) {
  uint32_t r[4];
  block(seed, stream, i / 4, r);
  return to_unit(r[i % 4]);
}

void fill_uniform(float* out, int64_t n, float lo, float hi, uint64_t seed,
                  uint64_t stream) {
  const float span = hi - lo;
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t b = 0; b < (n + 3) / 4; ++b) {
    uint32_t r[4];
    block(seed, stream, static_cast<uint64_t>(b), r);
    for (int64_t j = 0; j < 4 && 4 * b + j < n; ++j) out[4 * b + j] = lo + span * to_unit(r[j]);
  }
}

// Box-Muller on pairs; truncated draws redraw from a later counter block until the
// value lies within two standard deviations (as Keras's truncated normal).
void fill_normal(float* out, int64_t n, float mean, float stddev, uint64_t seed,
                 uint64_t stream, bool truncated) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    for (uint64_t attempt = 0;; ++attempt) {
      uint32_t r[4];
      block(seed, stream, static_cast<uint64_t>(i) + attempt * static_cast<uint64_t>(n), r);
      const double u1 = (static_cast<double>(r[0]) + 1.0) / 4294967297.0;
      const double u2 = static_cast<double>(r[1]) / 4294967296.0;
      const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
      if (!truncated || std::fabs(z) <= 2.0) {
        out[i] = static_cast<float>(mean + stddev * z);
        break;
      }
    }
  }
}

}  // namespace ember
