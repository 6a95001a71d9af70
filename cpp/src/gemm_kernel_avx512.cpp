// gemm_kernel_avx512.cpp: the 6 x 32 AVX-512 micro-kernel. This file alone is compiled
// with AVX-512 flags; sgemm reaches it through gemm_kernel_avx512(), which returns it
// only when the CPU and the OS support AVX-512F/BW/DQ/VL.
//
// Tile: 6 rows x 32 columns in 12 zmm accumulators (two per row), the same shape in
// vectors as the AVX2 kernel's 6 x 16 in ymm. Per k step: two loads of B, six
// broadcasts of A, twelve FMAs: loads per FMA stay at 2/3, under the two loads a cycle
// that feed two FMA units, and twelve independent chains cover the FMA latency (4
// cycles x 2 units = 8 needed). Wider tiles (8 or 12 rows, 16 to 24 accumulators) need
// more packing code for the rows and edges for little gain at the sizes ember runs
// (32 to 512 columns, K of 27 to 2,304); 32 columns keep one 64-byte line of B per
// vector load.
//
// Bits: each element of a K block is one chain of FMAs from zero over k ascending, then
// added to C, the bias added and relu applied, exactly as in the AVX2 and generic
// kernels; sgemm's K blocking depends on K alone. So every kernel gives the same bits.
// The unpacked paths (few rows, narrow C) are the AVX2 kernel's.
#include "ember/gemm.h"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512VL__) && \
    defined(__AVX512BW__) && defined(__AVX512DQ__)
#include <immintrin.h>

// GCC 12's _mm512_max_ps passes _mm512_undefined_ps() as its unused source: a false
// "may be used uninitialized" warning at every use.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace ember {
namespace {

constexpr int kMR = 6;
constexpr int kNR = 32;

inline __mmask16 low_lanes(int n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff)
                 : static_cast<__mmask16>((1u << (n > 0 ? n : 0)) - 1u);
}

// One row of the tile from registers to C: plus C when accumulating, plus the bias,
// then max with zero, for the first n columns (masked where n < 32).
inline void store_row(float* out, __m512 c0, __m512 c1, int n, bool accumulate,
                      const float* bias, bool relu) {
  const __mmask16 m0 = low_lanes(n), m1 = low_lanes(n - 16);
  if (accumulate) {
    c0 = _mm512_add_ps(c0, _mm512_maskz_loadu_ps(m0, out));
    c1 = _mm512_add_ps(c1, _mm512_maskz_loadu_ps(m1, out + 16));
  }
  if (bias) {
    c0 = _mm512_add_ps(c0, _mm512_maskz_loadu_ps(m0, bias));
    c1 = _mm512_add_ps(c1, _mm512_maskz_loadu_ps(m1, bias + 16));
  }
  if (relu) {  // max(v, 0) gives 0 for NaN, like v > 0 ? v : 0
    c0 = _mm512_max_ps(c0, _mm512_setzero_ps());
    c1 = _mm512_max_ps(c1, _mm512_setzero_ps());
  }
  if (n >= kNR) {
    _mm512_storeu_ps(out, c0);
    _mm512_storeu_ps(out + 16, c1);
  } else {
    _mm512_mask_storeu_ps(out, m0, c0);
    _mm512_mask_storeu_ps(out + 16, m1, c1);
  }
}

// Packed: A is an MR-row sliver, a[k * MR + r], kc = seglen (nseg is 1). Segments: A
// read in place, row r of the tile as nseg segments of seglen contiguous floats,
// segment t at rows[r * stride + t]; rows past m repeat the last valid row (computed,
// never stored) so nothing outside A is read.
template <bool kPacked>
void kernel_avx512(int64_t nseg, int64_t seglen, const float* Ap, const float* const* rows,
                   int64_t stride, const float* Bp, float* C, int64_t ldc, int m, int n,
                   bool accumulate, const float* bias, bool relu) {
  __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps();
  __m512 c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
  __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps();
  __m512 c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
  __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps();
  __m512 c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
  for (int i = 0; i < m; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc + 16), _MM_HINT_T0);
  }
  const float* a = Ap;
  const float* b = Bp;
  for (int64_t t = 0; t < nseg; ++t) {
    const float *r0 = nullptr, *r1 = nullptr, *r2 = nullptr, *r3 = nullptr, *r4 = nullptr,
                *r5 = nullptr;
    if (!kPacked) {
      r0 = rows[t];
      r1 = rows[(m > 1 ? 1 : 0) * stride + t];
      r2 = rows[(m > 2 ? 2 : m - 1) * stride + t];
      r3 = rows[(m > 3 ? 3 : m - 1) * stride + t];
      r4 = rows[(m > 4 ? 4 : m - 1) * stride + t];
      r5 = rows[(m > 5 ? 5 : m - 1) * stride + t];
    }
    for (int64_t k = 0; k < seglen; ++k, a += kMR, b += kNR) {
      const __m512 b0 = _mm512_load_ps(b);
      const __m512 b1 = _mm512_load_ps(b + 16);
      __m512 x;
      if (kPacked) {
        _mm_prefetch(reinterpret_cast<const char*>(a + 8 * kMR), _MM_HINT_T0);
        x = _mm512_set1_ps(a[0]);
      } else {
        x = _mm512_set1_ps(r0[k]);
      }
      c00 = _mm512_fmadd_ps(x, b0, c00); c01 = _mm512_fmadd_ps(x, b1, c01);
      x = _mm512_set1_ps(kPacked ? a[1] : r1[k]);
      c10 = _mm512_fmadd_ps(x, b0, c10); c11 = _mm512_fmadd_ps(x, b1, c11);
      x = _mm512_set1_ps(kPacked ? a[2] : r2[k]);
      c20 = _mm512_fmadd_ps(x, b0, c20); c21 = _mm512_fmadd_ps(x, b1, c21);
      x = _mm512_set1_ps(kPacked ? a[3] : r3[k]);
      c30 = _mm512_fmadd_ps(x, b0, c30); c31 = _mm512_fmadd_ps(x, b1, c31);
      x = _mm512_set1_ps(kPacked ? a[4] : r4[k]);
      c40 = _mm512_fmadd_ps(x, b0, c40); c41 = _mm512_fmadd_ps(x, b1, c41);
      x = _mm512_set1_ps(kPacked ? a[5] : r5[k]);
      c50 = _mm512_fmadd_ps(x, b0, c50); c51 = _mm512_fmadd_ps(x, b1, c51);
    }
  }
  float* r = C;
  const __m512 cs[kMR][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                             {c30, c31}, {c40, c41}, {c50, c51}};
  for (int i = 0; i < m; ++i, r += ldc) store_row(r, cs[i][0], cs[i][1], n, accumulate, bias, relu);
}

void kernel_packed_avx512(int64_t kc, const float* Ap, const float* Bp, float* C,
                          int64_t ldc, int m, int n, bool accumulate, const float* bias,
                          bool relu) {
  kernel_avx512<true>(1, kc, Ap, nullptr, 0, Bp, C, ldc, m, n, accumulate, bias, relu);
}

void kernel_segs_avx512(int64_t nseg, int64_t seglen, const float* const* rows,
                        int64_t stride, const float* Bp, float* C, int64_t ldc, int m, int n,
                        bool accumulate, const float* bias, bool relu) {
  kernel_avx512<false>(nseg, seglen, nullptr, rows, stride, Bp, C, ldc, m, n, accumulate,
                       bias, relu);
}

}  // namespace

const GemmKernel* gemm_kernel_avx512(const GemmKernel* avx2) {
  __builtin_cpu_init();
  if (!avx2 || !__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512vl") ||
      !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512dq"))
    return nullptr;
  // The unpacked paths read A and B where they lie and sum as the AVX2 ones do.
  static const GemmKernel k{"avx512_6x32", kMR, kNR, kernel_packed_avx512, kernel_segs_avx512,
                            avx2->small_nn, avx2->narrow_tn, avx2->narrow_nn, nullptr};
  return &k;
}

}  // namespace ember

#else  // not an x86-64 build with AVX-512 flags

namespace ember {
const GemmKernel* gemm_kernel_avx512(const GemmKernel*) { return nullptr; }
}  // namespace ember

#endif
