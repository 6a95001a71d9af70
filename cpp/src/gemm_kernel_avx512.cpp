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
// The narrow paths (C of at most 12 columns) are the AVX2 kernel's.
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

// Where the tile's A comes from. kPacked: an MR-row sliver, a[k * MR + r], kc = seglen
// (nseg is 1). kRows: A read in place, row r of the tile as nseg segments of seglen
// contiguous floats, segment t at rows[r * stride + t]. kCols: Aᵀ read in place (nseg
// is 1): element (r, k) at rows[k * stride][off + r], the six rows of a k contiguous (a
// weight gradient's patch lines). Rows past m repeat the last valid row (computed, never
// stored) so nothing outside A is read.
enum class ASrc { kPacked, kRows, kCols };

template <ASrc kSrc>
void kernel_avx512(int64_t nseg, int64_t seglen, const float* Ap, const float* const* rows,
                   int64_t stride, int64_t off, const float* Bp, float* C, int64_t ldc, int m,
                   int n, bool accumulate, const float* bias, bool relu) {
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
  // Row r of the tile reads row i[r] of A.
  const int i1 = m > 1 ? 1 : 0, i2 = m > 2 ? 2 : m - 1, i3 = m > 3 ? 3 : m - 1,
            i4 = m > 4 ? 4 : m - 1, i5 = m > 5 ? 5 : m - 1;
  const float* a = Ap;
  const float* b = Bp;
  for (int64_t t = 0; t < nseg; ++t) {
    const float *r0 = nullptr, *r1 = nullptr, *r2 = nullptr, *r3 = nullptr, *r4 = nullptr,
                *r5 = nullptr;
    if (kSrc == ASrc::kRows) {
      r0 = rows[t];
      r1 = rows[i1 * stride + t];
      r2 = rows[i2 * stride + t];
      r3 = rows[i3 * stride + t];
      r4 = rows[i4 * stride + t];
      r5 = rows[i5 * stride + t];
    }
    for (int64_t k = 0; k < seglen; ++k, a += kMR, b += kNR) {
      const __m512 b0 = _mm512_load_ps(b);
      const __m512 b1 = _mm512_load_ps(b + 16);
      // The six values of A at this k.
      float v0, v1, v2, v3, v4, v5;
      if (kSrc == ASrc::kPacked) {
        _mm_prefetch(reinterpret_cast<const char*>(a + 8 * kMR), _MM_HINT_T0);
        v0 = a[0]; v1 = a[1]; v2 = a[2]; v3 = a[3]; v4 = a[4]; v5 = a[5];
      } else if (kSrc == ASrc::kRows) {
        v0 = r0[k]; v1 = r1[k]; v2 = r2[k]; v3 = r3[k]; v4 = r4[k]; v5 = r5[k];
      } else {
        const float* p = rows[k * stride] + off;
        v0 = p[0]; v1 = p[i1]; v2 = p[i2]; v3 = p[i3]; v4 = p[i4]; v5 = p[i5];
      }
      __m512 x = _mm512_set1_ps(v0);
      c00 = _mm512_fmadd_ps(x, b0, c00); c01 = _mm512_fmadd_ps(x, b1, c01);
      x = _mm512_set1_ps(v1);
      c10 = _mm512_fmadd_ps(x, b0, c10); c11 = _mm512_fmadd_ps(x, b1, c11);
      x = _mm512_set1_ps(v2);
      c20 = _mm512_fmadd_ps(x, b0, c20); c21 = _mm512_fmadd_ps(x, b1, c21);
      x = _mm512_set1_ps(v3);
      c30 = _mm512_fmadd_ps(x, b0, c30); c31 = _mm512_fmadd_ps(x, b1, c31);
      x = _mm512_set1_ps(v4);
      c40 = _mm512_fmadd_ps(x, b0, c40); c41 = _mm512_fmadd_ps(x, b1, c41);
      x = _mm512_set1_ps(v5);
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
  kernel_avx512<ASrc::kPacked>(1, kc, Ap, nullptr, 0, 0, Bp, C, ldc, m, n, accumulate, bias,
                               relu);
}

void kernel_segs_avx512(int64_t nseg, int64_t seglen, const float* const* rows,
                        int64_t stride, const float* Bp, float* C, int64_t ldc, int m, int n,
                        bool accumulate, const float* bias, bool relu) {
  kernel_avx512<ASrc::kRows>(nseg, seglen, nullptr, rows, stride, 0, Bp, C, ldc, m, n,
                             accumulate, bias, relu);
}

void kernel_cols_avx512(int64_t kc, const float* const* cols, int64_t stride, int64_t off,
                        const float* Bp, float* C, int64_t ldc, int m, int n, bool accumulate,
                        const float* bias, bool relu) {
  kernel_avx512<ASrc::kCols>(1, kc, nullptr, cols, stride, off, Bp, C, ldc, m, n, accumulate,
                             bias, relu);
}

// The small-M path (batch-1 inference, a recurrent step at batch 1): C[r, 0:N) (+)=
// alpha * sum_q A[r, ks[q]] B[ks[q], 0:N) for the MM rows of A, 16 columns a vector.
// Each C element gets one FMA per listed k, in ascending order, from C's value (or
// zero): the AVX2 path's chain, so the same bits.
//
// Where the columns fit one tile of registers (MM rows x NV vectors, at most 16
// accumulators: a thread's share of a batch-1 layer or of a recurrent step's gate
// block), the tile stays in registers for the whole list: NV loads of B and MM
// broadcasts feed MM * NV FMAs per k, as MM * NV independent chains. The last vector is
// masked to the columns left.
template <int MM, int NV>
void small_tile(int64_t j, int64_t N, int64_t nk, const int32_t* ks, float alpha,
                const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                int64_t ldc, bool accumulate) {
  const __mmask16 last = low_lanes(static_cast<int>(N - j - 16 * (NV - 1)));
  __m512 acc[MM][NV];
  for (int r = 0; r < MM; ++r)
    for (int v = 0; v < NV; ++v) {
      const float* c = C + r * ldc + j + 16 * v;
      acc[r][v] = !accumulate      ? _mm512_setzero_ps()
                  : v + 1 < NV     ? _mm512_loadu_ps(c)
                                   : _mm512_maskz_loadu_ps(last, c);
    }
  for (int64_t q = 0; q < nk; ++q) {
    const int64_t k = ks[q];
    const float* b = B + k * ldb + j;
    __m512 w[NV];
    for (int v = 0; v + 1 < NV; ++v) w[v] = _mm512_loadu_ps(b + 16 * v);
    w[NV - 1] = _mm512_maskz_loadu_ps(last, b + 16 * (NV - 1));
    for (int r = 0; r < MM; ++r) {
      const __m512 a = _mm512_set1_ps(alpha * A[r * lda + k]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(a, w[v], acc[r][v]);
    }
  }
  for (int r = 0; r < MM; ++r) {
    float* c = C + r * ldc + j;
    for (int v = 0; v + 1 < NV; ++v) _mm512_storeu_ps(c + 16 * v, acc[r][v]);
    _mm512_mask_storeu_ps(c + 16 * (NV - 1), last, acc[r][NV - 1]);
  }
}

// As many NV-vector tiles as fit, then halves of NV for the rest.
template <int MM, int NV>
void small_tiles(int64_t j, int64_t N, int64_t nk, const int32_t* ks, float alpha,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                 int64_t ldc, bool accumulate) {
  for (; N - j > 16 * (NV - 1); j += 16 * NV)
    small_tile<MM, NV>(j, N, nk, ks, alpha, A, lda, B, ldb, C, ldc, accumulate);
  if constexpr (NV > 1)
    if (j < N) small_tiles<MM, NV / 2>(j, N, nk, ks, alpha, A, lda, B, ldb, C, ldc, accumulate);
}

// Wider: a short list keeps the MM x 32 block of C in registers for the whole list; a
// long one streams four rows of B at a time through C in L1 (the caller tiles N): B's
// rows are read whole, in order, where tiles across them would read it in strips.
constexpr int64_t kRegK = 16;

template <int MM, int NV>
void small_rows(int64_t N, int64_t nk, const int32_t* ks, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                bool accumulate) {
  if (N <= 16 * NV) {
    small_tiles<MM, NV>(0, N, nk, ks, alpha, A, lda, B, ldb, C, ldc, accumulate);
    return;
  }
  auto masked = [](int64_t j, int64_t N) { return low_lanes(static_cast<int>(N - j)); };
  if (nk <= kRegK) {
    float av[kRegK][MM];
    for (int64_t q = 0; q < nk; ++q)
      for (int r = 0; r < MM; ++r) av[q][r] = alpha * A[r * lda + ks[q]];
    for (int64_t j = 0; j < N; j += 32) {
      const __mmask16 m0 = masked(j, N), m1 = masked(j + 16, N);
      __m512 acc[MM][2];
      for (int r = 0; r < MM; ++r) {
        acc[r][0] = accumulate ? _mm512_maskz_loadu_ps(m0, C + r * ldc + j) : _mm512_setzero_ps();
        acc[r][1] = accumulate ? _mm512_maskz_loadu_ps(m1, C + r * ldc + j + 16)
                               : _mm512_setzero_ps();
      }
      for (int64_t q = 0; q < nk; ++q) {
        const float* b = B + ks[q] * ldb + j;
        const __m512 w0 = _mm512_maskz_loadu_ps(m0, b), w1 = _mm512_maskz_loadu_ps(m1, b + 16);
        for (int r = 0; r < MM; ++r) {
          const __m512 a = _mm512_set1_ps(av[q][r]);
          acc[r][0] = _mm512_fmadd_ps(a, w0, acc[r][0]);
          acc[r][1] = _mm512_fmadd_ps(a, w1, acc[r][1]);
        }
      }
      for (int r = 0; r < MM; ++r) {
        _mm512_mask_storeu_ps(C + r * ldc + j, m0, acc[r][0]);
        _mm512_mask_storeu_ps(C + r * ldc + j + 16, m1, acc[r][1]);
      }
    }
    return;
  }
  if (!accumulate)
    for (int r = 0; r < MM; ++r)
      for (int64_t j = 0; j < N; ++j) C[r * ldc + j] = 0.f;
  const int64_t nv = N / 16 * 16;
  const __mmask16 tail = masked(nv, N);
  int64_t q = 0;
  for (; q + 4 <= nk; q += 4) {
    const int64_t k0 = ks[q], k1 = ks[q + 1], k2 = ks[q + 2], k3 = ks[q + 3];
    __m512 a[MM][4];
    for (int r = 0; r < MM; ++r) {
      a[r][0] = _mm512_set1_ps(alpha * A[r * lda + k0]);
      a[r][1] = _mm512_set1_ps(alpha * A[r * lda + k1]);
      a[r][2] = _mm512_set1_ps(alpha * A[r * lda + k2]);
      a[r][3] = _mm512_set1_ps(alpha * A[r * lda + k3]);
    }
    const float *b0 = B + k0 * ldb, *b1 = B + k1 * ldb, *b2 = B + k2 * ldb, *b3 = B + k3 * ldb;
    auto columns = [&](int64_t j, __mmask16 m) {
      const __m512 w0 = _mm512_maskz_loadu_ps(m, b0 + j), w1 = _mm512_maskz_loadu_ps(m, b1 + j);
      const __m512 w2 = _mm512_maskz_loadu_ps(m, b2 + j), w3 = _mm512_maskz_loadu_ps(m, b3 + j);
      for (int r = 0; r < MM; ++r) {
        float* c = C + r * ldc + j;
        __m512 acc = _mm512_maskz_loadu_ps(m, c);
        acc = _mm512_fmadd_ps(a[r][0], w0, acc);
        acc = _mm512_fmadd_ps(a[r][1], w1, acc);
        acc = _mm512_fmadd_ps(a[r][2], w2, acc);
        acc = _mm512_fmadd_ps(a[r][3], w3, acc);
        _mm512_mask_storeu_ps(c, m, acc);
      }
    };
    for (int64_t j = 0; j < nv; j += 16) columns(j, static_cast<__mmask16>(0xffff));
    if (nv < N) columns(nv, tail);
  }
  for (; q < nk; ++q) {
    const float* b = B + ks[q] * ldb;
    for (int r = 0; r < MM; ++r) {
      const __m512 a = _mm512_set1_ps(alpha * A[r * lda + ks[q]]);
      float* c = C + r * ldc;
      for (int64_t j = 0; j < N; j += 16) {
        const __mmask16 m = j < nv ? static_cast<__mmask16>(0xffff) : tail;
        _mm512_mask_storeu_ps(c + j, m, _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m, b + j),
                                                        _mm512_maskz_loadu_ps(m, c + j)));
      }
    }
  }
}

void small_nn_avx512(int64_t M, int64_t N, int64_t nk, const int32_t* ks, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                     int64_t ldc, bool accumulate) {
  for (int64_t i = 0; i < M; i += 4) {
    const float* a = A + i * lda;
    float* c = C + i * ldc;
    switch (M - i) {
      case 1: small_rows<1, 16>(N, nk, ks, alpha, a, lda, B, ldb, c, ldc, accumulate); break;
      case 2: small_rows<2, 8>(N, nk, ks, alpha, a, lda, B, ldb, c, ldc, accumulate); break;
      case 3: small_rows<3, 4>(N, nk, ks, alpha, a, lda, B, ldb, c, ldc, accumulate); break;
      default: small_rows<4, 4>(N, nk, ks, alpha, a, lda, B, ldb, c, ldc, accumulate); break;
    }
  }
}

}  // namespace

const GemmKernel* gemm_kernel_avx512(const GemmKernel* avx2) {
  __builtin_cpu_init();
  if (!avx2 || !__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512vl") ||
      !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512dq"))
    return nullptr;
  // The narrow paths are the AVX2 kernel's (narrow_nn's partial sums are eight lanes
  // wide: sixteen would change its bits).
  static const GemmKernel k{"avx512_6x32", kMR, kNR, kernel_packed_avx512, kernel_segs_avx512,
                            small_nn_avx512, avx2->narrow_tn, avx2->narrow_nn, nullptr,
                            kernel_cols_avx512};
  return &k;
}

}  // namespace ember

#else  // not an x86-64 build with AVX-512 flags

namespace ember {
const GemmKernel* gemm_kernel_avx512(const GemmKernel*) { return nullptr; }
}  // namespace ember

#endif
