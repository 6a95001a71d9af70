// vector_math.h: e^x, log x, sigmoid and tanh on sixteen floats at once, for the loops
// compiled once per vector family (vector_isa.h). GCC/Clang vector extensions: one
// AVX-512 register in the AVX-512 variant of a loop, two AVX2 or four SSE or NEON ones
// elsewhere; each lane computes the same operations, so every variant gives the same
// bits. These helpers are always inlined into the variants: no 64-byte vector crosses
// a call, whose convention would differ between them.
#pragma once

#include <cstdint>
#include <cstring>

#pragma GCC diagnostic ignored "-Wpsabi"

namespace ember {

#define EMBER_INLINE inline __attribute__((always_inline))
#define EMBER_INLINE_LAMBDA __attribute__((always_inline))
typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
constexpr int kLanes = sizeof(vf) / sizeof(float);

// e^x: x = k ln2 + r with |r| <= ln2 / 2, e^r by Cephes's degree-6 polynomial (about
// 1 ulp), 2^k added into the exponent bits; k rounded with the 1.5 * 2^23 trick. Below
// -87 (where e^x leaves the normal floats) it gives 0, above log(FLT_MAX) infinity,
// between 88 and that e^88; NaN passes through.
EMBER_INLINE vf expv(vf x) {
  const vf x0 = x;
  const vi under = x < -87.f;
  x = x < -87.f ? vf{} - 87.f : x;
  x = x > 88.f ? vf{} + 88.f : x;
  const float magic = 12582912.f;  // 1.5 * 2^23
  const vf t = x * 1.44269504088896341f + magic;
  const vf k = t - magic;
  const vi kb = (vi)t - (vi)(vf{} + magic);  // k as integers
  vf r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  vf p = vf{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.f;
  vf e = under ? vf{} : (vf)((vi)p + (kb << 23));
  e = x0 > 88.7228394f ? vf{} + __builtin_inff() : e;
  return x0 != x0 ? x0 : e;
}

// log x for positive normal x (NaN passes through): x = 2^e m with m in
// [sqrt(1/2), sqrt(2)), log(m) = f - f^2/2 + f^3 P(f) with f = m - 1 by Cephes's
// degree-8 polynomial (about 1 ulp), e ln2 added in two parts.
EMBER_INLINE vf logv(vf x) {
  const vi bits = (vi)x;
  vi e = ((bits >> 23) & 0xff) - 126;
  vf m = (vf)((bits & 0x007fffff) | 0x3f000000);  // [1/2, 1)
  const vi low = m < 0.707106781186547524f;
  e = e + low;  // -1 where m is doubled
  const vf f = (low ? m + m : m) - 1.f;
  const vf z = f * f;
  vf p = vf{} + 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  const vf ef = __builtin_convertvector(e, vf);
  vf y = p * f * z;
  y = y + ef * -2.12194440e-4f;
  y = y - 0.5f * z;
  const vf r = (f + y) + ef * 0.693359375f;
  return x != x ? x : r;
}

// erf x: x clamped to [-4, 4] (beyond, erf is +-1 in float), then an odd degree-13
// polynomial over an even degree-8 one in x (the rational approximation XLA and Eigen
// use for float, within a few ulp).
EMBER_INLINE vf erfv(vf x) {
  x = x > 4.f ? vf{} + 4.f : x;
  x = x < -4.f ? vf{} - 4.f : x;
  const vf z = x * x;
  vf p = vf{} - 2.72614225801306e-10f;
  p = p * z + 2.77068142495902e-08f;
  p = p * z - 2.10102402082508e-06f;
  p = p * z - 5.69250639462346e-05f;
  p = p * z - 7.34990630326855e-04f;
  p = p * z - 2.95459980854025e-03f;
  p = p * z - 1.60960333262415e-02f;
  vf q = vf{} - 1.45660718464996e-05f;
  q = q * z - 2.13374055278905e-04f;
  q = q * z - 1.68282697438203e-03f;
  q = q * z - 7.37332916720468e-03f;
  q = q * z - 1.42647390514189e-02f;
  return x * p / q;
}

EMBER_INLINE vf sigmoidv(vf x) { return 1.f / (1.f + expv(-x)); }

// tanh x: below |x| = 0.625 Cephes's odd polynomial x + x^3 P(x^2) (about 1 ulp, where
// 1 - e^(-2|x|) would cancel), above sign(x) (1 - e) / (1 + e), e = e^(-2|x|).
EMBER_INLINE vf tanhv(vf x) {
  const vf ax = x < 0.f ? -x : x;
  const vf e = expv(-2.f * ax);
  vf t = (1.f - e) / (1.f + e);
  t = x < 0.f ? -t : t;
  const vf z = x * x;
  vf p = vf{} - 5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const vf small = p * z * x + x;
  return ax < 0.625f ? small : t;
}

// 0, 1, ..., 15: lane < m keeps the first m lanes of a row's last, padded block.
EMBER_INLINE vi lane_index() {
  vi lane;
  for (int l = 0; l < kLanes; ++l) lane[l] = l;
  return lane;
}

// The lanes of acc added in order.
EMBER_INLINE float lane_sum(vf acc) {
  float sum = 0.f;
  for (int l = 0; l < kLanes; ++l) sum += acc[l];
  return sum;
}

// The largest of x[0..n) (NaN never wins), sixteen at a time.
EMBER_INLINE float row_max(const float* x, int64_t n) {
  vf top = vf{} - __builtin_inff();
  for (int64_t j = 0; j < n; j += kLanes) {
    vf v = vf{} - __builtin_inff();
    std::memcpy(&v, x + j, sizeof(float) * (n - j < kLanes ? n - j : kLanes));
    top = v > top ? v : top;
  }
  float mx = top[0];
  for (int l = 1; l < kLanes; ++l) mx = top[l] > mx ? top[l] : mx;
  return mx;
}

// The sum of e^(x_j - mx) over x[0..n), lane by lane, then the lanes in order; each
// term also written to e when it is not null.
EMBER_INLINE float sum_exp(const float* x, int64_t n, float mx, float* e) {
  const vi lane = lane_index();
  vf acc{};
  for (int64_t j = 0; j < n; j += kLanes) {
    const int64_t m = n - j < kLanes ? n - j : kLanes;
    vf v{};
    std::memcpy(&v, x + j, sizeof(float) * m);
    const vf ev = expv(v - mx);
    acc = lane < static_cast<int32_t>(m) ? acc + ev : acc;
    if (e) std::memcpy(e + j, &ev, sizeof(float) * m);
  }
  return lane_sum(acc);
}

}  // namespace ember
