// gemm_kernel_avx2.cpp: the 6 x 16 AVX2+FMA micro-kernel. This file alone is
// compiled with -mavx2 -mfma; sgemm reaches it through gemm_kernel_avx2(), which
// returns it only when the CPU reports both features. It includes no templates
// from the standard library, so no AVX2 instantiation can leak into other files.
#include "ember/gemm.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

namespace ember {
namespace {

constexpr int kMR = 6;
constexpr int kNR = 16;

// 12 ymm accumulators hold the 6 x 16 tile; per k step two loads of B, six
// broadcasts of A and twelve FMAs. k runs ascending, as in the generic kernel.
//
// Packed: A is an MR-row sliver, a[k * MR + r]. Rows: A is read in place, row r at
// A + r * lda (k contiguous), so no packing copy is needed; rows past m repeat the
// last valid row (computed, never stored) so nothing outside A is read.
template <bool kPacked>
void kernel_avx2(int64_t kc, const float* A, int64_t lda, const float* Bp, float* C,
                 int64_t ldc, int m, int n, bool accumulate) {
  const float* r0 = A;
  const float* r1 = A + (m > 1 ? 1 : 0) * lda;
  const float* r2 = A + (m > 2 ? 2 : m - 1) * lda;
  const float* r3 = A + (m > 3 ? 3 : m - 1) * lda;
  const float* r4 = A + (m > 4 ? 4 : m - 1) * lda;
  const float* r5 = A + (m > 5 ? 5 : m - 1) * lda;
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int i = 0; i < m; ++i) _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc), _MM_HINT_T0);
  const float* a = A;
  const float* b = Bp;
  for (int64_t k = 0; k < kc; ++k, a += kMR, b += kNR) {
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 b1 = _mm256_load_ps(b + 8);
    __m256 x;
    if (kPacked) {
      _mm_prefetch(reinterpret_cast<const char*>(a + 8 * kMR), _MM_HINT_T0);
      x = _mm256_broadcast_ss(a + 0);
    } else {
      x = _mm256_broadcast_ss(r0 + k);
    }
    c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01);
    x = _mm256_broadcast_ss(kPacked ? a + 1 : r1 + k);
    c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11);
    x = _mm256_broadcast_ss(kPacked ? a + 2 : r2 + k);
    c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21);
    x = _mm256_broadcast_ss(kPacked ? a + 3 : r3 + k);
    c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31);
    x = _mm256_broadcast_ss(kPacked ? a + 4 : r4 + k);
    c40 = _mm256_fmadd_ps(x, b0, c40); c41 = _mm256_fmadd_ps(x, b1, c41);
    x = _mm256_broadcast_ss(kPacked ? a + 5 : r5 + k);
    c50 = _mm256_fmadd_ps(x, b0, c50); c51 = _mm256_fmadd_ps(x, b1, c51);
  }
  if (m == kMR && n == kNR) {
    // Full tile: straight from registers to C.
    float* r = C;
    if (accumulate) {
#define EMBER_ROW_ACC(c0, c1)                                              \
  _mm256_storeu_ps(r, _mm256_add_ps(c0, _mm256_loadu_ps(r)));             \
  _mm256_storeu_ps(r + 8, _mm256_add_ps(c1, _mm256_loadu_ps(r + 8)));     \
  r += ldc;
      EMBER_ROW_ACC(c00, c01) EMBER_ROW_ACC(c10, c11) EMBER_ROW_ACC(c20, c21)
      EMBER_ROW_ACC(c30, c31) EMBER_ROW_ACC(c40, c41) EMBER_ROW_ACC(c50, c51)
#undef EMBER_ROW_ACC
    } else {
#define EMBER_ROW_SET(c0, c1) \
  _mm256_storeu_ps(r, c0);    \
  _mm256_storeu_ps(r + 8, c1); \
  r += ldc;
      EMBER_ROW_SET(c00, c01) EMBER_ROW_SET(c10, c11) EMBER_ROW_SET(c20, c21)
      EMBER_ROW_SET(c30, c31) EMBER_ROW_SET(c40, c41) EMBER_ROW_SET(c50, c51)
#undef EMBER_ROW_SET
    }
    return;
  }
  // Edge tile: through a buffer, writing only the m x n corner.
  alignas(32) float tile[kMR][kNR];
  _mm256_store_ps(tile[0], c00); _mm256_store_ps(tile[0] + 8, c01);
  _mm256_store_ps(tile[1], c10); _mm256_store_ps(tile[1] + 8, c11);
  _mm256_store_ps(tile[2], c20); _mm256_store_ps(tile[2] + 8, c21);
  _mm256_store_ps(tile[3], c30); _mm256_store_ps(tile[3] + 8, c31);
  _mm256_store_ps(tile[4], c40); _mm256_store_ps(tile[4] + 8, c41);
  _mm256_store_ps(tile[5], c50); _mm256_store_ps(tile[5] + 8, c51);
  for (int i = 0; i < m; ++i) {
    float* row = C + i * ldc;
    for (int j = 0; j < n; ++j) row[j] = accumulate ? row[j] + tile[i][j] : tile[i][j];
  }
}

void kernel_packed_avx2(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc,
                        int m, int n, bool accumulate) {
  kernel_avx2<true>(kc, Ap, 0, Bp, C, ldc, m, n, accumulate);
}

void kernel_rows_avx2(int64_t kc, const float* A, int64_t lda, const float* Bp, float* C,
                      int64_t ldc, int m, int n, bool accumulate) {
  kernel_avx2<false>(kc, A, lda, Bp, C, ldc, m, n, accumulate);
}

// Four ymm accumulators cover 32 columns; the tail of fewer than 8 goes through a
// masked load/store. Each thread owns a range of 32-column blocks.
void small_nn_avx2(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                   bool accumulate) {
  const int64_t blocks = (N + 31) / 32;
  for (int64_t i = 0; i < M; ++i) {
#pragma omp parallel for schedule(static) if (N * K >= (1 << 16))
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t j0 = blk * 32;
      const int64_t w = N - j0 < 32 ? N - j0 : 32;
      if (w == 32) {
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
        for (int64_t k = 0; k < K; ++k) {
          const __m256 a = _mm256_set1_ps(alpha * A[i * lda + k]);
          const float* b = B + k * ldb + j0;
          s0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(b), s0);
          s1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(b + 8), s1);
          s2 = _mm256_fmadd_ps(a, _mm256_loadu_ps(b + 16), s2);
          s3 = _mm256_fmadd_ps(a, _mm256_loadu_ps(b + 24), s3);
        }
        float* c = C + i * ldc + j0;
        if (accumulate) {
          s0 = _mm256_add_ps(s0, _mm256_loadu_ps(c));
          s1 = _mm256_add_ps(s1, _mm256_loadu_ps(c + 8));
          s2 = _mm256_add_ps(s2, _mm256_loadu_ps(c + 16));
          s3 = _mm256_add_ps(s3, _mm256_loadu_ps(c + 24));
        }
        _mm256_storeu_ps(c, s0);
        _mm256_storeu_ps(c + 8, s1);
        _mm256_storeu_ps(c + 16, s2);
        _mm256_storeu_ps(c + 24, s3);
      } else {
        // Up to 4 vectors of 8, the last one masked.
        __m256 s[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                       _mm256_setzero_ps()};
        __m256i mask[4];
        const int vecs = static_cast<int>((w + 7) / 8);
        for (int v = 0; v < vecs; ++v) {
          alignas(32) int32_t bits[8];
          for (int l = 0; l < 8; ++l) bits[l] = (v * 8 + l < w) ? -1 : 0;
          mask[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(bits));
        }
        for (int64_t k = 0; k < K; ++k) {
          const __m256 a = _mm256_set1_ps(alpha * A[i * lda + k]);
          const float* b = B + k * ldb + j0;
          for (int v = 0; v < vecs; ++v)
            s[v] = _mm256_fmadd_ps(a, _mm256_maskload_ps(b + 8 * v, mask[v]), s[v]);
        }
        float* c = C + i * ldc + j0;
        for (int v = 0; v < vecs; ++v) {
          __m256 r = s[v];
          if (accumulate) r = _mm256_add_ps(r, _mm256_maskload_ps(c + 8 * v, mask[v]));
          _mm256_maskstore_ps(c + 8 * v, mask[v], r);
        }
      }
    }
  }
}

}  // namespace

const GemmKernel* gemm_kernel_avx2() {
  static const GemmKernel k{"avx2_fma_6x16", kMR, kNR, kernel_packed_avx2, kernel_rows_avx2,
                            small_nn_avx2};
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &k;
  return nullptr;
}

}  // namespace ember

#else  // not an x86-64 build with AVX2 flags: only the generic kernel exists

namespace ember {
const GemmKernel* gemm_kernel_avx2() { return nullptr; }
}  // namespace ember

#endif
