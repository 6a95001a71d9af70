// random.cpp: Philox4x32-10 (Salmon et al., SC'11) and the fills built on it.
#include "ember/random.h"

#include <algorithm>
#include <cmath>

#include "ember/vector_isa.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

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

namespace {

// Blocks [b0, b1) of the stream into out[4 b0 ...], every value lo + span * to_unit(r).
void uniform_blocks(float* out, int64_t n, int64_t b0, int64_t b1, float lo, float span,
                    uint64_t seed, uint64_t stream) {
  for (int64_t b = b0; b < b1; ++b) {
    uint32_t r[4];
    block(seed, stream, static_cast<uint64_t>(b), r);
    for (int64_t j = 0; j < 4 && 4 * b + j < n; ++j) out[4 * b + j] = lo + span * to_unit(r[j]);
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define EMBER_PHILOX_X86 1
// (even lanes' 64-bit products, odd lanes') -> (low words, high words), in lane order.
__attribute__((target("avx2"))) inline void split_words(__m256i even, __m256i odd,
                                                        __m256i* lo32, __m256i* hi32) {
  *lo32 = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  *hi32 = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

// Eight random words -> lo + span * to_unit(r).
__attribute__((target("avx2"))) inline __m256 unit_values(__m256i r, __m256 lo, __m256 span) {
  const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(r, 8)),
                                 _mm256_set1_ps(1.0f / 16777216.0f));
  return _mm256_add_ps(lo, _mm256_mul_ps(span, u));
}

// The same for eight blocks at a time, one per 32-bit lane: each round's two 32 x 32 ->
// 64-bit products are four _mm256_mul_epu32 (even and odd lanes), the rest lane-wise
// integer operations, then the float conversion and lo + span * u without FMA: the
// same bits as the scalar blocks (dropout masks and uniform initial weights do not
// change). Blocks [b0, b1) must be whole eight-block groups whose 32-bit counters do not
// wrap, with all 4 (b1 - b0) values inside out.
__attribute__((target("avx2"))) void uniform_blocks_avx2(float* out, int64_t b0, int64_t b1,
                                                         float lo, float span, uint64_t seed,
                                                         uint64_t stream) {
  const __m256i m0 = _mm256_set1_epi64x(0xD2511F53u), m1 = _mm256_set1_epi64x(0xCD9E8D57u);
  const __m256i step = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 vlo = _mm256_set1_ps(lo), vspan = _mm256_set1_ps(span);
  for (int64_t b = b0; b < b1; b += 8) {
    const uint64_t blk = static_cast<uint64_t>(b);
    __m256i c0 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(blk))), step);
    __m256i c1 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(blk >> 32)));
    __m256i c2 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream)));
    __m256i c3 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream >> 32)));
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      __m256i lo0, hi0, lo1, hi1;
      split_words(_mm256_mul_epu32(c0, m0), _mm256_mul_epu32(_mm256_srli_epi64(c0, 32), m0),
                  &lo0, &hi0);
      split_words(_mm256_mul_epu32(c2, m1), _mm256_mul_epu32(_mm256_srli_epi64(c2, 32), m1),
                  &lo1, &hi1);
      const __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1),
                                          _mm256_set1_epi32(static_cast<int>(k0)));
      const __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3),
                                          _mm256_set1_epi32(static_cast<int>(k1)));
      c0 = n0;
      c1 = lo1;
      c2 = n2;
      c3 = lo0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    // word j of the eight blocks -> a float vector, then the blocks back in order
    const __m256 u0 = unit_values(c0, vlo, vspan), u1 = unit_values(c1, vlo, vspan);
    const __m256 u2 = unit_values(c2, vlo, vspan), u3 = unit_values(c3, vlo, vspan);
    const __m256 t0 = _mm256_unpacklo_ps(u0, u1), t1 = _mm256_unpackhi_ps(u0, u1);
    const __m256 t2 = _mm256_unpacklo_ps(u2, u3), t3 = _mm256_unpackhi_ps(u2, u3);
    const __m256 v0 = _mm256_shuffle_ps(t0, t2, 0x44), v1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 v2 = _mm256_shuffle_ps(t1, t3, 0x44), v3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    float* o = out + 4 * b;
    _mm256_storeu_ps(o, _mm256_permute2f128_ps(v0, v1, 0x20));
    _mm256_storeu_ps(o + 8, _mm256_permute2f128_ps(v2, v3, 0x20));
    _mm256_storeu_ps(o + 16, _mm256_permute2f128_ps(v0, v1, 0x31));
    _mm256_storeu_ps(o + 24, _mm256_permute2f128_ps(v2, v3, 0x31));
  }
}

// GCC 12 takes the deliberately undefined vectors inside its own AVX-512 shift and
// multiply intrinsics for uninitialized values.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// (even lanes' 64-bit products, odd lanes') -> (low words, high words), in lane order.
__attribute__((target("avx512f"))) inline void split_words16(__m512i even, __m512i odd,
                                                             __m512i* lo32, __m512i* hi32) {
  *lo32 = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  *hi32 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
}

__attribute__((target("avx512f"))) inline __m512 unit_values16(__m512i r, __m512 lo,
                                                               __m512 span) {
  const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(r, 8)),
                                 _mm512_set1_ps(1.0f / 16777216.0f));
  return _mm512_add_ps(lo, _mm512_mul_ps(span, u));
}

// uniform_blocks_avx2 sixteen blocks at a time (the same operations, so the same bits):
// whole sixteen-block groups whose 32-bit counters do not wrap.
__attribute__((target("avx512f"))) void uniform_blocks_avx512(float* out, int64_t b0,
                                                              int64_t b1, float lo, float span,
                                                              uint64_t seed, uint64_t stream) {
  const __m512i m0 = _mm512_set1_epi64(0xD2511F53u), m1 = _mm512_set1_epi64(0xCD9E8D57u);
  const __m512i step = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512 vlo = _mm512_set1_ps(lo), vspan = _mm512_set1_ps(span);
  for (int64_t b = b0; b < b1; b += 16) {
    const uint64_t blk = static_cast<uint64_t>(b);
    __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(blk))), step);
    __m512i c1 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(blk >> 32)));
    __m512i c2 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream)));
    __m512i c3 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream >> 32)));
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      __m512i lo0, hi0, lo1, hi1;
      split_words16(_mm512_mul_epu32(c0, m0), _mm512_mul_epu32(_mm512_srli_epi64(c0, 32), m0),
                    &lo0, &hi0);
      split_words16(_mm512_mul_epu32(c2, m1), _mm512_mul_epu32(_mm512_srli_epi64(c2, 32), m1),
                    &lo1, &hi1);
      const __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1),
                                          _mm512_set1_epi32(static_cast<int>(k0)));
      const __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3),
                                          _mm512_set1_epi32(static_cast<int>(k1)));
      c0 = n0;
      c1 = lo1;
      c2 = n2;
      c3 = lo0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    // Word j of the sixteen blocks -> a float vector; within each 128-bit lane L the
    // four words of block 4 L + q land in v_q; then a 4 x 4 transpose of the lanes.
    const __m512 u0 = unit_values16(c0, vlo, vspan), u1 = unit_values16(c1, vlo, vspan);
    const __m512 u2 = unit_values16(c2, vlo, vspan), u3 = unit_values16(c3, vlo, vspan);
    const __m512 t0 = _mm512_unpacklo_ps(u0, u1), t1 = _mm512_unpackhi_ps(u0, u1);
    const __m512 t2 = _mm512_unpacklo_ps(u2, u3), t3 = _mm512_unpackhi_ps(u2, u3);
    const __m512 v0 = _mm512_shuffle_ps(t0, t2, 0x44), v1 = _mm512_shuffle_ps(t0, t2, 0xEE);
    const __m512 v2 = _mm512_shuffle_ps(t1, t3, 0x44), v3 = _mm512_shuffle_ps(t1, t3, 0xEE);
    const __m512 a = _mm512_shuffle_f32x4(v0, v1, 0x44), c = _mm512_shuffle_f32x4(v0, v1, 0xEE);
    const __m512 bb = _mm512_shuffle_f32x4(v2, v3, 0x44), d = _mm512_shuffle_f32x4(v2, v3, 0xEE);
    float* o = out + 4 * b;
    _mm512_storeu_ps(o, _mm512_shuffle_f32x4(a, bb, 0x88));
    _mm512_storeu_ps(o + 16, _mm512_shuffle_f32x4(a, bb, 0xDD));
    _mm512_storeu_ps(o + 32, _mm512_shuffle_f32x4(c, d, 0x88));
    _mm512_storeu_ps(o + 48, _mm512_shuffle_f32x4(c, d, 0xDD));
  }
}

#pragma GCC diagnostic pop
#endif

}  // namespace

void fill_uniform(float* out, int64_t n, float lo, float hi, uint64_t seed,
                  uint64_t stream) {
  const float span = hi - lo;
  const int64_t blocks = (n + 3) / 4;
  // Groups of 64 blocks (256 values), split over the threads; whole groups of sixteen
  // blocks with AVX-512, of eight with AVX2, the rest one by one (all the same bits).
  constexpr int64_t kGroup = 64;
  const int64_t groups = (blocks + kGroup - 1) / kGroup;
#pragma omp parallel for schedule(static) if (n > (1 << 13))
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t b0 = g * kGroup, b1 = std::min(blocks, b0 + kGroup);
    int64_t b = b0;
#ifdef EMBER_PHILOX_X86
    // whole groups of eight blocks inside out, 32-bit counters that do not wrap
    const int64_t whole = std::min(b1, n / 4) - b0;
    if (whole >= 8 &&
        static_cast<uint64_t>(b0) >> 32 == static_cast<uint64_t>(b0 + whole - 1) >> 32) {
      if (vector_isa() == VectorIsa::Avx512 && whole >= 16) {
        b = b0 + whole / 16 * 16;
        uniform_blocks_avx512(out, b0, b, lo, span, seed, stream);
      }
      if (vector_isa() >= VectorIsa::Avx2 && b0 + whole - b >= 8) {
        const int64_t start = b;
        b += (b0 + whole - b) / 8 * 8;
        uniform_blocks_avx2(out, start, b, lo, span, seed, stream);
      }
    }
#endif
    uniform_blocks(out, n, b, b1, lo, span, seed, stream);
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
